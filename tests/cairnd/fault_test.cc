// cairnd as a real process on a disk that fails for real: a small file system that fills up
// under publish load, and a file system frozen (fsfreeze, as a volume snapshot does) while cairnd
// shuts down. Both need root, to mount; a test that cannot mount says so and skips.
#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "tests/server/test_support.h"

namespace cairn::testing {
namespace {

using storage::testing::ScopedTmpfs;

bool Alive(pid_t pid) { return pid > 0 && kill(pid, 0) == 0; }

// Publishes MPUBs of `batch` unique bodies from one connection until `stop`, reconnecting after
// an error (cairnd closes the connection after E_MPUB_FAILED, as nsqd does). What was
// acknowledged goes to `acked`; failures are counted.
class Publisher {
 public:
  Publisher(uint16_t port, int id, size_t batch, size_t body_size)
      : port_(port), id_(id), batch_(batch), body_size_(body_size) {}

  void Run(const std::atomic<bool>& stop) {
    while (!stop) {
      RawClient c(port_);
      while (!stop) {
        std::vector<std::string> bodies;
        for (size_t i = 0; i < batch_; ++i) {
          std::string b = fmt::format("p{}-{:09d}-", id_, next_++);
          b.resize(body_size_, 'x');
          bodies.push_back(std::move(b));
        }
        std::string bytes;
        nsq::AppendMpub(bytes, "t", bodies);
        if (!c.Send(bytes)) break;
        auto f = c.Read(10s);
        if (!f) break;
        if (f->type == nsq::FrameType::kResponse && f->data == "OK") {
          std::lock_guard lock(mu_);
          acked_.insert(acked_.end(), bodies.begin(), bodies.end());
          ++oks_;
        } else {
          std::lock_guard lock(mu_);
          ++failures_;
          last_error_ = f->data;
          break;  // the connection is closed after the error
        }
      }
    }
  }

  std::vector<std::string> acked() const {
    std::lock_guard lock(mu_);
    return acked_;
  }
  size_t failures() const {
    std::lock_guard lock(mu_);
    return failures_;
  }
  size_t oks() const {
    std::lock_guard lock(mu_);
    return oks_;
  }
  std::string last_error() const {
    std::lock_guard lock(mu_);
    return last_error_;
  }

 private:
  const uint16_t port_;
  const int id_;
  const size_t batch_, body_size_;
  uint64_t next_ = 0;
  mutable std::mutex mu_;
  std::vector<std::string> acked_;
  size_t failures_ = 0, oks_ = 0;
  std::string last_error_;
};

// Every body on topic `t`, read on a new channel from the start of the log.
std::set<std::string> StoredBodies(uint16_t port, uint16_t http_port, const std::string& channel) {
  HttpClient http(http_port);
  EXPECT_EQ(http.Post("/channel/create?topic=t&channel=" + channel + "&start=earliest").status,
            200);
  RawClient sub(port);
  sub.Subscribe("t", channel);
  sub.Cmd("RDY 2500");
  std::set<std::string> stored;
  std::string fins;
  while (auto m = sub.ReadMessage(2s)) {
    stored.insert(m->body);
    fins += "FIN " + m->id + "\n";
    if (fins.size() > 16384) {
      sub.Send(fins);
      fins.clear();
    }
  }
  return stored;
}

size_t Missing(const std::vector<std::string>& acked, const std::set<std::string>& stored) {
  size_t missing = 0;
  for (const auto& b : acked) missing += stored.count(b) == 0 ? 1 : 0;
  return missing;
}

// Under publish load the disk fills: publishes get E_MPUB_FAILED over TCP and 503 EXITING over
// HTTP (nsqd's answers, which clients retry), cairnd stays up and keeps serving reads, nothing it
// acknowledged is lost, and once space returns publishes succeed again. A kill -9 afterwards loses
// nothing acknowledged either.
TEST(Fault, AFullDiskFailsPublishesLosesNothingAcknowledgedAndRecovers) {
  TempDir dir;
  ScopedTmpfs disk(dir.sub("mnt"), "256m");
  if (!disk.mounted()) GTEST_SKIP() << "needs root to mount a small tmpfs (a real full disk)";
  // Ballast: most of the disk, removed later to give space back.
  {
    std::ofstream ballast(disk.path() + "/ballast", std::ios::binary);
    const std::string chunk(1u << 20, 'z');
    for (int i = 0; i < 150; ++i) ballast.write(chunk.data(), chunk.size());
  }
  const std::string data = disk.path() + "/data";
  // Uncompressed: the bodies fill the disk byte for byte.
  CairndProcess cairnd(data, {"--sync=always", "--compression=none"});
  ASSERT_NE(cairnd.port(), 0) << cairnd.startup_log();

  std::atomic<bool> stop{false};
  std::vector<std::unique_ptr<Publisher>> publishers;
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    publishers.push_back(std::make_unique<Publisher>(cairnd.port(), i, 50, 1024));
    threads.emplace_back([&, p = publishers.back().get()] { p->Run(stop); });
  }
  auto failures = [&] {
    size_t n = 0;
    for (auto& p : publishers) n += p->failures();
    return n;
  };
  auto oks = [&] {
    size_t n = 0;
    for (auto& p : publishers) n += p->oks();
    return n;
  };
  const auto t0 = std::chrono::steady_clock::now();
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  const bool filled = Eventually([&] { return failures() >= 8; }, 60s);
  std::printf("%.1f s: the disk is full after %zu MPUBs acknowledged\n", seconds(), oks());
  std::string error;
  for (auto& p : publishers) error += p->last_error();
  EXPECT_TRUE(filled) << "the disk never filled (" << oks() << " MPUBs acknowledged)";
  EXPECT_NE(error.find("E_MPUB_FAILED"), std::string::npos) << error;
  EXPECT_TRUE(Alive(cairnd.pid())) << cairnd.log();
  {
    HttpClient http(cairnd.http_port());
    EXPECT_EQ(http.Get("/ping").status, 500) << "/ping must say the store cannot write";
    const Reply pub = http.Post("/pub?topic=t0", std::string(64u << 10, 'h'));
    EXPECT_EQ(pub.status, 503) << pub.body;
    EXPECT_EQ(pub.body, R"({"message":"EXITING"})");
  }

  std::filesystem::remove(disk.path() + "/ballast");
  const size_t oks_when_freed = oks();
  EXPECT_TRUE(Eventually([&] { return oks() > oks_when_freed + 10; }, 60s))
      << "publishes did not succeed again once space returned:\n"
      << cairnd.log();
  std::printf("%.1f s: publishes succeed again\n", seconds());
  stop = true;
  for (auto& t : threads) t.join();
  ASSERT_TRUE(Alive(cairnd.pid())) << cairnd.log();
  {
    HttpClient http(cairnd.http_port());
    EXPECT_EQ(http.Get("/ping").status, 200);
  }

  std::vector<std::string> acked;
  for (auto& p : publishers) {
    auto a = p->acked();
    acked.insert(acked.end(), a.begin(), a.end());
  }
  EXPECT_EQ(Missing(acked, StoredBodies(cairnd.port(), cairnd.http_port(), "check")), 0u)
      << "acknowledged messages lost (of " << acked.size() << ")";
  std::printf("%.1f s: %zu acknowledged messages read back\n", seconds(), acked.size());
  cairnd.Signal(SIGKILL);
  CairndProcess again(data);
  ASSERT_NE(again.port(), 0) << again.startup_log();
  EXPECT_EQ(Missing(acked, StoredBodies(again.port(), again.http_port(), "after_kill")), 0u)
      << "acknowledged messages lost after kill -9 (of " << acked.size() << ")";
}

// Runs a shell command; true if it exited 0.
bool Sh(const std::string& command) {
  return std::system((command + " >/dev/null 2>&1").c_str()) == 0;
}

// An ext4 file system in a file, mounted on a loop device while this lives.
class LoopDisk {
 public:
  explicit LoopDisk(const std::string& dir) : image_(dir + "/disk.img"), path_(dir + "/mnt") {
    std::filesystem::create_directories(path_);
    mounted_ = geteuid() == 0 && Sh("truncate -s 256M " + image_) &&
               Sh("mkfs.ext4 -q -F " + image_) && Sh("mount -o loop " + image_ + " " + path_);
  }
  ~LoopDisk() {
    if (!mounted_) return;
    Thaw();
    Sh("umount " + path_);
  }
  bool mounted() const { return mounted_; }
  const std::string& path() const { return path_; }
  bool Freeze() { return frozen_ = Sh("fsfreeze -f " + path_); }
  void Thaw() {
    if (frozen_) Sh("fsfreeze -u " + path_);
    frozen_ = false;
  }

 private:
  std::string image_, path_;
  bool mounted_ = false, frozen_ = false;
};

// The disk stalls (frozen, as during a volume snapshot) while a publish waits for its fsync, and
// cairnd is asked to stop. It gives up on the connection at its drain deadline (8 s); the publish
// completes only once the disk thaws, while cairnd closes its store. That completion must find
// the broker still there. (The broker used to be destroyed before the store was closed, so the
// late completion called into freed memory; AddressSanitizer reports it, in CI's ASan run.)
TEST(Fault, APublishThatCompletesAfterTheDrainDeadlineIsHandledCleanly) {
  TempDir dir;
  LoopDisk disk(dir.path());
  if (!disk.mounted()) GTEST_SKIP() << "needs root, a loop device and mkfs.ext4 to make a disk";
  const std::string data = disk.path() + "/data";
  CairndProcess cairnd(data, {"--sync=always"});
  ASSERT_NE(cairnd.port(), 0) << cairnd.startup_log();
  RawClient pub(cairnd.port());
  pub.Publish("t", "before the freeze");
  if (!disk.Freeze()) GTEST_SKIP() << "fsfreeze is not available here";
  ASSERT_TRUE(pub.CmdBody("PUB t", "during the freeze"));
  // The publish is queued behind the frozen disk: no answer comes.
  EXPECT_FALSE(pub.Read(300ms)) << "a publish was answered while the disk was frozen";
  kill(cairnd.pid(), SIGTERM);
  // cairnd drains for 8 s, then closes the connection it could not answer.
  EXPECT_TRUE(pub.ClosedByPeer(15s)) << cairnd.log();
  disk.Thaw();
  const int status = cairnd.Wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << (WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status))
                              : "exit " + std::to_string(WEXITSTATUS(status)))
      << "\n"
      << cairnd.log();
  // Both messages are in the log: the second was written once the disk thawed.
  CairndProcess again(data);
  ASSERT_NE(again.port(), 0) << again.startup_log();
  RawClient sub(again.port());
  sub.Subscribe("t", "c");
  sub.Cmd("RDY 10");
  auto first = sub.ReadMessage();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->body, "before the freeze");
}

}  // namespace
}  // namespace cairn::testing

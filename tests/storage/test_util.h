// Helpers shared by the storage tests: temporary data directories and sample traffic.
#pragma once

#include <sys/mount.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "bench/sample_traffic.h"
#include "src/base/clock.h"
#include "storage/store.h"

namespace cairn::storage::testing {

// A fresh directory under $TMPDIR, removed with everything in it when the object goes away.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "cairn-test-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) std::abort();
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A real small disk: a tmpfs of `size` (e.g. "160m") mounted under `dir` while this lives. Needs
// root (CI runs as root); mounted() is false otherwise, and the test should skip.
class ScopedTmpfs {
 public:
  ScopedTmpfs(const std::string& dir, const std::string& size) : path_(dir) {
    std::filesystem::create_directories(path_);
    mounted_ =
        geteuid() == 0 && mount("tmpfs", path_.c_str(), "tmpfs", 0, ("size=" + size).c_str()) == 0;
  }
  ~ScopedTmpfs() {
    if (mounted_) umount2(path_.c_str(), MNT_DETACH);
  }
  ScopedTmpfs(const ScopedTmpfs&) = delete;
  ScopedTmpfs& operator=(const ScopedTmpfs&) = delete;

  bool mounted() const { return mounted_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  bool mounted_ = false;
};

inline StoreOptions TestOptions(const std::string& path) {
  StoreOptions o;
  o.path = path;
  o.retention_interval = std::chrono::hours(1);  // tests run retention explicitly
  return o;
}

inline std::unique_ptr<Store> OpenOrDie(const StoreOptions& o) {
  auto store = Store::Open(o);
  if (!store) {
    ADD_FAILURE() << store.error().ToString();
    return nullptr;
  }
  return std::move(*store);
}

// Sample traffic (bench/sample_traffic.h, the default seed): `n` records of what the `logs`
// topic carries (kind "logs") or lines of what `metrics` carries ("metrics").
inline std::vector<std::string> SampleLines(const std::string& kind, int n) {
  const auto count = static_cast<size_t>(n);
  return kind == "logs" ? sample::Logs(count) : sample::Metrics(count);
}

inline std::vector<MessageIn> AsMessages(const std::vector<std::string>& bodies, int64_t ts0,
                                         int64_t step = 1000) {
  std::vector<MessageIn> out;
  out.reserve(bodies.size());
  for (size_t i = 0; i < bodies.size(); ++i) {
    out.push_back(MessageIn{bodies[i], ts0 + static_cast<int64_t>(i) * step, 0});
  }
  return out;
}

// Every body from `from` to the end of the log, checking offsets run without a gap.
inline std::vector<std::string> ReadAll(TopicLog& topic, uint64_t from = 0) {
  std::vector<std::string> out;
  for (;;) {
    auto r = topic.Read(from, 1000, 1 << 20);
    EXPECT_TRUE(r) << r.error().ToString();
    if (!r || r->messages.empty()) break;
    if (!out.empty()) {
      EXPECT_EQ(r->messages.front().offset, from) << "a gap in the log";
    }
    for (size_t i = 0; i < r->messages.size(); ++i) {
      EXPECT_EQ(r->messages[i].offset, r->messages.front().offset + i);
      out.emplace_back(r->messages[i].body);
    }
    from = r->next_offset;
  }
  return out;
}

}  // namespace cairn::storage::testing

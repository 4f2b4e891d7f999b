// Kill -9 at random moments: every append the child saw complete must be in the reopened store,
// byte for byte, in order, with no gap and no duplicate offset.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <random>
#include <sstream>

#include <gtest/gtest.h>

#include "tests/storage/crash_writer.h"
#include "tests/storage/test_util.h"

extern char** environ;

namespace cairn::storage {
namespace {

struct Acked {
  uint64_t base, count;
  uint32_t appender;
  uint64_t seq;
};

// Runs the writer until `kill_after_lines` appends have completed (or a random delay passed,
// whichever comes later), SIGKILLs it, and returns what it acknowledged.
std::vector<Acked> RunAndKill(const std::string& path, uint64_t first_seq, int delay_us) {
  int fds[2];
  if (pipe(fds) != 0) return {};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  const std::string bin = std::string(CAIRN_BIN_DIR) + "/crash_writer";
  const std::string seq = std::to_string(first_seq);
  char* argv[] = {const_cast<char*>(bin.c_str()), const_cast<char*>(path.c_str()),
                  const_cast<char*>(seq.c_str()), nullptr};
  pid_t pid;
  if (posix_spawn(&pid, bin.c_str(), &actions, nullptr, argv, environ) != 0) {
    ADD_FAILURE() << "cannot start " << bin;
    return {};
  }
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);

  std::string data;
  char buf[4096];
  // Wait for the first acknowledged append, so the kill lands while appends are in flight.
  while (data.find('\n') == std::string::npos) {
    const ssize_t n = read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    data.append(buf, n);
  }
  usleep(delay_us);
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status)) << "the writer exited on its own; status " << status;
  for (;;) {
    const ssize_t n = read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    data.append(buf, n);
  }
  close(fds[0]);

  std::vector<Acked> acked;
  std::istringstream in(data);
  Acked a;
  while (in >> a.base >> a.count >> a.appender >> a.seq) acked.push_back(a);
  return acked;
}

TEST(Crash, KillNineNeverLosesACompletedAppend) {
  int rounds = 50;
  if (const char* env = std::getenv("CAIRN_CRASH_ROUNDS")) rounds = std::atoi(env);
  testing::TempDir dir;
  const std::string path = dir.sub("store");
  std::mt19937 rng(std::random_device{}());
  std::vector<Acked> all;
  uint64_t next_seq = 0;
  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const int delay_us = std::uniform_int_distribution<int>(0, 40'000)(rng);
    auto acked = RunAndKill(path, next_seq, delay_us);
    ASSERT_FALSE(acked.empty()) << "the writer acknowledged nothing";
    all.insert(all.end(), acked.begin(), acked.end());
    // Each round's writer numbers its bodies from a fresh range, so no two rounds share one.
    next_seq += 10'000'000;

    auto store = testing::OpenOrDie(testing::TestOptions(path));
    ASSERT_TRUE(store);
    auto topic = store->FindTopic("crash");
    ASSERT_TRUE(topic);
    const uint64_t end = topic->next_offset();
    ASSERT_EQ(topic->start_offset(), 0u);

    // Every offset from 0 to the end reads back, once, in order.
    std::vector<std::string> log;
    for (uint64_t from = 0; from < end;) {
      auto r = topic->Read(from, 5000, 8 << 20);
      ASSERT_TRUE(r) << r.error().ToString();
      ASSERT_FALSE(r->messages.empty()) << "offset " << from << " is missing";
      for (const auto& m : r->messages) {
        ASSERT_EQ(m.offset, log.size());
        log.emplace_back(m.body);
      }
      from = r->next_offset;
    }
    // Every acknowledged append, from every round so far, is there byte for byte.
    for (const auto& a : all) {
      ASSERT_LE(a.base + a.count, end) << "acknowledged offsets " << a.base << "+" << a.count
                                       << " are beyond the recovered end " << end;
      for (uint64_t i = 0; i < a.count; ++i) {
        ASSERT_EQ(log[a.base + i], testing::CrashBody(a.appender, a.seq + i))
            << "offset " << a.base + i;
      }
    }
  }
  std::cout << "crash rounds=" << rounds << " acknowledged appends=" << all.size() << "\n";
}

}  // namespace
}  // namespace cairn::storage

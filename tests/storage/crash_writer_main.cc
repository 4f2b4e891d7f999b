// The child of crash_test: appends to topic "crash" under sync=always from several threads, and
// after each append completes writes one line "base count appender seq0" to stdout, with a single
// write(2) so a line is never torn. Runs until killed.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "storage/store.h"
#include "tests/storage/crash_writer.h"

int main(int argc, char** argv) {
  using namespace cairn::storage;
  if (argc < 3) {
    std::fprintf(stderr, "usage: crash_writer DATA_PATH FIRST_SEQ\n");
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);
  StoreOptions o;
  o.path = argv[1];
  const uint64_t first_seq = std::strtoull(argv[2], nullptr, 10);
  auto store = Store::Open(o);
  if (!store) {
    std::fprintf(stderr, "crash_writer: %s\n", store.error().ToString().c_str());
    return 1;
  }
  auto topic = (*store)->CreateTopic("crash");
  if (!topic) return 1;
  constexpr uint32_t kAppenders = 4;
  std::vector<std::thread> threads;
  for (uint32_t a = 0; a < kAppenders; ++a) {
    threads.emplace_back([&, a] {
      for (uint64_t seq = first_seq;;) {
        const uint32_t n = testing::CrashBatchSize(a, seq);
        std::vector<std::string> bodies;
        std::vector<MessageIn> msgs;
        for (uint32_t i = 0; i < n; ++i) bodies.push_back(testing::CrashBody(a, seq + i));
        const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
        for (const auto& b : bodies) msgs.push_back({b, now, 0});
        auto r = (*topic)->Append(msgs);
        if (!r) {
          std::fprintf(stderr, "crash_writer: %s\n", r.error().ToString().c_str());
          std::_Exit(1);
        }
        const std::string line = std::to_string(r->base_offset) + " " + std::to_string(n) + " " +
                                 std::to_string(a) + " " + std::to_string(seq) + "\n";
        if (write(STDOUT_FILENO, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
          std::_Exit(1);
        }
        seq += n;
      }
    });
  }
  for (auto& t : threads) t.join();
}

// cairnd. Until the NSQ TCP server lands (issue 3) it opens the store, prints what it holds, and
// waits for SIGTERM or SIGINT, then closes the store cleanly.
#include <csignal>
#include <cstdio>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "storage/store.h"

int main(int argc, char** argv) {
  using namespace cairn::storage;
  StoreOptions options;
  options.path = "./data";
  std::string sync = "always", codec = "lz4";
  int64_t retention_age_s = 72 * 3600;

  CLI::App app{"cairnd: a durable, NSQ-compatible message broker"};
  app.add_option("--data-path", options.path, "directory holding the store (created if missing)")
      ->capture_default_str();
  app.add_option("--sync", sync,
                 "when a publish is durable: always (fsync before OK, group commit), "
                 "interval:N (fsync every N ms), never (left to the OS)")
      ->capture_default_str();
  app.add_option("--retention-age", retention_age_s,
                 "default seconds a topic keeps messages; 0 keeps them forever")
      ->capture_default_str();
  app.add_option("--retention-bytes", options.default_retention.bytes,
                 "default stored bytes a topic keeps; 0 is unlimited")
      ->capture_default_str();
  app.add_option("--compression", codec, "default batch codec: none, lz4 or zstd")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  auto policy = SyncPolicy::Parse(sync);
  auto parsed_codec = ParseCodec(codec);
  if (!policy || !parsed_codec) {
    fmt::print(stderr, "cairnd: {}\n", (!policy ? policy.error() : parsed_codec.error()).message);
    return 2;
  }
  options.sync = *policy;
  options.default_codec = *parsed_codec;
  options.default_retention.age = std::chrono::seconds(retention_age_s);

  // Signals are taken synchronously by sigwait below, never by a handler.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  auto store = Store::Open(options);
  if (!store) {
    fmt::print(stderr, "cairnd: {}\n", store.error().ToString());
    return 1;
  }
  for (const auto& t : (*store)->Topics()) {
    const auto info = t->Info();
    spdlog::info("topic={} start_offset={} next_offset={} bytes={} channels={}", info.name,
                 info.start_offset, info.next_offset, info.bytes, t->Channels().size());
  }
  spdlog::info("cairnd ready data_path={}", options.path);
  int sig = 0;
  sigwait(&set, &sig);
  spdlog::info("cairnd stopping on signal {}", sig);
  if (auto st = (*store)->Close(); !st) {
    spdlog::error("close failed: {}", st.error().ToString());
    return 1;
  }
  return 0;
}

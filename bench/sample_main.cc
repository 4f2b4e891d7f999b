// cairn-sample: prints sample traffic (bench/sample_traffic.h), one record a line on stdout.
//   cairn-sample logs N [--seed S]      JSON log records, as published to the topic `logs`
//   cairn-sample metrics N [--seed S]   router points in line protocol, for the topic `metrics`
// The same seed and N give the same bytes on every machine, and the first N lines of a larger
// N are the same lines.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include <CLI/CLI.hpp>

#include "bench/sample_traffic.h"

namespace {

// Writes the records in large blocks; false once stdout refuses (a closed pipe, a full disk).
template <class Gen>
bool Print(Gen gen, uint64_t n) {
  std::string block;
  for (uint64_t i = 0; i < n; ++i) {
    block += gen.Next();
    block += '\n';
    if (block.size() >= (1 << 20) || i + 1 == n) {
      if (std::fwrite(block.data(), 1, block.size(), stdout) != block.size()) return false;
      block.clear();
    }
  }
  return std::fflush(stdout) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string kind;
  uint64_t count = 0;
  uint64_t seed = cairn::sample::kDefaultSeed;
  CLI::App app{
      "cairn-sample: deterministic sample traffic of a Deis cluster, one record a line on "
      "stdout: `logs` (JSON log records for the topic logs) or `metrics` (router points in "
      "InfluxDB line protocol for the topic metrics)"};
  app.add_option("kind", kind, "logs or metrics")
      ->required()
      ->check(CLI::IsMember({"logs", "metrics"}));
  app.add_option("count", count, "how many records (lines)")->required();
  app.add_option("--seed", seed, "the same seed gives the same records")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  const bool ok = kind == "logs" ? Print(cairn::sample::LogRecords(seed), count)
                                 : Print(cairn::sample::RouterPoints(seed), count);
  if (!ok) {
    std::fprintf(stderr, "cairn-sample: writing to stdout: %s\n", std::strerror(errno));
    return 1;
  }
  return 0;
}

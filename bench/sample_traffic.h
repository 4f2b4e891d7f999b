// Sample traffic: what a Deis Workflow cluster's collectors publish to Cairn, made from a seed,
// for the tests, the benchmarks and cairn-sample.
//
//   LogRecords    one JSON log record a call, as the Deis fluentd output publishes a container's
//                 log line to the topic `logs`: {"log":"...\n","stream":...,"time":...,
//                 "docker":{"container_id":...},"kubernetes":{"container_name","namespace_name",
//                 "pod_name","container_image","pod_id","host","labels":{"app",...}}}. About a
//                 quarter come from the deis-router (its nginx access lines), 2% from the
//                 deis-controller (four in five match the controller regex README.md documents,
//                 "INFO [checkout]: ..."; the rest are its own access lines), the rest from the
//                 apps' pods in their stacks' formats (Rails, Python, zap's and pino's JSON):
//                 requests, jobs, events, slow queries, stack traces one record a line. Records
//                 are 485 B to 2.2 KB, 667 B on average.
//   RouterPoints  one line of InfluxDB line protocol a call, for the topic `metrics`: each router
//                 request becomes deis_router_request_time_ms (float), then
//                 deis_router_response_time_ms (float), then deis_router_bytes_sent (integer,
//                 `i`), tagged app, status_code and host, each with one field `value` and the
//                 request's timestamp (ns).
//
// Distributions: 20 apps whose shares fall as a Zipf law (the first takes about a third of the
// requests, the first three over half), status codes mostly 2xx and 304, latencies and sizes
// log-normal around a median that depends on the kind of request and the app. Time starts at
// 2025-11-24T16:00:00Z and moves forward by 10 us to 2 ms a record (a request), so a topic of
// them reads as one busy cluster and compresses as one would.
//
// Deterministic: the same seed gives the same records, byte for byte, on every machine and
// standard library. The generator is our own (xoshiro256** seeded by splitmix64) and so is every
// draw from it (integer arithmetic only: no std:: distributions, whose output the standard leaves
// to the library, and no floating point); the first n records of a seed do not depend on how
// many follow. In sample_traffic.cc no call takes two arguments that both draw: C++ leaves their
// order unspecified, and GCC and Clang evaluate them in opposite orders (braced lists are
// ordered). tests/bench/sample_traffic_test.cc pins a digest of the default seed's records.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace cairn::sample {

// What the tests, storage_bench, cairn-bench and cairn-sample use unless told otherwise.
inline constexpr uint64_t kDefaultSeed = 1;

// xoshiro256** (Blackman and Vigna), its state filled by splitmix64 from the seed.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t Next();
  // Uniform in [0, n); n > 0. Lemire's multiply-and-reject, so unbiased.
  uint64_t Below(uint64_t n);
  // Uniform in [lo, hi]; lo <= hi.
  int64_t Between(int64_t lo, int64_t hi);
  // True with probability num / den.
  bool Chance(uint64_t num, uint64_t den) { return Below(den) < num; }
  // A log-normal factor (sigma 0.9) in thousandths: from a table of its 1/128 quantiles,
  // uniform between neighbours. Median 1,000, 95th percentile about 4,400, 99th about 8,100;
  // the range is [52, 19,326] (the 0.05% and 99.95% quantiles).
  uint64_t LogNormalPermille();

 private:
  std::array<uint64_t, 4> s_;
};

// JSON log records for the topic `logs`, one a call, without a trailing newline. The record's
// `log` ends with one "\n", as Docker writes it, and holds no other newline.
class LogRecords {
 public:
  explicit LogRecords(uint64_t seed = kDefaultSeed);
  ~LogRecords();
  LogRecords(LogRecords&&) noexcept;
  LogRecords& operator=(LogRecords&&) noexcept;

  std::string Next();

 private:
  struct State;
  std::unique_ptr<State> s_;
};

// Router points in line protocol for the topic `metrics`, one line a call, without a newline.
class RouterPoints {
 public:
  explicit RouterPoints(uint64_t seed = kDefaultSeed);
  ~RouterPoints();
  RouterPoints(RouterPoints&&) noexcept;
  RouterPoints& operator=(RouterPoints&&) noexcept;

  std::string Next();

 private:
  struct State;
  std::unique_ptr<State> s_;
};

// The first n records (lines) of a seed.
std::vector<std::string> Logs(size_t n, uint64_t seed = kDefaultSeed);
std::vector<std::string> Metrics(size_t n, uint64_t seed = kDefaultSeed);

}  // namespace cairn::sample

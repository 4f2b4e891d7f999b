// A fixed-bucket histogram, for latencies and sizes reported in Prometheus text.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace cairn {

// Counts of observations at or below each bound (cumulative, as Prometheus reports them), their
// sum and their number.
template <size_t N>
struct Histogram {
  std::array<double, N> bounds{};
  std::array<uint64_t, N> at_or_below{};
  double sum = 0;
  uint64_t count = 0;

  void Observe(double v) {
    for (size_t i = 0; i < N; ++i) {
      if (v <= bounds[i]) ++at_or_below[i];
    }
    sum += v;
    ++count;
  }

  // Adds `other`'s observations (the same bounds) to these.
  void Add(const Histogram& other) {
    for (size_t i = 0; i < N; ++i) at_or_below[i] += other.at_or_below[i];
    sum += other.sum;
    count += other.count;
  }
};

}  // namespace cairn

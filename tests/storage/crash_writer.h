// Shared by crash_writer_main.cc (the child that is killed) and crash_test.cc (the parent that
// checks): the bodies the child appends are a pure function of (appender, sequence number), so
// the parent can rebuild them byte for byte.
#pragma once

#include <cstdint>
#include <string>

namespace cairn::storage::testing {

inline uint64_t Mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  return x ^ (x >> 33);
}

inline std::string CrashBody(uint32_t appender, uint64_t seq) {
  uint64_t h = Mix((uint64_t{appender} << 48) ^ seq);
  std::string body = std::to_string(appender) + ":" + std::to_string(seq) + ":";
  const size_t len = 8 + h % 400;
  while (body.size() < len) {
    h = Mix(h);
    body.push_back(static_cast<char>('!' + h % 90));
  }
  return body;
}

// Batch sizes vary so batches of 1 and of many are both in flight when the kill lands.
inline uint32_t CrashBatchSize(uint32_t appender, uint64_t seq) {
  return 1 + Mix(seq * 31 + appender) % 40;
}

}  // namespace cairn::storage::testing

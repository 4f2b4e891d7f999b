// Wall-clock time as Cairn records it: nanoseconds since the Unix epoch. Publish times, DPUB
// deadlines and retention ages are all in this unit. (Timeouts use std::chrono::steady_clock.)
#pragma once

#include <chrono>
#include <cstdint>

namespace cairn {

inline int64_t WallNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace cairn

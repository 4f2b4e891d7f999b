// Eventually: the one way a test waits for something another thread or process does. It polls a
// condition until it holds or a deadline passes, so a test waits exactly as long as it must, and
// fails (rather than passing by luck) when the thing never happens. A sleep is never a barrier.
#pragma once

#include <chrono>
#include <thread>

namespace cairn::testing {

// True as soon as `condition()` is; false if it still is not after `timeout`.
template <class Condition>
bool Eventually(Condition condition,
                std::chrono::steady_clock::duration timeout = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

}  // namespace cairn::testing

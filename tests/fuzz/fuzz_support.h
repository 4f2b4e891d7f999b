// What the harnesses share: a check that aborts (so libFuzzer and the replay runner report it
// as a crash, with the input that caused it, in every build type: assert() is gone under
// NDEBUG) and a reader that takes typed values off the front of the fuzzer's input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <type_traits>

namespace cairn::fuzz {

[[noreturn]] inline void CheckFailed(const char* what, const char* file, int line) {
  std::fprintf(stderr, "%s:%d: invariant broken: %s\n", file, line, what);
  std::abort();
}

#define FUZZ_CHECK(cond) \
  ((cond) ? static_cast<void>(0) : ::cairn::fuzz::CheckFailed(#cond, __FILE__, __LINE__))

// Takes values off the front of the input; past its end every value reads as zero and every
// byte string as empty, so any input is a valid one.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : rest_(reinterpret_cast<const char*>(data), size) {}

  bool empty() const { return rest_.empty(); }
  size_t size() const { return rest_.size(); }

  uint8_t Byte() {
    if (rest_.empty()) return 0;
    const auto b = static_cast<uint8_t>(rest_.front());
    rest_.remove_prefix(1);
    return b;
  }
  bool Bool() { return (Byte() & 1) != 0; }
  template <class T>
  T Int() {  // little-endian, sizeof(T) bytes (fewer at the end)
    using U = std::make_unsigned_t<T>;
    U v = 0;
    for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<U>(static_cast<U>(Byte()) << (8 * i));
    return static_cast<T>(v);
  }
  std::string_view Bytes(size_t n) {
    n = n < rest_.size() ? n : rest_.size();
    const std::string_view out = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return out;
  }
  std::string_view Rest() { return Bytes(rest_.size()); }

 private:
  std::string_view rest_;
};

// True if `part` lies within `whole` (a view the parser returned points into its input).
inline bool Within(std::string_view part, std::string_view whole) {
  if (part.empty()) return true;
  const auto p = reinterpret_cast<uintptr_t>(part.data());
  const auto w = reinterpret_cast<uintptr_t>(whole.data());
  return p >= w && p + part.size() <= w + whole.size();
}

}  // namespace cairn::fuzz

// Durations as nsqd's flags take them (Go's time.ParseDuration): "60s", "15m", "1h30m", "250ms",
// "1.5h". Units: ns, us (or µs), ms, s, m, h. A bare "0" is zero. So an operator's nsqd flags
// carry over to cairnd unchanged.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "src/base/error.h"

namespace cairn {

// The shortest Go-style spelling: "1h0m0s" style is avoided; 3600s prints as "1h", 90s as "1m30s".
std::string FormatDuration(std::chrono::nanoseconds d);
// kInvalidArgument for anything else.
Result<std::chrono::nanoseconds> ParseDuration(std::string_view text);
// The same, kept in `Duration`'s unit. A value that unit cannot hold exactly is refused, not cut:
// retention_age=500us kept in milliseconds would become 0, which means "keep forever".
template <class Duration>
Result<Duration> ParseDurationIn(std::string_view text) {
  auto parsed = ParseDuration(text);
  if (!parsed) return tl::unexpected(parsed.error());
  const auto kept = std::chrono::duration_cast<Duration>(*parsed);
  if (std::chrono::duration_cast<std::chrono::nanoseconds>(kept) != *parsed) {
    return Fail(Errc::kInvalidArgument, "invalid duration \"" + std::string(text) +
                                            "\": finer than " + FormatDuration(Duration(1)));
  }
  return kept;
}

// RFC 3339 times, as positions and the workers' --from/--to take them: "2026-11-25T10:00:00Z",
// "2026-11-25T10:00:00.5+01:00"; nanoseconds since the epoch. nullopt for a time int64
// nanoseconds cannot hold (before 1677-09-21T00:12:43.145224192Z or after
// 2262-04-11T23:47:16.854775807Z) and for fields out of their range.
std::optional<int64_t> ParseRfc3339(const std::string& s);
// "2026-11-25T10:00:00.123456789Z", fraction digits only as needed (Go's RFC3339Nano).
std::string FormatRfc3339(int64_t ns);

}  // namespace cairn

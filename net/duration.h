// Durations as nsqd's flags take them (Go's time.ParseDuration): "60s", "15m", "1h30m", "250ms",
// "1.5h". Units: ns, us (or µs), ms, s, m, h. A bare "0" is zero. So an operator's nsqd flags
// carry over to cairnd unchanged.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include <tl/expected.hpp>

namespace cairn {

tl::expected<std::chrono::nanoseconds, std::string> ParseDuration(std::string_view text);
// The shortest Go-style spelling: "1h0m0s" style is avoided; 3600s prints as "1h", 90s as "1m30s".
std::string FormatDuration(std::chrono::nanoseconds d);

}  // namespace cairn

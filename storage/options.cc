#include "storage/options.h"

#include <charconv>

#include <fmt/format.h>

namespace cairn::storage {

Result<SyncPolicy> SyncPolicy::Parse(std::string_view text) {
  if (text == "always") return SyncPolicy{SyncMode::kAlways, {}};
  if (text == "never") return SyncPolicy{SyncMode::kNever, {}};
  constexpr std::string_view kInterval = "interval:";
  if (text.starts_with(kInterval)) {
    const std::string_view n = text.substr(kInterval.size());
    int64_t ms = 0;
    auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), ms);
    if (ec == std::errc() && end == n.data() + n.size() && ms >= 1) {
      return SyncPolicy{SyncMode::kInterval, std::chrono::milliseconds(ms)};
    }
  }
  return Fail(Errc::kInvalidArgument,
              fmt::format("bad sync policy '{}' (expected always, never or interval:N with N "
                          "milliseconds, at least 1)",
                          text));
}

std::string SyncPolicy::ToString() const {
  switch (mode) {
    case SyncMode::kAlways:
      return "always";
    case SyncMode::kNever:
      return "never";
    case SyncMode::kInterval:
      return fmt::format("interval:{}", interval.count());
  }
  return "unknown";
}

}  // namespace cairn::storage

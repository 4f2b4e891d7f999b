#include "net/position.h"

#include <string>

#include "net/protocol.h"
#include "src/base/duration.h"

namespace cairn {

std::optional<LogPosition> ParseLogPosition(std::string_view spec) {
  using Kind = LogPosition::Kind;
  if (spec == "earliest") return LogPosition{Kind::kEarliest};
  if (spec == "latest") return LogPosition{Kind::kLatest};
  if (spec.starts_with("offset:")) {
    auto n = nsq::ParseDecimal(spec.substr(7));
    if (!n || spec.size() == 7) return std::nullopt;
    return LogPosition{Kind::kOffset, static_cast<uint64_t>(*n)};
  }
  if (spec.starts_with("time:")) {
    auto ts = ParseRfc3339(std::string(spec.substr(5)));
    if (!ts) return std::nullopt;
    return LogPosition{Kind::kTime, 0, *ts};
  }
  return std::nullopt;
}

}  // namespace cairn

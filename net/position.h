// Positions in a topic's log, as cairnd's HTTP API takes them (`start` of /channel/create, `to` of
// /channel/seek, `at` of /topic/offset) and the workers send them.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace cairn {

// `earliest`, `latest`, `offset:N` (N as nsq::ParseDecimal reads it, at least one digit) or
// `time:RFC3339` (ParseRfc3339: the first message published at or after that time).
struct LogPosition {
  enum class Kind { kEarliest, kLatest, kOffset, kTime };
  Kind kind = Kind::kEarliest;
  uint64_t offset = 0;  // kOffset
  int64_t time_ns = 0;  // kTime
};
std::optional<LogPosition> ParseLogPosition(std::string_view spec);

}  // namespace cairn

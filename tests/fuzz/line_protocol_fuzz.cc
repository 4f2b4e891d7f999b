// Harness: a `metrics` message body as cairn-metrics reads it (consumers/common/line_protocol.h,
// metrics_message.h): consumers::PrepareMetricsMessage over the whole body, and each line it
// yields (ForEachLine) through ParseLine, ParseLineInto (on a Point reused from line to line, as
// the worker does), CheckWritable, FormatLine and AppendForWrite; RejectedRecord for what the
// parser refuses.
//
// Checked besides crashes, sanitizer reports, time and memory:
// - every line is either written or rejected, and what is written ends in '\n', one per point;
// - ParseLineInto on a reused Point gives what ParseLine gives on a fresh one;
// - a parsed point is writable (CheckWritable), its canonical form (FormatLine) parses back to
//   it, and the line as written for InfluxDB (AppendForWrite) parses to it with its timestamp;
// - a rejected line's record for the rejected topic is JSON.
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "consumers/common/line_protocol.h"
#include "consumers/common/metrics_message.h"
#include "tests/fuzz/fuzz_support.h"

namespace cairn::consumers {
namespace {

constexpr int64_t kPublishTime = 1'700'000'000'123'456'789;

void CheckLine(std::string_view line, Point* reused) {
  const auto fresh = ParseLine(line);
  const auto into = ParseLineInto(line, reused);
  FUZZ_CHECK(fresh.has_value() == into.has_value());
  if (!fresh) {
    FUZZ_CHECK(!fresh.error().message.empty() && fresh.error().message == into.error().message);
    return;
  }
  const Point& p = *fresh;
  FUZZ_CHECK(*reused == p);
  FUZZ_CHECK(CheckWritable(p).has_value());
  const std::string canonical = FormatLine(p);
  const auto again = ParseLine(canonical);
  FUZZ_CHECK(again && *again == p);

  std::string written;
  AppendForWrite(line, p, kPublishTime, &written);
  FUZZ_CHECK(written.ends_with('\n') && written.find('\n') == written.size() - 1);
  written.pop_back();
  const auto sent = ParseLine(written);
  FUZZ_CHECK(sent.has_value());
  Point expected = p;
  if (!expected.timestamp) expected.timestamp = kPublishTime;
  FUZZ_CHECK(*sent == expected);
}

}  // namespace
}  // namespace cairn::consumers

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cairn::consumers;
  const std::string_view body(reinterpret_cast<const char*>(data), size);

  const MetricsMessage m = PrepareMetricsMessage(body, kPublishTime);
  size_t lines = 0;
  static Point reused;
  ForEachLine(body, [&](std::string_view line) {
    ++lines;
    FUZZ_CHECK(!IsBlankOrComment(line) && line.find('\n') == std::string_view::npos);
    CheckLine(line, &reused);
  });
  FUZZ_CHECK(m.points + m.rejected.size() == lines);
  size_t newlines = 0;
  for (char c : m.lines) newlines += c == '\n' ? 1 : 0;
  FUZZ_CHECK(newlines == m.points && (m.lines.empty() || m.lines.back() == '\n'));
  for (size_t i = 0; i < m.rejected.size() && i < 4; ++i) {
    FUZZ_CHECK(m.rejected[i].reason.starts_with("parse: "));
    const std::string record = RejectedRecord(m.rejected[i], "metrics", "influxdb",
                                              "127.0.0.1:4150", "000000000000002a", kPublishTime);
    FUZZ_CHECK(nlohmann::json::accept(record));
  }
  // The whole input as one line too (with its newlines, if any: refused, not misread).
  (void)ParseLine(body);
  return 0;
}

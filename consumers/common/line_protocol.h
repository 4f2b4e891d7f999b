// InfluxDB 1.x line protocol: a pure codec over text, as InfluxDB 1.6 reads it on /write. No
// sockets, no HTTP: the metrics worker splits a message body into lines, parses each one to
// reject what InfluxDB would refuse (with a reason for the "rejected" topic), and writes the
// accepted lines on with precision=ns.
//
// One line is one point:
//
//   measurement[,tag_key=tag_value...] field_key=field_value[,field_key=field_value...] [timestamp]
//
//   measurement  required, non-empty. "\," and "\ " stand for ',' and ' '.
//   tags         optional; key and value non-empty; "\,", "\=" and "\ " stand for ',', '=', ' '.
//                A tag key may appear only once.
//   fields       at least one; key non-empty, escaped as tag keys. A value is one of
//                  float     1  -1.5  .5  1.  1e10  1.5E-3  (no NaN or Inf; a leading '+' is
//                            not allowed; a value too large for a double is an error, one too
//                            small reads as 0)
//                  integer   12i  -12i          (int64)
//                  unsigned  12u                (uint64, no sign)
//                  string    "text"             ("\"" and "\\" stand for '"' and '\')
//                  boolean   t T true True TRUE f F false False FALSE
//   timestamp    optional; '-'? digits; nanoseconds in [kMinTimestampNs, kMaxTimestampNs].
//
// In the measurement, keys and tag values a backslash before any other character is a literal
// backslash, and quotes are literal characters. A special character counts as escaped whenever
// the byte before it is a backslash, so "a\\,b" is the text `a\,b`; one consequence is that
// none of these can end in a backslash. Sections are separated by one or more spaces; a line
// may have leading and trailing spaces or tabs and one trailing '\r'. Tag and field keys named
// "time" are refused, as InfluxDB 1.x refuses them. Newlines cannot appear anywhere in a line.
//
// A body holds lines separated by '\n' ("\r\n" tolerated); blank lines and lines whose first
// non-blank character is '#' are skipped.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "src/base/error.h"

namespace cairn::consumers {

// InfluxDB 1.x keeps the two lowest and the highest int64 nanoseconds for its own use.
inline constexpr int64_t kMinTimestampNs = std::numeric_limits<int64_t>::min() + 2;
inline constexpr int64_t kMaxTimestampNs = std::numeric_limits<int64_t>::max() - 1;
// InfluxDB 1.x refuses a point whose series key (measurement and tags, escaped) is longer.
inline constexpr size_t kMaxSeriesKeyBytes = 65535;

struct FieldValue {
  enum class Type { kFloat, kInteger, kUnsigned, kString, kBoolean };
  Type type = Type::kFloat;
  // Only the member of `type` is meaningful; the others keep their defaults.
  double f = 0;
  int64_t i = 0;
  uint64_t u = 0;
  std::string s;
  bool b = false;

  static FieldValue Float(double v);
  static FieldValue Integer(int64_t v);
  static FieldValue Unsigned(uint64_t v);
  static FieldValue String(std::string v);
  static FieldValue Boolean(bool v);

  // Equal when of the same type with the same value (floats: == and the same sign, so -0 is not
  // 0); the other members are not compared.
  friend bool operator==(const FieldValue& a, const FieldValue& b);
};

struct Point {
  std::string measurement;                                 // unescaped
  std::vector<std::pair<std::string, std::string>> tags;   // unescaped, in line order
  std::vector<std::pair<std::string, FieldValue>> fields;  // unescaped, in line order
  std::optional<int64_t> timestamp;                        // ns, as written (may be negative)

  friend bool operator==(const Point& a, const Point& b) = default;
};

// The line without one trailing '\r' and without leading and trailing spaces and tabs.
std::string_view TrimLine(std::string_view line);

// True for a line ForEachLine skips: empty once trimmed, or a '#' comment.
bool IsBlankOrComment(std::string_view line);

// Parses one line (no '\n'; a trailing '\r' is tolerated). On failure, kInvalidArgument with a
// short reason naming what is wrong and where, e.g. `invalid field value for "value": 12x`, fit
// to publish as is (user text in it is quoted and cut to a few dozen bytes).
Result<Point> ParseLine(std::string_view line);
// The same into `*out`, reusing its storage (for a parser in a loop). On failure `*out` holds
// part of the line and is not to be used.
Status ParseLineInto(std::string_view line, Point* out);

// Calls fn(std::string_view line) for each line of `body` that is not blank or a comment. The
// line has no '\n' and no trailing '\r'; it views `body`.
template <typename F>
void ForEachLine(std::string_view body, F&& fn) {
  while (!body.empty()) {
    const size_t nl = body.find('\n');
    std::string_view line = body.substr(0, nl);
    body.remove_prefix(nl == std::string_view::npos ? body.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!IsBlankOrComment(line)) fn(line);
  }
}

// Whether `p` has a line that parses back to it; if not, kInvalidArgument saying why (empty
// measurement, key or tag value; a measurement, key or tag value ending in a backslash; a
// newline anywhere; a measurement starting with '#' or a tab; no fields; a "time" key; a
// repeated tag key; NaN or Inf; a timestamp out of range).
Status CheckWritable(const Point& p);

// `p` in canonical line protocol: escapes applied, integers with 'i', unsigned with 'u', floats
// in shortest round-trip form, strings quoted, booleans as true/false, then the timestamp if
// any. No '\n'. When CheckWritable(p) succeeds, ParseLine(FormatLine(p)) == p.
std::string FormatLine(const Point& p);
void AppendLine(const Point& p, std::string* out);

// Appends the line as InfluxDB should receive it, followed by '\n': the text of `line`
// (TrimLine) as is, and when `parsed` (ParseLine's result for it) has no timestamp, ' ' and
// `default_timestamp_ns` after it, so the point gets its message's publish time.
void AppendForWrite(std::string_view line, const Point& parsed, int64_t default_timestamp_ns,
                    std::string* out);

}  // namespace cairn::consumers

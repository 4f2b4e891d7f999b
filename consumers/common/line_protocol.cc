#include "consumers/common/line_protocol.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <system_error>

namespace cairn::consumers {
namespace {

// Characters a backslash escapes, by position.
constexpr std::string_view kMeasurementSpecials = ", ";
constexpr std::string_view kKeySpecials = ",= ";  // tag keys, tag values, field keys

// User text in a reason is cut to this many bytes: enough to find the line, short enough to
// publish a reason per rejected line.
constexpr size_t kSnippetBytes = 48;

bool IsBlank(char c) { return c == ' ' || c == '\t'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// `s` with control bytes, quotes and backslashes escaped, cut to kSnippetBytes on a UTF-8
// character boundary.
std::string Snippet(std::string_view s) {
  size_t n = std::min(s.size(), kSnippetBytes);
  while (n > 0 && n < s.size() && (static_cast<unsigned char>(s[n]) & 0xc0) == 0x80) --n;
  std::string out;
  out.reserve(n + 8);
  for (char c : s.substr(0, n)) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (u < 0x20 || u == 0x7f) {
      constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xf]);
    } else {
      out.push_back(c);
    }
  }
  if (n < s.size()) out += "...";
  return out;
}

std::string Quote(std::string_view s) { return "\"" + Snippet(s) + "\""; }

// Every failure of the parser and of the writability check is kInvalidArgument.
tl::unexpected<Error> Invalid(std::string reason) {
  return Fail(Errc::kInvalidArgument, std::move(reason));
}

// Index of the first byte at or after `pos` that is in `stops` and not escaped (the byte before
// it, if at or after `pos`, is not a backslash); s.size() if none. A backslash escapes the next
// byte whatever precedes it, as InfluxDB 1.x scans keys: "a\\,b" is one token.
// `stops` holds one to three bytes; compared directly, as a find() per byte would cost a memchr
// call per byte of every line.
size_t FindUnescaped(std::string_view s, size_t pos, std::string_view stops) {
  const char a = stops[0];
  const char b = stops.size() > 1 ? stops[1] : a;
  const char c = stops.size() > 2 ? stops[2] : a;
  for (size_t i = pos; i < s.size(); ++i) {
    const char ch = s[i];
    if ((ch == a || ch == b || ch == c) && (i == pos || s[i - 1] != '\\')) return i;
  }
  return s.size();
}

// Index of the first ',' or ' ' at or after `pos`, or s.size(): the end of an unquoted value.
size_t EndOfValue(std::string_view s, size_t pos) {
  for (size_t i = pos; i < s.size(); ++i) {
    if (s[i] == ',' || s[i] == ' ') return i;
  }
  return s.size();
}

// Drops the backslash of each escape in `specials`; any other backslash is literal.
void Unescape(std::string_view raw, std::string_view specials, std::string* out) {
  if (raw.find('\\') == std::string_view::npos) {
    out->assign(raw);
    return;
  }
  out->clear();
  out->reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '\\' && i + 1 < raw.size() &&
        specials.find(raw[i + 1]) != std::string_view::npos) {
      ++i;
    }
    out->push_back(raw[i]);
  }
}

void AppendEscaped(std::string_view text, std::string_view specials, std::string* out) {
  for (char c : text) {
    if (specials.find(c) != std::string_view::npos) out->push_back('\\');
    out->push_back(c);
  }
}

size_t EscapedSize(std::string_view text, std::string_view specials) {
  size_t n = text.size();
  for (char c : text) n += specials.find(c) != std::string_view::npos ? 1 : 0;
  return n;
}

// A string field value starting at s[pos] == '"': unescapes it into `out` and returns the index
// just past the closing quote, or npos if there is none.
size_t ScanString(std::string_view s, size_t pos, std::string* out) {
  size_t i = pos + 1;
  for (;;) {
    const size_t special = s.find_first_of("\"\\", i);
    if (special == std::string_view::npos) return std::string_view::npos;
    out->append(s.substr(i, special - i));
    if (s[special] == '"') return special + 1;
    // A backslash: an escape before '"' or '\', a literal backslash before anything else.
    if (special + 1 < s.size() && (s[special + 1] == '"' || s[special + 1] == '\\')) {
      out->push_back(s[special + 1]);
      i = special + 2;
    } else {
      out->push_back('\\');
      i = special + 1;
    }
  }
}

// '-'? digits
bool IsSignedDecimal(std::string_view t) {
  if (!t.empty() && t[0] == '-') t.remove_prefix(1);
  return !t.empty() && std::all_of(t.begin(), t.end(), IsDigit);
}

// '-'? digits* ('.' digits*)? (('e'|'E') ('+'|'-')? digits+)?, with at least one mantissa digit:
// what InfluxDB 1.x reads as a float. `decimal_exponent` is where the first non-zero mantissa
// digit stands (10^x), with the exponent added, saturated; it tells underflow from overflow.
bool IsFloatSyntax(std::string_view t, int64_t* decimal_exponent) {
  size_t i = 0;
  if (i < t.size() && t[i] == '-') ++i;
  int64_t lead = 0;  // power of ten of the first non-zero digit
  bool nonzero = false;
  size_t int_digits = 0;
  for (; i < t.size() && IsDigit(t[i]); ++i, ++int_digits) {
    if (nonzero) {
      ++lead;
    } else if (t[i] != '0') {
      nonzero = true;
    }
  }
  size_t frac_digits = 0;
  if (i < t.size() && t[i] == '.') {
    for (++i; i < t.size() && IsDigit(t[i]); ++i) {
      ++frac_digits;
      if (!nonzero && t[i] != '0') {
        nonzero = true;
        lead = -static_cast<int64_t>(frac_digits);
      }
    }
  }
  if (int_digits + frac_digits == 0) return false;
  int64_t exponent = 0;
  if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
    ++i;
    bool negative = false;
    if (i < t.size() && (t[i] == '+' || t[i] == '-')) negative = t[i++] == '-';
    const size_t first = i;
    for (; i < t.size() && IsDigit(t[i]); ++i) {
      exponent = std::min<int64_t>(exponent * 10 + (t[i] - '0'), 1'000'000'000);
    }
    if (i == first) return false;
    if (negative) exponent = -exponent;
  }
  *decimal_exponent = lead + exponent;
  return i == t.size();
}

// An unquoted field value: integer, unsigned, float or boolean.
Status ParseScalar(std::string_view t, std::string_view key, FieldValue* v) {
  auto invalid = [&] {
    return Invalid("invalid field value for " + Quote(key) + ": " + Snippet(t));
  };
  const char last = t.back();
  if (last == 'i' || last == 'u') {
    const std::string_view digits = t.substr(0, t.size() - 1);
    const bool is_int = last == 'i';
    const bool well_formed =
        is_int ? IsSignedDecimal(digits)
               : !digits.empty() && std::all_of(digits.begin(), digits.end(), IsDigit);
    if (!well_formed) return invalid();
    std::from_chars_result r;
    if (is_int) {
      v->type = FieldValue::Type::kInteger;
      r = std::from_chars(digits.data(), digits.data() + digits.size(), v->i);
    } else {
      v->type = FieldValue::Type::kUnsigned;
      r = std::from_chars(digits.data(), digits.data() + digits.size(), v->u);
    }
    if (r.ec == std::errc::result_out_of_range) {
      return Invalid(std::string(is_int ? "integer" : "unsigned integer") +
                     " out of range for field " + Quote(key) + ": " + Snippet(t));
    }
    if (r.ec != std::errc() || r.ptr != digits.data() + digits.size()) return invalid();
    return {};
  }
  if (IsDigit(t[0]) || t[0] == '-' || t[0] == '.') {
    int64_t decimal_exponent = 0;
    if (!IsFloatSyntax(t, &decimal_exponent)) return invalid();
    v->type = FieldValue::Type::kFloat;
    const auto r = std::from_chars(t.data(), t.data() + t.size(), v->f);
    if (r.ec == std::errc::result_out_of_range && decimal_exponent < 0) {
      v->f = t[0] == '-' ? -0.0 : 0.0;  // too small: InfluxDB (Go's ParseFloat) reads 0
      return {};
    }
    if (r.ec == std::errc::result_out_of_range) {
      return Invalid("float out of range for field " + Quote(key) + ": " + Snippet(t));
    }
    if (r.ec != std::errc() || r.ptr != t.data() + t.size()) return invalid();
    return {};
  }
  static constexpr std::array<std::string_view, 5> kTrue = {"t", "T", "true", "True", "TRUE"};
  static constexpr std::array<std::string_view, 5> kFalse = {"f", "F", "false", "False", "FALSE"};
  v->type = FieldValue::Type::kBoolean;
  if (std::find(kTrue.begin(), kTrue.end(), t) != kTrue.end()) {
    v->b = true;
    return {};
  }
  if (std::find(kFalse.begin(), kFalse.end(), t) != kFalse.end()) {
    v->b = false;
    return {};
  }
  return invalid();
}

// The first tag key that appears twice, if any.
const std::string* RepeatedTagKey(const std::vector<std::pair<std::string, std::string>>& tags) {
  if (tags.size() < 2) return nullptr;
  if (tags.size() <= 16) {
    for (size_t a = 1; a < tags.size(); ++a) {
      for (size_t b = 0; b < a; ++b) {
        if (tags[a].first == tags[b].first) return &tags[a].first;
      }
    }
    return nullptr;
  }
  std::vector<const std::string*> keys;
  keys.reserve(tags.size());
  for (const auto& tag : tags) keys.push_back(&tag.first);
  std::sort(keys.begin(), keys.end(), [](auto* x, auto* y) { return *x < *y; });
  const auto it =
      std::adjacent_find(keys.begin(), keys.end(), [](auto* x, auto* y) { return *x == *y; });
  return it == keys.end() ? nullptr : *it;
}

Status CheckTimestamp(int64_t ts) {
  if (ts < kMinTimestampNs || ts > kMaxTimestampNs) {
    return Invalid("timestamp out of range: " + std::to_string(ts));
  }
  return {};
}

template <typename T>
void AppendNumber(T v, std::string* out) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out->append(buf, r.ptr);
}

}  // namespace

FieldValue FieldValue::Float(double v) {
  FieldValue f;
  f.type = Type::kFloat;
  f.f = v;
  return f;
}

FieldValue FieldValue::Integer(int64_t v) {
  FieldValue f;
  f.type = Type::kInteger;
  f.i = v;
  return f;
}

FieldValue FieldValue::Unsigned(uint64_t v) {
  FieldValue f;
  f.type = Type::kUnsigned;
  f.u = v;
  return f;
}

FieldValue FieldValue::String(std::string v) {
  FieldValue f;
  f.type = Type::kString;
  f.s = std::move(v);
  return f;
}

FieldValue FieldValue::Boolean(bool v) {
  FieldValue f;
  f.type = Type::kBoolean;
  f.b = v;
  return f;
}

bool operator==(const FieldValue& a, const FieldValue& b) {
  if (a.type != b.type) return false;
  switch (a.type) {
    case FieldValue::Type::kFloat:
      return a.f == b.f && std::signbit(a.f) == std::signbit(b.f);
    case FieldValue::Type::kInteger:
      return a.i == b.i;
    case FieldValue::Type::kUnsigned:
      return a.u == b.u;
    case FieldValue::Type::kString:
      return a.s == b.s;
    case FieldValue::Type::kBoolean:
      return a.b == b.b;
  }
  return false;
}

std::string_view TrimLine(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  while (!line.empty() && IsBlank(line.front())) line.remove_prefix(1);
  while (!line.empty() && IsBlank(line.back())) line.remove_suffix(1);
  return line;
}

bool IsBlankOrComment(std::string_view line) {
  line = TrimLine(line);
  return line.empty() || line.front() == '#';
}

Result<Point> ParseLine(std::string_view line) {
  Point p;
  if (auto ok = ParseLineInto(line, &p); !ok) return tl::unexpected(std::move(ok.error()));
  return p;
}

Status ParseLineInto(std::string_view line, Point* out) {
  const std::string_view s = TrimLine(line);
  const size_t n = s.size();
  if (n == 0) return Invalid("empty line");
  if (s[0] == '#') return Invalid("line is a comment");
  if (s.find('\n') != std::string_view::npos) return Invalid("newline inside a line");

  // Fill `out` in place: its strings and vectors keep their capacity from the last line, so
  // a worker parsing line after line allocates next to nothing.
  Point& p = *out;
  size_t tags = 0, fields = 0;
  auto next_tag = [&]() -> std::pair<std::string, std::string>& {
    if (tags == p.tags.size()) p.tags.emplace_back();
    return p.tags[tags++];
  };
  auto next_field = [&]() -> std::pair<std::string, FieldValue>& {
    if (fields == p.fields.size()) p.fields.emplace_back();
    return p.fields[fields++];
  };
  auto done = [&]() -> Status {
    p.tags.resize(tags);
    p.fields.resize(fields);
    return {};
  };
  p.timestamp.reset();
  size_t pos = FindUnescaped(s, 0, ", ");
  if (pos == 0) return Invalid("missing measurement");
  if (pos == n) return Invalid("missing fields");
  Unescape(s.substr(0, pos), kMeasurementSpecials, &p.measurement);

  // Tags: s[pos] is ',' before each one, ' ' after the last.
  while (s[pos] == ',') {
    const size_t key_start = pos + 1;
    const size_t key_end = FindUnescaped(s, key_start, "=, ");
    if (key_end == key_start) return Invalid("missing tag key");
    auto& [key, value] = next_tag();
    Unescape(s.substr(key_start, key_end - key_start), kKeySpecials, &key);
    if (key_end == n || s[key_end] != '=')
      return Invalid("missing '=' after tag key " + Quote(key));
    if (key == "time") return Invalid("invalid tag key \"time\"");
    const size_t value_start = key_end + 1;
    const size_t value_end = FindUnescaped(s, value_start, ",= ");
    if (value_end == value_start) return Invalid("missing tag value for " + Quote(key));
    if (value_end == n) return Invalid("missing fields");
    if (s[value_end] == '=') {
      return Invalid("invalid tag value for " + Quote(key) + ": unescaped '=' in " +
                     Snippet(s.substr(value_start, value_end - value_start + 1)));
    }
    Unescape(s.substr(value_start, value_end - value_start), kKeySpecials, &value);
    pos = value_end;
  }
  if (pos > kMaxSeriesKeyBytes) {
    return Invalid("series key too long: " + std::to_string(pos) + " bytes (max " +
                   std::to_string(kMaxSeriesKeyBytes) + ")");
  }
  p.tags.resize(tags);
  if (const std::string* key = RepeatedTagKey(p.tags))
    return Invalid("duplicate tag key " + Quote(*key));

  while (pos < n && s[pos] == ' ') ++pos;
  if (pos == n) return Invalid("missing fields");

  // Fields: each key=value, then ',' before the next one, ' ' before the timestamp, or the end.
  for (;;) {
    const size_t key_end = FindUnescaped(s, pos, "=, ");
    if (key_end == pos) return Invalid("missing field key");
    auto& [key, value] = next_field();
    Unescape(s.substr(pos, key_end - pos), kKeySpecials, &key);
    if (key_end == n || s[key_end] != '=') {
      return Invalid("missing '=' after field key " + Quote(key));
    }
    if (key == "time") return Invalid("invalid field key \"time\"");
    pos = key_end + 1;
    if (pos == n || s[pos] == ',' || s[pos] == ' ') {
      return Invalid("missing field value for " + Quote(key));
    }
    value.s.clear();
    if (s[pos] == '"') {
      value.type = FieldValue::Type::kString;
      const size_t end = ScanString(s, pos, &value.s);
      if (end == std::string_view::npos) {
        return Invalid("unterminated string for field " + Quote(key) + ": " +
                       Snippet(s.substr(pos)));
      }
      if (end < n && s[end] != ',' && s[end] != ' ') {
        return Invalid("unexpected text after string for field " + Quote(key) + ": " +
                       Snippet(s.substr(end)));
      }
      pos = end;
    } else {
      const size_t end = EndOfValue(s, pos);
      if (auto st = ParseScalar(s.substr(pos, end - pos), key, &value); !st) return st;
      pos = end;
    }
    if (pos == n) return done();
    if (s[pos] == ' ') break;
    ++pos;  // ','
  }

  while (pos < n && s[pos] == ' ') ++pos;
  if (pos == n) return done();
  const size_t ts_end = std::min(s.find(' ', pos), n);
  const std::string_view ts = s.substr(pos, ts_end - pos);
  if (!IsSignedDecimal(ts)) return Invalid("invalid timestamp: " + Snippet(ts));
  int64_t value = 0;
  const auto r = std::from_chars(ts.data(), ts.data() + ts.size(), value);
  if (r.ec == std::errc::result_out_of_range)
    return Invalid("timestamp out of range: " + Snippet(ts));
  if (r.ec != std::errc() || r.ptr != ts.data() + ts.size()) {
    return Invalid("invalid timestamp: " + Snippet(ts));
  }
  if (auto st = CheckTimestamp(value); !st) return st;
  p.timestamp = value;
  pos = ts_end;
  while (pos < n && s[pos] == ' ') ++pos;
  if (pos != n) return Invalid("unexpected text after timestamp: " + Snippet(s.substr(pos)));
  return done();
}

Status CheckWritable(const Point& p) {
  // The checks every measurement, key and tag value shares.
  auto check_name = [](std::string_view what, std::string_view text) -> Status {
    if (text.empty()) return Invalid("empty " + std::string(what));
    if (text.back() == '\\')
      return Invalid(std::string(what) + " ends in a backslash: " + Quote(text));
    if (text.find('\n') != std::string_view::npos) {
      return Invalid(std::string(what) + " contains a newline: " + Quote(text));
    }
    return {};
  };
  if (auto st = check_name("measurement", p.measurement); !st) return st;
  if (p.measurement.front() == '#')
    return Invalid("measurement starts with '#': " + Quote(p.measurement));
  if (p.measurement.front() == '\t')
    return Invalid("measurement starts with a tab: " + Quote(p.measurement));
  size_t key_size = EscapedSize(p.measurement, kMeasurementSpecials);
  for (const auto& [key, value] : p.tags) {
    if (auto st = check_name("tag key", key); !st) return st;
    if (auto st = check_name("tag value", value); !st) return st;
    if (key == "time") return Invalid("invalid tag key \"time\"");
    key_size += 2 + EscapedSize(key, kKeySpecials) + EscapedSize(value, kKeySpecials);
  }
  if (key_size > kMaxSeriesKeyBytes)
    return Invalid("series key too long: " + std::to_string(key_size));
  if (const std::string* key = RepeatedTagKey(p.tags))
    return Invalid("duplicate tag key " + Quote(*key));
  if (p.fields.empty()) return Invalid("no fields");
  for (const auto& [key, value] : p.fields) {
    if (auto st = check_name("field key", key); !st) return st;
    if (key == "time") return Invalid("invalid field key \"time\"");
    if (value.type == FieldValue::Type::kFloat && !std::isfinite(value.f)) {
      return Invalid("field " + Quote(key) + " is not a finite float");
    }
    if (value.type == FieldValue::Type::kString && value.s.find('\n') != std::string::npos) {
      return Invalid("string field " + Quote(key) + " contains a newline");
    }
  }
  if (p.timestamp) return CheckTimestamp(*p.timestamp);
  return {};
}

void AppendLine(const Point& p, std::string* out) {
  AppendEscaped(p.measurement, kMeasurementSpecials, out);
  for (const auto& [key, value] : p.tags) {
    out->push_back(',');
    AppendEscaped(key, kKeySpecials, out);
    out->push_back('=');
    AppendEscaped(value, kKeySpecials, out);
  }
  char separator = ' ';
  for (const auto& [key, value] : p.fields) {
    out->push_back(separator);
    separator = ',';
    AppendEscaped(key, kKeySpecials, out);
    out->push_back('=');
    switch (value.type) {
      case FieldValue::Type::kFloat:
        AppendNumber(value.f, out);  // shortest form that reads back to the same double
        break;
      case FieldValue::Type::kInteger:
        AppendNumber(value.i, out);
        out->push_back('i');
        break;
      case FieldValue::Type::kUnsigned:
        AppendNumber(value.u, out);
        out->push_back('u');
        break;
      case FieldValue::Type::kString:
        out->push_back('"');
        for (char c : value.s) {
          if (c == '"' || c == '\\') out->push_back('\\');
          out->push_back(c);
        }
        out->push_back('"');
        break;
      case FieldValue::Type::kBoolean:
        out->append(value.b ? "true" : "false");
        break;
    }
  }
  if (p.timestamp) {
    out->push_back(' ');
    AppendNumber(*p.timestamp, out);
  }
}

std::string FormatLine(const Point& p) {
  std::string out;
  AppendLine(p, &out);
  return out;
}

void AppendForWrite(std::string_view line, const Point& parsed, int64_t default_timestamp_ns,
                    std::string* out) {
  out->append(TrimLine(line));
  if (!parsed.timestamp) {
    out->push_back(' ');
    AppendNumber(default_timestamp_ns, out);
  }
  out->push_back('\n');
}

}  // namespace cairn::consumers

#include "src/base/duration.h"

#include <cstdint>
#include <cstdio>
#include <ctime>

#include <fmt/format.h>

namespace cairn {

Result<std::chrono::nanoseconds> ParseDuration(std::string_view text) {
  auto bad = [&] {
    return Fail(Errc::kInvalidArgument, fmt::format("invalid duration \"{}\"", text));
  };
  constexpr uint64_t kMax = static_cast<uint64_t>(INT64_MAX);
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  std::string_view s = text;
  if (s == "0") return std::chrono::nanoseconds(0);
  if (s.empty()) return bad();
  // Go's rules, in integers: each "<number><unit>" term is at most INT64_MAX ns, and so is the
  // sum; fraction digits past what 18 decimals hold are dropped, as Go drops them.
  uint64_t total = 0;
  while (!s.empty()) {
    uint64_t whole = 0, frac = 0, scale = 1;
    bool digits = false;
    size_t i = 0;
    for (; i < s.size() && digit(s[i]); ++i, digits = true) {
      if (whole > (kMax - 9) / 10) return bad();
      whole = whole * 10 + static_cast<uint64_t>(s[i] - '0');
    }
    if (i < s.size() && s[i] == '.') {
      for (++i; i < s.size() && digit(s[i]); ++i, digits = true) {
        if (scale < 1'000'000'000'000'000'000ull) {
          frac = frac * 10 + static_cast<uint64_t>(s[i] - '0');
          scale *= 10;
        }
      }
    }
    if (!digits) return bad();
    s.remove_prefix(i);
    size_t u = 0;
    while (u < s.size() && !digit(s[u]) && s[u] != '.') ++u;
    const std::string_view unit = s.substr(0, u);
    s.remove_prefix(u);
    uint64_t ns_per_unit;
    if (unit == "ns")
      ns_per_unit = 1;
    else if (unit == "us" || unit == "\xC2\xB5s" || unit == "\xCE\xBCs")
      ns_per_unit = 1'000;
    else if (unit == "ms")
      ns_per_unit = 1'000'000;
    else if (unit == "s")
      ns_per_unit = 1'000'000'000;
    else if (unit == "m")
      ns_per_unit = 60'000'000'000;
    else if (unit == "h")
      ns_per_unit = 3'600'000'000'000;
    else
      return bad();
    if (whole > kMax / ns_per_unit) return bad();
    const unsigned __int128 term = static_cast<unsigned __int128>(whole) * ns_per_unit +
                                   static_cast<unsigned __int128>(frac) * ns_per_unit / scale;
    if (term > kMax - total) return bad();
    total += static_cast<uint64_t>(term);
  }
  return std::chrono::nanoseconds(static_cast<int64_t>(total));
}

std::string FormatDuration(std::chrono::nanoseconds d) {
  int64_t ns = d.count();
  if (ns == 0) return "0s";
  if (ns % 1'000'000'000 != 0) {
    if (ns % 1'000'000 == 0) return fmt::format("{}ms", ns / 1'000'000);
    return fmt::format("{}ns", ns);
  }
  int64_t s = ns / 1'000'000'000;
  std::string out;
  if (s >= 3600) {
    out += fmt::format("{}h", s / 3600);
    s %= 3600;
  }
  if (s >= 60) {
    out += fmt::format("{}m", s / 60);
    s %= 60;
  }
  if (s > 0) out += fmt::format("{}s", s);
  return out;
}

std::optional<int64_t> ParseRfc3339(const std::string& s) {
  // Digits in fixed places and every field within its range, as Go's time.Parse checks them
  // (sscanf's %2d took signs and spaces, and timegm carries a field out of range into the next).
  auto number = [&s](size_t at, size_t len, int* out) {
    if (at + len > s.size()) return false;
    int v = 0;
    for (size_t i = at; i < at + len; ++i) {
      if (s[i] < '0' || s[i] > '9') return false;
      v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
  };
  auto is = [&s](size_t at, char c) { return at < s.size() && s[at] == c; };
  int y, mo, d, h, mi, sec;
  if (!number(0, 4, &y) || !is(4, '-') || !number(5, 2, &mo) || !is(7, '-') || !number(8, 2, &d) ||
      !is(10, 'T') || !number(11, 2, &h) || !is(13, ':') || !number(14, 2, &mi) || !is(16, ':') ||
      !number(17, 2, &sec)) {
    return std::nullopt;
  }
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  const int days[] = {31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (mo < 1 || mo > 12 || d < 1 || d > days[mo - 1] || h > 23 || mi > 59 || sec > 59) {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  // In 128 bits, then refused unless it fits int64 nanoseconds (1677-09-21 to 2262-04-11): every
  // time FormatRfc3339 writes parses back.
  __int128 ns = static_cast<__int128>(timegm(&tm)) * 1'000'000'000;
  size_t i = 19;
  if (is(i, '.')) {
    if (!(i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '9')) return std::nullopt;
    int64_t scale = 100'000'000;
    for (++i; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i, scale /= 10)
      ns += (s[i] - '0') * scale;
  }
  int oh = 0, om = 0;
  const bool utc = i + 1 == s.size() && (s[i] == 'Z' || s[i] == 'z');
  if (!utc && !(i + 6 == s.size() && (s[i] == '+' || s[i] == '-') && number(i + 1, 2, &oh) &&
                is(i + 3, ':') && number(i + 4, 2, &om) && oh <= 23 && om <= 59)) {
    return std::nullopt;
  }
  const int64_t off = (oh * 3600 + om * 60) * int64_t{1'000'000'000};
  ns += !utc && s[i] == '+' ? -off : off;
  if (ns < INT64_MIN || ns > INT64_MAX) return std::nullopt;
  return static_cast<int64_t>(ns);
}

std::string FormatRfc3339(int64_t ns) {
  int64_t secs = ns / 1'000'000'000;
  int64_t frac = ns % 1'000'000'000;
  if (frac < 0) {
    frac += 1'000'000'000;
    --secs;
  }
  const std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::string out = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", tm.tm_year + 1900,
                                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  if (frac != 0) {
    std::string digits = fmt::format("{:09}", frac);
    while (digits.back() == '0') digits.pop_back();
    out += "." + digits;
  }
  return out + "Z";
}

}  // namespace cairn

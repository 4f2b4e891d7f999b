#include "net/duration.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ctime>

#include <fmt/format.h>

namespace cairn {

tl::expected<std::chrono::nanoseconds, std::string> ParseDuration(std::string_view text) {
  auto bad = [&] { return tl::unexpected(fmt::format("invalid duration \"{}\"", text)); };
  std::string_view s = text;
  if (s == "0") return std::chrono::nanoseconds(0);
  if (s.empty()) return bad();
  long double total = 0;
  while (!s.empty()) {
    size_t i = 0;
    while (i < s.size() && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.')) ++i;
    if (i == 0) return bad();
    const std::string number(s.substr(0, i));
    if (number.find('.') != number.rfind('.') || number == ".") return bad();
    const long double value = std::stold(number);
    s.remove_prefix(i);
    size_t u = 0;
    while (u < s.size() && !((s[u] >= '0' && s[u] <= '9') || s[u] == '.')) ++u;
    const std::string_view unit = s.substr(0, u);
    s.remove_prefix(u);
    long double scale;
    if (unit == "ns")
      scale = 1;
    else if (unit == "us" || unit == "\xC2\xB5s" || unit == "\xCE\xBCs")
      scale = 1e3;
    else if (unit == "ms")
      scale = 1e6;
    else if (unit == "s")
      scale = 1e9;
    else if (unit == "m")
      scale = 60e9;
    else if (unit == "h")
      scale = 3600e9;
    else
      return bad();
    total += value * scale;
  }
  if (total > static_cast<long double>(INT64_MAX)) return bad();
  return std::chrono::nanoseconds(static_cast<int64_t>(std::llround(total)));
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
  int y, mo, d, h, mi, sec, n = 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 ||
      n != 19) {
    return std::nullopt;
  }
  if (y < 1678 || y > 2261) return std::nullopt;  // outside int64 nanoseconds
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  int64_t ns = static_cast<int64_t>(timegm(&tm)) * 1'000'000'000;
  size_t i = 19;
  if (i < s.size() && s[i] == '.') {
    int64_t scale = 100'000'000;
    for (++i; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i, scale /= 10)
      ns += (s[i] - '0') * scale;
  }
  if (i == s.size() - 1 && (s[i] == 'Z' || s[i] == 'z')) return ns;
  int oh, om;
  if (i + 6 == s.size() && (s[i] == '+' || s[i] == '-') &&
      std::sscanf(s.c_str() + i + 1, "%2d:%2d", &oh, &om) == 2) {
    const int64_t off = (oh * 3600 + om * 60) * int64_t{1'000'000'000};
    return s[i] == '+' ? ns - off : ns + off;
  }
  return std::nullopt;
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

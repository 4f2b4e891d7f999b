// Go-style durations and RFC 3339 times (src/base/duration.h), as cairnd's flags and HTTP API and
// the workers' --from/--to read them.
#include "src/base/duration.h"

#include <chrono>
#include <string>

#include <gtest/gtest.h>

namespace cairn {
namespace {

TEST(Duration, ParsesGoSpellings) {
  EXPECT_EQ(ParseDuration("0"), std::chrono::nanoseconds(0));
  EXPECT_EQ(ParseDuration("1h30m"), std::chrono::minutes(90));
  EXPECT_EQ(ParseDuration("1.5s"), std::chrono::milliseconds(1500));
  EXPECT_EQ(ParseDuration("250ms"), std::chrono::milliseconds(250));
  EXPECT_EQ(ParseDuration("2\xC2\xB5s"), std::chrono::microseconds(2));
  for (const char* bad : {"", "s", "1", "1x", "-1s", "1..2s", "."})
    EXPECT_FALSE(ParseDuration(bad));
}

// ParseDuration once read numbers with std::stold, which throws std::out_of_range past what a
// long double holds (4,933 digits), out of cairnd's HTTP handler (/topic/config?retention_age=).
// Such a number is refused, and a fraction that small reads as 0, as Go reads it.
TEST(Duration, NumbersPastALongDoubleAreRefusedNotThrown) {
  EXPECT_FALSE(ParseDuration(std::string(5000, '9') + "s"));
  EXPECT_FALSE(ParseDuration("1" + std::string(5000, '0') + ".5h"));
  EXPECT_EQ(ParseDuration("0." + std::string(5000, '0') + "1s"), std::chrono::nanoseconds(0));
}

TEST(Rfc3339, ParsesWhatGoWrites) {
  EXPECT_EQ(ParseRfc3339("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(ParseRfc3339("2026-11-25T10:00:00Z"), 1'795'600'800'000'000'000);
  EXPECT_EQ(ParseRfc3339("2026-11-25T10:00:00.5+01:00"), 1'795'597'200'500'000'000);
  EXPECT_EQ(ParseRfc3339("2026-11-25T10:00:00.123456789-00:30"), 1'795'602'600'123'456'789);
  EXPECT_EQ(ParseRfc3339("2024-02-29T23:59:59z"), 1'709'251'199'000'000'000);
  for (int64_t ns : {int64_t{0}, int64_t{-1}, int64_t{1'795'600'800'123'000'000}}) {
    EXPECT_EQ(ParseRfc3339(FormatRfc3339(ns)), ns) << ns;
  }
}

// A field out of its range was carried into the next by timegm, so "2261-99-99T99:99:99Z" came out
// past what int64 nanoseconds hold: a signed overflow. Each field is checked as Go checks it now,
// and only digits are taken.
TEST(Rfc3339, RefusesFieldsOutOfRangeAndWhatIsNotDigits) {
  for (const std::string bad : {"2261-99-99T99:99:99Z",
                                "2261-12-31T23:59:99Z",
                                "2026-13-01T00:00:00Z",
                                "2026-00-01T00:00:00Z",
                                "2026-02-29T00:00:00Z",
                                "2026-04-31T00:00:00Z",
                                "2026-01-00T00:00:00Z",
                                "2026-01-01T24:00:00Z",
                                "2026-01-01T00:60:00Z",
                                "2026-01-01T00:00:60Z",
                                "2026-01-01T00:00:00+24:00",
                                "2026-01-01T00:00:00+01:60",
                                "2026-+1-01T00:00:00Z",
                                "2026- 1-01T00:00:00Z",
                                "2026-01-01T00:00:00+-1:00",
                                "2026-01-01T00:00:00.Z",
                                "2026-01-01t00:00:00Z",
                                "2026-01-01T00:00:00",
                                "",
                                "2026"}) {
    EXPECT_EQ(ParseRfc3339(bad), std::nullopt) << bad;
  }
}

// Found by tests/fuzz/http_params: "1678-01-01T00:00:00.95+01:00" parsed (its year was within
// the bound), but it is in 1677 in UTC, which FormatRfc3339 wrote and the year bound refused.
// The bound is int64 nanoseconds themselves now: what fits parses, and everything
// FormatRfc3339 writes parses back.
TEST(Rfc3339, TakesExactlyTheTimesInt64NanosecondsHold) {
  EXPECT_EQ(ParseRfc3339("1678-01-01T00:00:00.95+01:00"), ParseRfc3339("1677-12-31T23:00:00.95Z"));
  EXPECT_EQ(ParseRfc3339(FormatRfc3339(INT64_MIN)), INT64_MIN);
  EXPECT_EQ(ParseRfc3339(FormatRfc3339(INT64_MAX)), INT64_MAX);
  EXPECT_EQ(FormatRfc3339(INT64_MIN), "1677-09-21T00:12:43.145224192Z");
  EXPECT_EQ(FormatRfc3339(INT64_MAX), "2262-04-11T23:47:16.854775807Z");
  EXPECT_EQ(ParseRfc3339("1677-09-21T00:12:43.145224191Z"), std::nullopt);
  EXPECT_EQ(ParseRfc3339("2262-04-11T23:47:16.854775808Z"), std::nullopt);
  EXPECT_EQ(ParseRfc3339("2262-04-11T23:40:00-00:08"), std::nullopt);  // 23:48 in UTC
  EXPECT_TRUE(ParseRfc3339("2262-04-12T00:00:00+00:13"));              // 23:47 in UTC
  EXPECT_EQ(ParseRfc3339("9999-12-31T23:59:59Z"), std::nullopt);
  EXPECT_EQ(ParseRfc3339("0000-01-01T00:00:00Z"), std::nullopt);
}

}  // namespace
}  // namespace cairn

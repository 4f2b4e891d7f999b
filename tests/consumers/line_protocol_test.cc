// The InfluxDB 1.x line-protocol codec: every field type and its malformed forms, every escape in
// every position, the reasons a line is rejected, FormatLine round trips (hand-picked and
// random), and a bounded random-mutation run that must never crash or misread. The sample
// traffic's lines are parsed in tests/bench/sample_traffic_test.cc.
#include "consumers/common/line_protocol.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <ostream>
#include <random>

#include <gtest/gtest.h>

namespace cairn::consumers {

// Failures print points as lines, and the line of an unwritable point as its debug form.
void PrintTo(const FieldValue& v, std::ostream* os) {
  Point p{"m", {}, {{"f", v}}, std::nullopt};
  *os << FormatLine(p).substr(2);
}

void PrintTo(const Point& p, std::ostream* os) {
  *os << "Point{" << FormatLine(p) << "}";
  if (auto st = CheckWritable(p); !st) *os << " (unwritable: " << st.error().message << ")";
}

void PrintTo(const Result<Point>& p, std::ostream* os) {
  if (p) {
    PrintTo(*p, os);
  } else {
    *os << "error: " << p.error().ToString();
  }
}

namespace {

using Type = FieldValue::Type;

constexpr int64_t kInt64Min = std::numeric_limits<int64_t>::min();
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

Point ParseOk(std::string_view line) {
  auto p = ParseLine(line);
  if (!p) {
    ADD_FAILURE() << "unexpected error for [" << line << "]: " << p.error().message;
    return {};
  }
  return *p;
}

std::string ParseErr(std::string_view line) {
  auto p = ParseLine(line);
  if (p) {
    ADD_FAILURE() << "expected an error for [" << line << "], got " << testing::PrintToString(*p);
    return {};
  }
  EXPECT_EQ(p.error().code, Errc::kInvalidArgument);
  return p.error().message;
}

// The single field of "m f=<text>".
FieldValue ParseValue(std::string_view text) {
  const Point p = ParseOk("m f=" + std::string(text));
  if (p.fields.size() != 1) {
    ADD_FAILURE() << "expected one field for " << text;
    return {};
  }
  return p.fields[0].second;
}

std::vector<std::string> Lines(std::string_view body) {
  std::vector<std::string> out;
  ForEachLine(body, [&](std::string_view line) { out.emplace_back(line); });
  return out;
}

using Tags = std::vector<std::pair<std::string, std::string>>;
using Fields = std::vector<std::pair<std::string, FieldValue>>;

// ---- A whole line ----

TEST(LineProtocol, ParsesEveryPartOfALine) {
  const Point p = ParseOk(
      "cpu,host=server01,region=us-west usage=64.5,count=3i,big=18446744073709551615u,"
      "name=\"load avg\",ok=true 1434055562000000000");
  EXPECT_EQ(p.measurement, "cpu");
  EXPECT_EQ(p.tags, (Tags{{"host", "server01"}, {"region", "us-west"}}));
  EXPECT_EQ(p.fields, (Fields{{"usage", FieldValue::Float(64.5)},
                              {"count", FieldValue::Integer(3)},
                              {"big", FieldValue::Unsigned(18446744073709551615u)},
                              {"name", FieldValue::String("load avg")},
                              {"ok", FieldValue::Boolean(true)}}));
  EXPECT_EQ(p.timestamp, 1434055562000000000);
}

TEST(LineProtocol, TagsAndTimestampAreOptional) {
  const Point p = ParseOk("temperature value=21.5");
  EXPECT_EQ(p.measurement, "temperature");
  EXPECT_TRUE(p.tags.empty());
  EXPECT_EQ(p.fields, (Fields{{"value", FieldValue::Float(21.5)}}));
  EXPECT_EQ(p.timestamp, std::nullopt);
}

TEST(LineProtocol, KeepsTagsAndFieldsInLineOrder) {
  const Point p = ParseOk("m,z=1,a=2,m=3 z=1i,a=2i,m=3i");
  EXPECT_EQ(p.tags, (Tags{{"z", "1"}, {"a", "2"}, {"m", "3"}}));
  ASSERT_EQ(p.fields.size(), 3u);
  EXPECT_EQ(p.fields[0].first, "z");
  EXPECT_EQ(p.fields[1].first, "a");
  EXPECT_EQ(p.fields[2].first, "m");
}

// ---- Field values ----

TEST(LineProtocol, Floats) {
  const std::pair<std::string_view, double> cases[] = {
      {"1", 1.0},         {"-1.5", -1.5},
      {"1e10", 1e10},     {"1.5E-3", 1.5e-3},
      {"1E5", 1e5},       {"1e+5", 1e5},
      {"2.5e-2", 0.025},  {".5", 0.5},
      {"5.", 5.0},        {"-.5", -0.5},
      {"1.e+78", 1e78},   {"-1.234456e+78", -1.234456e78},
      {"007.25", 7.25},   {"0", 0.0},
      {"0.1", 0.1},       {"1.7976931348623157e308", 1.7976931348623157e308},
      {"5e-324", 5e-324}, {"123456789012345678901234567890", 1.2345678901234568e29},
  };
  for (const auto& [text, want] : cases) {
    const FieldValue v = ParseValue(text);
    EXPECT_EQ(v.type, Type::kFloat) << text;
    EXPECT_EQ(v.f, want) << text;
  }
  const FieldValue negative_zero = ParseValue("-0");
  EXPECT_EQ(negative_zero.f, 0.0);
  EXPECT_TRUE(std::signbit(negative_zero.f));
  EXPECT_FALSE(std::signbit(ParseValue("0").f));
}

TEST(LineProtocol, FloatsTooSmallReadAsZero) {
  // Go's ParseFloat, which InfluxDB uses, rounds an underflow to zero without an error.
  EXPECT_EQ(ParseValue("1e-400"), FieldValue::Float(0.0));
  EXPECT_EQ(ParseValue("-1e-400"), FieldValue::Float(-0.0));
  EXPECT_EQ(ParseValue("0.0000000001e-330"), FieldValue::Float(0.0));
  EXPECT_EQ(ParseValue("0e999999999999999999999"), FieldValue::Float(0.0));
}

TEST(LineProtocol, MalformedFloats) {
  EXPECT_EQ(ParseErr("m value=12x"), "invalid field value for \"value\": 12x");
  for (std::string_view bad :
       {"1.2.3", "1e",   "1e+",      "1e-",  "1e5.5",  "1ee5",  "e5",  "-",   ".",    "-.",
        "+1",    "+.5",  "--1",      "1-",   "1.5e3x", "NaN",   "nan", "NAN", "Inf",  "-Inf",
        "inf",   "+Inf", "Infinity", "0x10", "0x1p3",  "1_000", "1f",  "1d",  "1.5.", "١"}) {
    EXPECT_EQ(ParseErr("m value=" + std::string(bad)),
              "invalid field value for \"value\": " + std::string(bad));
  }
  EXPECT_EQ(ParseErr("m f=1e400"), "float out of range for field \"f\": 1e400");
  EXPECT_EQ(ParseErr("m f=-1.8e308"), "float out of range for field \"f\": -1.8e308");
}

TEST(LineProtocol, Integers) {
  const std::pair<std::string_view, int64_t> cases[] = {
      {"12i", 12},
      {"-12i", -12},
      {"0i", 0},
      {"-0i", 0},
      {"007i", 7},
      {"9223372036854775807i", kInt64Max},
      {"-9223372036854775808i", kInt64Min},
  };
  for (const auto& [text, want] : cases) EXPECT_EQ(ParseValue(text), FieldValue::Integer(want));
}

TEST(LineProtocol, MalformedIntegers) {
  for (std::string_view bad :
       {"1.5i", "1e3i", "i", "-i", "+1i", "1ii", "12I", "0x1fi", "--1i", "1-i", "i1", "1i2"}) {
    const std::string line = "m f=" + std::string(bad);
    const std::string reason = ParseErr(line);
    EXPECT_NE(reason.find("invalid field value for \"f\""), std::string::npos) << line << reason;
  }
  EXPECT_EQ(ParseErr("m f=9223372036854775808i"),
            "integer out of range for field \"f\": 9223372036854775808i");
  EXPECT_EQ(ParseErr("m f=-9223372036854775809i"),
            "integer out of range for field \"f\": -9223372036854775809i");
  EXPECT_EQ(ParseErr("m f=99999999999999999999999i"),
            "integer out of range for field \"f\": 99999999999999999999999i");
}

TEST(LineProtocol, Unsigned) {
  EXPECT_EQ(ParseValue("12u"), FieldValue::Unsigned(12));
  EXPECT_EQ(ParseValue("0u"), FieldValue::Unsigned(0));
  EXPECT_EQ(ParseValue("18446744073709551615u"), FieldValue::Unsigned(18446744073709551615u));
  EXPECT_NE(ParseValue("12u"), FieldValue::Integer(12));
  for (std::string_view bad : {"-1u", "-0u", "+1u", "1.5u", "1e3u", "u", "1uu", "12U", "1iu"}) {
    const std::string line = "m f=" + std::string(bad);
    EXPECT_EQ(ParseErr(line), "invalid field value for \"f\": " + std::string(bad)) << line;
  }
  EXPECT_EQ(ParseErr("m f=18446744073709551616u"),
            "unsigned integer out of range for field \"f\": 18446744073709551616u");
}

TEST(LineProtocol, Booleans) {
  for (std::string_view t : {"t", "T", "true", "True", "TRUE"}) {
    EXPECT_EQ(ParseValue(t), FieldValue::Boolean(true)) << t;
  }
  for (std::string_view f : {"f", "F", "false", "False", "FALSE"}) {
    EXPECT_EQ(ParseValue(f), FieldValue::Boolean(false)) << f;
  }
  for (std::string_view bad :
       {"tru", "truee", "TRue", "tRUE", "FaLse", "yes", "no", "on", "y", "1b", "fals", "ture"}) {
    EXPECT_EQ(ParseErr("m f=" + std::string(bad)),
              "invalid field value for \"f\": " + std::string(bad));
  }
}

TEST(LineProtocol, Strings) {
  EXPECT_EQ(ParseValue("\"hello\""), FieldValue::String("hello"));
  EXPECT_EQ(ParseValue("\"\""), FieldValue::String(""));
  EXPECT_EQ(ParseValue("\"true\""), FieldValue::String("true"));
  EXPECT_EQ(ParseValue("\"12i\""), FieldValue::String("12i"));
  EXPECT_EQ(ParseValue("\"say \\\"hi\\\"\""), FieldValue::String("say \"hi\""));
  EXPECT_EQ(ParseValue("\"# not a comment\""), FieldValue::String("# not a comment"));
  EXPECT_EQ(ParseValue("\"caf\xc3\xa9 \xe2\x9a\xa1\""),
            FieldValue::String("caf\xc3\xa9 \xe2\x9a\xa1"));
  EXPECT_EQ(ParseValue("\"tab\there\""), FieldValue::String("tab\there"));
  // Backslashes as the InfluxDB 1.x reference lists them: "\\" is one backslash, and a
  // backslash before anything but '"' or '\' is itself.
  EXPECT_EQ(ParseValue(R"("too hot/cold")"), FieldValue::String(R"(too hot/cold)"));
  EXPECT_EQ(ParseValue(R"("too hot\cold")"), FieldValue::String(R"(too hot\cold)"));
  EXPECT_EQ(ParseValue(R"("too hot\\cold")"), FieldValue::String(R"(too hot\cold)"));
  EXPECT_EQ(ParseValue(R"("too hot\\\cold")"), FieldValue::String(R"(too hot\\cold)"));
  EXPECT_EQ(ParseValue(R"("too hot\\\\cold")"), FieldValue::String(R"(too hot\\cold)"));
  EXPECT_EQ(ParseValue(R"("too hot\\\\\cold")"), FieldValue::String(R"(too hot\\\cold)"));
  EXPECT_EQ(ParseValue(R"("ends in a backslash\\")"),
            FieldValue::String(R"(ends in a backslash\)"));
  EXPECT_EQ(ParseValue(R"("C:\path\n")"), FieldValue::String(R"(C:\path\n)"));
}

TEST(LineProtocol, StringWithCommasSpacesEqualsAndEscapedQuotes) {
  const Point p = ParseOk(R"(m f="a, b=\"c\" d",g=1i,h="x y=z, \"",k=t 1700000000000000001)");
  EXPECT_EQ(p.measurement, "m");
  EXPECT_EQ(p.fields, (Fields{{"f", FieldValue::String(R"(a, b="c" d)")},
                              {"g", FieldValue::Integer(1)},
                              {"h", FieldValue::String(R"(x y=z, ")")},
                              {"k", FieldValue::Boolean(true)}}));
  EXPECT_EQ(p.timestamp, 1700000000000000001);

  const Point last = ParseOk(R"(m,t=v f=" a=1,b=2 3 ")");
  EXPECT_EQ(last.fields, (Fields{{"f", FieldValue::String(" a=1,b=2 3 ")}}));
  EXPECT_EQ(last.timestamp, std::nullopt);
}

TEST(LineProtocol, MalformedStrings) {
  EXPECT_EQ(ParseErr(R"(m f="abc)"), R"(unterminated string for field "f": \"abc)");
  EXPECT_EQ(ParseErr(R"(m f="abc\")"), R"(unterminated string for field "f": \"abc\\\")");
  EXPECT_EQ(ParseErr(R"(m f="a,g=1i)"), R"(unterminated string for field "f": \"a,g=1i)");
  EXPECT_EQ(ParseErr(R"(m f="abc"x)"), R"(unexpected text after string for field "f": x)");
  EXPECT_EQ(ParseErr(R"(m f="a"b")"), R"(unexpected text after string for field "f": b\")");
  EXPECT_EQ(ParseErr(R"(m f="a""b")"), R"(unexpected text after string for field "f": \"b\")");
  EXPECT_EQ(ParseErr(R"(m f=abc")"), R"(invalid field value for "f": abc\")");
  EXPECT_EQ(ParseErr(R"(m f='single')"), R"(invalid field value for "f": 'single')");
  EXPECT_EQ(ParseErr("m f=\"two\nlines\""), "newline inside a line");
}

// ---- Escaping, position by position ----

TEST(LineProtocol, MeasurementEscapes) {
  EXPECT_EQ(ParseOk(R"(my\ meas\,ure f=1)").measurement, "my meas,ure");
  EXPECT_EQ(ParseOk(R"(\ lead f=1)").measurement, " lead");
  EXPECT_EQ(ParseOk(R"(trail\  f=1)").measurement, "trail ");
  EXPECT_EQ(ParseOk(R"(a\,b,t=1 f=1)").measurement, "a,b");
  // '=' is not special in a measurement: bare it is literal, and "\=" keeps its backslash.
  EXPECT_EQ(ParseOk(R"(m=x f=1)").measurement, "m=x");
  EXPECT_EQ(ParseOk(R"(m\=x f=1)").measurement, R"(m\=x)");
  // A backslash before anything else is a literal backslash.
  EXPECT_EQ(ParseOk(R"(m\x f=1)").measurement, R"(m\x)");
  EXPECT_EQ(ParseOk(R"(\m f=1)").measurement, R"(\m)");
  // Quotes and other punctuation are literal.
  EXPECT_EQ(ParseOk(R"("quoted" f=1)").measurement, R"("quoted")");
  EXPECT_EQ(ParseOk(R"('single' f=1)").measurement, "'single'");
  EXPECT_EQ(ParseOk("m#x f=1").measurement, "m#x");
  // A separator escaped by the second of two backslashes: the first stays, literal.
  EXPECT_EQ(ParseOk(R"(m\\,t=a f=1)").measurement, R"(m\,t=a)");
  EXPECT_EQ(ParseOk(R"(m\\ x f=1)").measurement, R"(m\ x)");
}

TEST(LineProtocol, TagKeyEscapes) {
  EXPECT_EQ(ParseOk(R"(m,a\ b\,c\=d=v f=1)").tags, (Tags{{"a b,c=d", "v"}}));
  EXPECT_EQ(ParseOk(R"(m,k\x=v f=1)").tags, (Tags{{R"(k\x)", "v"}}));
  EXPECT_EQ(ParseOk(R"(m,"k"=v f=1)").tags, (Tags{{R"("k")", "v"}}));
  EXPECT_EQ(ParseOk(R"(m,\==v f=1)").tags, (Tags{{"=", "v"}}));
  EXPECT_EQ(ParseOk(R"(m,k\\=x=v f=1)").tags, (Tags{{R"(k\=x)", "v"}}));
}

TEST(LineProtocol, TagValueEscapes) {
  EXPECT_EQ(ParseOk(R"(m,k=a\ b\,c\=d f=1)").tags, (Tags{{"k", "a b,c=d"}}));
  EXPECT_EQ(ParseOk(R"(m,k=C:\path\x f=1)").tags, (Tags{{"k", R"(C:\path\x)"}}));
  EXPECT_EQ(ParseOk(R"(m,k="v" f=1)").tags, (Tags{{"k", R"("v")"}}));
  EXPECT_EQ(ParseOk(R"(m,k=\  f=1)").tags, (Tags{{"k", " "}}));
  // The second backslash escapes the comma, so the value goes on (and meets a bare '=').
  EXPECT_EQ(ParseOk(R"(m,k=a\\,j f=1)").tags, (Tags{{"k", R"(a\,j)"}}));
  EXPECT_EQ(ParseErr(R"(m,k=a\\,j=b f=1)"),
            R"(invalid tag value for "k": unescaped '=' in a\\\\,j=)");
}

TEST(LineProtocol, FieldKeyEscapes) {
  EXPECT_EQ(ParseOk(R"(m a\ b\,c\=d=1i)").fields, (Fields{{"a b,c=d", FieldValue::Integer(1)}}));
  EXPECT_EQ(ParseOk(R"(m field_k\ey=1)").fields, (Fields{{R"(field_k\ey)", FieldValue::Float(1)}}));
  EXPECT_EQ(ParseOk(R"(m "f"=1)").fields, (Fields{{R"("f")", FieldValue::Float(1)}}));
  EXPECT_EQ(ParseOk(R"(m f=1,\,=2)").fields,
            (Fields{{"f", FieldValue::Float(1)}, {",", FieldValue::Float(2)}}));
}

TEST(LineProtocol, ReferenceExampleWithEveryEscape) {
  // The special-characters example of the InfluxDB 1.x line protocol reference.
  const Point p = ParseOk(
      "\"measurement\\ with\\ quo\xe2\x9a\xa1\xef\xb8\x8f"
      "es\\ and\\ emoji\",tag\\ key\\ with\\ sp\xf0\x9f\x9a\x80"
      "ces=tag\\,value\\,with\"commas\" field_k\\ey=\"string field value, only \\\" need be "
      "esc\xf0\x9f\x8d\xad"
      "ped\"");
  EXPECT_EQ(p.measurement,
            "\"measurement with quo\xe2\x9a\xa1\xef\xb8\x8f"
            "es and emoji\"");
  EXPECT_EQ(p.tags, (Tags{{"tag key with sp\xf0\x9f\x9a\x80"
                           "ces",
                           "tag,value,with\"commas\""}}));
  EXPECT_EQ(p.fields,
            (Fields{{"field_k\\ey", FieldValue::String("string field value, only \" need be "
                                                       "esc\xf0\x9f\x8d\xad"
                                                       "ped")}}));
}

// ---- Missing parts and stray spaces ----

TEST(LineProtocol, MissingParts) {
  EXPECT_EQ(ParseErr(""), "empty line");
  EXPECT_EQ(ParseErr("   \t "), "empty line");
  EXPECT_EQ(ParseErr("# a comment f=1"), "line is a comment");
  EXPECT_EQ(ParseErr(",t=a f=1"), "missing measurement");
  EXPECT_EQ(ParseErr("m"), "missing fields");
  EXPECT_EQ(ParseErr("m   "), "missing fields");
  EXPECT_EQ(ParseErr("m,t=a"), "missing fields");
  EXPECT_EQ(ParseErr("m,t=a "), "missing fields");
  EXPECT_EQ(ParseErr("m,=a f=1"), "missing tag key");
  EXPECT_EQ(ParseErr("m, f=1"), "missing tag key");
  EXPECT_EQ(ParseErr("m,t=a, f=1"), "missing tag key");
  EXPECT_EQ(ParseErr("m,t=a,,u=b f=1"), "missing tag key");
  EXPECT_EQ(ParseErr("m,t= f=1"), "missing tag value for \"t\"");
  EXPECT_EQ(ParseErr("m,t=,u=b f=1"), "missing tag value for \"t\"");
  EXPECT_EQ(ParseErr("m,t f=1"), "missing '=' after tag key \"t\"");
  EXPECT_EQ(ParseErr("m,t,u=b f=1"), "missing '=' after tag key \"t\"");
  EXPECT_EQ(ParseErr("m,t=a=b f=1"), "invalid tag value for \"t\": unescaped '=' in a=");
  EXPECT_EQ(ParseErr("m f"), "missing '=' after field key \"f\"");
  EXPECT_EQ(ParseErr("m f g=1"), "missing '=' after field key \"f\"");
  EXPECT_EQ(ParseErr("m f,g=1"), "missing '=' after field key \"f\"");
  EXPECT_EQ(ParseErr("m f="), "missing field value for \"f\"");
  EXPECT_EQ(ParseErr("m f= 1"), "missing field value for \"f\"");
  EXPECT_EQ(ParseErr("m f=,g=1"), "missing field value for \"f\"");
  EXPECT_EQ(ParseErr("m =1"), "missing field key");
  EXPECT_EQ(ParseErr("m f=1,"), "missing field key");
  EXPECT_EQ(ParseErr("m f=1,,g=2"), "missing field key");
  EXPECT_EQ(ParseErr("m f=1, g=2"), "missing field key");
}

TEST(LineProtocol, SpacesSeparateSectionsAndNothingElse) {
  const Point p = ParseOk("  m,t=a    f=1,g=2i     -5   ");
  EXPECT_EQ(p.measurement, "m");
  EXPECT_EQ(p.tags, (Tags{{"t", "a"}}));
  EXPECT_EQ(p.fields, (Fields{{"f", FieldValue::Float(1)}, {"g", FieldValue::Integer(2)}}));
  EXPECT_EQ(p.timestamp, -5);
  EXPECT_EQ(ParseOk("\tm f=1\t").measurement, "m");
  // An unescaped space inside a section ends it early.
  EXPECT_EQ(ParseErr("my meas f=1"), "missing '=' after field key \"meas\"");
  EXPECT_EQ(ParseErr("m,t=a b f=1"), "missing '=' after field key \"b\"");
  EXPECT_EQ(ParseErr("m,t=a,my key=b f=1"), "missing '=' after tag key \"my\"");
  EXPECT_EQ(ParseErr("m f=1 g=2"), "invalid timestamp: g=2");
  EXPECT_EQ(ParseErr("m f=1 2 3"), "unexpected text after timestamp: 3");
}

// ---- Timestamps ----

TEST(LineProtocol, Timestamps) {
  EXPECT_EQ(ParseOk("m f=1 0").timestamp, 0);
  EXPECT_EQ(ParseOk("m f=1 -1").timestamp, -1);
  EXPECT_EQ(ParseOk("m f=1 1764000000000774162").timestamp, 1764000000000774162);
  EXPECT_EQ(ParseOk("m f=1 0001").timestamp, 1);
  EXPECT_EQ(ParseOk("m f=1 9223372036854775806").timestamp, kMaxTimestampNs);
  EXPECT_EQ(ParseOk("m f=1 -9223372036854775806").timestamp, kMinTimestampNs);
  EXPECT_EQ(ParseOk("m f=\"x\" 5").timestamp, 5);
}

TEST(LineProtocol, BadTimestamps) {
  EXPECT_EQ(ParseErr("m f=1 abc"), "invalid timestamp: abc");
  EXPECT_EQ(ParseErr("m f=1 12.5"), "invalid timestamp: 12.5");
  EXPECT_EQ(ParseErr("m f=1 1e9"), "invalid timestamp: 1e9");
  EXPECT_EQ(ParseErr("m f=1 +12"), "invalid timestamp: +12");
  EXPECT_EQ(ParseErr("m f=1 -"), "invalid timestamp: -");
  EXPECT_EQ(ParseErr("m f=1 --1"), "invalid timestamp: --1");
  EXPECT_EQ(ParseErr("m f=1 12i"), "invalid timestamp: 12i");
  EXPECT_EQ(ParseErr("m f=1 \"1466625759000000000\""),
            "invalid timestamp: \\\"1466625759000000000\\\"");
  EXPECT_EQ(ParseErr("m f=1 123x"), "invalid timestamp: 123x");
  // Out of int64, and the three int64 values InfluxDB 1.x keeps for itself.
  EXPECT_EQ(ParseErr("m f=1 99999999999999999999"), "timestamp out of range: 99999999999999999999");
  EXPECT_EQ(ParseErr("m f=1 -9223372036854775809"), "timestamp out of range: -9223372036854775809");
  EXPECT_EQ(ParseErr("m f=1 9223372036854775807"), "timestamp out of range: 9223372036854775807");
  EXPECT_EQ(ParseErr("m f=1 -9223372036854775807"), "timestamp out of range: -9223372036854775807");
  EXPECT_EQ(ParseErr("m f=1 -9223372036854775808"), "timestamp out of range: -9223372036854775808");
  // Trailing garbage.
  EXPECT_EQ(ParseErr("m f=1 123 456"), "unexpected text after timestamp: 456");
  EXPECT_EQ(ParseErr("m f=1 123 x y"), "unexpected text after timestamp: x y");
  EXPECT_EQ(ParseOk("m f=1 123\t").timestamp, 123);  // trailing blanks are trimmed
  EXPECT_EQ(ParseErr("m f=1 123\t5"), "invalid timestamp: 123\\x095");
}

// ---- Keys InfluxDB refuses ----

TEST(LineProtocol, RejectsKeysNamedTime) {
  EXPECT_EQ(ParseErr("m,time=x f=1"), "invalid tag key \"time\"");
  EXPECT_EQ(ParseErr("m,a=b,time=x f=1"), "invalid tag key \"time\"");
  EXPECT_EQ(ParseErr("m time=1"), "invalid field key \"time\"");
  EXPECT_EQ(ParseErr("m f=1,time=2i 5"), "invalid field key \"time\"");
  EXPECT_EQ(ParseOk(R"(m ti\me=1)").fields[0].first, R"(ti\me)");
  // Only the exact key: case and escapes make other keys.
  EXPECT_EQ(ParseOk("m,Time=x TIME=1").tags, (Tags{{"Time", "x"}}));
  EXPECT_EQ(ParseOk(R"(m,time\ =x times=1)").tags, (Tags{{"time ", "x"}}));
  EXPECT_EQ(ParseOk("time,t=time f=1").measurement, "time");
  EXPECT_EQ(ParseOk("m f=\"time\"").fields, (Fields{{"f", FieldValue::String("time")}}));
}

TEST(LineProtocol, RejectsRepeatedTagKeys) {
  EXPECT_EQ(ParseErr("m,a=1,a=2 f=1"), "duplicate tag key \"a\"");
  EXPECT_EQ(ParseErr(R"(m,a\ b=1,c=3,a\ b=2 f=1)"), "duplicate tag key \"a b\"");
  std::string many = "m";
  for (int i = 0; i < 40; ++i) many += ",k" + std::to_string(i) + "=v";
  EXPECT_EQ(ParseOk(many + " f=1").tags.size(), 40u);
  EXPECT_EQ(ParseErr(many + ",k17=w f=1"), "duplicate tag key \"k17\"");
  // A field key may repeat a tag key, and fields may repeat (InfluxDB keeps the last).
  EXPECT_EQ(ParseOk("m,a=1 a=2,a=3").fields.size(), 2u);
}

TEST(LineProtocol, RejectsSeriesKeysOverInfluxLimit) {
  const std::string measurement(kMaxSeriesKeyBytes, 'a');
  EXPECT_EQ(ParseOk(measurement + " f=1").measurement.size(), kMaxSeriesKeyBytes);
  EXPECT_EQ(ParseErr(measurement + ",t=v f=1"), "series key too long: 65539 bytes (max 65535)");
}

// ---- Reasons ----

TEST(LineProtocol, ReasonsQuoteAndCutUserText) {
  const std::string long_value(500, '7');
  const std::string reason = ParseErr("m f=" + long_value + "x");
  EXPECT_EQ(reason, "invalid field value for \"f\": " + std::string(48, '7') + "...");
  EXPECT_EQ(ParseErr("m,t\x01=a f=1,g"), "missing '=' after field key \"g\"");
  EXPECT_EQ(ParseErr("m f=\x01"), "invalid field value for \"f\": \\x01");
  EXPECT_EQ(ParseErr("m a\"b=x"), "invalid field value for \"a\\\"b\": x");
  // A cut never splits a UTF-8 character.
  std::string euros;
  for (int i = 0; i < 30; ++i) euros += "\xe2\x82\xac";
  EXPECT_EQ(ParseErr("m f=" + euros),
            "invalid field value for \"f\": " + euros.substr(0, 48) + "...");
  EXPECT_EQ(ParseErr("m f=x" + euros),
            "invalid field value for \"f\": x" + euros.substr(0, 45) + "...");
}

// ---- Line endings, comments, bodies ----

TEST(LineProtocol, ToleratesOneTrailingCarriageReturn) {
  EXPECT_EQ(ParseOk("m f=1 123\r").timestamp, 123);
  EXPECT_EQ(ParseOk("m f=\"x\"\r").fields, (Fields{{"f", FieldValue::String("x")}}));
  EXPECT_EQ(ParseOk("m f=1 \r").fields, (Fields{{"f", FieldValue::Float(1)}}));
  EXPECT_EQ(ParseOk("m f=\"a\rb\"").fields, (Fields{{"f", FieldValue::String("a\rb")}}));
  EXPECT_EQ(ParseErr("m f=1\r\r"), "invalid field value for \"f\": 1\\x0d");
  EXPECT_EQ(ParseErr("m f=1 5\r\r"), "invalid timestamp: 5\\x0d");
}

TEST(LineProtocol, ForEachLineSkipsBlanksAndComments) {
  EXPECT_EQ(Lines(""), std::vector<std::string>{});
  EXPECT_EQ(Lines("\n\n\r\n"), std::vector<std::string>{});
  EXPECT_EQ(Lines("# only a comment"), std::vector<std::string>{});
  EXPECT_EQ(Lines("a f=1"), std::vector<std::string>{"a f=1"});
  EXPECT_EQ(Lines("a f=1\n"), std::vector<std::string>{"a f=1"});
  const std::string body =
      "# header comment\n"
      "cpu f=1 1\n"
      "\n"
      "   \n"
      "\t\r\n"
      "  # indented comment, f=1\n"
      "\t#tabbed comment\r\n"
      "mem f=2 2\r\n"
      "disk f=\"# not a comment\"\n"
      "  net f=3\n"
      "#\n"
      "last f=4";
  EXPECT_EQ(Lines(body),
            (std::vector<std::string>{"cpu f=1 1", "mem f=2 2", "disk f=\"# not a comment\"",
                                      "  net f=3", "last f=4"}));
  for (const std::string& line : Lines(body)) EXPECT_TRUE(ParseLine(line).has_value()) << line;
  EXPECT_TRUE(IsBlankOrComment("  #x"));
  EXPECT_FALSE(IsBlankOrComment("x#"));
  EXPECT_TRUE(IsBlankOrComment("\r"));
}

// ---- Formatting ----

TEST(LineProtocol, FormatsCanonically) {
  Point p;
  p.measurement = "my meas,ure=x";
  p.tags = {{"tag key,=", "v a,l=ue"}, {R"(back\slash)", "\"q\""}};
  p.fields = {{"f", FieldValue::Float(1.5)},
              {"big", FieldValue::Float(1e22)},
              {"tiny", FieldValue::Float(-2.5e-10)},
              {"whole", FieldValue::Float(3)},
              {"i", FieldValue::Integer(-42)},
              {"u", FieldValue::Unsigned(42)},
              {"s", FieldValue::String(R"(say "hi" \o/)")},
              {"yes", FieldValue::Boolean(true)},
              {"no", FieldValue::Boolean(false)}};
  p.timestamp = -1;
  EXPECT_EQ(FormatLine(p), R"(my\ meas\,ure=x,tag\ key\,\==v\ a\,l\=ue,back\slash="q" )"
                           R"(f=1.5,big=1e+22,tiny=-2.5e-10,whole=3,i=-42i,u=42u,)"
                           R"(s="say \"hi\" \\o/",yes=true,no=false -1)");
  EXPECT_EQ(ParseLine(FormatLine(p)), p);
  p.timestamp.reset();
  const std::string untimed = FormatLine(p);
  EXPECT_EQ(untimed.substr(untimed.size() - 9), ",no=false");
  EXPECT_EQ(FormatLine(Point{"m", {}, {{"f", FieldValue::Float(0.1)}}, 0}), "m f=0.1 0");
  std::string out = "prefix ";
  AppendLine(Point{"m", {}, {{"f", FieldValue::Integer(1)}}, std::nullopt}, &out);
  EXPECT_EQ(out, "prefix m f=1i");
}

TEST(LineProtocol, FormatRoundTripsTrickyPoints) {
  const std::vector<Point> points = {
      {"m", {}, {{"f", FieldValue::Float(1)}}, std::nullopt},
      {" ", {{" ", " "}}, {{" ", FieldValue::String(" ")}}, 0},
      {",", {{",", ","}}, {{",", FieldValue::String(",")}}, 1},
      {"=", {{"=", "="}}, {{"=", FieldValue::String("=")}}, -1},
      {"\"", {{"\"", "\""}}, {{"\"", FieldValue::String("\"")}}, 2},
      {"\\x", {{"\\x", "\\x"}}, {{"\\x", FieldValue::String("\\")}}, 3},
      {"a\\,b", {{"a\\=b", "a\\ b"}}, {{"a\\,b", FieldValue::String("\\\\\"")}}, 4},
      {"a\\\\ b", {{"k", "\\\\,"}}, {{"f\\\\=", FieldValue::String("\\\"\\")}}, 5},
      {"not#first", {{"#", "#"}}, {{"#", FieldValue::String("#")}}, 6},
      {"m\r", {{"k\r", "v\r"}}, {{"f\r", FieldValue::String("\r")}}, 7},
      {"t", {{"Time", "time"}}, {{"times", FieldValue::Boolean(false)}}, kMaxTimestampNs},
      {"m",
       {},
       {{"max", FieldValue::Float(std::numeric_limits<double>::max())},
        {"min", FieldValue::Float(std::numeric_limits<double>::denorm_min())},
        {"lowest", FieldValue::Float(std::numeric_limits<double>::lowest())},
        {"nz", FieldValue::Float(-0.0)},
        {"third", FieldValue::Float(1.0 / 3)},
        {"imin", FieldValue::Integer(kInt64Min)},
        {"imax", FieldValue::Integer(kInt64Max)},
        {"umax", FieldValue::Unsigned(std::numeric_limits<uint64_t>::max())},
        {"empty", FieldValue::String("")}},
       kMinTimestampNs},
  };
  for (const Point& p : points) {
    EXPECT_TRUE(CheckWritable(p)) << testing::PrintToString(p);
    EXPECT_EQ(ParseLine(FormatLine(p)), p) << FormatLine(p);
  }
}

TEST(LineProtocol, CheckWritableNamesWhatLineProtocolCannotSay) {
  const Point good{"m", {{"k", "v"}}, {{"f", FieldValue::Integer(1)}}, 1};
  EXPECT_TRUE(CheckWritable(good));
  auto with = [&](auto change) {
    Point p = good;
    change(p);
    const Status st = CheckWritable(p);
    return st ? std::string("(writable)") : st.error().message;
  };
  EXPECT_EQ(with([](Point& p) { p.measurement = ""; }), "empty measurement");
  EXPECT_EQ(with([](Point& p) { p.measurement = "m\\"; }),
            "measurement ends in a backslash: \"m\\\\\"");
  EXPECT_EQ(with([](Point& p) { p.measurement = "#m"; }), "measurement starts with '#': \"#m\"");
  EXPECT_EQ(with([](Point& p) { p.measurement = "\tm"; }),
            "measurement starts with a tab: \"\\x09m\"");
  EXPECT_EQ(with([](Point& p) { p.measurement = "a\nb"; }),
            "measurement contains a newline: \"a\\x0ab\"");
  EXPECT_EQ(with([](Point& p) { p.tags[0].first = ""; }), "empty tag key");
  EXPECT_EQ(with([](Point& p) { p.tags[0].second = ""; }), "empty tag value");
  EXPECT_EQ(with([](Point& p) { p.tags[0].second = "v\\"; }),
            "tag value ends in a backslash: \"v\\\\\"");
  EXPECT_EQ(with([](Point& p) { p.tags[0].first = "time"; }), "invalid tag key \"time\"");
  EXPECT_EQ(with([](Point& p) { p.tags.push_back({"k", "w"}); }), "duplicate tag key \"k\"");
  EXPECT_EQ(with([](Point& p) { p.tags[0].second = std::string(70000, 'x'); }),
            "series key too long: 70004");
  EXPECT_EQ(with([](Point& p) { p.fields.clear(); }), "no fields");
  EXPECT_EQ(with([](Point& p) { p.fields[0].first = "f\\"; }),
            "field key ends in a backslash: \"f\\\\\"");
  EXPECT_EQ(with([](Point& p) { p.fields[0].first = "time"; }), "invalid field key \"time\"");
  EXPECT_EQ(with([](Point& p) { p.fields[0].second = FieldValue::Float(NAN); }),
            "field \"f\" is not a finite float");
  EXPECT_EQ(with([](Point& p) { p.fields[0].second = FieldValue::Float(-INFINITY); }),
            "field \"f\" is not a finite float");
  EXPECT_EQ(with([](Point& p) { p.fields[0].second = FieldValue::String("a\nb"); }),
            "string field \"f\" contains a newline");
  EXPECT_EQ(with([](Point& p) { p.timestamp = kInt64Max; }),
            "timestamp out of range: 9223372036854775807");
  EXPECT_EQ(with([](Point& p) { p.timestamp = kInt64Min + 1; }),
            "timestamp out of range: -9223372036854775807");
}

TEST(LineProtocol, FieldValuesCompareByTypeAndActiveMember) {
  EXPECT_EQ(FieldValue::Integer(1), FieldValue::Integer(1));
  EXPECT_NE(FieldValue::Integer(1), FieldValue::Unsigned(1));
  EXPECT_NE(FieldValue::Integer(1), FieldValue::Float(1));
  EXPECT_NE(FieldValue::Float(0.0), FieldValue::Float(-0.0));
  FieldValue stale = FieldValue::Boolean(true);
  stale.s = "ignored";
  EXPECT_EQ(stale, FieldValue::Boolean(true));
  EXPECT_NE(FieldValue::String("a"), FieldValue::String("b"));
}

// Pseudo-random points over characters that need care, each asserted to read back the same.
class PointGenerator {
 public:
  explicit PointGenerator(uint32_t seed) : rng_(seed) {}

  Point Next() {
    Point p;
    p.measurement = Name();
    if (p.measurement[0] == '#') p.measurement[0] = 'm';
    const int tags = Uniform(0, 4);
    for (int i = 0; i < tags; ++i) {
      // A distinct final letter per tag keeps the keys unique.
      p.tags.emplace_back(Name() + static_cast<char>('k' + i), Name());
    }
    const int fields = Uniform(1, 4);
    for (int i = 0; i < fields; ++i) p.fields.emplace_back(Name(), Value());
    switch (Uniform(0, 3)) {
      case 0:
        break;  // no timestamp
      case 1:
        p.timestamp = Uniform(0, 1) ? kMinTimestampNs : kMaxTimestampNs;
        break;
      default:
        p.timestamp =
            std::uniform_int_distribution<int64_t>(kMinTimestampNs, kMaxTimestampNs)(rng_);
    }
    return p;
  }

 private:
  static constexpr std::string_view kAlphabet = " ,=\"\\abZ#\t";

  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  std::string Text(int min_len) {
    std::string s(static_cast<size_t>(Uniform(min_len, 8)), ' ');
    for (char& c : s) {
      c = kAlphabet[static_cast<size_t>(Uniform(0, static_cast<int>(kAlphabet.size()) - 1))];
    }
    return s;
  }

  // A measurement, key or tag value: never empty, never "time", never ending in a backslash,
  // never starting with a tab (the only things line protocol cannot say with this alphabet).
  std::string Name() {
    std::string s = Text(1);
    if (s.back() == '\\') s.push_back('a');
    if (s[0] == '\t') s[0] = 'b';
    return s;
  }

  FieldValue Value() {
    switch (Uniform(0, 6)) {
      case 0: {
        double d;
        do {
          const uint64_t bits = std::uniform_int_distribution<uint64_t>()(rng_);
          std::memcpy(&d, &bits, sizeof d);
        } while (!std::isfinite(d));
        return FieldValue::Float(d);
      }
      case 1:
        return FieldValue::Float(std::uniform_real_distribution<double>(-1e6, 1e6)(rng_));
      case 2:
        return FieldValue::Integer(
            std::uniform_int_distribution<int64_t>(kInt64Min, kInt64Max)(rng_));
      case 3:
        return FieldValue::Unsigned(std::uniform_int_distribution<uint64_t>()(rng_));
      case 4:
        return FieldValue::Boolean(Uniform(0, 1) == 1);
      default:
        return FieldValue::String(Text(0));  // any text, a trailing backslash included
    }
  }

  std::mt19937 rng_;
};

TEST(LineProtocol, FormatRoundTripsRandomPoints) {
  PointGenerator gen(20240611);
  int with_backslash = 0;
  for (int i = 0; i < 500; ++i) {
    const Point p = gen.Next();
    ASSERT_TRUE(CheckWritable(p)) << testing::PrintToString(p);
    const std::string line = FormatLine(p);
    ASSERT_EQ(ParseLine(line), p) << line;
    ASSERT_EQ(Lines(line), std::vector<std::string>{line});  // never taken for a comment
    with_backslash += line.find('\\') != std::string::npos;
  }
  EXPECT_GT(with_backslash, 400);  // the run exercised escapes
}

// ---- Writing to InfluxDB ----

TEST(LineProtocol, AppendForWriteAddsTheDefaultTimestampOnlyWhenMissing) {
  std::string out;
  const std::string_view with_ts = "  cpu,host=a f=1 123\r";
  AppendForWrite(with_ts, ParseOk(with_ts), 1764000000000000000, &out);
  EXPECT_EQ(out, "cpu,host=a f=1 123\n");

  const std::string_view without = "mem,host=a\\ b used=5i,s=\"x y\"   ";
  AppendForWrite(without, ParseOk(without), 1764000000000000000, &out);
  EXPECT_EQ(out, "cpu,host=a f=1 123\nmem,host=a\\ b used=5i,s=\"x y\" 1764000000000000000\n");

  const std::string_view early = "\tdisk f=t";
  AppendForWrite(early, ParseOk(early), -42, &out);
  EXPECT_EQ(out.substr(out.rfind('\n', out.size() - 2) + 1), "disk f=t -42\n");

  // The body reads back: each line keeps its own timestamp or gets the default.
  std::vector<std::optional<int64_t>> stamps;
  ForEachLine(out, [&](std::string_view line) { stamps.push_back(ParseOk(line).timestamp); });
  EXPECT_EQ(stamps, (std::vector<std::optional<int64_t>>{123, 1764000000000000000, -42}));
}

// ---- Robustness ----

TEST(LineProtocol, RandomMutationsNeverCrashOrMisread) {
  const std::vector<std::string> seeds = {
      "cpu,host=server01,region=us-west usage=64.5,count=3i,big=42u,ok=true 1434055562000000000",
      R"(m f="a, b=\"c\" d",g=1i,h=t 1700000000000000001)",
      R"(my\ meas\,ure,tag\ key=v\,a\=l f\ k=1.5e-3 -5)",
      R"(m,k=C:\path\x field_k\ey="C:\\dir\\" 0)",
      "deis_router_bytes_sent,app=checkout,status_code=200,host=checkout.example.com "
      "value=40145i 1764000000004471932",
      "w v=-1.e+78,x=.5,y=FALSE,z=\"\"",
  };
  using namespace std::literals;
  static constexpr std::string_view kSpecial = " ,=\"\\\r\n\t#iu-.eE0\x00\xff"sv;
  std::mt19937 rng(42);
  auto uniform = [&](size_t lo, size_t hi) {
    return std::uniform_int_distribution<size_t>(lo, hi)(rng);
  };
  int parsed = 0;
  for (int iteration = 0; iteration < 20000; ++iteration) {
    std::string line = seeds[uniform(0, seeds.size() - 1)];
    const size_t mutations = uniform(1, 3);
    for (size_t m = 0; m < mutations; ++m) {
      const size_t at = uniform(0, line.size());
      switch (uniform(0, 3)) {
        case 0:  // replace a byte with any byte
          if (at < line.size()) line[at] = static_cast<char>(uniform(0, 255));
          break;
        case 1:  // replace a byte with a special one
          if (at < line.size()) line[at] = kSpecial[uniform(0, kSpecial.size() - 1)];
          break;
        case 2:  // truncate
          line.resize(at);
          break;
        default:  // insert a special byte
          line.insert(line.begin() + static_cast<ptrdiff_t>(at),
                      kSpecial[uniform(0, kSpecial.size() - 1)]);
      }
    }
    auto p = ParseLine(line);
    if (!p) {
      ASSERT_FALSE(p.error().message.empty()) << line;
      ASSERT_LT(p.error().message.size(), 512u) << line;
      continue;
    }
    ++parsed;
    ASSERT_TRUE(CheckWritable(*p)) << line;
    const std::string formatted = FormatLine(*p);
    ASSERT_EQ(ParseLine(formatted), *p) << "line: " << line << "\nformatted: " << formatted;
  }
  // Both outcomes were exercised.
  EXPECT_GT(parsed, 2000);
  EXPECT_LT(parsed, 18000);
}

}  // namespace
}  // namespace cairn::consumers

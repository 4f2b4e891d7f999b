// Harness: an HTTP request target as cairnd's API (src/server/http_api.cc) and the workers' APIs
// read it: net::ParseTarget (Boost.URL's origin form, percent-decoding, first value of each key),
// then every parser a parameter's value goes through, run on every value (and on the whole input,
// so that the parsers are reached without a well-formed target): nsq::ParseDecimal (`defer`,
// `retention_bytes`), ParseDurationIn<milliseconds> and ParseDuration (`retention_age`,
// `message_ttl`), ParseRfc3339 and ParseLogPosition (`start`, `to`, `at`), storage::ParseCodec
// (`codec`), and the topic and channel name rules.
//
// Checked besides crashes, sanitizer reports, time and memory:
// - a target that parses has a path starting with '/'; one that does not keeps what precedes
//   '?' as its path;
// - a parameter's value that parses means what it says: a duration or a time formats back to a
//   spelling that parses to the same value, a position's offset or time is what ParseDecimal or
//   ParseRfc3339 read, a codec's name is the text.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "net/position.h"
#include "net/protocol.h"
#include "net/query.h"
#include "src/base/duration.h"
#include "storage/compression.h"
#include "tests/fuzz/fuzz_support.h"

namespace cairn::net {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

void CheckDecimal(std::string_view text) {
  const auto v = nsq::ParseDecimal(text);
  if (!std::all_of(text.begin(), text.end(), IsDigit)) {
    FUZZ_CHECK(!v);
    return;
  }
  uint64_t mod = 0;
  for (char c : text) mod = mod * 10 + static_cast<uint64_t>(c - '0');
  if (v) FUZZ_CHECK(static_cast<uint64_t>(*v) == mod);
  if (text.size() <= 18) FUZZ_CHECK(v && static_cast<uint64_t>(*v) == mod);
}

void CheckDuration(std::string_view text) {
  using std::chrono::milliseconds;
  const auto d = ParseDuration(text);
  // In milliseconds, as retention_age and message_ttl are kept: exactly the durations that are
  // whole milliseconds.
  const auto in_ms = ParseDurationIn<milliseconds>(text);
  if (!d) {
    FUZZ_CHECK(!d.error().message.empty() && !in_ms);
    return;
  }
  FUZZ_CHECK(d->count() >= 0);  // no sign is accepted
  FUZZ_CHECK(in_ms.has_value() == (d->count() % 1'000'000 == 0));
  if (in_ms) FUZZ_CHECK(std::chrono::nanoseconds(*in_ms) == *d);
  const std::string spelled = FormatDuration(*d);
  const auto again = ParseDuration(spelled);
  FUZZ_CHECK(again && *again == *d);
}

void CheckTime(std::string_view text) {
  const auto ns = ParseRfc3339(std::string(text));
  if (!ns) return;
  const auto again = ParseRfc3339(FormatRfc3339(*ns));
  FUZZ_CHECK(again && *again == *ns);
}

void CheckPosition(std::string_view text) {
  const auto p = ParseLogPosition(text);
  if (!p) return;
  switch (p->kind) {
    case LogPosition::Kind::kEarliest:
      FUZZ_CHECK(text == "earliest");
      break;
    case LogPosition::Kind::kLatest:
      FUZZ_CHECK(text == "latest");
      break;
    case LogPosition::Kind::kOffset: {
      FUZZ_CHECK(text.starts_with("offset:") && text.size() > 7);
      const auto n = nsq::ParseDecimal(text.substr(7));
      FUZZ_CHECK(n && static_cast<uint64_t>(*n) == p->offset);
      break;
    }
    case LogPosition::Kind::kTime: {
      FUZZ_CHECK(text.starts_with("time:"));
      const auto ns = ParseRfc3339(std::string(text.substr(5)));
      FUZZ_CHECK(ns && *ns == p->time_ns);
      break;
    }
  }
}

void CheckCodec(std::string_view text) {
  const auto codec = storage::ParseCodec(text);
  FUZZ_CHECK(codec.has_value() == (text == "none" || text == "lz4" || text == "zstd"));
  if (codec) FUZZ_CHECK(storage::CodecName(*codec) == text);
}

void CheckValue(std::string_view text) {
  CheckDecimal(text);
  CheckDuration(text);
  CheckTime(text);
  CheckPosition(text);
  CheckCodec(text);
  (void)nsq::IsValidTopicName(text);
  (void)nsq::IsValidChannelName(text);
}

}  // namespace
}  // namespace cairn::net

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cairn::net;
  const std::string_view target(reinterpret_cast<const char*>(data), size);
  const Query q = ParseTarget(target);
  if (q.valid) {
    FUZZ_CHECK(q.path.starts_with("/"));
  } else {
    FUZZ_CHECK(q.path == target.substr(0, target.find('?')));
    FUZZ_CHECK(q.params.empty());
  }
  for (const auto& [key, value] : q.params) {
    FUZZ_CHECK(q.Get(key) == &value);
    CheckValue(value);
  }
  CheckValue(target);
  return 0;
}

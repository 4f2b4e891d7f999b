// Harness: the NSQ V2 command codec (net/protocol.h) as cairnd's TCP session drives it: commands
// parsed one after another from one buffer, under small limits (so that bodies, MPUB's message
// list and the overlong-line rule are within reach of short inputs) and under the defaults.
//
// Checked besides crashes and sanitizer reports:
// - a parsed command consumed at least one byte and at most what it was given, every view it holds
//   lies within what it consumed, its line is within max_line and its verb is the line's first
//   word;
// - what the parser accepted obeys the limits and nsqd's rules (names, message IDs, body sizes);
// - the outcome does not depend on how the bytes arrived: feeding the parser the prefixes that
//   NeedMore asks for, from the empty one on, reaches the outcome of the whole buffer (the session
//   parses whatever its reads have brought so far);
// - ParseDecimal, DecodeMessageId and GoQuote agree with what they read.
#include <algorithm>
#include <cstdint>
#include <optional>
#include <string_view>
#include <variant>

#include "net/protocol.h"
#include "tests/fuzz/fuzz_support.h"

namespace cairn::nsq {
namespace {

using fuzz::Within;

ParseLimits SmallLimits() {
  ParseLimits l;
  l.max_msg_size = 64;
  l.max_body_size = 512;
  l.max_identify_size = 256;
  l.max_line = 128;
  return l;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// ParseDecimal reads digits only, and either the number they spell or (in nsqd's manner) that
// number modulo 2^64; any other character is refused.
void CheckDecimal(std::string_view text) {
  const auto v = ParseDecimal(text);
  const bool digits = std::all_of(text.begin(), text.end(), IsDigit);
  if (!digits) {
    FUZZ_CHECK(!v);
    return;
  }
  uint64_t mod = 0;  // the value modulo 2^64
  for (char c : text) mod = mod * 10 + static_cast<uint64_t>(c - '0');
  if (v) FUZZ_CHECK(static_cast<uint64_t>(*v) == mod);
  if (text.size() <= 18) FUZZ_CHECK(v && static_cast<uint64_t>(*v) == mod);
}

void CheckMessageId(std::string_view id) {
  const auto offset = DecodeMessageId(id);
  if (!offset) return;
  FUZZ_CHECK(id.size() == kMessageIdSize);
  const MessageId encoded = EncodeMessageId(*offset);
  for (size_t i = 0; i < kMessageIdSize; ++i) {
    const char c = id[i];
    FUZZ_CHECK(encoded[i] == (c >= 'A' && c <= 'F' ? static_cast<char>(c - 'A' + 'a') : c));
  }
}

// GoQuote's output is quoted and holds no control character: it goes into error frames.
void CheckQuote(std::string_view text) {
  const std::string q = GoQuote(text);
  FUZZ_CHECK(q.size() >= 2 + text.size() && q.front() == '"' && q.back() == '"');
  for (char c : q) FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f);
}

bool SameCommand(const Command& a, const Command& b) {
  return a.verb == b.verb && a.body == b.body &&
         std::equal(a.params.begin(), a.params.end(), b.params.begin(), b.params.end()) &&
         std::equal(a.bodies.begin(), a.bodies.end(), b.bodies.begin(), b.bodies.end());
}

bool SameOutcome(const ParseOutcome& a, const ParseOutcome& b) {
  if (a.index() != b.index()) return false;
  if (const auto* pa = std::get_if<Parsed>(&a)) {
    const auto& pb = std::get<Parsed>(b);
    return pa->consumed == pb.consumed && SameCommand(pa->command, pb.command);
  }
  if (const auto* ea = std::get_if<ProtocolError>(&a)) {
    const auto& eb = std::get<ProtocolError>(b);
    return ea->code == eb.code && ea->text == eb.text && ea->fatal == eb.fatal &&
           ea->silent == eb.silent;
  }
  return true;  // NeedMore: how much more depends on how much is there
}

// The outcome the session reaches when the bytes of `buf` arrive just as NeedMore asks for them,
// from none on; nullopt if that takes more than `buf` holds.
std::optional<ParseOutcome> Streamed(std::string_view buf, const ParseLimits& limits) {
  size_t have = 0;
  for (;;) {
    ParseOutcome o = ParseCommand(buf.substr(0, have), limits);
    const auto* more = std::get_if<NeedMore>(&o);
    if (more == nullptr) return o;
    FUZZ_CHECK(more->bytes >= 1);
    if (more->bytes > buf.size() - have) return std::nullopt;
    // "At least `bytes` more before anything changes": one byte short must still be NeedMore.
    if (more->bytes > 1) {
      FUZZ_CHECK(std::holds_alternative<NeedMore>(
          ParseCommand(buf.substr(0, have + more->bytes - 1), limits)));
    }
    have += more->bytes;
  }
}

void CheckParsed(std::string_view buf, const Parsed& p, const ParseLimits& limits) {
  FUZZ_CHECK(p.consumed >= 1 && p.consumed <= buf.size());
  const std::string_view taken = buf.substr(0, p.consumed);
  const size_t nl = taken.find('\n');
  FUZZ_CHECK(nl != std::string_view::npos);
  FUZZ_CHECK(nl + 1 <= limits.max_line);  // nsqd's read buffer holds the line and its '\n'
  std::string_view line = taken.substr(0, nl);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  const Command& c = p.command;
  FUZZ_CHECK(line.substr(0, line.find(' ')) == VerbName(c.verb));
  for (std::string_view param : c.params) {
    FUZZ_CHECK(Within(param, line));
    CheckDecimal(param);
    CheckMessageId(param);
    CheckQuote(param);
  }
  const std::string_view after_line = taken.substr(nl + 1);
  FUZZ_CHECK(Within(c.body, after_line));
  for (std::string_view b : c.bodies) FUZZ_CHECK(Within(b, after_line));

  const size_t nparams = c.params.size();
  switch (c.verb) {
    case Verb::kPub:
    case Verb::kDpub:
      FUZZ_CHECK(nparams >= (c.verb == Verb::kPub ? 1u : 2u));
      FUZZ_CHECK(IsValidTopicName(c.params[0]));
      FUZZ_CHECK(!c.body.empty() && c.body.size() <= limits.max_msg_size);
      FUZZ_CHECK(p.consumed == nl + 1 + 4 + c.body.size());
      break;
    case Verb::kMpub: {
      FUZZ_CHECK(nparams >= 1 && IsValidTopicName(c.params[0]));
      FUZZ_CHECK(!c.bodies.empty() && c.bodies.size() <= (limits.max_body_size - 4) / 5);
      size_t total = 4;
      for (std::string_view b : c.bodies) {
        FUZZ_CHECK(!b.empty() && b.size() <= limits.max_msg_size);
        total += 4 + b.size();
      }
      FUZZ_CHECK(total <= limits.max_body_size && nl + 1 + 4 + total <= p.consumed);
      break;
    }
    case Verb::kIdentify:
    case Verb::kAuth:
      FUZZ_CHECK(c.verb == Verb::kIdentify || nparams == 0);
      FUZZ_CHECK(!c.body.empty() && c.body.size() <= limits.max_identify_size);
      break;
    case Verb::kSub:
      FUZZ_CHECK(nparams >= 2 && IsValidTopicName(c.params[0]) && IsValidChannelName(c.params[1]));
      break;
    case Verb::kFin:
    case Verb::kTouch:
    case Verb::kReq:
      FUZZ_CHECK(nparams >= (c.verb == Verb::kReq ? 2u : 1u));
      FUZZ_CHECK(c.params[0].size() == kMessageIdSize);
      break;
    case Verb::kRdy:
    case Verb::kCls:
    case Verb::kNop:
      break;
  }
  if (c.verb != Verb::kMpub) FUZZ_CHECK(c.bodies.empty());
}

// Parses `buf` command after command, as the session does, checking each outcome. `streamed`:
// also check that the outcome does not depend on how the bytes arrived (quadratic in the line's
// length, so only under the small limits).
void Run(std::string_view buf, const ParseLimits& limits, bool streamed_too) {
  size_t pos = 0;
  while (pos < buf.size()) {
    const std::string_view rest = buf.substr(pos);
    const ParseOutcome outcome = ParseCommand(rest, limits);
    if (streamed_too) {
      if (const auto streamed = Streamed(rest, limits)) {
        FUZZ_CHECK(SameOutcome(*streamed, outcome));
      } else {
        FUZZ_CHECK(std::holds_alternative<NeedMore>(outcome));
      }
    }
    if (const auto* e = std::get_if<ProtocolError>(&outcome)) {
      FUZZ_CHECK(e->code.starts_with("E_") && e->fatal);
      FUZZ_CHECK(e->Frame().starts_with(e->code));
      return;  // the session closes the connection
    }
    const auto* p = std::get_if<Parsed>(&outcome);
    if (p == nullptr) return;  // NeedMore: the rest of the buffer is an unfinished command
    CheckParsed(rest, *p, limits);
    pos += p->consumed;
  }
}

}  // namespace
}  // namespace cairn::nsq

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view buf(reinterpret_cast<const char*>(data), size);
  static const cairn::nsq::ParseLimits kSmall = cairn::nsq::SmallLimits();
  cairn::nsq::Run(buf, kSmall, /*streamed_too=*/true);
  cairn::nsq::Run(buf, cairn::nsq::ParseLimits{}, /*streamed_too=*/false);
  return 0;
}

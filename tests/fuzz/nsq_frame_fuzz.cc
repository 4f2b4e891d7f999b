// Harness: what our NSQ client (net/client.h) reads from a broker: frames parsed one after another
// from one buffer (nsq::ParseFrame, under a small and under the default frame limit), message
// frames split by nsq::ParseMessage, and the feature-negotiation JSON (nsq::ParseNegotiated), fed
// both as a response frame and as the whole input; and what cairnd reads from nsqlookupd, the
// same bytes as its answers (nsq::ParseLookupdAnswer: a size and the data, no frame type); and
// what a consumer reads from nsqlookupd's HTTP API (nsq::ParseLookupProducers: every address
// listed is "host:port" with a port in range, and none twice).
//
// Checked besides crashes and sanitizer reports:
// - a parsed frame consumed its 4-byte size plus that many bytes, at most what it was given, and
//   written again (AppendFrame, AppendMessage) it is the same bytes;
// - the outcome does not depend on how the bytes arrived (FrameNeedMore's promises, followed from
//   the empty prefix, reach the outcome of the whole buffer);
// - a negotiation answer never throws, and leaves the client a usable RDY limit.
#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "net/lookupd_protocol.h"
#include "net/protocol.h"
#include "tests/fuzz/fuzz_support.h"

namespace cairn::nsq {
namespace {

using fuzz::Within;
using Parser = FrameOutcome (*)(std::string_view, size_t);

bool SameOutcome(const FrameOutcome& a, const FrameOutcome& b) {
  if (a.index() != b.index()) return false;
  if (const auto* pa = std::get_if<FrameParsed>(&a)) {
    const auto& pb = std::get<FrameParsed>(b);
    return pa->consumed == pb.consumed && pa->frame.type == pb.frame.type &&
           pa->frame.data == pb.frame.data;
  }
  if (const auto* ea = std::get_if<FrameError>(&a)) {
    return ea->text == std::get<FrameError>(b).text;
  }
  return true;
}

// The outcome reached when the bytes arrive just as FrameNeedMore asks for them; nullopt if that
// takes more than `buf` holds.
std::optional<FrameOutcome> Streamed(Parser parse, std::string_view buf, size_t max_frame) {
  size_t have = 0;
  for (;;) {
    FrameOutcome o = parse(buf.substr(0, have), max_frame);
    const auto* more = std::get_if<FrameNeedMore>(&o);
    if (more == nullptr) return o;
    FUZZ_CHECK(more->bytes >= 1);
    if (more->bytes > buf.size() - have) return std::nullopt;
    if (more->bytes > 1) {
      FUZZ_CHECK(std::holds_alternative<FrameNeedMore>(
          parse(buf.substr(0, have + more->bytes - 1), max_frame)));
    }
    have += more->bytes;
  }
}

void CheckNegotiated(std::string_view json) {
  const Negotiated n = ParseNegotiated(json);
  FUZZ_CHECK(n.max_rdy_count >= 1);  // the consumer sends RDY min(its share, this)
}

void CheckFrame(std::string_view buf, const FrameParsed& p, size_t max_frame) {
  FUZZ_CHECK(p.consumed >= kFrameHeaderSize && p.consumed <= buf.size());
  FUZZ_CHECK(p.consumed - 4 <= max_frame);
  FUZZ_CHECK(p.frame.data.size() == p.consumed - kFrameHeaderSize);
  const std::string_view bytes = buf.substr(0, p.consumed);
  FUZZ_CHECK(Within(p.frame.data, bytes));
  std::string again;
  AppendFrame(again, p.frame.type, p.frame.data);
  FUZZ_CHECK(again == bytes);
  switch (p.frame.type) {
    case FrameType::kMessage: {
      const auto m = ParseMessage(p.frame.data);
      FUZZ_CHECK(m.has_value() == (p.frame.data.size() >= kMessageHeaderSize));
      if (!m) break;
      FUZZ_CHECK(m->id.size() == kMessageIdSize && Within(m->id, p.frame.data));
      FUZZ_CHECK(m->body.size() == p.frame.data.size() - kMessageHeaderSize);
      MessageId id;
      std::copy(m->id.begin(), m->id.end(), id.begin());
      std::string message;
      AppendMessage(message, m->timestamp_ns, m->attempts, id, m->body);
      FUZZ_CHECK(message == bytes);
      break;
    }
    case FrameType::kResponse:
      if (p.frame.data.starts_with("{")) CheckNegotiated(p.frame.data);
      break;
    case FrameType::kError:
      break;
  }
}

// A lookupd answer: its size and data, typed by the data's first bytes.
void CheckAnswer(std::string_view buf, const FrameParsed& p, size_t max_response) {
  FUZZ_CHECK(p.consumed >= 4 && p.consumed <= buf.size() && p.consumed - 4 <= max_response);
  FUZZ_CHECK(p.frame.data.size() == p.consumed - 4 && Within(p.frame.data, buf));
  FUZZ_CHECK((p.frame.type == FrameType::kError) == p.frame.data.starts_with("E_"));
  FUZZ_CHECK(p.frame.type != FrameType::kMessage);
}

void CheckProducers(std::string_view json) {
  const auto listed = ParseLookupProducers(json);
  if (!listed) {
    FUZZ_CHECK(!listed.error().message.empty());
    return;
  }
  auto check_address = [](const std::string& a) {
    const size_t colon = a.rfind(':');
    FUZZ_CHECK(colon != std::string::npos && colon > 0 && colon + 1 < a.size());
    const int port = std::stoi(a.substr(colon + 1));
    FUZZ_CHECK(port >= 1 && port <= 65535);
  };
  for (size_t i = 0; i < listed->size(); ++i) {
    const LookupdProducer& p = (*listed)[i];
    check_address(p.tcp_address);
    if (!p.http_address.empty()) check_address(p.http_address);
    for (size_t j = 0; j < i; ++j) FUZZ_CHECK((*listed)[j].tcp_address != p.tcp_address);
  }
}

void Run(Parser parse, std::string_view buf, size_t max_frame) {
  size_t pos = 0;
  while (pos < buf.size()) {
    const std::string_view rest = buf.substr(pos);
    const FrameOutcome outcome = parse(rest, max_frame);
    if (const auto streamed = Streamed(parse, rest, max_frame)) {
      FUZZ_CHECK(SameOutcome(*streamed, outcome));
    } else {
      FUZZ_CHECK(std::holds_alternative<FrameNeedMore>(outcome));
    }
    if (const auto* e = std::get_if<FrameError>(&outcome)) {
      FUZZ_CHECK(!e->text.empty());
      return;  // the client closes the connection
    }
    const auto* p = std::get_if<FrameParsed>(&outcome);
    if (p == nullptr) return;
    if (parse == &ParseFrame) {
      CheckFrame(rest, *p, max_frame);
    } else {
      CheckAnswer(rest, *p, max_frame);
    }
    pos += p->consumed;
  }
}

}  // namespace
}  // namespace cairn::nsq

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view buf(reinterpret_cast<const char*>(data), size);
  cairn::nsq::Run(&cairn::nsq::ParseFrame, buf, 256);
  cairn::nsq::Run(&cairn::nsq::ParseFrame, buf, size_t{64} << 20);  // ClientOptions::max_frame
  cairn::nsq::Run(&cairn::nsq::ParseLookupdAnswer, buf, 256);
  cairn::nsq::Run(&cairn::nsq::ParseLookupdAnswer, buf, size_t{1} << 20);  // LookupdOptions
  cairn::nsq::CheckNegotiated(buf);
  cairn::nsq::CheckProducers(buf);
  return 0;
}

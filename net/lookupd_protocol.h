// nsqlookupd's protocols as a broker and a consumer meet them, the codec only (the connection
// that uses it is net/lookupd.h): the TCP protocol (V1) a broker registers over, and the HTTP
// API's /lookup answer a consumer reads.
//
// The TCP exchange: the client sends "  V1", then commands as lines ("REGISTER topic
// [channel]\n"); IDENTIFY is followed by a 4-byte big-endian size and a JSON body. Every command
// gets one answer: a 4-byte big-endian size and the data, "OK", the JSON of nsqlookupd's own
// identity for IDENTIFY, or "E_... text" (after which nsqlookupd may close the connection).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "net/protocol.h"
#include "src/base/error.h"

namespace cairn::nsq {

inline constexpr std::string_view kMagicLookupV1 = "  V1";

// What a broker tells nsqlookupd about itself (IDENTIFY's body). Consumers dial
// broadcast_address:tcp_port; nsqadmin reads broadcast_address:http_port.
struct LookupdIdentity {
  std::string broadcast_address;
  uint16_t tcp_port = 0;
  uint16_t http_port = 0;
  std::string hostname;
  std::string version;
};

// One REGISTER or UNREGISTER; `channel` empty for the topic alone.
struct LookupdRegistration {
  std::string topic;
  std::string channel;
};

// The IDENTIFY line and body, REGISTER/UNREGISTER and PING lines.
void AppendLookupdIdentify(std::string& out, const LookupdIdentity& identity);
void AppendLookupdRegistration(std::string& out, bool registered, const LookupdRegistration& r);
// nsqlookupd's answers carry no frame type: the result is a kResponse frame, or a kError frame
// when the data starts with "E_". Answers over `max_response` bytes are an error.
FrameOutcome ParseLookupdAnswer(std::string_view buf, size_t max_response);

// A broker as nsqlookupd's HTTP API lists it: "broadcast_address:tcp_port" and
// "broadcast_address:http_port" ("[addr]:port" for an IPv6 address).
struct LookupdProducer {
  std::string tcp_address;
  std::string http_address;  // "" when nsqlookupd gave no usable http_port
  bool operator==(const LookupdProducer&) const = default;
};

// The brokers nsqlookupd's HTTP API lists for a topic (GET /lookup?topic=), once each (by TCP
// address), in its order. Producers without an address or a TCP port in 1-65535 are left out;
// a body that is not the JSON nsqlookupd sends gives kInvalidArgument. Never throws.
Result<std::vector<LookupdProducer>> ParseLookupProducers(std::string_view json);

}  // namespace cairn::nsq

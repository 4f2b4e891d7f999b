// IDENTIFY: what a client asks for, checked against the broker's limits exactly as nsqd checks
// it, and the feature-negotiation answer.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "src/base/error.h"
#include "src/core/options.h"
#include "src/server/options.h"

namespace cairn::net {

// The version reported in feature negotiation: the nsqd release whose protocol Cairn speaks.
inline constexpr std::string_view kNsqdVersion = "1.3.0";

struct IdentifySettings {
  std::chrono::milliseconds heartbeat_interval{30'000};  // 0: disabled (the client sent -1)
  int64_t output_buffer_size = 16 * 1024;
  std::chrono::milliseconds output_buffer_timeout{250};
  std::chrono::milliseconds msg_timeout{60'000};
  int32_t sample_rate = 0;  // 0: every message
  std::string client_id, hostname, user_agent;
  bool feature_negotiation = false;
  // Negotiated (with feature_negotiation only): what the connection switches to right after the
  // answer, in this order.
  bool tls_v1 = false, snappy = false, deflate = false;
  int deflate_level = 6;

  static IdentifySettings Defaults(const SessionOptions& options);
};

// Applies an IDENTIFY body to `settings`. Returns whether the client asked for feature
// negotiation, or kInvalidArgument with the text of nsqd's E_BAD_BODY error ("heartbeat interval
// (5) is invalid"). TLS, snappy and deflate are negotiated as nsqd does: each on when the client
// asks and the broker offers it; the deflate level is the client's (6 if it names none), at
// most --max-deflate-level.
Result<bool> ApplyIdentify(std::string_view body, const SessionOptions& options,
                           const BrokerOptions& broker, IdentifySettings* settings);

// The JSON nsqd answers with when feature_negotiation is set, keys in nsqd's order.
std::string NegotiatedJson(const IdentifySettings& settings, const SessionOptions& options,
                           const BrokerOptions& broker);

}  // namespace cairn::net

// What cairnd's sessions (TCP and HTTP) enforce and let a client negotiate; the core's own options
// are BrokerOptions (src/core/options.h), which the sessions read too (max_msg_size,
// max_msg_timeout). Where nsqd has the same concept the name and the default are nsqd's, so that
// an operator's flags carry over; each says what it bounds.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace boost::asio::ssl {
class context;
}

namespace cairn {

struct SessionOptions {
  using ms = std::chrono::milliseconds;

  // Time a consumer has to finish a message before it is delivered again (attempts + 1). A
  // client may ask for its own in IDENTIFY, up to BrokerOptions::max_msg_timeout.
  ms msg_timeout{60'000};

  // Largest command body: a whole MPUB (all its messages together), an IDENTIFY, an HTTP body.
  uint32_t max_body_size = 5 * 1024 * 1024;

  // Largest RDY a client may send.
  int64_t max_rdy_count = 2500;
  // Largest REQ delay and DPUB defer.
  ms max_req_timeout{60 * 60'000};

  // Heartbeats: the default a client gets, and the most it may ask for.
  ms heartbeat_interval{30'000};
  ms max_heartbeat_interval{60'000};

  // Output buffering a client may ask for in IDENTIFY. Cairn writes whatever is ready as soon as
  // the socket takes it, so these only bound what a client can negotiate.
  int64_t max_output_buffer_size = 64 * 1024;
  ms min_output_buffer_timeout{25};
  ms max_output_buffer_timeout{30'000};

  // Bytes a client's unsent output may reach before the broker stops sending it messages,
  // checked before every message (a slow reader costs memory up to this plus one message). Its
  // commands are still read, so its NOPs and FINs keep working; only once answers it does not
  // read add another MiB is reading paused too.
  size_t max_pending_output = 4u << 20;

  // Appends a connection may have waiting for durability at once (pipelined PUB/MPUB).
  size_t max_pending_publishes = 64;

  // Stream compression a client may negotiate in IDENTIFY (nsqd's --snappy, --deflate,
  // --max-deflate-level).
  bool snappy = true;
  bool deflate = true;
  int max_deflate_level = 6;

  // TLS, offered in IDENTIFY (tls_v1) when set: the server's certificate and client policy.
  std::shared_ptr<boost::asio::ssl::context> tls;
  // nsqd's --tls-required: kTcp refuses every command but IDENTIFY before the upgrade (nsqd's
  // "tcp-https"); kAll also refuses HTTP on the plain listener ("true").
  enum class TlsRequired { kNo, kTcp, kAll };
  TlsRequired tls_required = TlsRequired::kNo;

  // Who may erase acknowledged messages over HTTP (topic and channel delete and empty, a
  // channel seek forward, a topic's retention or message_ttl lowered): with admin_open anyone,
  // as nsqd; else whoever sends "Authorization: Bearer <admin_secret>"; with neither, nobody.
  std::string admin_secret;
  bool admin_open = false;

  // nsqd's AUTH: the auth servers asked ("host:port" or a full http:// or https:// URL), and
  // how; auth_tls checks the https:// ones.
  std::vector<std::string> auth_http_addresses;
  std::string auth_http_request_method = "get";
  std::shared_ptr<boost::asio::ssl::context> auth_tls;
};

}  // namespace cairn

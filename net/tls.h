// TLS for every connection Cairn makes or accepts (NSQ's TCP protocol after IDENTIFY, HTTPS, the
// workers' InfluxDB and broker clients): OpenSSL contexts, through Boost.Asio's SSL stream, built
// from the files and policies nsqd's flags name.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/ssl/context.hpp>

#include "src/base/error.h"

namespace cairn::net {

using TlsContext = boost::asio::ssl::context;

// nsqd's --tls-client-auth-policy: "" (no client certificate asked for), "require" (one must be
// presented, any is accepted), "require-verify" (one must be presented and verify against
// --tls-root-ca-file).
enum class ClientAuthPolicy { kNone, kRequire, kRequireVerify };
Result<ClientAuthPolicy> ParseClientAuthPolicy(std::string_view text);

struct TlsServerFiles {
  std::string cert, key;  // PEM; the certificate file may hold its chain
  std::string root_ca;    // PEM CAs that client certificates must chain to; "" for the system's
  ClientAuthPolicy client_auth = ClientAuthPolicy::kNone;
  std::string min_version = "tls1.0";  // nsqd's names: ssl3.0, tls1.0, tls1.1, tls1.2, tls1.3
};
// kInvalidArgument naming the file or the value that is wrong.
Result<std::shared_ptr<TlsContext>> MakeServerTls(const TlsServerFiles& files);

struct TlsClientFiles {
  std::string root_ca;    // PEM CAs the server's certificate must chain to; "" for the system's
  std::string cert, key;  // a client certificate, presented when both are set
  bool verify = true;     // false: any server certificate is accepted (tests, self-signed)

  // No client certificate; servers checked against `root_ca` ("": the system's CAs).
  static TlsClientFiles Trusting(std::string root_ca) {
    TlsClientFiles f;
    f.root_ca = std::move(root_ca);
    return f;
  }
};
Result<std::shared_ptr<TlsContext>> MakeClientTls(const TlsClientFiles& files);

// A client's check of the server it reached: the certificate must name `name` (an IP address or
// a DNS name; a DNS name is also sent as the server name, SNI). Call before the handshake; it
// holds when the context verifies the peer.
void ExpectServerName(SSL* ssl, const std::string& name);

// The common name of the certificate the peer presented on `ssl`, "" if it presented none.
std::string PeerCommonName(SSL* ssl);

}  // namespace cairn::net

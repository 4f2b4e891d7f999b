// The NSQ client's TLS, compression and AUTH as command-line flags: one family for every Cairn
// program that connects to brokers (the workers, cairn-bench). They are the NSQ tools' go-nsq
// options (tls_v1, tls_root_ca_file, tls_cert, tls_key, snappy, deflate, auth_secret) as flags
// of their own: --tls, --tls-root-ca-file, --tls-cert, --tls-key, --snappy, --deflate,
// --auth-secret.
#pragma once

#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "net/client.h"
#include "net/tls.h"
#include "src/base/error.h"

namespace cairn::nsq {

struct SecurityFlags {
  bool tls = false;  // implied by a client certificate
  std::string tls_root_ca_file, tls_cert, tls_key;
  bool snappy = false, deflate = false;
  std::string auth_secret;
};

void AddSecurityFlags(CLI::App& app, SecurityFlags& flags);

// `options` with the flags' TLS (`options.tls`, null for none), compression and AUTH; the
// error names the file that does not load. Call it once per process and share the result.
Result<ClientOptions> Secure(const SecurityFlags& flags, ClientOptions options = {});

}  // namespace cairn::nsq

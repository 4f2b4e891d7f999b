#include "net/client_flags.h"

namespace cairn::nsq {

void AddSecurityFlags(CLI::App& app, SecurityFlags& flags) {
  app.add_flag("--tls", flags.tls, "connect to the brokers over TLS (go-nsq's tls_v1)");
  app.add_option("--tls-root-ca-file", flags.tls_root_ca_file,
                 "CAs the brokers' certificates must chain to (default: the system's)");
  app.add_option("--tls-cert", flags.tls_cert, "client certificate to present (with --tls-key)");
  app.add_option("--tls-key", flags.tls_key, "its key");
  app.add_flag("--snappy", flags.snappy, "ask the brokers for snappy compression");
  app.add_flag("--deflate", flags.deflate, "ask the brokers for deflate compression");
  app.add_option("--auth-secret", flags.auth_secret,
                 "secret for AUTH, sent when a broker requires it (go-nsq's auth_secret)");
}

namespace {

// The TLS the flags ask for; null for none.
Result<std::shared_ptr<net::TlsContext>> BrokerTls(const SecurityFlags& flags) {
  if (!flags.tls && flags.tls_cert.empty() && flags.tls_key.empty()) return nullptr;
  auto ctx = net::MakeClientTls({flags.tls_root_ca_file, flags.tls_cert, flags.tls_key});
  if (!ctx) return Fail("--tls", ctx.error());
  return *ctx;
}

}  // namespace

Result<ClientOptions> Secure(const SecurityFlags& flags, ClientOptions options) {
  auto tls = BrokerTls(flags);
  if (!tls) return tl::unexpected(tls.error());
  options.tls = std::move(*tls);
  if (flags.snappy && flags.deflate) {
    return Fail(Errc::kInvalidArgument, "--snappy and --deflate exclude each other");
  }
  options.snappy = flags.snappy;
  options.deflate = flags.deflate;
  options.auth_secret = flags.auth_secret;
  return options;
}

}  // namespace cairn::nsq

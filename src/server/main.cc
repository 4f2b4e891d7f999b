// cairnd: the broker. Reads its flags into a Server (server.h), which opens the store and serves
// NSQ's TCP protocol and the HTTP API; on SIGTERM or SIGINT it stops accepting, lets in-flight
// publishes complete, persists cursors, syncs and exits 0.
#include <unistd.h>
#include <chrono>

#include <csignal>
#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "net/tls.h"
#include "src/base/address.h"
#include "src/base/duration_flag.h"
#include "src/base/secret.h"
#include "src/server/server.h"

namespace {

using namespace cairn;
namespace asio = boost::asio;

// Shutdown must finish well inside a Kubernetes grace period; this bounds the drain.
constexpr auto kDrainDeadline = std::chrono::seconds(8);

// The flags that are read into other types once parsed.
struct Flags {
  std::string sync = "always", codec = "lz4", tcp_address = "0.0.0.0:4150",
              http_address = "0.0.0.0:4151", https_address = "0.0.0.0:4152";
  std::chrono::milliseconds retention_age;
  net::TlsServerFiles tls;
  std::string tls_client_auth_policy, tls_required = "false";
  std::string admin_secret_file;
};

// TLS, compression and AUTH: nsqd 1.3.0's flags, names, defaults and values.
void AddSecurityFlags(CLI::App& app, ServerOptions* options, Flags* flags) {
  app.add_option("--https-address", flags->https_address,
                 "<addr>:<port> to listen on for HTTPS clients (when --tls-cert and --tls-key "
                 "are given)")
      ->capture_default_str();
  app.add_option("--tls-cert", flags->tls.cert, "path to certificate file");
  app.add_option("--tls-key", flags->tls.key, "path to key file");
  app.add_option("--tls-root-ca-file", flags->tls.root_ca, "path to certificate authority file");
  app.add_option("--tls-client-auth-policy", flags->tls_client_auth_policy,
                 "client certificate auth policy ('require' or 'require-verify')");
  // Bare, as nsqd's boolean-like flag: true.
  app.add_option("--tls-required", flags->tls_required,
                 "require TLS for client connections (true, false, tcp-https; bare: true)")
      ->expected(0, 1);
  app.add_option("--tls-min-version", flags->tls.min_version,
                 "minimum SSL/TLS version acceptable ('ssl3.0', 'tls1.0', 'tls1.1', 'tls1.2' or "
                 "'tls1.3')")
      ->capture_default_str();
  app.add_flag("--snappy,!--no-snappy", options->session.snappy,
               "enable snappy feature negotiation (client compression)")
      ->capture_default_str();
  app.add_flag("--deflate,!--no-deflate", options->session.deflate,
               "enable deflate feature negotiation (client compression)")
      ->capture_default_str();
  app.add_option("--max-deflate-level", options->session.max_deflate_level,
                 "max deflate compression level a client can negotiate (> values == > CPU usage)")
      ->capture_default_str()
      ->check(CLI::Range(1, 9));
  app.add_option("--admin-secret-file", flags->admin_secret_file,
                 "file holding the credential HTTP calls that can erase acknowledged messages "
                 "must send (Authorization: Bearer <it>): topic and channel delete and empty, a "
                 "channel seek forward, less retention");
  app.add_flag("--admin-open", options->session.admin_open,
               "let anyone who reaches the HTTP API make those calls, as nsqd does (for an API "
               "only trusted tools such as nsqadmin can reach)");
  app.add_option("--auth-http-address", options->session.auth_http_addresses,
                 "<addr>:<port> or a full url to query auth server (may be given multiple times)")
      ->allow_extra_args(false);
  app.add_option("--auth-http-request-method", options->session.auth_http_request_method,
                 "HTTP method to use for auth server requests (get or post)")
      ->capture_default_str()
      ->check(CLI::IsMember({"get", "post"}));
}

// --tls-* into the session's TLS context and policy. As nsqd: a client auth policy implies
// --tls-required, and TLS cannot be required without a certificate.
Status ResolveTls(const Flags& flags, ServerOptions* options) {
  auto policy = net::ParseClientAuthPolicy(flags.tls_client_auth_policy);
  if (!policy) return Fail("--tls-client-auth-policy", policy.error());
  using Required = SessionOptions::TlsRequired;
  Required required = Required::kNo;
  if (flags.tls_required == "true" || flags.tls_required.empty()) {
    required = Required::kAll;
  } else if (flags.tls_required == "tcp-https") {
    required = Required::kTcp;
  } else if (flags.tls_required != "false") {
    return Fail(
        Errc::kInvalidArgument,
        fmt::format("--tls-required: {:?} is not true, false or tcp-https", flags.tls_required));
  }
  if (*policy != net::ClientAuthPolicy::kNone && required == Required::kNo) {
    required = Required::kAll;
  }
  // Auth servers at https:// URLs: checked against --tls-root-ca-file when given (the CA of a
  // private PKI), else the system's CAs.
  for (const std::string& address : options->session.auth_http_addresses) {
    if (!address.starts_with("https://") || options->session.auth_tls) continue;
    auto ctx = net::MakeClientTls(net::TlsClientFiles::Trusting(flags.tls.root_ca));
    if (!ctx) return Fail("--auth-http-address", ctx.error());
    options->session.auth_tls = *ctx;
  }
  if (flags.tls.cert.empty() && flags.tls.key.empty()) {
    if (required != Required::kNo) {
      return Fail(Errc::kInvalidArgument,
                  "cannot require TLS client connections without TLS key and cert");
    }
    return {};
  }
  net::TlsServerFiles files = flags.tls;
  files.client_auth = *policy;
  auto ctx = net::MakeServerTls(files);
  if (!ctx) return Fail("failed to build TLS config", ctx.error());
  options->session.tls = *ctx;
  options->session.tls_required = required;
  // As nsqd: HTTPS is served whenever there is a certificate.
  auto https_endpoint = ParseAddress(flags.https_address);
  if (!https_endpoint) return Fail("--https-address", https_endpoint.error());
  options->https_address = *https_endpoint;
  return {};
}

// The admin credential, from --admin-secret-file; "" without it.
Result<std::string> ReadAdminSecret(const Flags& flags, const ServerOptions& options) {
  if (flags.admin_secret_file.empty()) return std::string();
  if (options.session.admin_open) {
    return Fail(Errc::kInvalidArgument, "--admin-secret-file and --admin-open exclude each other");
  }
  auto secret = ReadSecretFile(flags.admin_secret_file);
  if (!secret) return Fail("--admin-secret-file", secret.error());
  return secret;
}

// cairnd's flags, nsqd's names and defaults where nsqd has the same concept.
void AddFlags(CLI::App& app, ServerOptions* options, Flags* flags) {
  app.add_option("--tcp-address", flags->tcp_address, "<addr>:<port> to listen on for TCP clients")
      ->capture_default_str();
  app.add_option("--http-address", flags->http_address,
                 "<addr>:<port> to listen on for HTTP clients (nsqd's API, /stats, /metrics)")
      ->capture_default_str();
  app.add_option("--broadcast-address", options->broadcast_address,
                 "address that will be registered with lookupd, and that /info reports "
                 "(defaults to the OS hostname)")
      ->capture_default_str();
  app.add_option("--broadcast-tcp-port", options->broadcast_tcp_port,
                 "TCP port that will be registered with lookupd (defaults to the TCP port that "
                 "this cairnd is listening on)")
      ->capture_default_str();
  app.add_option("--broadcast-http-port", options->broadcast_http_port,
                 "HTTP port that will be registered with lookupd (defaults to the HTTP port "
                 "that this cairnd is listening on)")
      ->capture_default_str();
  app.add_option("--lookupd-tcp-address", options->lookupd_tcp_addresses,
                 "lookupd TCP address (may be given multiple times)")
      ->allow_extra_args(false);
  app.add_option("--data-path", options->store.path,
                 "directory holding the store (created if missing)")
      ->capture_default_str();
  AddDurationFlag(app, "--msg-timeout", &options->session.msg_timeout,
                  "default time a message may be in flight before it is delivered again");
  AddDurationFlag(app, "--max-msg-timeout", &options->broker.max_msg_timeout,
                  "longest msg_timeout a client may ask for, and how far TOUCH may extend one");
  app.add_option("--max-msg-size", options->broker.max_msg_size,
                 "largest message body in bytes (PUB, DPUB, each message of MPUB)")
      ->capture_default_str();
  app.add_option("--max-body-size", options->session.max_body_size,
                 "largest command body in bytes (a whole MPUB, IDENTIFY)")
      ->capture_default_str();
  app.add_option("--max-rdy-count", options->session.max_rdy_count, "largest RDY a client may send")
      ->capture_default_str();
  AddDurationFlag(
      app, "--max-req-timeout", &options->session.max_req_timeout,
      "longest REQ delay (longer ones are cut to it) and DPUB defer (longer ones fail)");
  AddDurationFlag(app, "--max-heartbeat-interval", &options->session.max_heartbeat_interval,
                  "longest heartbeat interval a client may ask for");
  app.add_option("--max-output-buffer-size", options->session.max_output_buffer_size,
                 "largest output_buffer_size a client may ask for, in bytes")
      ->capture_default_str();
  AddDurationFlag(app, "--max-output-buffer-timeout", &options->session.max_output_buffer_timeout,
                  "longest output_buffer_timeout a client may ask for");
  app.add_option("--mem-queue-size", options->broker.ephemeral_queue_size,
                 "messages an #ephemeral topic keeps in memory (older ones are dropped); "
                 "durable topics are bounded by retention instead")
      ->capture_default_str();
  app.add_option("--sync", flags->sync,
                 "when a publish is durable (and answered OK): always (fsync first, group "
                 "commit), interval:N (fsync every N ms), never (left to the OS)")
      ->capture_default_str();
  AddDurationFlag(app, "--retention-age", &flags->retention_age,
                  "how long topics keep messages by default; 0 keeps them forever");
  app.add_option("--retention-bytes", options->store.default_retention.bytes,
                 "stored bytes each topic keeps by default; 0 is unlimited")
      ->capture_default_str();
  app.add_option("--compression", flags->codec, "default batch codec: none, lz4 or zstd")
      ->capture_default_str();
  AddSecurityFlags(app, options, flags);
}

// Reads the flags kept as text into `options`; the error names the flag.
Status Resolve(const Flags& flags, ServerOptions* options) {
  auto policy = storage::SyncPolicy::Parse(flags.sync);
  if (!policy) return tl::unexpected(policy.error());
  auto codec = storage::ParseCodec(flags.codec);
  if (!codec) return tl::unexpected(codec.error());
  auto endpoint = ParseAddress(flags.tcp_address);
  if (!endpoint) return Fail("--tcp-address", endpoint.error());
  auto http_endpoint = ParseAddress(flags.http_address);
  if (!http_endpoint) return Fail("--http-address", http_endpoint.error());
  for (const std::string& lookupd : options->lookupd_tcp_addresses) {
    // Resolved on every connect, not now: a lookupd's name may not resolve yet at start.
    if (auto split = SplitHostPort(lookupd); !split) {
      return Fail("--lookupd-tcp-address", split.error());
    }
  }
  options->store.sync = *policy;
  options->store.default_codec = *codec;
  options->store.default_retention.age = flags.retention_age;
  options->tcp_address = *endpoint;
  options->http_address = *http_endpoint;
  if (auto secret = ReadAdminSecret(flags, *options); !secret) {
    return tl::unexpected(secret.error());
  } else {
    options->session.admin_secret = std::move(*secret);
  }
  return ResolveTls(flags, options);
}

// Runs the server on `io` until a signal on `signals` has drained it; the exit status.
int Serve(asio::io_context& io, asio::signal_set& signals, const ServerOptions& options) {
  int exit_code = 0;
  {
    auto opened = Server::Open(io, options);
    if (!opened) {
      spdlog::critical("{}", opened.error().message);
      return 1;
    }
    Server& server = **opened;
    for (const auto& t : server.store().Topics()) {
      const auto info = t->Info();
      spdlog::info("topic={} start_offset={} next_offset={} bytes={} channels={}", info.name,
                   info.start_offset, info.next_offset, info.bytes, t->Channels().size());
    }
    server.Start();
    // Scripts and tests read the bound addresses (port 0 picks one) from these lines.
    spdlog::info("TCP: listening on {}", FormatAddress(server.tcp_endpoint()));
    if (auto https = server.https_endpoint()) {
      spdlog::info("HTTPS: listening on {}", FormatAddress(*https));
    }
    spdlog::info("HTTP: listening on {}", FormatAddress(server.http_endpoint()));
    spdlog::info("cairnd ready data_path={} sync={}", options.store.path,
                 options.store.sync.ToString());

    signals.async_wait([&](boost::system::error_code ec, int sig) {
      if (ec) return;
      spdlog::info("signal {}: draining connections", sig);
      server.Drain(kDrainDeadline, [&io] { io.stop(); });
    });
    io.run();
    if (auto st = server.Close(); !st) {
      spdlog::error("closing the store failed: {}", st.error().ToString());
      exit_code = 1;
    }
  }
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  ServerOptions options;
  options.store.path = "./data";
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  options.hostname = host;
  options.broadcast_address = host;
  Flags flags;
  flags.retention_age = options.store.default_retention.age;

  CLI::App app{"cairnd: a durable, NSQ-compatible message broker"};
  AddFlags(app, &options, &flags);
  CLI11_PARSE(app, argc, argv);
  if (auto resolved = Resolve(flags, &options); !resolved) {
    fmt::print(stderr, "cairnd: {}\n", resolved.error().message);
    return 2;
  }

  spdlog::set_default_logger(spdlog::stderr_color_mt("cairnd"));
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  asio::io_context io(1);
  // Caught from here until main returns: a second SIGTERM (docker stop, timeout(1) and a shell
  // may each send one) must not kill cairnd with the default action while it closes the store.
  asio::signal_set signals(io, SIGINT, SIGTERM);
  const int exit_code = Serve(io, signals, options);
  spdlog::info("cairnd stopped");
  // Leave without unwinding `signals`: its destructor would restore the default action, and a
  // late SIGTERM would then end a clean shutdown with status 143. Everything that holds data is
  // closed above; only the log needs flushing.
  spdlog::shutdown();
  std::fflush(nullptr);
  std::_Exit(exit_code);
}

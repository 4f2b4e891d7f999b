#include "consumers/common/worker.h"

#include <csignal>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <boost/asio/signal_set.hpp>
#include <boost/beast/http/field.hpp>

#include "net/tls.h"
#include "src/base/address.h"
#include "src/base/duration.h"
#include "src/base/secret.h"

namespace cairn::consumers {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

void AddWorkerFlags(CLI::App& app, WorkerFlags& flags) {
  app.add_option("--nsqd-tcp-address", flags.nsqd_tcp_addresses,
                 "cairnd (or nsqd) TCP address to consume from; repeat for several brokers")
      ->capture_default_str();
  app.add_option("--nsqd-http-address", flags.nsqd_http_addresses,
                 "cairnd HTTP address, for channel positions and seeks")
      ->capture_default_str();
  app.add_option("--lookupd-http-address", flags.lookupd_http_addresses,
                 "nsqlookupd HTTP address (repeatable): consume from every broker it lists for "
                 "the topic, instead of from --nsqd-tcp-address");
  AddDurationFlag(app, "--lookupd-poll-interval", &flags.lookupd_poll_interval,
                  "how often nsqlookupd is asked for the topic's brokers (jittered by 15%)");
  app.add_option("--topic", flags.topic, "topic to consume")->capture_default_str();
  app.add_option("--channel", flags.channel, "channel to consume on")->capture_default_str();
  app.add_option("--max-in-flight", flags.max_in_flight,
                 "most messages held at once (unfinished), spread over the brokers as RDY")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1'000'000}));
  app.add_option("--http-address", flags.http_address,
                 "<addr>:<port> for this worker's HTTP (/healthz, /metrics); port 0 picks one")
      ->capture_default_str();
  app.add_option("--admin-secret-file", flags.admin_secret_file,
                 "file holding cairnd's admin credential (its --admin-secret-file), for the "
                 "worker's calls that need it");
  nsq::AddSecurityFlags(app, flags.security);
  app.add_option("--log-level", flags.log_level, "debug, info, warn or error")
      ->capture_default_str()
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}));
}

void AddInfluxWriterFlags(CLI::App& app, InfluxWriterOptions& options) {
  app.add_option("--influxdb-url", options.url, "InfluxDB 1.x base URL (http:// or https://)")
      ->capture_default_str();
  app.add_option("--influxdb-tls-root-ca-file", options.tls_root_ca_file,
                 "CAs an https:// InfluxDB's certificate must chain to (default: the system's)");
  app.add_option("--database", options.database, "InfluxDB database to write to")
      ->capture_default_str();
  app.add_option("--retention-policy", options.retention_policy,
                 "InfluxDB retention policy (default: the database's default)");
  app.add_option("--batch-size", options.batch_size, "points per InfluxDB write")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1'000'000}));
  AddDurationFlag(app, "--flush-interval", &options.flush_interval,
                  "longest a point waits for its batch to fill");
  app.add_option("--write-concurrency", options.concurrency, "InfluxDB writes in flight at once")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{64}));
  app.add_option("--create-database", options.create_database,
                 "CREATE DATABASE at start and when a write finds it missing")
      ->capture_default_str();
}

void SetUpLogging(const WorkerFlags& flags) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("worker"));
  spdlog::set_level(spdlog::level::from_str(flags.log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %L %v");
}

int ExitWith(const Error& error, int status) {
  spdlog::critical("{}", error.message);
  return status;
}

namespace {

// A broker's "host:port", both parts given; kInvalidArgument naming `flag` otherwise.
Result<HostPort> BrokerHostPort(std::string_view flag, const std::string& address) {
  auto split = SplitHostPort(address);
  if (!split || split->host.empty() || split->port == 0) {
    return Fail(Errc::kInvalidArgument,
                fmt::format("{}: {:?} names no host and port", flag, address));
  }
  return split;
}

}  // namespace

Result<std::vector<std::string>> BrokerAddresses(const WorkerFlags& flags) {
  for (const auto& a : flags.nsqd_tcp_addresses) {
    if (auto split = BrokerHostPort("--nsqd-tcp-address", a); !split) {
      return tl::unexpected(split.error());
    }
  }
  if (flags.nsqd_tcp_addresses.empty()) {
    return Fail(Errc::kInvalidArgument, "--nsqd-tcp-address is required");
  }
  return flags.nsqd_tcp_addresses;
}

Result<std::unique_ptr<nsq::Consumer>> MakeConsumer(asio::io_context& io, const WorkerFlags& flags,
                                                    nsq::ClientOptions options) {
  if (!flags.lookupd_http_addresses.empty()) {
    for (const auto& a : flags.lookupd_http_addresses) {
      if (auto split = SplitHostPort(a); !split)
        return Fail("--lookupd-http-address", split.error());
    }
    if (flags.lookupd_poll_interval.count() <= 0) {
      return Fail(Errc::kInvalidArgument, "--lookupd-poll-interval must be positive");
    }
    return std::make_unique<nsq::Consumer>(
        io.get_executor(),
        nsq::LookupdDiscovery{flags.lookupd_http_addresses, flags.lookupd_poll_interval},
        flags.topic, flags.channel, flags.max_in_flight, std::move(options));
  }
  auto brokers = BrokerAddresses(flags);
  if (!brokers) return tl::unexpected(brokers.error());
  return std::make_unique<nsq::Consumer>(io.get_executor(), std::move(*brokers), flags.topic,
                                         flags.channel, flags.max_in_flight, std::move(options));
}

Result<size_t> UseBrokersFromLookupd(asio::io_context& io, WorkerFlags& flags) {
  std::vector<std::unique_ptr<net::HttpClient>> clients;
  std::vector<net::HttpClient*> lookupds;
  for (const auto& a : flags.lookupd_http_addresses) {
    auto split = SplitHostPort(a);
    if (!split) return Fail("--lookupd-http-address", split.error());
    clients.push_back(std::make_unique<net::HttpClient>(io.get_executor(), split->host, split->port,
                                                        std::chrono::seconds(5)));
    lookupds.push_back(clients.back().get());
  }
  std::optional<Result<std::vector<nsq::LookupdProducer>>> found;
  nsq::LookupTopic(lookupds, flags.topic, [&](auto r) { found = std::move(r); });
  while (!found && io.run_one() > 0) {
  }
  io.restart();
  if (!found) return Fail(Errc::kUnavailable, "nsqlookupd: no answer");
  if (!*found) return tl::unexpected(found->error());
  flags.nsqd_tcp_addresses.clear();
  flags.nsqd_http_addresses.clear();
  for (const auto& p : **found) {
    if (p.http_address.empty()) {
      return Fail(Errc::kInvalidArgument,
                  fmt::format("nsqlookupd lists {} without an HTTP port", p.tcp_address));
    }
    flags.nsqd_tcp_addresses.push_back(p.tcp_address);
    flags.nsqd_http_addresses.push_back(p.http_address);
  }
  return (*found)->size();
}

Status CheckPairedHttp(const WorkerFlags& flags) {
  if (flags.nsqd_http_addresses.size() == flags.nsqd_tcp_addresses.size()) return {};
  return Fail(Errc::kInvalidArgument,
              fmt::format("give one --nsqd-http-address per --nsqd-tcp-address, in the same order "
                          "(got {} TCP and {} HTTP addresses)",
                          flags.nsqd_tcp_addresses.size(), flags.nsqd_http_addresses.size()));
}

Result<std::unique_ptr<net::HttpClient>> BrokerHttp(asio::io_context& io,
                                                    const std::string& address,
                                                    const WorkerFlags& flags,
                                                    std::shared_ptr<net::TlsContext> tls) {
  // By name, resolved on every connection (HttpClient), so that HTTPS checks the name.
  auto split = BrokerHostPort("--nsqd-http-address", address);
  if (!split) return tl::unexpected(split.error());
  auto client = std::make_unique<net::HttpClient>(io.get_executor(), split->host, split->port,
                                                  std::chrono::seconds(10));
  if (!flags.admin_secret_file.empty()) {
    auto secret = ReadSecretFile(flags.admin_secret_file);
    if (!secret) return Fail("--admin-secret-file", secret.error());
    client->SetAuthorization("Bearer " + *secret);
  }
  // A broker that requires TLS on HTTP too names its HTTPS port; the client follows.
  if (tls) client->FollowTlsRequired(std::move(tls));
  return client;
}

net::HttpResponse TextResponse(int status, std::string body, std::string_view content_type) {
  net::HttpResponse r;
  r.result(static_cast<http::status>(status));
  if (!content_type.empty()) r.set(http::field::content_type, content_type);
  r.body() = std::move(body);
  return r;
}

Result<std::unique_ptr<WorkerHttp>> WorkerHttp::Start(asio::io_context& io,
                                                      const std::string& address,
                                                      std::function<std::string()> health,
                                                      std::function<void(net::Exposition&)> metrics,
                                                      Routes routes) {
  auto ep = ParseAddress(address);
  if (!ep) return Fail("--http-address", ep.error());
  std::unique_ptr<WorkerHttp> http(
      new WorkerHttp(io, std::move(health), std::move(metrics), std::move(routes)));
  if (auto st = http->server_->Listen(*ep); !st) return Fail("HTTP", st.error());
  http->server_->Start();
  spdlog::info("HTTP: listening on {}", FormatAddress(http->server_->local_endpoint()));
  return http;
}

WorkerHttp::WorkerHttp(asio::io_context& io, std::function<std::string()> health,
                       std::function<void(net::Exposition&)> metrics, Routes routes) {
  server_ = std::make_unique<net::HttpServer>(
      io, 1u << 20,
      [health = std::move(health), metrics = std::move(metrics), routes = std::move(routes)](
          const net::HttpRequest& request, net::HttpResponder respond) {
        const net::Query q = net::ParseTarget(request.target());
        const bool get =
            request.method() == http::verb::get || request.method() == http::verb::head;
        if (q.path == "/healthz" && get) {
          const std::string problem = health ? health() : "";
          return respond(problem.empty() ? TextResponse(200, "OK")
                                         : TextResponse(503, problem + "\n"));
        }
        if (q.path == "/metrics" && get) {
          net::Exposition e;
          if (metrics) metrics(e);
          return respond(TextResponse(200, e.Take(), "text/plain; version=0.0.4"));
        }
        if (routes && routes(request, q, respond)) return;
        respond(TextResponse(404, "404 page not found\n"));
      },
      [](const net::HttpRequest&) { return TextResponse(413, "request body too large\n"); });
}

std::shared_ptr<asio::signal_set> OnShutdownSignal(asio::io_context& io, std::function<void()> fn) {
  auto signals = std::make_shared<asio::signal_set>(io, SIGINT, SIGTERM);
  signals->async_wait([fn = std::move(fn)](boost::system::error_code ec, int signo) {
    if (ec) return;
    spdlog::info("signal {}: shutting down", signo);
    fn();
  });
  return signals;
}

}  // namespace cairn::consumers

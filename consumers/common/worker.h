// What every worker (cairn-logger, cairn-metrics, cairn-replay) shares: the flags in the style of
// nsqd's tools, the brokers to consume from, its own HTTP port with /healthz and /metrics, and
// shutdown on SIGTERM. The workers reach cairnd only through net/client.h (NSQ TCP) and its HTTP
// API, as a third-party consumer would.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>

#include "consumers/common/influx_writer.h"
#include "net/client.h"
#include "net/client_flags.h"
#include "net/http_client.h"
#include "net/http_server.h"
#include "net/lookupd.h"
#include "net/prometheus.h"
#include "src/base/duration_flag.h"
#include "src/base/error.h"

namespace cairn::consumers {

struct WorkerFlags {
  std::vector<std::string> nsqd_tcp_addresses{"127.0.0.1:4150"};
  // cairn-replay takes one per broker, paired in order with nsqd_tcp_addresses; cairn-logger
  // takes one.
  std::vector<std::string> nsqd_http_addresses{"127.0.0.1:4151"};
  // When given, the brokers to consume from are the ones these nsqlookupd list for the topic
  // (--nsqd-tcp-address is then only where a worker publishes, if it does).
  std::vector<std::string> lookupd_http_addresses;
  std::chrono::milliseconds lookupd_poll_interval{60'000};
  std::string topic;
  std::string channel;
  int64_t max_in_flight = 200;
  std::string http_address;  // the worker's own /healthz and /metrics
  std::string log_level = "info";
  // cairnd's admin credential (its --admin-secret-file), sent with the worker's calls to
  // cairnd's HTTP API: cairn-replay deletes its channel, cairn-logger may seek forward.
  std::string admin_secret_file;
  // The NSQ connections' TLS, compression and AUTH (net/client_flags.h).
  nsq::SecurityFlags security;

  static WorkerFlags Defaults(std::string topic, std::string channel, int64_t max_in_flight,
                              std::string http_address) {
    WorkerFlags f;
    f.topic = std::move(topic);
    f.channel = std::move(channel);
    f.max_in_flight = max_in_flight;
    f.http_address = std::move(http_address);
    return f;
  }
};

// Adds --nsqd-tcp-address and --nsqd-http-address (both repeatable), --topic, --channel,
// --max-in-flight, --http-address and --log-level, showing the defaults already in `flags`.
void AddWorkerFlags(CLI::App& app, WorkerFlags& flags);
// The InfluxDB writer's flags, shared by cairn-metrics and cairn-replay: --influxdb-url,
// --database, --retention-policy, --batch-size, --flush-interval, --write-concurrency,
// --create-database.
void AddInfluxWriterFlags(CLI::App& app, InfluxWriterOptions& options);
// Sets up logging (spdlog to stderr, at --log-level).
void SetUpLogging(const WorkerFlags& flags);
// For a worker's main: logs why it cannot start and returns the exit status to leave with.
int ExitWith(const Error& error, int status);
// The --nsqd-tcp-address addresses, checked ("host:port"; a name is resolved on every dial, so
// a broker whose pod moved is still found, and under TLS its certificate must name it);
// kInvalidArgument naming the flag and the address.
Result<std::vector<std::string>> BrokerAddresses(const WorkerFlags& flags);
// The consumer of --topic/--channel the flags ask for: through nsqlookupd when
// --lookupd-http-address is given, else from every --nsqd-tcp-address; `options` already
// carry the flags' TLS, compression and AUTH (nsq::Secure, once per process).
Result<std::unique_ptr<nsq::Consumer>> MakeConsumer(boost::asio::io_context& io,
                                                    const WorkerFlags& flags,
                                                    nsq::ClientOptions options);
// Replaces --nsqd-tcp-address and --nsqd-http-address with the brokers the
// --lookupd-http-address nsqlookupd list for --topic now (asked once: runs `io` until each has
// answered or timed out, 5 s), paired in the same order. Returns how many; an error if none
// answered or one is listed without an HTTP port.
Result<size_t> UseBrokersFromLookupd(boost::asio::io_context& io, WorkerFlags& flags);
// Each broker's HTTP API is named by the --nsqd-http-address at its --nsqd-tcp-address's place:
// kInvalidArgument unless there are as many of each.
Status CheckPairedHttp(const WorkerFlags& flags);
// An HttpClient for one --nsqd-http-address, sending the admin credential when given
// (--admin-secret-file); with `tls` (the NSQ connections', from --tls), it follows a broker's
// TLS_REQUIRED to its HTTPS port.
Result<std::unique_ptr<net::HttpClient>> BrokerHttp(boost::asio::io_context& io,
                                                    const std::string& address,
                                                    const WorkerFlags& flags,
                                                    std::shared_ptr<net::TlsContext> tls);

// The worker's own HTTP server: GET /healthz (200 "OK", or 503 with the reason `health`
// returns), GET /metrics (Prometheus text from `metrics`), and whatever `routes` answers
// (it returns false for a request it does not know: 404).
class WorkerHttp {
 public:
  using Routes =
      std::function<bool(const net::HttpRequest&, const net::Query&, net::HttpResponder&)>;
  // Binds --http-address, starts, and logs "HTTP: listening on <addr>" for scripts (port 0
  // picks one). The error names the flag and the address.
  static Result<std::unique_ptr<WorkerHttp>> Start(boost::asio::io_context& io,
                                                   const std::string& address,
                                                   std::function<std::string()> health,
                                                   std::function<void(net::Exposition&)> metrics,
                                                   Routes routes = nullptr);
  boost::asio::ip::tcp::endpoint local_endpoint() const { return server_->local_endpoint(); }
  void Drain() { server_->Drain(); }
  void CloseAll() { server_->CloseAll(); }

 private:
  WorkerHttp(boost::asio::io_context& io, std::function<std::string()> health,
             std::function<void(net::Exposition&)> metrics, Routes routes);

  std::unique_ptr<net::HttpServer> server_;
};

// Calls `fn` once on the first SIGTERM or SIGINT (on the io thread). Cancel the returned set
// once the worker is done, so the io_context can run out of work.
std::shared_ptr<boost::asio::signal_set> OnShutdownSignal(boost::asio::io_context& io,
                                                          std::function<void()> fn);

// Plain-text response helpers.
net::HttpResponse TextResponse(int status, std::string body,
                               std::string_view content_type = "text/plain; charset=utf-8");

}  // namespace cairn::consumers

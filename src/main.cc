// cairnd: the broker. Opens the store, serves NSQ's TCP protocol, and on SIGTERM or SIGINT stops
// accepting, lets in-flight publishes complete, persists cursors, syncs and exits 0.
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
#include <boost/asio/steady_timer.hpp>

#include "net/address.h"
#include "net/duration_flag.h"
#include "net/http_api.h"
#include "net/http_server.h"
#include "net/tcp_server.h"
#include "src/broker.h"
#include "storage/store.h"

namespace {

using namespace cairn;
namespace asio = boost::asio;

// Shutdown must finish well inside a Kubernetes grace period; this bounds the drain.
constexpr auto kDrainDeadline = std::chrono::seconds(8);

}  // namespace

int main(int argc, char** argv) {
  storage::StoreOptions store_options;
  store_options.path = "./data";
  BrokerOptions options;
  std::string sync = "always", codec = "lz4", tcp_address = "0.0.0.0:4150",
              http_address = "0.0.0.0:4151";
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  std::string broadcast_address = host;
  std::chrono::milliseconds retention_age = store_options.default_retention.age;

  CLI::App app{"cairnd: a durable, NSQ-compatible message broker"};
  app.add_option("--tcp-address", tcp_address, "<addr>:<port> to listen on for TCP clients")
      ->capture_default_str();
  app.add_option("--http-address", http_address,
                 "<addr>:<port> to listen on for HTTP clients (nsqd's API, /stats, /metrics)")
      ->capture_default_str();
  app.add_option("--broadcast-address", broadcast_address,
                 "address this broker is reachable at, as /info reports it (default: hostname)")
      ->capture_default_str();
  app.add_option("--data-path", store_options.path,
                 "directory holding the store (created if missing)")
      ->capture_default_str();
  AddDurationFlag(app, "--msg-timeout", &options.msg_timeout,
                  "default time a message may be in flight before it is delivered again");
  AddDurationFlag(app, "--max-msg-timeout", &options.max_msg_timeout,
                  "longest msg_timeout a client may ask for, and how far TOUCH may extend one");
  app.add_option("--max-msg-size", options.max_msg_size,
                 "largest message body in bytes (PUB, DPUB, each message of MPUB)")
      ->capture_default_str();
  app.add_option("--max-body-size", options.max_body_size,
                 "largest command body in bytes (a whole MPUB, IDENTIFY)")
      ->capture_default_str();
  app.add_option("--max-rdy-count", options.max_rdy_count, "largest RDY a client may send")
      ->capture_default_str();
  AddDurationFlag(
      app, "--max-req-timeout", &options.max_req_timeout,
      "longest REQ delay (longer ones are cut to it) and DPUB defer (longer ones fail)");
  AddDurationFlag(app, "--max-heartbeat-interval", &options.max_heartbeat_interval,
                  "longest heartbeat interval a client may ask for");
  app.add_option("--max-output-buffer-size", options.max_output_buffer_size,
                 "largest output_buffer_size a client may ask for, in bytes")
      ->capture_default_str();
  AddDurationFlag(app, "--max-output-buffer-timeout", &options.max_output_buffer_timeout,
                  "longest output_buffer_timeout a client may ask for");
  app.add_option("--mem-queue-size", options.ephemeral_queue_size,
                 "messages an #ephemeral topic keeps in memory (older ones are dropped); "
                 "durable topics are bounded by retention instead")
      ->capture_default_str();
  app.add_option("--sync", sync,
                 "when a publish is durable (and answered OK): always (fsync first, group "
                 "commit), interval:N (fsync every N ms), never (left to the OS)")
      ->capture_default_str();
  AddDurationFlag(app, "--retention-age", &retention_age,
                  "how long topics keep messages by default; 0 keeps them forever");
  app.add_option("--retention-bytes", store_options.default_retention.bytes,
                 "stored bytes each topic keeps by default; 0 is unlimited")
      ->capture_default_str();
  app.add_option("--compression", codec, "default batch codec: none, lz4 or zstd")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  spdlog::set_default_logger(spdlog::stderr_color_mt("cairnd"));
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");

  auto policy = storage::SyncPolicy::Parse(sync);
  auto parsed_codec = storage::ParseCodec(codec);
  auto endpoint = net::ParseAddress(tcp_address);
  auto http_endpoint = net::ParseAddress(http_address);
  if (!policy || !parsed_codec) {
    fmt::print(stderr, "cairnd: {}\n", (!policy ? policy.error() : parsed_codec.error()).message);
    return 2;
  }
  if (!endpoint) {
    fmt::print(stderr, "cairnd: --tcp-address: {}\n", endpoint.error());
    return 2;
  }
  if (!http_endpoint) {
    fmt::print(stderr, "cairnd: --http-address: {}\n", http_endpoint.error());
    return 2;
  }
  store_options.sync = *policy;
  store_options.default_codec = *parsed_codec;
  store_options.default_retention.age = retention_age;

  auto opened = storage::Store::Open(store_options);
  if (!opened) {
    spdlog::critical("cannot open the store: {}", opened.error().ToString());
    return 1;
  }
  std::unique_ptr<storage::Store> store = std::move(*opened);
  for (const auto& t : store->Topics()) {
    const auto info = t->Info();
    spdlog::info("topic={} start_offset={} next_offset={} bytes={} channels={}", info.name,
                 info.start_offset, info.next_offset, info.bytes, t->Channels().size());
  }

  asio::io_context io(1);
  // Caught from here until main returns: a second SIGTERM (docker stop, timeout(1) and a shell
  // may each send one) must not kill cairnd with the default action while it closes the store.
  asio::signal_set signals(io, SIGINT, SIGTERM);
  int exit_code = 0;
  {
    Broker broker(io, *store, options);
    broker.Start();
    std::unique_ptr<net::TcpServer> server;
    std::unique_ptr<net::HttpServer> http;
    std::unique_ptr<net::HttpApi> api;
    try {
      server = std::make_unique<net::TcpServer>(io, broker, *endpoint);
    } catch (const boost::system::system_error& e) {
      spdlog::critical("TCP: cannot listen on {}: {}", tcp_address, e.what());
      broker.Stop();
      (void)store->Close();
      return 1;
    }
    net::HttpApiInfo info;
    info.hostname = host;
    info.broadcast_address = broadcast_address;
    info.tcp_port = server->local_endpoint().port();
    info.start_time = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
    try {
      http = std::make_unique<net::HttpServer>(
          io, *http_endpoint, options.max_body_size,
          [&api](const net::HttpRequest& req, net::HttpResponder respond) {
            api->Handle(req, std::move(respond));
          },
          [&api](const net::HttpRequest& req) { return api->TooLarge(req); });
    } catch (const boost::system::system_error& e) {
      spdlog::critical("HTTP: cannot listen on {}: {}", http_address, e.what());
      broker.Stop();
      (void)store->Close();
      return 1;
    }
    info.http_port = http->local_endpoint().port();
    api = std::make_unique<net::HttpApi>(broker, info, server.get());
    server->Start();
    http->Start();
    // Scripts and tests read the bound addresses (port 0 picks one) from these lines.
    spdlog::info("TCP: listening on {}", net::FormatAddress(server->local_endpoint()));
    spdlog::info("HTTP: listening on {}", net::FormatAddress(http->local_endpoint()));
    spdlog::info("cairnd ready data_path={} sync={}", store_options.path,
                 store_options.sync.ToString());

    asio::steady_timer drain_timer(io);
    std::chrono::steady_clock::time_point deadline;
    std::function<void()> wait_drained = [&] {
      if (server->connection_count() + http->connection_count() > 0 &&
          std::chrono::steady_clock::now() < deadline) {
        drain_timer.expires_after(std::chrono::milliseconds(10));
        drain_timer.async_wait([&](boost::system::error_code ec) {
          if (!ec) wait_drained();
        });
        return;
      }
      if (server->connection_count() + http->connection_count() > 0) {
        spdlog::warn("closing {} connections still open at the drain deadline",
                     server->connection_count() + http->connection_count());
        server->CloseAll();
        http->CloseAll();
      }
      broker.Stop();
      io.stop();
    };
    signals.async_wait([&](boost::system::error_code ec, int sig) {
      if (ec) return;
      spdlog::info("signal {}: draining connections", sig);
      deadline = std::chrono::steady_clock::now() + kDrainDeadline;
      server->Drain();
      http->Drain();
      wait_drained();
    });
    io.run();
    // Closed while the broker still exists: closing completes the appends still queued, and each
    // completion is handed to the broker (whose io loop has stopped, so it goes no further).
    if (auto st = store->Close(); !st) {
      spdlog::error("closing the store failed: {}", st.error().ToString());
      exit_code = 1;
    }
  }
  spdlog::info("cairnd stopped");
  // Leave without unwinding `signals`: its destructor would restore the default action, and a
  // late SIGTERM would then end a clean shutdown with status 143. Everything that holds data is
  // closed above; only the log needs flushing.
  spdlog::shutdown();
  std::fflush(nullptr);
  std::_Exit(exit_code);
}

// cairnd's server: the one object that composes the layers. It opens the store, runs the broker
// core on it, and serves NSQ's TCP protocol and the HTTP API on one io_context. cairnd's main and
// the tests' in-process broker (tests/server/test_support.h) both build it, so that what the
// tests run is wired exactly as the daemon is.
//
// Threading: everything but Open() and Close() runs on the io_context's thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "net/lookupd.h"
#include "src/base/error.h"
#include "src/core/broker.h"
#include "src/server/options.h"
#include "storage/options.h"
#include "storage/store.h"

namespace cairn::net {
class HttpApi;
class HttpServer;
class Listener;
class TcpServer;
}  // namespace cairn::net

namespace cairn {

struct ServerOptions {
  storage::StoreOptions store;
  BrokerOptions broker;
  SessionOptions session;
  // Where to listen (port 0 picks one: local_endpoint() and http_endpoint() say which).
  boost::asio::ip::tcp::endpoint tcp_address{boost::asio::ip::address_v4::any(), 4150};
  boost::asio::ip::tcp::endpoint http_address{boost::asio::ip::address_v4::any(), 4151};
  // HTTPS, with session.tls; none if either is unset.
  std::optional<boost::asio::ip::tcp::endpoint> https_address;
  // What /info and /stats report about this broker, and nsqlookupd is told.
  std::string hostname = "localhost";
  std::string broadcast_address = "localhost";
  // The nsqlookupd instances to register with ("host:port", their TCP port), and the ports
  // consumers should dial there; 0: the ports this broker listens on (nsqd's defaults).
  std::vector<std::string> lookupd_tcp_addresses;
  uint16_t broadcast_tcp_port = 0;
  uint16_t broadcast_http_port = 0;
  nsq::LookupdOptions lookupd;
  // Seconds since the epoch /info reports as the start; 0: when Open() ran.
  int64_t start_time = 0;
};

class Server {
 public:
  // Opens the store, loads its topics and channels into the broker, and binds both listeners.
  // Nothing is accepted before Start(). On failure nothing stays open, and the error says what
  // failed ("cannot open the store: ...", "TCP: cannot listen on 0.0.0.0:4150: ...").
  static Result<std::unique_ptr<Server>> Open(boost::asio::io_context& io, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Starts accepting TCP and HTTP connections.
  void Start();

  // A clean stop in two steps. Drain() stops accepting and reading commands; connections finish
  // what they hold (publishes waiting for durability included) and close. Once all have closed,
  // or at `deadline` (those still open are then closed, with a warning), the broker stops and
  // `done` runs. Stop() does all of it at once.
  void Drain(std::chrono::steady_clock::duration deadline, std::function<void()> done);
  void Stop();

  // Closes the store, after the io_context has stopped: the appends still queued complete and
  // their completions are handed to the broker, which must still exist (it goes no further, as
  // its loop has stopped). Fails if the store's last sync failed.
  Status Close();

  boost::asio::ip::tcp::endpoint tcp_endpoint() const;
  boost::asio::ip::tcp::endpoint http_endpoint() const;
  std::optional<boost::asio::ip::tcp::endpoint> https_endpoint() const;
  size_t connection_count() const;
  const ServerOptions& options() const { return options_; }
  storage::Store& store() { return *store_; }
  // Only on the io thread.
  Broker& broker() { return *broker_; }

 private:
  Server(boost::asio::io_context& io, ServerOptions options);
  // The TCP, HTTP and HTTPS listeners that are open.
  std::vector<net::Listener*> listeners() const;
  void WaitDrained(std::chrono::steady_clock::time_point deadline);
  // Registers with each nsqlookupd, and keeps them told of every topic and channel.
  void JoinLookupd();
  void LeaveLookupd();

  boost::asio::io_context& io_;
  const ServerOptions options_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<Broker> broker_;
  std::unique_ptr<net::TcpServer> tcp_;
  std::unique_ptr<net::HttpServer> http_;
  std::unique_ptr<net::HttpServer> https_;  // null without https_address and session.tls
  std::unique_ptr<net::HttpApi> api_;
  std::vector<std::shared_ptr<nsq::LookupdPeer>> lookupd_;
  boost::asio::steady_timer drain_timer_;
  std::function<void()> drained_;
  bool closed_ = false;
};

}  // namespace cairn

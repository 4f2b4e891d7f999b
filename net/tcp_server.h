// The NSQ TCP server: accepts connections and runs one session per connection on the broker's
// io thread. A session reads commands with the codec (protocol.h), executes them against the
// broker, and writes responses and messages.
//
// A publish is answered OK only once the store reports it durable. A connection may pipeline
// publishes (up to BrokerOptions::max_pending_publishes); responses still go out in command order.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "net/listener.h"
#include "src/broker.h"

namespace cairn::net {

class TcpServer {
 public:
  // Binds and listens; throws boost::system::system_error if the address cannot be bound.
  TcpServer(boost::asio::io_context& io, Broker& broker,
            const boost::asio::ip::tcp::endpoint& endpoint);
  ~TcpServer();

  boost::asio::ip::tcp::endpoint local_endpoint() const { return listener_.local_endpoint(); }
  void Start() { listener_.Start(); }
  // Shutdown, step 1: stop accepting and stop reading commands. Sessions finish what they hold
  // (publishes waiting for durability get their answers) and then close.
  void Drain() { listener_.Drain(); }
  // Shutdown, step 2 (at the deadline): close whatever is still open.
  void CloseAll() { listener_.CloseAll(); }
  size_t connection_count() const { return listener_.connection_count(); }

 private:
  Listener listener_;
};

}  // namespace cairn::net

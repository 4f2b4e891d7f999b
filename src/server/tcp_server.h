// The NSQ TCP server: accepts connections and runs one session per connection on the broker's
// io thread. A session reads commands with the codec (protocol.h), executes them against the
// broker, and writes responses and messages.
//
// A publish is answered OK only once the store reports it durable. A connection may pipeline
// publishes (up to SessionOptions::max_pending_publishes); responses still go out in command order.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "net/listener.h"
#include "src/core/broker.h"
#include "src/server/options.h"

namespace cairn::net {

// Listener gives local_endpoint(), Start(), and shutdown in two steps: Drain() stops accepting
// and reading commands (sessions answer what they hold, publishes waiting for durability
// included, then close); CloseAll() closes whatever is still open at the deadline.
class TcpServer : public Listener {
 public:
  // Listen() binds it.
  TcpServer(boost::asio::io_context& io, Broker& broker, const SessionOptions& options);
  // Connections that have published, with their counts per topic (nsqd's /stats "producers").
  std::vector<ClientStats> Producers() const;
};

}  // namespace cairn::net

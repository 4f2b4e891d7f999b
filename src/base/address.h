// "host:port" addresses as nsqd's flags and tools spell them: "127.0.0.1:4150", "[::1]:4150",
// ":4150" (every interface), "localhost:4150". Names other than localhost are resolved.
#pragma once

#include <string>
#include <string_view>

#include <boost/asio/ip/tcp.hpp>
#include "src/base/error.h"

namespace cairn {

// kInvalidArgument for a malformed address or a name that does not resolve. Resolving blocks:
// for flags at start-up, not on an event loop (resolve SplitHostPort's parts asynchronously
// there).
Result<boost::asio::ip::tcp::endpoint> ParseAddress(std::string_view text);

// "host:port" split, without resolving: the host without IPv6 brackets ("" for every
// interface) and the port. kInvalidArgument for a malformed address.
struct HostPort {
  std::string host;
  uint16_t port = 0;
};
Result<HostPort> SplitHostPort(std::string_view text);
// "127.0.0.1:4150", "[::1]:4150".
std::string FormatAddress(const boost::asio::ip::tcp::endpoint& endpoint);

}  // namespace cairn

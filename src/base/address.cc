#include "src/base/address.h"

#include <charconv>

#include <fmt/format.h>
#include <boost/asio/io_context.hpp>

namespace cairn {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

tl::unexpected<Error> BadAddress(std::string_view text, std::string_view why) {
  return Fail(Errc::kInvalidArgument, fmt::format("invalid address \"{}\": {}", text, why));
}

}  // namespace

Result<HostPort> SplitHostPort(std::string_view text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return BadAddress(text, "expected host:port");
  std::string_view host = text.substr(0, colon);
  const std::string_view port_text = text.substr(colon + 1);
  unsigned port = 0;
  auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || p != port_text.data() + port_text.size() || port > 65535) {
    return BadAddress(text, "bad port");
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return HostPort{std::string(host), static_cast<uint16_t>(port)};
}

Result<tcp::endpoint> ParseAddress(std::string_view text) {
  auto split = SplitHostPort(text);
  if (!split) return tl::unexpected(split.error());
  if (split->host.empty()) return tcp::endpoint(tcp::v4(), split->port);
  boost::system::error_code err;
  auto address = asio::ip::make_address(split->host, err);
  if (!err) return tcp::endpoint(address, split->port);
  asio::io_context io;
  tcp::resolver resolver(io);
  auto results = resolver.resolve(split->host, std::to_string(split->port), err);
  if (err || results.empty()) return BadAddress(text, err ? err.message() : "no address");
  return results.begin()->endpoint();
}

std::string FormatAddress(const tcp::endpoint& endpoint) {
  const auto address = endpoint.address();
  if (address.is_v6()) return fmt::format("[{}]:{}", address.to_string(), endpoint.port());
  return fmt::format("{}:{}", address.to_string(), endpoint.port());
}

}  // namespace cairn

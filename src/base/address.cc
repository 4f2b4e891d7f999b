#include "src/base/address.h"

#include <charconv>

#include <fmt/format.h>
#include <boost/asio/io_context.hpp>

namespace cairn {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

Result<tcp::endpoint> ParseAddress(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return Fail(Errc::kInvalidArgument, fmt::format("invalid address \"{}\": {}", text, why));
  };
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return bad("expected host:port");
  std::string_view host = text.substr(0, colon);
  const std::string_view port_text = text.substr(colon + 1);
  unsigned port = 0;
  auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || p != port_text.data() + port_text.size() || port > 65535) {
    return bad("bad port");
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) return tcp::endpoint(tcp::v4(), static_cast<uint16_t>(port));
  boost::system::error_code err;
  auto address = asio::ip::make_address(std::string(host), err);
  if (!err) return tcp::endpoint(address, static_cast<uint16_t>(port));
  asio::io_context io;
  tcp::resolver resolver(io);
  auto results = resolver.resolve(std::string(host), std::string(port_text), err);
  if (err || results.empty()) return bad(err ? err.message() : "no address");
  return results.begin()->endpoint();
}

std::string FormatAddress(const tcp::endpoint& endpoint) {
  const auto address = endpoint.address();
  if (address.is_v6()) return fmt::format("[{}]:{}", address.to_string(), endpoint.port());
  return fmt::format("{}:{}", address.to_string(), endpoint.port());
}

}  // namespace cairn

#include "net/listener.h"

#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "src/base/address.h"

namespace cairn::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

Listener::Listener(asio::io_context& io, Factory factory)
    : acceptor_(io), retry_(io), factory_(std::move(factory)) {}

Status Listener::Listen(const tcp::endpoint& endpoint) {
  boost::system::error_code ec;
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (!ec) return {};
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  return Fail(Errc::kUnavailable,
              fmt::format("cannot listen on {}: {}", FormatAddress(endpoint), ec.message()));
}

Listener::~Listener() {
  boost::system::error_code ec;
  acceptor_.close(ec);
  retry_.cancel();
}

tcp::endpoint Listener::local_endpoint() const { return acceptor_.local_endpoint(); }

void Listener::Start() { Accept(); }

void Listener::Accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) {
      // Out of file descriptors, say: try again shortly instead of spinning on the error.
      spdlog::warn("accept on {} failed: {}", acceptor_.local_endpoint().port(), ec.message());
      retry_.expires_after(std::chrono::milliseconds(100));
      retry_.async_wait([this](boost::system::error_code wait_ec) {
        if (!wait_ec && acceptor_.is_open()) Accept();
      });
      return;
    }
    if (!set_->draining) factory_(std::move(socket), set_);
    Accept();
  });
}

void Listener::Drain() {
  set_->draining = true;
  boost::system::error_code ec;
  acceptor_.close(ec);
  retry_.cancel();
  for (ListenedSession* s :
       std::vector<ListenedSession*>(set_->sessions.begin(), set_->sessions.end())) {
    s->Drain();
  }
}

void Listener::CloseAll() {
  for (ListenedSession* s :
       std::vector<ListenedSession*>(set_->sessions.begin(), set_->sessions.end())) {
    s->Close();
  }
}

}  // namespace cairn::net

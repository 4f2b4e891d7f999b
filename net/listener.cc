#include "net/listener.h"

#include <vector>

#include <spdlog/spdlog.h>

namespace cairn::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

Listener::Listener(asio::io_context& io, const tcp::endpoint& endpoint, Factory factory)
    : acceptor_(io), retry_(io), factory_(std::move(factory)) {
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  acceptor_.bind(endpoint);
  acceptor_.listen();
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

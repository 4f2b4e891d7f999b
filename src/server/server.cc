#include "src/server/server.h"

#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "net/http_server.h"
#include "src/base/address.h"
#include "src/server/http_api.h"
#include "src/server/identify.h"
#include "src/server/tcp_server.h"

namespace cairn {

Server::Server(boost::asio::io_context& io, ServerOptions options)
    : io_(io), options_(std::move(options)), drain_timer_(io) {}

Server::~Server() {
  // A server that was opened but never closed (an error path) still closes its store, after the
  // sessions that use the broker are gone. The nsqlookupd connections go first: they call back
  // into this server for their snapshots.
  if (broker_) LeaveLookupd();
  tcp_.reset();
  http_.reset();
  https_.reset();
  api_.reset();
  if (store_ && !closed_) (void)store_->Close();
}

Result<std::unique_ptr<Server>> Server::Open(boost::asio::io_context& io, ServerOptions options) {
  if (options.start_time == 0) {
    options.start_time = std::chrono::duration_cast<std::chrono::seconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  }
  std::unique_ptr<Server> s(new Server(io, std::move(options)));
  const ServerOptions& o = s->options_;
  auto opened = storage::Store::Open(o.store);
  if (!opened) return Fail("cannot open the store", opened.error());
  s->store_ = std::move(*opened);
  s->broker_ = std::make_unique<Broker>(io, *s->store_, o.broker);
  s->broker_->Start();
  s->tcp_ = std::make_unique<net::TcpServer>(io, *s->broker_, o.session);
  Server* self = s.get();
  // The same API on HTTP and HTTPS; which one a request came by matters under --tls-required.
  auto http_server = [&](bool tls) {
    return std::make_unique<net::HttpServer>(
        io, o.session.max_body_size,
        [self, tls](const net::HttpRequest& req, net::HttpResponder respond) {
          self->api_->Handle(req, std::move(respond), tls);
        },
        [self](const net::HttpRequest& req) { return self->api_->TooLarge(req); },
        tls ? o.session.tls : nullptr);
  };
  s->http_ = http_server(false);
  if (o.https_address && o.session.tls) s->https_ = http_server(true);
  if (auto st = s->tcp_->Listen(o.tcp_address); !st) {
    s->broker_->Stop();
    return Fail("TCP", st.error());
  }
  if (auto st = s->http_->Listen(o.http_address); !st) {
    s->broker_->Stop();
    return Fail("HTTP", st.error());
  }
  if (s->https_) {
    if (auto st = s->https_->Listen(*o.https_address); !st) {
      s->broker_->Stop();
      return Fail("HTTPS", st.error());
    }
  }
  net::HttpApiInfo info;
  info.hostname = o.hostname;
  info.broadcast_address = o.broadcast_address;
  info.tcp_port = s->tcp_->local_endpoint().port();
  info.http_port = s->http_->local_endpoint().port();
  if (s->https_) info.https_port = s->https_->local_endpoint().port();
  info.start_time = o.start_time;
  info.lookupd_registrations = [server = s.get()] {
    std::vector<std::pair<std::string, bool>> out;
    for (const auto& peer : server->lookupd_) out.emplace_back(peer->address(), peer->registered());
    return out;
  };
  s->api_ = std::make_unique<net::HttpApi>(*s->broker_, o.session, info, s->tcp_.get());
  return s;
}

void Server::Start() {
  for (net::Listener* l : listeners()) l->Start();
  JoinLookupd();
}

void Server::JoinLookupd() {
  if (options_.lookupd_tcp_addresses.empty()) return;
  nsq::LookupdIdentity identity;
  identity.broadcast_address = options_.broadcast_address;
  identity.tcp_port =
      options_.broadcast_tcp_port != 0 ? options_.broadcast_tcp_port : tcp_endpoint().port();
  identity.http_port =
      options_.broadcast_http_port != 0 ? options_.broadcast_http_port : http_endpoint().port();
  identity.hostname = options_.hostname;
  identity.version = std::string(net::kNsqdVersion);
  auto snapshot = [this] {
    std::vector<nsq::LookupdRegistration> out;
    for (RegistryChange& r : broker_->Registrations()) {
      out.push_back({std::move(r.topic), std::move(r.channel)});
    }
    return out;
  };
  for (const std::string& address : options_.lookupd_tcp_addresses) {
    lookupd_.push_back(std::make_shared<nsq::LookupdPeer>(io_.get_executor(), address, identity,
                                                          snapshot, options_.lookupd));
  }
  broker_->SetRegistryListener([this](const RegistryChange& change) {
    for (auto& peer : lookupd_) {
      nsq::LookupdRegistration r{change.topic, change.channel};
      change.registered ? peer->Register(std::move(r)) : peer->Unregister(std::move(r));
    }
  });
  for (auto& peer : lookupd_) peer->Start();
}

// nsqlookupd forgets a broker whose connection closed: consumers stop finding it.
void Server::LeaveLookupd() {
  broker_->SetRegistryListener(nullptr);
  for (auto& peer : lookupd_) peer->Close();
  lookupd_.clear();
}

boost::asio::ip::tcp::endpoint Server::tcp_endpoint() const { return tcp_->local_endpoint(); }
boost::asio::ip::tcp::endpoint Server::http_endpoint() const { return http_->local_endpoint(); }
std::optional<boost::asio::ip::tcp::endpoint> Server::https_endpoint() const {
  if (!https_) return std::nullopt;
  return https_->local_endpoint();
}

std::vector<net::Listener*> Server::listeners() const {
  std::vector<net::Listener*> out = {tcp_.get(), http_.get()};
  if (https_) out.push_back(https_.get());
  return out;
}

size_t Server::connection_count() const {
  size_t n = 0;
  for (net::Listener* l : listeners()) n += l->connection_count();
  return n;
}

void Server::Drain(std::chrono::steady_clock::duration deadline, std::function<void()> done) {
  drained_ = std::move(done);
  LeaveLookupd();
  for (net::Listener* l : listeners()) l->Drain();
  WaitDrained(std::chrono::steady_clock::now() + deadline);
}

void Server::WaitDrained(std::chrono::steady_clock::time_point deadline) {
  if (connection_count() > 0 && std::chrono::steady_clock::now() < deadline) {
    drain_timer_.expires_after(std::chrono::milliseconds(10));
    drain_timer_.async_wait([this, deadline](boost::system::error_code ec) {
      if (!ec) WaitDrained(deadline);
    });
    return;
  }
  if (connection_count() > 0) {
    spdlog::warn("closing {} connections still open at the drain deadline", connection_count());
    for (net::Listener* l : listeners()) l->CloseAll();
  }
  broker_->Stop();
  if (auto done = std::exchange(drained_, nullptr)) done();
}

void Server::Stop() {
  LeaveLookupd();
  for (net::Listener* l : listeners()) {
    l->Drain();
    l->CloseAll();
  }
  broker_->Stop();
}

Status Server::Close() {
  closed_ = true;
  return store_->Close();
}

}  // namespace cairn

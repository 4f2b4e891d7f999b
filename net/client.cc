#include "net/client.h"

#include <algorithm>
#include <random>

#include <fmt/format.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <nlohmann/json.hpp>

#include "net/http_client.h"
#include "net/lookupd.h"
#include "src/base/address.h"

namespace cairn::nsq {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// ---- MessageRef ----

void MessageRef::Finish() const {
  if (auto c = conn_.lock()) c->Finish(id_);
}
void MessageRef::Requeue(std::chrono::milliseconds delay) const {
  if (auto c = conn_.lock()) c->Requeue(id_, delay);
}
void MessageRef::Touch() const {
  if (auto c = conn_.lock()) c->Touch(id_);
}

namespace {

// A handler for an object's own timer or resolver that does nothing once the object is gone:
// cancelling or destroying a timer does not recall a completion already queued, which would
// then run on a destroyed object.
template <class Fn>
auto Guarded(const std::shared_ptr<bool>& alive, Fn fn) {
  return [alive = std::weak_ptr<bool>(alive), fn = std::move(fn)](auto&&... args) mutable {
    if (alive.expired()) return;
    fn(std::forward<decltype(args)>(args)...);
  };
}

// Every address a name resolved to, in the resolver's order (a Connection tries them in turn).
std::vector<tcp::endpoint> AllEndpoints(const tcp::resolver::results_type& results) {
  std::vector<tcp::endpoint> out;
  for (const auto& r : results) out.push_back(r.endpoint());
  return out;
}

}  // namespace

// ---- Connection ----

Connection::Connection(asio::any_io_executor ex, tcp::endpoint endpoint,
                       const ClientOptions& options, std::string server_name)
    : Connection(ex, std::vector<tcp::endpoint>{endpoint}, options, std::move(server_name)) {}

Connection::Connection(asio::any_io_executor ex, std::vector<tcp::endpoint> endpoints,
                       const ClientOptions& options, std::string server_name)
    : socket_(ex),
      endpoints_(std::move(endpoints)),
      options_(options),
      server_name_(std::move(server_name)),
      idle_timer_(ex) {
  if (server_name_.empty() && !endpoints_.empty()) {
    server_name_ = endpoints_.front().address().to_string();
  }
}

Connection::~Connection() {
  boost::system::error_code ec;
  socket_.close(ec);
}

void Connection::Open(CommandCallback done) {
  auto self = shared_from_this();
  idle_timer_.expires_after(options_.dial_timeout);
  idle_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    auto s = weak.lock();
    if (!ec && s && !s->ready_) s->Close("connect timed out");
  });
  asio::async_connect(
      socket_, endpoints_,
      [self, done = std::move(done)](boost::system::error_code ec, const tcp::endpoint&) mutable {
        if (self->closed_) return done(Fail(Errc::kClosed, "closed"));
        if (ec) {
          self->Close("connect: " + ec.message());
          return done(Fail(Errc::kUnavailable, "connect: " + ec.message()));
        }
        boost::system::error_code ignored;
        self->socket_.set_option(tcp::no_delay(true), ignored);
        const ClientOptions& o = self->options_;
        nlohmann::json identify = {
            {"client_id", o.client_id},
            {"hostname", o.hostname},
            {"user_agent", o.user_agent},
            {"feature_negotiation", true},
            {"heartbeat_interval", o.heartbeat_interval.count()},
            {"msg_timeout", o.msg_timeout.count()},
            {"tls_v1", o.tls != nullptr},
            {"snappy", o.snappy},
            {"deflate", o.deflate},
            {"deflate_level", o.deflate_level},
        };
        std::string bytes(kMagicV2);
        AppendCommandWithBody(bytes, "IDENTIFY", identify.dump());
        self->Send(bytes, [self, done = std::move(done)](Status st) mutable {
          if (!st) {
            self->idle_timer_.cancel();
            return done(std::move(st));
          }
          self->Negotiate([self, done = std::move(done)](Status negotiated) {
            self->idle_timer_.cancel();
            if (!negotiated) return done(std::move(negotiated));
            self->ready_ = true;
            self->ArmIdleTimer();
            done({});
          });
        });
        self->last_frame_ = std::chrono::steady_clock::now();
        self->ReadLoop();
      });
}

// After the IDENTIFY answer, in nsqd's order: TLS, then snappy or deflate, each confirmed by an
// OK in the new form; then AUTH if the broker requires it.
void Connection::Negotiate(CommandCallback done) {
  auto self = shared_from_this();
  if (negotiated_.tls_v1 && !tls_) {
    if (!options_.tls) return done(Fail(Errc::kRejected, "the broker switched to TLS unasked"));
    switch_ = [self, done = std::move(done)]() mutable {
      self->StartTls([self, done = std::move(done)](Status st) mutable {
        if (!st) return done(std::move(st));
        self->AwaitOk(std::move(done));
      });
    };
    return;
  }
  if ((negotiated_.snappy || negotiated_.deflate) && !encoder_) {
    switch_ = [self, done = std::move(done)]() mutable {
      auto codec = MakeStreamCodec(self->negotiated_.snappy, self->negotiated_.deflate_level);
      self->encoder_ = std::move(codec.encoder);
      self->decoder_ = std::move(codec.decoder);
      self->decoder_->Adopt(self->in_);  // what arrived after the answer is already compressed
      self->AwaitOk(std::move(done));
    };
    return;
  }
  if (negotiated_.auth_required && !options_.auth_secret.empty() && !auth_sent_) {
    auth_sent_ = true;
    std::string bytes;
    AppendCommandWithBody(bytes, "AUTH", options_.auth_secret);
    return Send(bytes, std::move(done));  // the answer is the identity, as JSON
  }
  done({});
}

// The OK that confirms a switch, then the next step; reading resumes in the new form.
void Connection::AwaitOk(CommandCallback done) {
  pending_.push_back([self = shared_from_this(), done = std::move(done)](Status st) mutable {
    if (!st) return done(std::move(st));
    self->Negotiate(std::move(done));
  });
  Drain();
}

void Connection::StartTls(CommandCallback done) {
  tls_ = std::make_unique<asio::ssl::stream<tcp::socket&>>(socket_, *options_.tls);
  net::ExpectServerName(tls_->native_handle(), server_name_);
  handshaking_ = true;
  // Bytes after the IDENTIFY answer, if any, are the start of the broker's handshake.
  tls_->async_handshake(asio::ssl::stream_base::client, asio::buffer(in_.data()),
                        [self = shared_from_this(), done = std::move(done)](
                            boost::system::error_code ec, size_t) mutable {
                          self->handshaking_ = false;
                          self->in_.Consume(self->in_.size());
                          if (self->closed_) return done(Fail(Errc::kClosed, "closed"));
                          if (ec) {
                            self->Close("TLS: " + ec.message());
                            return done(Fail(Errc::kUnavailable, "TLS handshake: " + ec.message()));
                          }
                          self->Flush();
                          done({});
                        });
}

void Connection::Subscribe(std::string_view topic, std::string_view channel, CommandCallback done) {
  std::string bytes;
  AppendCommand(bytes, fmt::format("SUB {} {}", topic, channel));
  Send(bytes, std::move(done));
}

void Connection::Publish(std::string_view topic, std::string_view body, CommandCallback done) {
  std::string bytes;
  AppendCommandWithBody(bytes, fmt::format("PUB {}", topic), body);
  Send(bytes, std::move(done));
}

void Connection::MultiPublish(std::string_view topic, std::span<const std::string> bodies,
                              CommandCallback done) {
  std::string bytes;
  AppendMpub(bytes, topic, bodies);
  Send(bytes, std::move(done));
}

void Connection::DeferredPublish(std::string_view topic, std::chrono::milliseconds delay,
                                 std::string_view body, CommandCallback done) {
  std::string bytes;
  AppendCommandWithBody(bytes, fmt::format("DPUB {} {}", topic, delay.count()), body);
  Send(bytes, std::move(done));
}

void Connection::StartClose(CommandCallback done) {
  std::string bytes;
  AppendCommand(bytes, "CLS");
  Send(bytes, std::move(done));
}

void Connection::Ready(int64_t count) {
  std::string line = fmt::format("RDY {}", count);
  AppendCommand(out_, line);
  Flush();
}

void Connection::Finish(const MessageId& id) {
  if (closed_) return;
  out_.append("FIN ");
  out_.append(id.data(), id.size());
  out_.push_back('\n');
  Flush();
  Settled();
}

void Connection::Requeue(const MessageId& id, std::chrono::milliseconds delay) {
  if (closed_) return;
  AppendCommand(out_,
                fmt::format("REQ {} {}", std::string_view(id.data(), id.size()), delay.count()));
  Flush();
  Settled();
}

void Connection::Settled() {
  if (in_flight_ > 0) --in_flight_;
  if (on_settle_) on_settle_();
}

void Connection::Touch(const MessageId& id) {
  if (closed_) return;
  AppendCommand(out_, fmt::format("TOUCH {}", std::string_view(id.data(), id.size())));
  Flush();
}

void Connection::Send(std::string_view bytes, CommandCallback done) {
  if (closed_) {
    if (done) done(Fail(Errc::kUnavailable, "connection closed"));
    return;
  }
  pending_.push_back(std::move(done));
  out_.append(bytes);
  Flush();
}

// Writes are coalesced: everything queued while a write is in progress, or within the current
// handler run, goes out in one write.
void Connection::Flush() {
  if (writing_ || closed_ || out_.empty() || flush_posted_ || handshaking_) return;
  flush_posted_ = true;
  asio::post(socket_.get_executor(), [self = shared_from_this()] {
    self->flush_posted_ = false;
    if (self->writing_ || self->closed_ || self->out_.empty() || self->handshaking_) return;
    self->writing_ = true;
    if (self->encoder_) {
      self->writing_buf_.clear();
      self->encoder_->Encode(self->out_, self->writing_buf_);
    } else {
      self->writing_buf_.swap(self->out_);
    }
    self->out_.clear();
    auto written = [self](boost::system::error_code ec, size_t) { self->OnWritten(ec); };
    if (self->tls_) {
      asio::async_write(*self->tls_, asio::buffer(self->writing_buf_), std::move(written));
    } else {
      asio::async_write(self->socket_, asio::buffer(self->writing_buf_), std::move(written));
    }
  });
}

void Connection::OnWritten(boost::system::error_code ec) {
  writing_ = false;
  writing_buf_.clear();
  if (ec) return Close("write: " + ec.message());
  Flush();
}

// Reads into the decompressor's input when there is one, else straight into in_; through TLS
// when it was negotiated.
void Connection::ReadLoop() {
  net::InputBuffer& target = decoder_ ? decoder_->wire() : in_;
  auto space = target.Prepare(64 * 1024);
  auto read = [self = shared_from_this(), &target](boost::system::error_code ec, size_t n) {
    if (ec) return self->Close(ec == asio::error::eof ? "closed by broker" : ec.message());
    target.Commit(n);
    self->last_frame_ = std::chrono::steady_clock::now();
    self->Drain();
  };
  auto buffer = asio::buffer(space.data(), space.size());
  if (tls_) {
    tls_->async_read_some(buffer, std::move(read));
  } else {
    socket_.async_read_some(buffer, std::move(read));
  }
}

// Handles every whole frame that arrived, decompressing a slice at a time, then reads more;
// unless the connection closed, or its layers switch (the switch resumes reading).
void Connection::Drain() {
  for (;;) {
    if (!ParseFrames()) return;
    if (!decoder_) break;
    auto decoded = decoder_->Decode(in_, 64 * 1024);
    if (!decoded) return Close(decoded.error().message);
    if (*decoded == 0) break;
  }
  ReadLoop();
}

bool Connection::ParseFrames() {
  size_t pos = 0;
  while (!closed_) {
    auto outcome = ParseFrame(in_.data().substr(pos), options_.max_frame);
    if (std::holds_alternative<FrameNeedMore>(outcome)) break;
    if (auto* err = std::get_if<FrameError>(&outcome)) {
      Close(err->text);
      return false;
    }
    auto& parsed = std::get<FrameParsed>(outcome);
    OnFrame(parsed.frame);
    pos += parsed.consumed;
    if (switch_ && !closed_) {
      in_.Consume(pos);
      std::exchange(switch_, nullptr)();
      return false;
    }
  }
  if (closed_) return false;
  in_.Consume(pos);
  return true;
}

void Connection::OnFrame(const Frame& frame) {
  switch (frame.type) {
    case FrameType::kResponse: {
      if (frame.data == kHeartbeat) {
        AppendCommand(out_, "NOP");
        Flush();
        return;
      }
      if (pending_.empty()) return;  // e.g. an unsolicited CLOSE_WAIT
      auto done = std::move(pending_.front());
      pending_.pop_front();
      if (!identified_ && frame.data.starts_with("{")) negotiated_ = ParseNegotiated(frame.data);
      identified_ = true;  // the first response answers IDENTIFY
      if (done) done({});
      return;
    }
    case FrameType::kError: {
      const std::string text(frame.data);
      // FIN, REQ and TOUCH failures answer no command and leave the connection open.
      if (text.starts_with("E_FIN_FAILED") || text.starts_with("E_REQ_FAILED") ||
          text.starts_with("E_TOUCH_FAILED")) {
        return;
      }
      if (!pending_.empty()) {
        auto done = std::move(pending_.front());
        pending_.pop_front();
        if (done) done(Fail(Errc::kRejected, text));
      }
      Close(text);
      return;
    }
    case FrameType::kMessage: {
      auto m = ParseMessage(frame.data);
      if (!m || m->id.size() != kMessageIdSize) return Close("malformed message frame");
      Delivered d;
      std::copy(m->id.begin(), m->id.end(), d.id.begin());
      d.attempts = m->attempts;
      d.timestamp_ns = m->timestamp_ns;
      d.body = m->body;
      ++in_flight_;
      if (on_message_) on_message_(*this, d);
      return;
    }
  }
}

void Connection::ArmIdleTimer() {
  if (closed_ || options_.heartbeat_interval.count() <= 0) return;
  const auto limit = 2 * options_.heartbeat_interval;
  idle_timer_.expires_at(last_frame_ + limit);
  idle_timer_.async_wait([weak = weak_from_this(), limit](boost::system::error_code ec) {
    auto self = weak.lock();
    if (ec || !self || self->closed_) return;
    if (std::chrono::steady_clock::now() - self->last_frame_ >= limit) {
      return self->Close("no heartbeat from the broker");
    }
    self->ArmIdleTimer();
  });
}

void Connection::Close(const std::string& reason) {
  if (closed_) return;
  closed_ = true;
  ready_ = false;
  boost::system::error_code ec;
  socket_.shutdown(tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  idle_timer_.cancel();
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& done : pending) {
    if (done) done(Fail(Errc::kUnavailable, "connection lost: " + reason));
  }
  if (on_close_) {
    auto handler = std::move(on_close_);
    handler(reason);
  }
}

// ---- Producer ----

Producer::Producer(asio::any_io_executor ex, tcp::endpoint endpoint, ClientOptions options)
    : ex_(ex), endpoint_(endpoint), options_(std::move(options)), retry_(ex) {}

Producer::Producer(asio::any_io_executor ex, std::string address, ClientOptions options)
    : ex_(ex),
      address_(std::move(address)),
      resolver_(std::make_unique<tcp::resolver>(ex)),
      options_(std::move(options)),
      retry_(ex) {}

Producer::~Producer() {
  alive_.reset();
  Stop();
}

void Producer::Stop() {
  stopped_ = true;
  retry_.cancel();
  if (resolver_) resolver_->cancel();
  if (conn_) conn_->Close("producer stopped");
  conn_.reset();
  auto waiting = std::move(waiting_);
  for (auto& [op, fail] : waiting) fail(Fail(Errc::kClosed, "producer stopped"));
}

void Producer::Publish(std::string topic, std::string body, CommandCallback done) {
  WithConnection([topic = std::move(topic), body = std::move(body),
                  done](Connection& c) { c.Publish(topic, body, done); },
                 done);
}

void Producer::MultiPublish(std::string topic, std::vector<std::string> bodies,
                            CommandCallback done) {
  WithConnection([topic = std::move(topic), bodies = std::move(bodies),
                  done](Connection& c) { c.MultiPublish(topic, bodies, done); },
                 done);
}

void Producer::DeferredPublish(std::string topic, std::chrono::milliseconds delay, std::string body,
                               CommandCallback done) {
  WithConnection([topic = std::move(topic), delay, body = std::move(body),
                  done](Connection& c) { c.DeferredPublish(topic, delay, body, done); },
                 done);
}

void Producer::WithConnection(std::function<void(Connection&)> op, CommandCallback on_fail) {
  if (stopped_) return on_fail(Fail(Errc::kClosed, "producer stopped"));
  if (conn_ && conn_->open()) return op(*conn_);
  waiting_.emplace_back(std::move(op), std::move(on_fail));
  if (!connecting_) Connect();
}

void Producer::Connect() {
  connecting_ = true;
  if (address_.empty()) return Open({endpoint_}, "");
  auto split = SplitHostPort(address_);
  if (!split) return ConnectFailed(tl::unexpected(split.error()));
  resolver_->async_resolve(
      split->host, std::to_string(split->port),
      Guarded(alive_, [this, host = split->host](boost::system::error_code ec,
                                                 const tcp::resolver::results_type& results) {
        if (ec == asio::error::operation_aborted || stopped_) return;
        if (ec || results.empty()) {
          return ConnectFailed(
              Fail(Errc::kUnavailable,
                   fmt::format("resolving {}: {}", address_, ec ? ec.message() : "no address")));
        }
        Open(AllEndpoints(results), host);
      }));
}

void Producer::Open(std::vector<tcp::endpoint> endpoints, std::string server_name) {
  auto conn =
      std::make_shared<Connection>(ex_, std::move(endpoints), options_, std::move(server_name));
  conn_ = conn;
  conn->SetCloseHandler([this, weak = std::weak_ptr<Connection>(conn)](const std::string&) {
    if (conn_ == weak.lock()) conn_.reset();
  });
  conn->Open([this, conn](Status opened) {
    if (stopped_) return;
    if (!opened) return ConnectFailed(opened);
    connecting_ = false;
    backoff_ = std::chrono::milliseconds(0);
    auto waiting = std::move(waiting_);
    waiting_.clear();
    for (auto& [op, fail] : waiting) op(*conn);
  });
}

void Producer::ConnectFailed(const Status& why) {
  // Publishes waiting for this connection fail now; the caller decides whether to retry.
  // The next publish dials again, after the backoff.
  auto waiting = std::move(waiting_);
  waiting_.clear();
  for (auto& [op, fail] : waiting) fail(why);
  backoff_ = std::clamp(backoff_ * 2, options_.backoff_min, options_.backoff_max);
  retry_.expires_after(backoff_);
  retry_.async_wait(Guarded(alive_, [this](boost::system::error_code ec) {
    if (ec || stopped_) return;
    connecting_ = false;
    if (!waiting_.empty()) Connect();
  }));
}

// ---- Consumer ----

Consumer::Consumer(asio::any_io_executor ex, std::vector<tcp::endpoint> brokers, std::string topic,
                   std::string channel, int64_t max_in_flight, ClientOptions options)
    : Consumer(ex, LookupdDiscovery{}, std::move(topic), std::move(channel), max_in_flight,
               std::move(options)) {
  for (const auto& ep : brokers) AddLink(FormatAddress(ep), ep);
}

Consumer::Consumer(asio::any_io_executor ex, std::vector<std::string> brokers, std::string topic,
                   std::string channel, int64_t max_in_flight, ClientOptions options)
    : Consumer(ex, LookupdDiscovery{}, std::move(topic), std::move(channel), max_in_flight,
               std::move(options)) {
  for (std::string& address : brokers) AddLink(std::move(address), std::nullopt);
}

Consumer::Consumer(asio::any_io_executor ex, LookupdDiscovery discovery, std::string topic,
                   std::string channel, int64_t max_in_flight, ClientOptions options)
    : ex_(ex),
      topic_(std::move(topic)),
      channel_(std::move(channel)),
      max_in_flight_(std::max<int64_t>(1, max_in_flight)),
      options_(std::move(options)),
      rdy_timer_(ex),
      discovery_(std::move(discovery)),
      poll_timer_(std::make_unique<asio::steady_timer>(ex)),
      resolver_(std::make_unique<tcp::resolver>(ex)),
      jitter_(std::random_device{}()) {
  for (const std::string& address : discovery_.http_addresses) {
    // Checked by the caller; an address that is not host:port is asked nothing.
    auto split = SplitHostPort(address);
    if (!split) continue;
    lookupds_.push_back(
        std::make_unique<net::HttpClient>(ex, split->host, split->port, std::chrono::seconds(5)));
  }
}

Consumer::~Consumer() {
  alive_.reset();
  Close();
}

void Consumer::Start(Handler handler) {
  handler_ = std::move(handler);
  for (size_t i = 0; i < links_.size(); ++i) Dial(i);
  if (!lookupds_.empty()) Poll();
}

size_t Consumer::AddLink(std::string address, std::optional<tcp::endpoint> endpoint) {
  Link link;
  link.address = std::move(address);
  link.endpoint = endpoint;
  link.retry = std::make_unique<asio::steady_timer>(ex_);
  links_.push_back(std::move(link));
  return links_.size() - 1;
}

void Consumer::Poll() {
  if (closed_ || !receiving_) return;
  std::vector<net::HttpClient*> lookupds;
  for (auto& l : lookupds_) lookupds.push_back(l.get());
  // Close() destroys the clients, which then call nothing back.
  LookupTopic(lookupds, topic_, [this](Result<std::vector<LookupdProducer>> listed) {
    if (closed_) return;
    lookupd_answering_ = listed.has_value();
    if (listed) {
      std::vector<std::string> addresses;
      for (auto& p : *listed) addresses.push_back(std::move(p.tcp_address));
      ApplyListing(addresses);
    }
    const double u = std::uniform_real_distribution<double>(0, 1)(jitter_);
    poll_timer_->expires_after(std::chrono::duration_cast<std::chrono::milliseconds>(
        discovery_.poll_interval * (0.85 + 0.3 * u)));
    poll_timer_->async_wait(Guarded(alive_, [this](boost::system::error_code ec) {
      if (!ec) Poll();
    }));
  });
}

void Consumer::ApplyListing(const std::vector<std::string>& addresses) {
  for (size_t i = 0; i < links_.size(); ++i) {
    Link& link = links_[i];
    const bool listed =
        std::find(addresses.begin(), addresses.end(), link.address) != addresses.end();
    if (listed && link.dropped) {
      link.dropped = link.unlisted = false;
      link.backoff = std::chrono::milliseconds(0);
      Dial(i);
    } else if (listed) {
      link.unlisted = false;
    } else if (!link.dropped) {
      link.unlisted = true;
      if (!link.conn) {
        link.dropped = true;
        link.retry->cancel();
      }
    }
  }
  for (const std::string& address : addresses) {
    const bool known = std::any_of(links_.begin(), links_.end(),
                                   [&](const Link& l) { return l.address == address; });
    if (!known) {
      Dial(AddLink(address, std::nullopt));
    }
  }
}

bool Consumer::Live(const Link& link) const {
  return link.subscribed && link.conn && link.conn->open();
}

void Consumer::SetRdy(Link& link, int64_t rdy) {
  if (rdy == link.rdy) return;
  link.rdy = rdy;
  link.rdy_changed = std::chrono::steady_clock::now();
  link.conn->Ready(rdy);
}

// Lowers the connections above their share, then raises those below it as far as the total
// allows. The total counts, for each connection, the larger of its RDY and what it holds: the
// broker does not take back what it sent under a RDY since lowered.
void Consumer::UpdateRdy() {
  rdy_wanted_ = false;
  if (!receiving_) return;
  std::vector<size_t> live;
  for (size_t i = 0; i < links_.size(); ++i) {
    if (Live(links_[i])) live.push_back(i);
  }
  if (live.empty()) return;
  const bool rotating = rotating_ = static_cast<int64_t>(live.size()) > max_in_flight_;
  const int64_t share = rotating ? 1 : max_in_flight_ / static_cast<int64_t>(live.size());
  if (!rotating) {
    for (size_t i : live) {
      if (links_[i].rdy > share) SetRdy(links_[i], share);
    }
  }
  RaiseRdy(live, rotating, share);
  if (rotating && !rdy_timer_armed_) {
    rdy_timer_armed_ = true;
    rdy_timer_.expires_after(options_.rdy_redistribute_interval);
    rdy_timer_.async_wait(Guarded(alive_, [this](boost::system::error_code ec) {
      if (ec) return;
      rdy_timer_armed_ = false;
      RedistributeRdy();
    }));
  }
}

void Consumer::RaiseRdy(std::vector<size_t>& live, bool rotating, int64_t share) {
  int64_t used = 0;
  for (size_t i : live) used += std::max(links_[i].rdy, links_[i].conn->in_flight());
  if (rotating) {
    // Those at RDY 0 in the order they got there, and none jumps the queue: one that still
    // holds a message costs nothing to raise, but would then take the next message before one
    // that has waited longer.
    std::erase_if(live, [&](size_t i) { return links_[i].rdy > 0; });
    std::stable_sort(live.begin(), live.end(), [&](size_t a, size_t b) {
      return links_[a].rdy_changed < links_[b].rdy_changed;
    });
    for (size_t i : live) {
      const int64_t cost = links_[i].conn->in_flight() > 0 ? 0 : 1;
      if (used + cost > max_in_flight_) {
        rdy_wanted_ = true;
        return;
      }
      used += cost;
      SetRdy(links_[i], 1);
    }
    return;
  }
  for (size_t i : live) {
    Link& link = links_[i];
    const int64_t held = link.conn->in_flight();
    const int64_t want = std::min(share, link.conn->negotiated().max_rdy_count);
    if (link.rdy >= want) continue;
    const int64_t before = std::max(link.rdy, held);
    const int64_t rdy = std::min(want, before + (max_in_flight_ - used));
    if (rdy > link.rdy) {
      used += std::max(rdy, held) - before;
      SetRdy(link, rdy);
    }
    if (rdy < want) rdy_wanted_ = true;
  }
}

// While rotating: takes RDY back from the connections that had no message for a while or have
// held it long, and hands it to those waiting.
void Consumer::RedistributeRdy() {
  if (!receiving_) return;
  const auto now = std::chrono::steady_clock::now();
  for (Link& link : links_) {
    if (!Live(link) || link.rdy == 0) continue;
    if (now - link.last_active > options_.low_rdy_idle_timeout ||
        now - link.rdy_changed > options_.low_rdy_timeout) {
      SetRdy(link, 0);
    }
  }
  UpdateRdy();
}

void Consumer::Dial(size_t i) {
  if (closed_ || !receiving_ || links_[i].dropped) return;
  if (links_[i].endpoint) return Connect(i, {*links_[i].endpoint}, "");
  // A broker named by its address is resolved on every dial: a DNS name may have moved.
  auto split = SplitHostPort(links_[i].address);
  if (!split) {
    links_[i].dropped = true;
    return;
  }
  resolver_->async_resolve(
      split->host, std::to_string(split->port),
      Guarded(alive_, [this, i, host = split->host](boost::system::error_code ec,
                                                    const tcp::resolver::results_type& results) {
        if (ec == asio::error::operation_aborted || closed_ || links_[i].dropped) return;
        if (ec || results.empty()) return ScheduleRedial(i);
        Connect(i, AllEndpoints(results), host);
      }));
}

// Under TLS the broker's certificate must name `server_name`, the host it was given or found by
// ("": the address dialled).
void Consumer::Connect(size_t i, std::vector<tcp::endpoint> endpoints, std::string server_name) {
  auto conn =
      std::make_shared<Connection>(ex_, std::move(endpoints), options_, std::move(server_name));
  links_[i].conn = conn;
  conn->SetMessageHandler([this, i](Connection& c, const Delivered& d) {
    if (rotating_) links_[i].last_active = std::chrono::steady_clock::now();
    Delivered from = d;
    from.broker = i;
    handler_(from, MessageRef(c.weak(), d.id, i));
  });
  conn->SetSettleHandler([this, i] {
    // A settled message frees the broker to send the next at once: not idle yet.
    if (rotating_) links_[i].last_active = std::chrono::steady_clock::now();
    if (rdy_wanted_) UpdateRdy();
  });
  conn->SetCloseHandler([this, i](const std::string&) {
    Link& link = links_[i];
    const bool had_share = link.subscribed;
    link.conn.reset();
    link.subscribed = false;
    link.rdy = 0;
    if (link.unlisted) {
      link.dropped = true;  // it left nsqlookupd: not dialled again
    } else {
      ScheduleRedial(i);
    }
    if (had_share) UpdateRdy();  // it goes to the others
  });
  conn->Open([this, i, conn](Status opened) {
    if (!opened) return;  // the close handler schedules the redial
    conn->Subscribe(topic_, channel_, [this, i](Status subscribed) {
      if (!subscribed) return;
      Link& link = links_[i];
      link.backoff = std::chrono::milliseconds(0);
      link.subscribed = true;
      link.rdy_changed = link.last_active = std::chrono::steady_clock::now();
      UpdateRdy();
    });
  });
}

void Consumer::ScheduleRedial(size_t i) {
  if (closed_ || !receiving_) return;
  ++reconnects_;
  Link& link = links_[i];
  link.backoff = std::clamp(link.backoff * 2, options_.backoff_min, options_.backoff_max);
  link.retry->expires_after(link.backoff);
  link.retry->async_wait(Guarded(alive_, [this, i](boost::system::error_code ec) {
    if (!ec) Dial(i);
  }));
}

void Consumer::StopReceiving() {
  receiving_ = false;
  if (poll_timer_) poll_timer_->cancel();
  rdy_timer_.cancel();
  for (auto& link : links_) {
    link.retry->cancel();
    if (link.conn && link.conn->open()) {
      SetRdy(link, 0);
      link.conn->StartClose(nullptr);
    }
  }
}

void Consumer::Close() {
  if (closed_) return;
  closed_ = true;
  receiving_ = false;
  if (poll_timer_) poll_timer_->cancel();
  rdy_timer_.cancel();
  if (resolver_) resolver_->cancel();
  lookupds_.clear();  // their callbacks are dropped
  for (auto& link : links_) {
    link.retry->cancel();
    if (auto conn = std::move(link.conn)) {
      conn->SetCloseHandler(nullptr);
      conn->Close("consumer closed");
    }
  }
}

size_t Consumer::brokers() const {
  return static_cast<size_t>(
      std::count_if(links_.begin(), links_.end(), [](const Link& l) { return !l.dropped; }));
}

std::string Consumer::broker_address(size_t i) const {
  return i < links_.size() ? links_[i].address : std::string();
}

size_t Consumer::connected() const {
  size_t n = 0;
  for (const auto& link : links_) n += link.subscribed && link.conn && link.conn->open() ? 1 : 0;
  return n;
}

}  // namespace cairn::nsq

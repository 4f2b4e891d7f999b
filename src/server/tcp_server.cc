#include "src/server/tcp_server.h"

#include <sys/ioctl.h>

#include <chrono>
#include <deque>
#include <map>
#include <set>
#include <string>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <nlohmann/json.hpp>

#include "net/input_buffer.h"
#include "net/protocol.h"
#include "net/stream_codec.h"
#include "net/tls.h"
#include "src/base/clock.h"
#include "src/server/auth.h"
#include "src/server/direct_answers.h"
#include "src/server/errors.h"
#include "src/server/identify.h"
#include "storage/group_commit.h"

namespace cairn::net {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

nsq::ProtocolError Invalid(std::string text) { return {"E_INVALID", std::move(text), true}; }

// Output a client's commands may add (responses, errors, heartbeats) on top of what deliveries
// may fill (SessionOptions::max_pending_output) before the session stops reading its commands.
// Deliveries stop at the lower bound, so a consumer whose output is backed up with messages is
// still read: its NOPs, FINs and TOUCHes go on working. Only a client that also sends commands
// with answers and does not read them reaches this one.
constexpr size_t kResponseRoom = 1u << 20;

// Bytes read from the socket at a time, and decompressed at a time.
constexpr size_t kReadSize = 64 * 1024;
// As nsqd: a client that negotiated TLS has this long to complete the handshake.
constexpr auto kTlsHandshakeTimeout = 5s;

using TlsStream = asio::ssl::stream<tcp::socket&>;

// The answer to a publish that succeeded.
std::string_view OkFrame() {
  static const std::string frame = [] {
    std::string f;
    nsq::AppendResponse(f, nsq::kOk);
    return f;
  }();
  return frame;
}

// nsqd's names for TLS versions in /stats.
std::string TlsVersionName(SSL* ssl) {
  switch (SSL_version(ssl)) {
    case TLS1_VERSION:
      return "TLS1.0";
    case TLS1_1_VERSION:
      return "TLS1.1";
    case TLS1_2_VERSION:
      return "TLS1.2";
    case TLS1_3_VERSION:
      return "TLS1.3";
  }
  return SSL_get_version(ssl);
}

}  // namespace

class TcpSession final : public Subscriber,
                         public ListenedSession,
                         public std::enable_shared_from_this<TcpSession> {
 public:
  TcpSession(tcp::socket socket, Broker& broker, const SessionOptions& options,
             std::shared_ptr<SessionSet> set)
      : socket_(std::move(socket)),
        broker_(broker),
        options_(options),
        registration_(std::move(set), this),
        answers_(socket_.native_handle()),
        heartbeat_timer_(socket_.get_executor()),
        resume_(socket_.get_executor()) {
    limits_.max_msg_size = broker.options().max_msg_size;
    limits_.max_body_size = options_.max_body_size;
    limits_.max_identify_size = options_.max_body_size;
    settings_ = IdentifySettings::Defaults(options_);
    boost::system::error_code ec;
    auto remote = socket_.remote_endpoint(ec);
    remote_ =
        ec ? std::string("?") : fmt::format("{}:{}", remote.address().to_string(), remote.port());
    remote_host_ = ec ? std::string("?") : remote.address().to_string();
    connect_ts_ = std::chrono::duration_cast<std::chrono::seconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  }

  void Start() {
    last_command_ = last_write_progress_ = std::chrono::steady_clock::now();
    ArmHeartbeat();
    asio::co_spawn(
        socket_.get_executor(), [self = shared_from_this()] { return self->Run(); },
        asio::detached);
  }

  // Stop reading; answer what is pending, then close.
  void Drain() override {
    stop_reading_ = true;
    boost::system::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_receive, ec);
    resume_.cancel();
  }

  void Close() override {
    if (closed_) return;
    closed_ = true;
    answers_.Disable();  // before the descriptor goes: no answer is being written to it after this
    boost::system::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
    heartbeat_timer_.cancel();
    resume_.cancel();
    Unsubscribe();
  }

  // ---- Subscriber ----
  int64_t Credit() const override {
    if (state_ != State::kSubscribed || closed_) return 0;
    if (PendingOutput() >= options_.max_pending_output) return 0;
    return rdy_ - in_flight_;
  }
  std::chrono::milliseconds MsgTimeout() const override { return settings_.msg_timeout; }
  int SampleRate() const override { return settings_.sample_rate; }
  void Send(const Delivery& d) override {
    ++in_flight_;
    ++message_count_;
    nsq::AppendMessage(Out(), d.timestamp_ns, d.attempts, nsq::EncodeMessageId(d.offset), d.body);
  }
  void Settled() override { --in_flight_; }
  void Flush() override { StartWrite(); }
  void Kick() override {
    spdlog::info("client={} disconnected: its channel or topic was deleted", remote_);
    Close();
  }
  ClientStats Stats() const override {
    ClientStats c;
    c.client_id = settings_.client_id.empty() ? remote_host_ : settings_.client_id;
    c.hostname = settings_.hostname.empty() ? remote_host_ : settings_.hostname;
    c.user_agent = settings_.user_agent;
    c.remote_address = remote_;
    c.state = state_ == State::kInit ? 0 : state_ == State::kSubscribed ? 3 : 4;
    c.ready_count = rdy_;
    c.in_flight_count = in_flight_;
    c.message_count = message_count_;
    c.finish_count = finish_count_;
    c.requeue_count = requeue_count_;
    c.connect_ts = connect_ts_;
    c.sample_rate = settings_.sample_rate;
    // A client that has its OK sees its publish counted, as in nsqd, even when the committer
    // answered it (DirectAnswers) and this thread has not yet run the completion.
    std::map<std::string, uint64_t> pub_counts = pub_counts_;
    const uint64_t answered = answers_.AnsweredBelow();
    for (size_t i = 0; i < slots_.size() && slot_base_ + i < answered; ++i) {
      const Slot& slot = slots_[i];
      if (!slot.ready && slot.messages > 0) {
        pub_counts[slot.topic] += slot.messages;
      }
    }
    c.pub_counts.assign(pub_counts.begin(), pub_counts.end());
    if (Authed()) {
      c.authed = true;
      c.auth_identity = auth_->identity;
      c.auth_identity_url = auth_->identity_url;
    }
    c.snappy = encoder_ != nullptr && settings_.snappy;
    c.deflate = encoder_ != nullptr && settings_.deflate;
    if (tls_ != nullptr && !handshaking_) {
      c.tls = true;
      SSL* ssl = tls_->native_handle();
      if (const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl)) {
        c.tls_cipher_suite = SSL_CIPHER_standard_name(cipher);
      }
      c.tls_version = TlsVersionName(ssl);
    }
    return c;
  }

 private:
  enum class State { kInit, kSubscribed, kClosing };
  struct Slot {
    bool ready = false;
    bool fatal = false;
    std::string frame;
    // A publish's topic and message count, for Stats() while the committer has answered it and
    // this thread has not yet counted it.
    std::string topic;
    uint32_t messages = 0;
  };

  asio::awaitable<void> Run() {
    boost::system::error_code ec;
    // The magic.
    while (in_.size() < nsq::kMagicV2.size() && !ec) co_await ReadSome(ec);
    if (ec) co_return Teardown();
    if (in_.data().substr(0, 4) != nsq::kMagicV2) {
      spdlog::info("client={} bad protocol magic, closing", remote_);
      nsq::AppendFrame(Out(), nsq::FrameType::kError, "E_BAD_PROTOCOL");
      fatal_ = true;
      co_return Teardown();
    }
    in_.Consume(4);
    for (;;) {
      ProcessInput();
      if (fatal_ || stop_reading_ || closed_) break;
      while (InputPaused() && !stop_reading_ && !closed_) {
        resume_.expires_at(asio::steady_timer::time_point::max());
        co_await resume_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        ec.clear();
        ProcessInput();
        if (fatal_) break;
      }
      if (fatal_ || stop_reading_ || closed_) break;
      if (upgrading_ && !co_await Upgrade()) break;
      co_await ReadSome(ec);
      if (ec) break;
    }
    Teardown();
  }

  // Reads some commands' bytes into in_: from the socket, through TLS and the decompressor when
  // they were negotiated. A compressed stream is decoded a slice at a time, as commands are
  // parsed, so that a small input that inflates hugely is never held whole.
  asio::awaitable<void> ReadSome(boost::system::error_code& ec) {
    if (!decoder_) {
      auto space = in_.Prepare(kReadSize);
      in_.Commit(co_await RawRead(space, ec));
      co_return;
    }
    for (;;) {
      auto decoded = decoder_->Decode(in_, kReadSize);
      if (!decoded) {
        spdlog::info("client={} {}, closing", remote_, decoded.error().message);
        ec = asio::error::invalid_argument;
        co_return;
      }
      if (*decoded > 0) co_return;
      auto space = decoder_->wire().Prepare(kReadSize);
      decoder_->wire().Commit(co_await RawRead(space, ec));
      if (ec) co_return;
    }
  }

  asio::awaitable<size_t> RawRead(std::span<char> space, boost::system::error_code& ec) {
    auto buffer = asio::buffer(space.data(), space.size());
    auto token = asio::redirect_error(asio::use_awaitable, ec);
    if (tls_) co_return co_await tls_->async_read_some(buffer, token);
    co_return co_await socket_.async_read_some(buffer, token);
  }

  // IDENTIFY negotiated TLS or compression. Once its answer, and everything before it, is
  // written as it was negotiated (in plain text), the connection switches: TLS first, then
  // snappy or deflate, each confirmed by an OK sent in the new form, as nsqd does. False if the
  // connection was lost or the handshake failed.
  asio::awaitable<bool> Upgrade() {
    if (!co_await OutputWritten()) co_return false;
    if (settings_.tls_v1) {
      if (!co_await HandshakeTls()) co_return false;
      RespondText(nsq::kOk);
      if (!co_await OutputWritten()) co_return false;
    }
    if (settings_.snappy || settings_.deflate) {
      auto codec = nsq::MakeStreamCodec(settings_.snappy, settings_.deflate_level);
      encoder_ = std::move(codec.encoder);
      decoder_ = std::move(codec.decoder);
      decoder_->Adopt(in_);  // what the client sent after IDENTIFY is already compressed
      RespondText(nsq::kOk);
    }
    upgrading_ = false;
    StartWrite();
    co_return true;
  }

  asio::awaitable<bool> HandshakeTls() {
    tls_ = std::make_unique<TlsStream>(socket_, *options_.tls);
    handshaking_ = true;
    asio::steady_timer deadline(socket_.get_executor());
    deadline.expires_after(kTlsHandshakeTimeout);
    deadline.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
      if (auto self = weak.lock(); self && !ec) self->Close();
    });
    boost::system::error_code ec;
    // Bytes that arrived after IDENTIFY are the start of the client's handshake.
    co_await tls_->async_handshake(asio::ssl::stream_base::server, asio::buffer(in_.data()),
                                   asio::redirect_error(asio::use_awaitable, ec));
    deadline.cancel();
    in_.Consume(in_.size());
    handshaking_ = false;
    if (ec || closed_) {
      spdlog::info("client={} TLS handshake failed: {}", remote_,
                   closed_ && !ec ? "timed out" : ec.message());
      co_return false;
    }
    common_name_ = net::PeerCommonName(tls_->native_handle());
    co_return true;
  }

  // Waits until everything answered so far has been written, publishes waiting for durability
  // included. False if the connection closed first.
  asio::awaitable<bool> OutputWritten() {
    StartWrite();
    while (!closed_ &&
           !(slots_.empty() && out_.empty() && !writing_ && written_ == write_buf_.size())) {
      boost::system::error_code ec;
      resume_.expires_at(asio::steady_timer::time_point::max());
      co_await resume_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    co_return !closed_;
  }

  // Commands are not read while the connection has as many publishes waiting for durability as
  // it may, or while its output, answers included, is over its bound.
  // Nor while the auth server is being asked.
  bool InputPaused() const {
    return WaitingForDurability() || auth_pending_ ||
           PendingOutput() >= options_.max_pending_output + kResponseRoom;
  }
  bool WaitingForDurability() const { return slots_.size() >= options_.max_pending_publishes; }

  void ProcessInput() {
    size_t pos = 0;
    // After an IDENTIFY that upgrades the connection, the rest is read in its new form.
    while (!fatal_ && !closed_ && !upgrading_ && !InputPaused()) {
      auto outcome = nsq::ParseCommand(in_.data().substr(pos), limits_);
      if (std::holds_alternative<nsq::NeedMore>(outcome)) break;
      if (auto* err = std::get_if<nsq::ProtocolError>(&outcome)) {
        Fail(*err);
        break;
      }
      auto& parsed = std::get<nsq::Parsed>(outcome);
      last_command_ = std::chrono::steady_clock::now();
      if (AuthExpired(parsed.command)) {
        // The command is parsed again once the auth server has answered.
        Reauthorize();
        break;
      }
      if (auto err = Exec(parsed.command)) Fail(*err);
      pos += parsed.consumed;
    }
    in_.Consume(pos);
    if (pump_ && channel_ != nullptr) {
      pump_ = false;
      channel_->Pump();
    }
    StartWrite();
  }

  void Fail(const nsq::ProtocolError& err) {
    if (err.fatal) {
      spdlog::info("client={} {}{}", remote_, err.Frame(), err.silent ? " (closing silently)" : "");
      fatal_ = true;
    }
    if (!err.silent) {
      std::string frame;
      nsq::AppendError(frame, err);
      Respond(std::move(frame), err.fatal);
    }
  }

  std::optional<nsq::ProtocolError> Exec(const nsq::Command& cmd) {
    if (cmd.verb != nsq::Verb::kIdentify && tls_ == nullptr &&
        options_.tls_required != SessionOptions::TlsRequired::kNo) {
      return Invalid(
          fmt::format("cannot {} in current state (TLS required)", nsq::VerbName(cmd.verb)));
    }
    switch (cmd.verb) {
      case nsq::Verb::kIdentify:
        return Identify(cmd);
      case nsq::Verb::kSub:
        return Sub(cmd);
      case nsq::Verb::kPub:
      case nsq::Verb::kMpub:
      case nsq::Verb::kDpub:
        return Publish(cmd);
      case nsq::Verb::kRdy:
        return Rdy(cmd);
      case nsq::Verb::kFin:
      case nsq::Verb::kReq:
      case nsq::Verb::kTouch:
        return Settle(cmd);
      case nsq::Verb::kCls:
        if (state_ != State::kSubscribed) return Invalid("cannot CLS in current state");
        state_ = State::kClosing;
        rdy_ = 0;
        RespondText(nsq::kCloseWait);
        return std::nullopt;
      case nsq::Verb::kNop:
        return std::nullopt;
      case nsq::Verb::kAuth:
        return Auth(cmd);
    }
    return Invalid("invalid command");
  }

  std::optional<nsq::ProtocolError> Identify(const nsq::Command& cmd) {
    if (state_ != State::kInit) return Invalid("cannot IDENTIFY in current state");
    auto applied = ApplyIdentify(cmd.body, options_, broker_.options(), &settings_);
    if (!applied)
      return nsq::ProtocolError{"E_BAD_BODY", "IDENTIFY " + applied.error().message, true};
    ArmHeartbeat();
    if (!*applied) {
      RespondText(nsq::kOk);
      return std::nullopt;
    }
    if (settings_.snappy && settings_.deflate) {
      return nsq::ProtocolError{"E_IDENTIFY_FAILED",
                                "cannot enable both deflate and snappy compression", true};
    }
    RespondText(NegotiatedJson(settings_, options_, broker_.options()));
    upgrading_ = settings_.tls_v1 || settings_.snappy || settings_.deflate;
    return std::nullopt;
  }

  std::optional<nsq::ProtocolError> Sub(const nsq::Command& cmd) {
    if (state_ != State::kInit) return Invalid("cannot SUB in current state");
    if (settings_.heartbeat_interval.count() <= 0) {
      return Invalid("cannot SUB with heartbeats disabled");
    }
    if (auto denied = CheckAuth("SUB", cmd.params[0], cmd.params[1])) return denied;
    auto topic = broker_.GetOrCreateTopic(cmd.params[0]);
    if (!topic) return CommandFailed(remote_, "SUB", topic.error());
    auto channel = (*topic)->GetOrCreateChannel(cmd.params[1]);
    if (!channel) return CommandFailed(remote_, "SUB", channel.error());
    topic_ = *topic;
    channel_ = *channel;
    state_ = State::kSubscribed;
    RespondText(nsq::kOk);
    channel_->AddSubscriber(this);  // RDY is 0: nothing is sent before the OK
    return std::nullopt;
  }

  std::optional<nsq::ProtocolError> Publish(const nsq::Command& cmd) {
    const std::string_view verb = nsq::VerbName(cmd.verb);
    const int64_t now = WallNowNs();
    int64_t deliver_at = 0;
    if (cmd.verb == nsq::Verb::kDpub) {
      auto ms = nsq::ParseDecimal(cmd.params[1]);
      if (!ms) return Invalid(fmt::format("DPUB could not parse timeout {}", cmd.params[1]));
      if (*ms < 0 || *ms > options_.max_req_timeout.count()) {
        return Invalid(fmt::format("DPUB timeout {} out of range 0-{}", *ms,
                                   options_.max_req_timeout.count()));
      }
      if (*ms > 0) deliver_at = now + *ms * 1'000'000;
    }
    if (auto denied = CheckAuth(verb, cmd.params[0], "")) return denied;
    auto topic = broker_.GetOrCreateTopic(cmd.params[0]);
    if (!topic) return CommandFailed(remote_, verb, topic.error());
    std::vector<storage::MessageIn> messages;
    if (cmd.verb == nsq::Verb::kMpub) {
      messages.reserve(cmd.bodies.size());
      for (auto b : cmd.bodies) messages.push_back({b, now, 0});
    } else {
      messages.push_back({cmd.body, now, deliver_at});
    }
    const uint64_t seq = slot_base_ + slots_.size();
    Slot& pending = slots_.emplace_back();
    pending.topic = cmd.params[0];
    pending.messages = static_cast<uint32_t>(messages.size());
    (*topic)->Publish(
        messages,
        [self = shared_from_this(), seq, verb](storage::Result<storage::AppendResult> result) {
          Slot& slot = self->slots_[seq - self->slot_base_];
          slot.ready = true;
          if (result) {
            self->pub_counts_[slot.topic] += result->count;
            if (!self->answers_.Sent(seq)) slot.frame = OkFrame();
          } else {
            slot.fatal = true;
            nsq::AppendError(slot.frame, CommandFailed(self->remote_, verb, result.error()));
          }
          self->DrainSlots();
        },
        [self = shared_from_this(), seq](const storage::Result<storage::AppendResult>& result) {
          if (result && storage::CompletingGroupSize() <= DirectAnswers::kMaxGroup) {
            self->answers_.TrySend(seq, OkFrame());
          }
        });
    return std::nullopt;
  }

  std::optional<nsq::ProtocolError> Rdy(const nsq::Command& cmd) {
    if (state_ == State::kClosing) return std::nullopt;  // nsqd ignores RDY after CLS
    if (state_ != State::kSubscribed) return Invalid("cannot RDY in current state");
    int64_t count = 1;
    if (!cmd.params.empty()) {
      auto parsed = nsq::ParseDecimal(cmd.params[0]);
      if (!parsed) return Invalid(fmt::format("RDY could not parse count {}", cmd.params[0]));
      count = *parsed;
    }
    if (count < 0 || count > options_.max_rdy_count) {
      return Invalid(fmt::format("RDY count {} out of range 0-{}", count, options_.max_rdy_count));
    }
    rdy_ = count;
    pump_ = true;
    return std::nullopt;
  }

  std::optional<nsq::ProtocolError> Settle(const nsq::Command& cmd) {
    const std::string_view verb = nsq::VerbName(cmd.verb);
    if (state_ == State::kInit) return Invalid(fmt::format("cannot {} in current state", verb));
    const std::string_view id = cmd.params[0];
    std::chrono::milliseconds delay{0};
    if (cmd.verb == nsq::Verb::kReq) {
      auto ms = nsq::ParseDecimal(cmd.params[1]);
      if (!ms) return Invalid(fmt::format("REQ could not parse timeout {}", cmd.params[1]));
      // As nsqd: a delay out of range is clamped, not refused.
      delay = std::clamp(std::chrono::milliseconds(*ms), std::chrono::milliseconds(0),
                         options_.max_req_timeout);
    }
    Channel::Settle result = Channel::Settle::kNotInFlight;
    if (auto offset = nsq::DecodeMessageId(id)) {
      switch (cmd.verb) {
        case nsq::Verb::kFin:
          result = channel_->Finish(this, *offset);
          break;
        case nsq::Verb::kReq:
          result = channel_->Requeue(this, *offset, delay);
          break;
        default:
          result = channel_->Touch(this, *offset);
          break;
      }
    }
    if (result == Channel::Settle::kOk) {
      if (cmd.verb == nsq::Verb::kFin) ++finish_count_;
      if (cmd.verb == nsq::Verb::kReq) ++requeue_count_;
      if (cmd.verb != nsq::Verb::kTouch) pump_ = true;
      return std::nullopt;
    }
    return nsq::ProtocolError{
        fmt::format("E_{}_FAILED", verb),
        fmt::format("{} {} failed {}", verb, id,
                    result == Channel::Settle::kNotOwner ? "client does not own message"
                                                         : "ID not in flight"),
        false};
  }

  // ---- AUTH ----

  bool AuthEnabled() const { return !options_.auth_http_addresses.empty(); }
  bool Authed() const { return auth_.has_value() && !auth_->authorizations.empty(); }

  std::optional<nsq::ProtocolError> Auth(const nsq::Command& cmd) {
    if (state_ != State::kInit) return Invalid("cannot AUTH in current state");
    if (Authed()) return Invalid("AUTH already set");
    if (!AuthEnabled()) return nsq::ProtocolError{"E_AUTH_DISABLED", "AUTH disabled", true};
    secret_ = std::string(cmd.body);
    // Answered in command order, as a publish is: a slot filled when the auth server answers.
    const uint64_t seq = slot_base_ + slots_.size();
    slots_.emplace_back();
    QueryAuth([this, seq](bool ok) {
      Slot& slot = slots_[seq - slot_base_];
      slot.ready = true;
      if (!ok || !Authed()) {
        slot.fatal = true;
        nsq::AppendError(slot.frame, ok ? nsq::ProtocolError{"E_UNAUTHORIZED",
                                                             "AUTH no authorizations found", true}
                                        : nsq::ProtocolError{"E_AUTH_FAILED", "AUTH failed", true});
      } else {
        nsq::AppendResponse(slot.frame,
                            nlohmann::json{{"identity", auth_->identity},
                                           {"identity_url", auth_->identity_url},
                                           {"permission_count", auth_->authorizations.size()}}
                                .dump());
      }
      DrainSlots();
    });
    return std::nullopt;
  }

  // Asks the auth servers with the client's secret; `done(ok)` once they answered (auth_ then
  // holds the answer). Commands are not read meanwhile. Why a query failed is logged, never told
  // to the client, as nsqd does.
  void QueryAuth(std::function<void(bool)> done) {
    auth_pending_ = true;
    AuthQuery q{remote_host_, tls_ != nullptr, secret_, common_name_};
    QueryAuthServers(socket_.get_executor(), options_.auth_http_addresses,
                     options_.auth_http_request_method, options_.auth_tls, q,
                     [weak = weak_from_this(), done = std::move(done)](Result<AuthState> r) {
                       auto self = weak.lock();
                       if (!self || self->closed_) return;
                       self->auth_pending_ = false;
                       if (!r) {
                         spdlog::warn("client={} AUTH failed {}", self->remote_, r.error().message);
                       } else {
                         self->auth_ = std::move(*r);
                       }
                       done(r.has_value());
                       self->resume_.cancel();
                     });
  }

  // A command the auth answer governs, after its ttl ran out: the auth server is asked again.
  bool AuthExpired(const nsq::Command& cmd) const {
    const bool checked = cmd.verb == nsq::Verb::kPub || cmd.verb == nsq::Verb::kMpub ||
                         cmd.verb == nsq::Verb::kDpub || cmd.verb == nsq::Verb::kSub;
    return checked && Authed() && auth_->Expired(std::chrono::steady_clock::now());
  }

  void Reauthorize() {
    QueryAuth([this](bool ok) {
      if (!ok) {
        Fail({"E_AUTH_FAILED", "AUTH failed", true});
        StartWrite();
      }
    });
  }

  std::optional<nsq::ProtocolError> CheckAuth(std::string_view verb, std::string_view topic,
                                              std::string_view channel) const {
    if (!AuthEnabled()) return std::nullopt;
    if (!Authed()) {
      return nsq::ProtocolError{"E_AUTH_FIRST", fmt::format("AUTH required before {}", verb), true};
    }
    if (!auth_->IsAllowed(topic, channel)) {
      return nsq::ProtocolError{
          "E_UNAUTHORIZED",
          fmt::format("AUTH failed for {} on \"{}\" \"{}\"", verb, topic, channel), true};
    }
    return std::nullopt;
  }

  // ---- Output ----

  void RespondText(std::string_view text) {
    std::string frame;
    nsq::AppendResponse(frame, text);
    Respond(std::move(frame), false);
  }

  // Responses go out in command order: behind any publish still waiting for durability.
  void Respond(std::string frame, bool fatal) {
    if (slots_.empty()) {
      Out() += frame;
      if (fatal) CloseAfterFlush();
      return;
    }
    Slot& slot = slots_.emplace_back();
    slot.ready = true;
    slot.fatal = fatal;
    slot.frame = std::move(frame);
  }

  void DrainSlots() {
    while (!slots_.empty() && slots_.front().ready) {
      Slot& s = slots_.front();
      // Empty when the committer wrote the answer (DirectAnswers): nothing is queued, and the
      // connection's writes stay idle.
      if (!s.frame.empty()) Out() += s.frame;
      const bool fatal = s.fatal;
      slots_.pop_front();
      ++slot_base_;
      if (fatal) {
        fatal_ = true;
        CloseAfterFlush();
        break;
      }
    }
    if (slots_.empty() && reading_done_) CloseAfterFlush();
    StartWrite();
    if (!InputPaused()) resume_.cancel();
  }

  // Where every byte for the client is queued (StartWrite sends it): the committer stops writing
  // answers itself from here on.
  std::string& Out() {
    answers_.Busy();
    return out_;
  }

  // Whether a publish's OK may be written by the thread that completes it (DirectAnswers): on a
  // plain connection, with nothing left to write, every earlier answer written, and staying open.
  bool CanAnswerDirectly() const {
    return !tls_ && !encoder_ && !upgrading_ && !handshaking_ && !fatal_ && !close_after_flush_ &&
           !closed_ && (slots_.empty() || !slots_.front().ready);
  }

  // Bytes not yet taken by the socket: queued, and what is left of the write in progress.
  size_t PendingOutput() const { return out_.size() + (write_buf_.size() - written_); }

  void StartWrite() {
    if (writing_ || closed_ || handshaking_) return;
    if (written_ == write_buf_.size()) {
      answers_.TakeLeftover(out_);
      if (out_.empty()) {
        if (close_after_flush_) {
          Close();
        } else if (CanAnswerDirectly()) {
          answers_.Idle(slot_base_);
        }
        return;
      }
      write_buf_.clear();
      // A burst (a backlog delivered at full RDY) must not leave megabytes behind on every idle
      // connection.
      if (write_buf_.capacity() > InputBuffer::kKeepBytes) std::string().swap(write_buf_);
      if (encoder_) {
        encoder_->Encode(out_, write_buf_);
        out_.clear();
        if (out_.capacity() > InputBuffer::kKeepBytes) std::string().swap(out_);
      } else {
        write_buf_.swap(out_);
      }
      written_ = 0;
    }
    writing_ = true;
    // write_some, not write: each completion is the client taking bytes, which is what keeps a
    // slow reader alive while its heartbeats wait behind the messages queued before them.
    auto buffer = asio::buffer(write_buf_.data() + written_, write_buf_.size() - written_);
    auto done = [self = shared_from_this()](boost::system::error_code ec, size_t n) {
      self->OnWritten(ec, n);
    };
    if (tls_) {
      tls_->async_write_some(buffer, std::move(done));
    } else {
      socket_.async_write_some(buffer, std::move(done));
    }
  }

  void OnWritten(boost::system::error_code ec, size_t n) {
    writing_ = false;
    if (ec) {
      Close();
      return;
    }
    written_ += n;
    last_write_progress_ = std::chrono::steady_clock::now();
    // Output drained some: the channel may send more, and reading may resume.
    if (channel_ != nullptr && Credit() > 0) channel_->Pump();
    if (!InputPaused()) resume_.cancel();
    StartWrite();
  }

  void CloseAfterFlush() {
    close_after_flush_ = true;
    StartWrite();
  }

  void Unsubscribe() {
    if (channel_ == nullptr) return;
    Channel* channel = channel_;
    channel_ = nullptr;
    channel->RemoveSubscriber(this);
    topic_.reset();
  }

  // The read loop ended: leave the channel now (its messages go to the other subscribers), and
  // close once every pending publish has its answer written.
  void Teardown() {
    reading_done_ = true;
    Unsubscribe();
    if (slots_.empty()) CloseAfterFlush();
  }

  // ---- Heartbeats ----

  void ArmHeartbeat() {
    heartbeat_timer_.cancel();
    if (settings_.heartbeat_interval.count() <= 0 || closed_) return;
    next_heartbeat_ = std::chrono::steady_clock::now() + settings_.heartbeat_interval;
    ScheduleHeartbeat();
  }

  // When the client must next have shown it is alive: as nsqd, two heartbeat intervals after its
  // last command; but while its output is backed up it receives our heartbeats only once it has
  // read what was queued before them, so it cannot answer them yet, and taking bytes counts too.
  // A client that neither reads nor sends is cut as nsqd would cut it.
  // Bytes the socket holds that the client's kernel has not acknowledged yet (SIOCOUTQ).
  int UnacknowledgedBytes() {
    int n = 0;
    return ::ioctl(socket_.native_handle(), TIOCOUTQ, &n) == 0 ? n : 0;
  }

  // The client took bytes since we last looked: written into the socket (OnWritten counts
  // those), or acknowledged out of it while the socket was too full to take more (which a slow
  // link shows as acknowledgements long before the socket has room for another write). Looked at
  // once a heartbeat interval, not per write: writes since the last look only raise the count.
  void NoteAcknowledgements(std::chrono::steady_clock::time_point now) {
    const int unacked = UnacknowledgedBytes();
    if (unacked < unacked_) last_write_progress_ = now;
    unacked_ = unacked;
  }

  std::chrono::steady_clock::time_point AliveUntil() const {
    const auto grace = 2 * settings_.heartbeat_interval;
    auto until = last_command_ + grace;
    if (PendingOutput() > 0) until = std::max(until, last_write_progress_ + grace);
    return until;
  }

  void ScheduleHeartbeat() {
    heartbeat_timer_.expires_at(std::min(next_heartbeat_, AliveUntil()));
    heartbeat_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
      auto self = weak.lock();
      if (ec || !self || self->closed_) return;
      self->OnHeartbeatTimer();
    });
  }

  void OnHeartbeatTimer() {
    const auto now = std::chrono::steady_clock::now();
    // While its publishes wait for the disk, the session reads nothing: the client's silence is
    // ours, and its NOPs are parsed once reading resumes.
    if (WaitingForDurability()) last_command_ = now;
    NoteAcknowledgements(now);
    if (now >= AliveUntil()) {
      // As nsqd: the read deadline passed; hang up without an error frame.
      using std::chrono::duration_cast, std::chrono::milliseconds;
      spdlog::info(
          "client={} missed heartbeats ({} ms without a command{}), closing", remote_,
          duration_cast<milliseconds>(now - last_command_).count(),
          PendingOutput() == 0
              ? std::string()
              : fmt::format(" and {} ms without reading",
                            duration_cast<milliseconds>(now - last_write_progress_).count()));
      Close();
      return;
    }
    if (now >= next_heartbeat_) {
      // Not while the connection switches to TLS or compression: the client expects an OK next.
      if (!upgrading_) {
        nsq::AppendResponse(Out(), nsq::kHeartbeat);
        StartWrite();
      }
      next_heartbeat_ = now + settings_.heartbeat_interval;
    }
    ScheduleHeartbeat();
  }

  tcp::socket socket_;
  Broker& broker_;
  const SessionOptions options_;
  SessionRegistration registration_;
  std::string remote_, remote_host_;
  int64_t connect_ts_ = 0;
  uint64_t message_count_ = 0, finish_count_ = 0, requeue_count_ = 0;
  std::map<std::string, uint64_t> pub_counts_;
  nsq::ParseLimits limits_;
  IdentifySettings settings_;

  State state_ = State::kInit;
  std::shared_ptr<Topic> topic_;
  Channel* channel_ = nullptr;
  int64_t rdy_ = 0;
  int64_t in_flight_ = 0;
  bool pump_ = false;

  InputBuffer in_;               // commands' bytes, decrypted and decompressed
  std::string out_, write_buf_;  // out_ as written; write_buf_ as sent (compressed)
  DirectAnswers answers_;        // OKs written by the committer itself while this thread is idle
  size_t written_ = 0;           // bytes of write_buf_ the socket has taken
  bool writing_ = false;
  std::deque<Slot> slots_;
  uint64_t slot_base_ = 0;

  // The stream's layers, set up after IDENTIFY.
  std::unique_ptr<TlsStream> tls_;
  std::unique_ptr<nsq::StreamEncoder> encoder_;
  std::unique_ptr<nsq::StreamDecoder> decoder_;
  std::string common_name_;  // of the client's certificate
  // AUTH: the secret the client sent, the auth server's last answer, a question outstanding.
  std::string secret_;
  std::optional<AuthState> auth_;
  bool auth_pending_ = false;
  bool upgrading_ = false;  // from an IDENTIFY that negotiated them until they are in place
  bool handshaking_ = false;

  bool fatal_ = false;
  bool stop_reading_ = false;
  bool reading_done_ = false;
  bool close_after_flush_ = false;
  bool closed_ = false;

  asio::steady_timer heartbeat_timer_;
  asio::steady_timer resume_;  // wakes the read loop when backpressure lifts
  std::chrono::steady_clock::time_point last_command_, next_heartbeat_;
  std::chrono::steady_clock::time_point last_write_progress_;  // the client last took bytes
  int unacked_ = 0;  // UnacknowledgedBytes() when last looked at
};

TcpServer::TcpServer(asio::io_context& io, Broker& broker, const SessionOptions& options)
    : Listener(io, [&broker, options](tcp::socket socket, std::shared_ptr<SessionSet> set) {
        boost::system::error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        std::make_shared<TcpSession>(std::move(socket), broker, options, std::move(set))->Start();
      }) {}

std::vector<ClientStats> TcpServer::Producers() const {
  std::vector<ClientStats> out;
  for (ListenedSession* s : sessions()) {
    ClientStats c = static_cast<TcpSession*>(s)->Stats();
    if (!c.pub_counts.empty()) out.push_back(std::move(c));
  }
  return out;
}

}  // namespace cairn::net

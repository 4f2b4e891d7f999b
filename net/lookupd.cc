#include "net/lookupd.h"

#include <algorithm>
#include <random>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "net/http_client.h"
#include "src/base/address.h"
#include "src/base/duration.h"

// GCC 12 warns falsely on asio's coroutine frames (its bug 109224: a frame allocated with asio's
// operator new and freed with its sized operator delete looks mismatched).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace cairn::nsq {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

// At most `n` bytes of outside text, for a log line.
std::string_view Cut(std::string_view s, size_t n = 200) { return s.substr(0, n); }

}  // namespace

void LookupTopic(const std::vector<net::HttpClient*>& lookupds, std::string_view topic,
                 std::function<void(Result<std::vector<LookupdProducer>>)> done) {
  struct Round {
    size_t waiting = 0;
    bool answered = false;
    std::vector<LookupdProducer> listed;
    std::function<void(Result<std::vector<LookupdProducer>>)> done;
  };
  auto round = std::make_shared<Round>();
  round->waiting = lookupds.size();
  round->done = std::move(done);
  if (lookupds.empty()) {
    return round->done(Fail(Errc::kInvalidArgument, "no nsqlookupd to ask"));
  }
  // '#' (ephemeral topics) must be escaped in a query; names allow no other such character.
  std::string target = "/lookup?topic=";
  for (char c : topic) target += c == '#' ? std::string("%23") : std::string(1, c);
  for (net::HttpClient* lookupd : lookupds) {
    lookupd->Request(boost::beast::http::verb::get, target, "", "", [round](net::HttpResult r) {
      if (r.status == 200) {
        if (auto listed = ParseLookupProducers(r.body)) {
          round->answered = true;
          for (auto& p : *listed) {
            if (std::none_of(
                    round->listed.begin(), round->listed.end(),
                    [&](const LookupdProducer& o) { return o.tcp_address == p.tcp_address; })) {
              round->listed.push_back(std::move(p));
            }
          }
        }
      } else if (r.status == 404) {
        round->answered = true;  // TOPIC_NOT_FOUND
      }
      if (--round->waiting > 0) return;
      if (!round->answered) return round->done(Fail(Errc::kUnavailable, "no nsqlookupd answered"));
      round->done(std::move(round->listed));
    });
  }
}

LookupdPeer::LookupdPeer(asio::any_io_executor ex, std::string address, LookupdIdentity identity,
                         Snapshot snapshot, LookupdOptions options)
    : ex_(ex),
      address_(std::move(address)),
      identity_(std::move(identity)),
      snapshot_(std::move(snapshot)),
      options_(options),
      resolver_(ex),
      socket_(ex),
      deadline_(ex, Clock::time_point::max()),
      wake_(ex),
      retry_(ex) {}

LookupdPeer::~LookupdPeer() = default;

void LookupdPeer::Start() {
  asio::co_spawn(ex_, Watchdog(), asio::detached);
  asio::co_spawn(ex_, Run(), asio::detached);
}

void LookupdPeer::Close() {
  if (closed_) return;
  closed_ = true;
  registered_ = false;
  boost::system::error_code ec;
  resolver_.cancel();
  socket_.close(ec);
  deadline_.cancel();
  wake_.cancel();
  retry_.cancel();
}

void LookupdPeer::WatchReadable() {
  if (watching_) return;
  watching_ = true;
  socket_.async_wait(tcp::socket::wait_read,
                     [weak = weak_from_this()](boost::system::error_code ec) {
                       auto self = weak.lock();
                       if (!self) return;
                       self->watching_ = false;
                       if (!ec) self->readable_ = true;
                       self->wake_.cancel();
                     });
}

Status LookupdPeer::CheckIdle() {
  if (!std::exchange(readable_, false)) return {};
  char byte = 0;
  boost::system::error_code ec;
  socket_.non_blocking(true, ec);
  const size_t n = socket_.receive(asio::buffer(&byte, 1), tcp::socket::message_peek, ec);
  if (ec == asio::error::would_block) return {};  // the readiness was an answer, since read
  if (ec == asio::error::eof || (!ec && n == 0)) {
    return Fail(Errc::kUnavailable, "closed by nsqlookupd");
  }
  if (ec) return Fail(Errc::kUnavailable, ec.message());
  return Fail(Errc::kUnavailable, "nsqlookupd sent what nobody asked for");
}

void LookupdPeer::Queue(bool registered, LookupdRegistration r) {
  if (!registered_) return;
  std::string line;
  AppendLookupdRegistration(line, registered, r);
  queued_.push_back(std::move(line));
  wake_.cancel();
}

void LookupdPeer::Arm(Clock::duration d) { deadline_.expires_after(d); }

void LookupdPeer::Disarm() { deadline_.expires_at(Clock::time_point::max()); }

asio::awaitable<void> LookupdPeer::Watchdog() {
  auto self = shared_from_this();
  boost::system::error_code ec;
  while (!closed_) {
    co_await deadline_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (closed_ || deadline_.expiry() > Clock::now()) continue;
    // The operation in progress takes too long: cancelling it fails it, and the session ends.
    resolver_.cancel();
    socket_.close(ec);
    Disarm();
  }
}

asio::awaitable<void> LookupdPeer::Run() {
  auto self = shared_from_this();
  std::minstd_rand jitter(std::random_device{}());
  std::chrono::milliseconds backoff{0};
  while (!closed_) {
    const uint64_t connects_before = connects_;
    const Status ended = co_await Session();
    registered_ = false;
    queued_.clear();
    in_.clear();
    boost::system::error_code ec;
    socket_.close(ec);
    if (closed_) break;
    ++failures_;
    // A connection that got as far as registering starts the backoff again.
    if (connects_ != connects_before) backoff = std::chrono::milliseconds(0);
    backoff = std::clamp(backoff * 2, options_.backoff_min, options_.backoff_max);
    const auto wait = backoff + std::chrono::milliseconds(
                                    jitter() % (static_cast<uint64_t>(backoff.count()) / 4 + 1));
    spdlog::warn("lookupd {}: {}; connecting again in {}", address_, ended.error().message,
                 FormatDuration(wait));
    retry_.expires_after(wait);
    co_await retry_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<Status> LookupdPeer::Session() {
  const auto split = SplitHostPort(address_);
  if (!split) co_return tl::unexpected(split.error());
  boost::system::error_code ec;
  Arm(options_.timeout);
  auto endpoints = co_await resolver_.async_resolve(split->host, std::to_string(split->port),
                                                    asio::redirect_error(asio::use_awaitable, ec));
  if (!ec) {
    co_await asio::async_connect(socket_, endpoints, asio::redirect_error(asio::use_awaitable, ec));
  }
  Disarm();
  if (ec) co_return Fail(Errc::kUnavailable, "connect: " + ec.message());
  socket_.set_option(tcp::no_delay(true), ec);

  std::string hello(kMagicLookupV1);
  AppendLookupdIdentify(hello, identity_);
  std::string answer;
  if (auto st = co_await Exchange(std::move(hello), 1, &answer); !st) co_return st;
  ++connects_;
  spdlog::info("lookupd {}: identified as {}:{} (HTTP {}); it answered {}", address_,
               identity_.broadcast_address, identity_.tcp_port, identity_.http_port, Cut(answer));

  // Everything this broker has, as on nsqd's every (re)connect; changes from here on queue up.
  std::string registrations;
  size_t count = 0;
  for (const LookupdRegistration& r : snapshot_()) {
    AppendLookupdRegistration(registrations, true, r);
    ++count;
  }
  queued_.clear();
  registered_ = true;
  if (count > 0) {
    if (auto st = co_await Exchange(std::move(registrations), count, nullptr); !st) co_return st;
  }
  spdlog::info("lookupd {}: {} topics and channels registered", address_, count);

  auto next_ping = Clock::now() + options_.ping_interval;
  while (!closed_) {
    if (queued_.size() > options_.max_queued) {
      co_return Fail(Errc::kUnavailable, "too many changes waiting; registering anew");
    }
    if (!queued_.empty()) {
      std::string batch;
      size_t n = 0;
      for (; !queued_.empty() && n < 1024; ++n) {
        batch += queued_.front();
        queued_.pop_front();
      }
      if (auto st = co_await Exchange(std::move(batch), n, nullptr); !st) co_return st;
      continue;
    }
    if (Clock::now() >= next_ping) {
      if (auto st = co_await Exchange("PING\n", 1, nullptr); !st) co_return st;
      next_ping = Clock::now() + options_.ping_interval;
      continue;
    }
    if (auto st = CheckIdle(); !st) co_return st;
    WatchReadable();
    wake_.expires_at(next_ping);
    co_await wake_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  co_return Fail(Errc::kClosed, "closed");
}

asio::awaitable<Status> LookupdPeer::Exchange(std::string commands, size_t answers,
                                              std::string* first_answer) {
  boost::system::error_code ec;
  Arm(options_.timeout);
  co_await asio::async_write(socket_, asio::buffer(commands),
                             asio::redirect_error(asio::use_awaitable, ec));
  for (size_t i = 0; !ec && i < answers;) {
    const FrameOutcome outcome = ParseLookupdAnswer(in_, options_.max_response);
    if (const auto* parsed = std::get_if<FrameParsed>(&outcome)) {
      const std::string_view data = parsed->frame.data;
      if (parsed->frame.type == FrameType::kError) {
        // Names are checked before they get here; nsqlookupd closes after its errors.
        Disarm();
        co_return Fail(Errc::kRejected, std::string(Cut(data)));
      }
      if (i == 0 && first_answer != nullptr) *first_answer = data;
      in_.erase(0, parsed->consumed);
      ++i;
      Arm(options_.timeout);
      continue;
    }
    if (const auto* bad = std::get_if<FrameError>(&outcome)) {
      Disarm();
      co_return Fail(Errc::kUnavailable, bad->text);
    }
    char buf[4096];
    const size_t n = co_await socket_.async_read_some(
        asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
    in_.append(buf, n);
  }
  Disarm();
  if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) {
    co_return Fail(Errc::kUnavailable, closed_ ? "closed" : "no answer in time");
  }
  if (ec == asio::error::eof) co_return Fail(Errc::kUnavailable, "closed by nsqlookupd");
  if (ec) co_return Fail(Errc::kUnavailable, ec.message());
  co_return Status{};
}

}  // namespace cairn::nsq

// cairn-logger: a drop-in for Deis Workflow's logger. It consumes `logs`, files each record under
// its app (log_record.h), keeps the last lines of every app in memory (log_store.h) and serves
// them over the HTTP API the Deis controller calls: GET /logs/{app}?log_lines=N, DELETE
// /logs/{app}, GET /healthz, plus GET /logs/{app}?follow=true (a chunked stream of new lines) and
// its own /metrics.
//
// Warm start: memory is lost on a restart, the log is not. Before subscribing, the logger rewinds
// its durable channel on every broker to --warm-start ago (POST /channel/seek?to=time:...), so
// the channels deliver that part of the topic again, and the store files it exactly as it did
// the first time (lines keyed by publish time, broker and offset: log_store.h). A message is
// FINished as soon as its line is stored: the logger holds nothing a crash could lose that the warm
// start does not bring back.
#include <charconv>
#include <chrono>
#include <ctime>
#include <map>
#include <set>
#include <unordered_map>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/verb.hpp>

#include "consumers/common/worker.h"
#include "consumers/logger/log_record.h"
#include "consumers/logger/log_store.h"
#include "net/client.h"
#include "net/protocol.h"
#include "src/base/clock.h"
#include "src/base/duration.h"

namespace {

using namespace cairn;
using namespace cairn::consumers;
namespace asio = boost::asio;
namespace http = boost::beast::http;
using namespace std::chrono_literals;

constexpr size_t kDefaultLogLines = 100;  // the Go logger's default and fallback
constexpr size_t kMaxFollowBacklog = 512 << 10;

struct Settings {
  WorkerFlags worker;
  LogStoreOptions store;
  std::string max_memory = "256Mi";
  std::chrono::milliseconds warm_start{15 * 60 * 1000};
};

// ?log_lines=N as the Go logger reads it: missing, not an integer (strconv.Atoi) or <= 0 gives
// the default.
size_t LogLines(const std::string* text) {
  if (text == nullptr) return kDefaultLogLines;
  std::string_view s(*text);
  if (s.starts_with('+')) s.remove_prefix(1);
  int64_t n = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || n <= 0) {
    return kDefaultLogLines;
  }
  return static_cast<size_t>(n);
}

// Go's strconv.ParseBool, true side.
bool IsTrue(const std::string* text) {
  if (text == nullptr) return false;
  static const std::set<std::string, std::less<>> kTrue{"1", "t", "T", "TRUE", "true", "True"};
  return kTrue.contains(*text);
}

class LoggerWorker {
 public:
  // `broker_http` reaches the HTTP API of each broker whose channel is prepared (and rewound)
  // before consuming: all of them, or with nsqlookupd the ones it listed at start (one found
  // later is subscribed as it comes: a new channel there starts at the start of its log).
  LoggerWorker(asio::io_context& io, const Settings& s, std::unique_ptr<nsq::Consumer> consumer,
               std::vector<std::unique_ptr<net::HttpClient>> broker_http,
               std::function<void()> fatal)
      : io_(io),
        s_(s),
        broker_http_(std::move(broker_http)),
        fatal_(std::move(fatal)),
        store_(s.store),
        consumer_(std::move(consumer)),
        retry_timer_(io),
        stop_timer_(io) {}

  ~LoggerWorker() {
    // Streams may outlive the worker until the io_context goes; they must not call back.
    for (auto& [app, f] : followers_) {
      for (auto& [id, stream] : f.streams) stream->OnClose(nullptr);
    }
  }

  // Prepares the channel (warm start), then subscribes.
  void Start() {
    asio::co_spawn(
        io_,
        [this]() -> asio::awaitable<void> {
          for (size_t i = 0; i < broker_http_.size(); ++i) {
            if (!co_await PrepareChannel(*broker_http_[i])) co_return;
          }
          if (stopping_) co_return;
          consumer_->Start(
              [this](const nsq::Delivered& d, const nsq::MessageRef& ref) { OnMessage(d, ref); });
          consuming_ = true;
          spdlog::info("consuming topic={} channel={} max_in_flight={}", s_.worker.topic,
                       s_.worker.channel, s_.worker.max_in_flight);
        },
        asio::detached);
  }

  // RDY 0; the messages still arriving are stored and FINished as usual; then close.
  void Shutdown(std::function<void()> done) {
    if (stopping_) return;
    stopping_ = true;
    retry_timer_.cancel();
    if (!consuming_) {
      spdlog::info("stopped before subscribing");
      return done();
    }
    consumer_->StopReceiving();
    // Messages sent before the broker saw RDY 0 are still on their way; store and FIN them, and
    // let the last FINs go out before the connection closes.
    stop_timer_.expires_after(200ms);
    stop_timer_.async_wait([this, done = std::move(done)](boost::system::error_code) {
      consumer_->Close();
      spdlog::info("stopped: messages={} apps={} lines={} bytes={}", handled_total(), store_.apps(),
                   store_.lines(), store_.bytes());
      done();
    });
  }

  // /healthz stays 200 while the broker is away: the lines held can still be served, and a
  // failing probe would restart the logger and lose them. The connection shows in /metrics.
  std::string Health() const { return ""; }

  bool Route(const net::HttpRequest& request, const net::Query& q, net::HttpResponder& respond) {
    if (q.path == "/healthz/") {
      respond(TextResponse(200, "OK"));
      return true;
    }
    if (!q.path.starts_with("/logs/")) return false;
    std::string_view app = std::string_view(q.path).substr(6);
    if (app.ends_with('/')) app.remove_suffix(1);
    if (app.empty() || app.find('/') != std::string_view::npos) return false;
    if (request.method() == http::verb::delete_) {
      if (store_.Delete(app)) spdlog::info("deleted app={}", app);
      respond(TextResponse(200, "", ""));
      return true;
    }
    if (request.method() != http::verb::get) {
      auto r = TextResponse(405, "405 method not allowed\n");
      r.set(http::field::allow, "GET, DELETE");
      respond(std::move(r));
      return true;
    }
    if (IsTrue(q.Get("follow"))) {
      Follow(std::string(app), q.Get("log_lines") ? LogLines(q.Get("log_lines")) : 0, respond);
      return true;
    }
    std::string body;
    if (store_.AppendLast(app, LogLines(q.Get("log_lines")), body) == 0) {
      respond(TextResponse(204, "", ""));  // as the Go logger answers "Could not find logs for"
    } else {
      respond(TextResponse(200, std::move(body)));
    }
    return true;
  }

  void Expose(net::Exposition& e) const {
    e.Family("cairn_logger_messages_total", "counter",
             "Messages handled (all FINished), by what the store did with their line.");
    e.Sample("cairn_logger_messages_total", "result=\"stored\"",
             static_cast<double>(store_.counters().stored));
    e.Sample("cairn_logger_messages_total", "result=\"duplicate\"",
             static_cast<double>(store_.counters().duplicates));
    e.Sample("cairn_logger_messages_total", "result=\"too_old\"",
             static_cast<double>(store_.counters().too_old));
    e.Family("cairn_logger_records_total", "counter", "Messages by how they were filed.");
    for (auto kind :
         {FiledRecord::Kind::kApp, FiledRecord::Kind::kController, FiledRecord::Kind::kUnfiled}) {
      e.Sample("cairn_logger_records_total", fmt::format("kind=\"{}\"", KindName(kind)),
               static_cast<double>(by_kind_[static_cast<size_t>(kind)]));
    }
    e.Family("cairn_logger_messages_in_flight", "gauge",
             "Messages delivered and not yet FINished (each is FINished as soon as it is "
             "stored, so this is 0 between deliveries).");
    e.Sample("cairn_logger_messages_in_flight", "", static_cast<double>(in_flight_));
    e.Family("cairn_logger_errors_total", "counter",
             "Errors: calls to cairnd's HTTP API that failed (retried), messages whose id is "
             "not an offset (FINished, not stored), follow streams closed for reading too slowly.");
    e.Sample("cairn_logger_errors_total", "kind=\"broker_api\"", static_cast<double>(api_errors_));
    e.Sample("cairn_logger_errors_total", "kind=\"bad_message_id\"", static_cast<double>(bad_ids_));
    e.Sample("cairn_logger_errors_total", "kind=\"follow_too_slow\"",
             static_cast<double>(followers_too_slow_));
    e.Family("cairn_logger_apps", "gauge", "Apps with lines held.");
    e.Sample("cairn_logger_apps", "", static_cast<double>(store_.apps()));
    e.Family("cairn_logger_lines", "gauge", "Lines held, all apps.");
    e.Sample("cairn_logger_lines", "", static_cast<double>(store_.lines()));
    e.Family("cairn_logger_bytes", "gauge",
             "Estimated heap held by the lines (characters plus a per-line and per-app "
             "overhead), bounded by --max-memory.");
    e.Sample("cairn_logger_bytes", "", static_cast<double>(store_.bytes()));
    e.Family("cairn_logger_max_bytes", "gauge", "--max-memory.");
    e.Sample("cairn_logger_max_bytes", "", static_cast<double>(s_.store.max_bytes));
    e.Family("cairn_logger_lines_dropped_total", "counter",
             "Lines dropped: oldest beyond --lines-per-app, oldest of the biggest app over "
             "--max-memory, or by DELETE.");
    e.Sample("cairn_logger_lines_dropped_total", "reason=\"lines_per_app\"",
             static_cast<double>(store_.counters().dropped_per_app));
    e.Sample("cairn_logger_lines_dropped_total", "reason=\"max_memory\"",
             static_cast<double>(store_.counters().dropped_for_memory));
    e.Sample("cairn_logger_lines_dropped_total", "reason=\"delete\"",
             static_cast<double>(store_.counters().dropped_deleted));
    e.Family("cairn_logger_follow_streams", "gauge", "GET /logs/{app}?follow=true streams open.");
    e.Sample("cairn_logger_follow_streams", "", static_cast<double>(follow_count_));
    e.Family("cairn_logger_nsqd_connections", "gauge", "Brokers subscribed to.");
    e.Sample("cairn_logger_nsqd_connections", "", static_cast<double>(consumer_->connected()));
    e.Family("cairn_logger_nsqd_reconnects_total", "counter", "Connections to cairnd redialed.");
    e.Sample("cairn_logger_nsqd_reconnects_total", "",
             static_cast<double>(consumer_->reconnects()));
  }

  static nsq::ClientOptions ClientOptionsFor() {
    nsq::ClientOptions o;
    o.client_id = "cairn-logger";
    o.user_agent = "cairn-logger/0.1";
    return o;
  }

 private:
  uint64_t handled_total() const {
    const auto& c = store_.counters();
    return c.stored + c.duplicates + c.too_old + bad_ids_;
  }

  // On one broker: POST topic/create, channel/create (a new channel starts at the warm-start
  // time, or at the end of the log without one), and with a warm start channel/seek, each
  // retried with backoff while cairnd is unreachable or failing. False if the logger must stop.
  asio::awaitable<bool> PrepareChannel(net::HttpClient& broker) {
    const std::string tc = "topic=" + s_.worker.topic + "&channel=" + s_.worker.channel;
    if (!co_await CallBroker(broker, "/topic/create?topic=" + s_.worker.topic, true)) {
      co_return false;
    }
    std::string position = "latest";
    if (s_.warm_start.count() > 0) {
      position =
          "time:" + FormatRfc3339(WallNowNs() - std::chrono::nanoseconds(s_.warm_start).count());
    }
    if (!co_await CallBroker(broker, "/channel/create?" + tc + "&start=" + position, true)) {
      co_return false;
    }
    if (s_.warm_start.count() == 0) {
      spdlog::info("warm start off: the channel resumes where it was (a new one at the end)");
      co_return true;
    }
    if (co_await CallBroker(broker, "/channel/seek?" + tc + "&to=" + position, false)) {
      spdlog::info("warm start: channel {} rewound to {} ({} ago); refilling from there",
                   s_.worker.channel, position.substr(5), FormatDuration(s_.warm_start));
    } else if (!stopping_) {
      spdlog::warn("warm start: the broker cannot seek (not cairnd?); starting with no lines");
    }
    co_return true;
  }

  // One POST to cairnd's HTTP API, retried with backoff (100 ms doubling to 10 s) while it fails
  // without an answer or with a 5xx. A 4xx is final: fatal when `required`, else false.
  asio::awaitable<bool> CallBroker(net::HttpClient& broker, std::string target, bool required) {
    auto backoff = 100ms;
    for (;;) {
      net::HttpResult r =
          co_await broker.AsyncRequest(http::verb::post, target, "", "", asio::use_awaitable);
      if (stopping_) co_return false;
      if (r.ok()) {
        spdlog::debug("POST {}: {}", target, r.status);
        co_return true;
      }
      ++api_errors_;
      if (r.answered() && r.status >= 400 && r.status < 500) {
        if (required) {
          spdlog::critical("POST {}: {}", target, r.Describe());
          fatal_();
        } else {
          spdlog::warn("POST {}: {}", target, r.Describe());
        }
        co_return false;
      }
      spdlog::warn("POST {}: {}; retrying in {}", target, r.Describe(), FormatDuration(backoff));
      retry_timer_.expires_after(backoff);
      boost::system::error_code ec;
      co_await retry_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (stopping_) co_return false;
      backoff = std::min<std::chrono::milliseconds>(backoff * 2, 10s);
    }
  }

  void OnMessage(const nsq::Delivered& d, const nsq::MessageRef& ref) {
    ++in_flight_;
    const auto offset = nsq::DecodeMessageId(std::string_view(d.id.data(), d.id.size()));
    if (!offset) {
      // Not from cairnd (its ids are offsets): nothing to order it by.
      ++bad_ids_;
      spdlog::warn("message id {} is not an offset; dropped",
                   std::string_view(d.id.data(), d.id.size()));
    } else {
      // Brokers number from 0: the broker and the offset name the message, the publish time
      // orders it among the brokers'.
      FiledRecord r = FileRecord(d.body);
      ++by_kind_[static_cast<size_t>(r.kind)];
      auto f = followers_.find(r.app);
      std::string copy = f != followers_.end() ? r.line : std::string();
      const LinePosition at(d.timestamp_ns, static_cast<uint32_t>(d.broker), *offset);
      if (store_.Add(r.app, at, std::move(r.line)) == LogStore::Added::kStored &&
          f != followers_.end()) {
        f->second.pending += copy;
        f->second.pending += '\n';
        ScheduleFlush();
      }
    }
    ref.Finish();
    --in_flight_;
  }

  // Lines for followers go out once the current batch of deliveries is handled: one chunk per
  // stream per batch.
  void ScheduleFlush() {
    if (flush_posted_) return;
    flush_posted_ = true;
    asio::post(io_, [this] { FlushFollowers(); });
  }

  void FlushFollowers() {
    flush_posted_ = false;
    std::vector<std::pair<std::shared_ptr<net::HttpStream>, std::string>> writes;
    for (auto& [app, f] : followers_) {
      if (f.pending.empty()) continue;
      std::string text = std::move(f.pending);
      f.pending.clear();
      for (const auto& [id, stream] : f.streams) writes.emplace_back(stream, text);
    }
    // A Write may close its stream, which unregisters it from followers_: hence the two loops.
    for (auto& [stream, text] : writes) {
      const bool was_open = !stream->closed();
      if (!stream->Write(text) && was_open && stream->closed()) {
        ++followers_too_slow_;
        spdlog::warn("follow stream closed: the client reads more slowly than lines arrive");
      }
    }
  }

  void Follow(std::string app, size_t backlog, net::HttpResponder& respond) {
    FlushFollowers();  // what is pending predates this stream, and its backlog includes it
    auto head = TextResponse(200, "");
    head.set(http::field::cache_control, "no-cache");
    auto stream = respond.Stream(std::move(head));
    std::string first;
    if (backlog > 0) store_.AppendLast(app, backlog, first);
    if (first.size() > kMaxFollowBacklog) {
      // The stream closes once more than 1 MiB waits: send the newest lines that fit in half.
      first.erase(0, first.find('\n', first.size() - kMaxFollowBacklog - 1) + 1);
    }
    stream->Write(first);
    if (stream->closed()) return;
    const uint64_t id = ++last_follow_id_;
    followers_[app].streams.emplace(id, stream);
    ++follow_count_;
    spdlog::debug("follow app={} id={}", app, id);
    stream->OnClose([this, app, id] {
      auto it = followers_.find(app);
      if (it == followers_.end()) return;
      if (it->second.streams.erase(id) > 0) --follow_count_;
      if (it->second.streams.empty()) followers_.erase(it);
    });
  }

  struct Followers {
    std::map<uint64_t, std::shared_ptr<net::HttpStream>> streams;
    std::string pending;  // lines stored since the last flush, each ending "\n"
  };

  asio::io_context& io_;
  const Settings& s_;
  std::vector<std::unique_ptr<net::HttpClient>> broker_http_;
  std::function<void()> fatal_;
  LogStore store_;
  std::unique_ptr<nsq::Consumer> consumer_;
  asio::steady_timer retry_timer_, stop_timer_;
  std::unordered_map<std::string, Followers> followers_;
  uint64_t last_follow_id_ = 0;
  size_t follow_count_ = 0;
  bool flush_posted_ = false, consuming_ = false, stopping_ = false;
  int64_t in_flight_ = 0;
  uint64_t api_errors_ = 0, bad_ids_ = 0, followers_too_slow_ = 0;
  uint64_t by_kind_[3] = {0, 0, 0};
};

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  s.worker = WorkerFlags::Defaults("logs", "logger", 1000, "0.0.0.0:8088");
  CLI::App app{
      "cairn-logger: keeps the last lines of every app's log from a topic and serves them over "
      "Deis Workflow's logger API"};
  AddWorkerFlags(app, s.worker);
  app.add_option("--lines-per-app", s.store.lines_per_app,
                 "lines kept per app; the oldest go first")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{10'000'000}));
  app.add_option("--max-memory", s.max_memory,
                 "bound on the memory the lines take (estimated: characters plus 64 bytes a line "
                 "and 1 KiB an app); over it, the app holding the most lines loses its oldest. A "
                 "byte count or 256Mi, 1.5Gi, 300M, 2G")
      ->capture_default_str();
  AddDurationFlag(app, "--warm-start", &s.warm_start,
                  "on start, rewind the channel this far back in the topic and refill every "
                  "app's lines from there (0: resume where the channel was)");
  CLI11_PARSE(app, argc, argv);
  SetUpLogging(s.worker);

  const auto max_bytes = ParseByteSize(s.max_memory);
  if (!max_bytes) {
    spdlog::critical("--max-memory {}: not a byte count (e.g. 268435456, 256Mi, 1Gi)",
                     s.max_memory);
    return 2;
  }
  s.store.max_bytes = *max_bytes;
  if (!nsq::IsValidTopicName(s.worker.topic) || !nsq::IsValidChannelName(s.worker.channel)) {
    spdlog::critical("invalid --topic {} or --channel {}", s.worker.topic, s.worker.channel);
    return 2;
  }
  asio::io_context io(1);
  // The warm start seeks each broker's channel through its own API. With nsqlookupd, the
  // brokers that have the topic now get theirs prepared and rewound; the consumer follows
  // nsqlookupd from there.
  const Result<size_t> brokers = s.worker.lookupd_http_addresses.empty()
                                     ? CheckPairedHttp(s.worker).map([&] { return size_t{0}; })
                                     : UseBrokersFromLookupd(io, s.worker);
  if (!brokers) return ExitWith(brokers.error(), 2);
  auto options = nsq::Secure(s.worker.security, LoggerWorker::ClientOptionsFor());
  if (!options) return ExitWith(options.error(), 2);
  auto consumer = MakeConsumer(io, s.worker, *options);
  if (!consumer) return ExitWith(consumer.error(), 2);
  std::vector<std::unique_ptr<net::HttpClient>> broker_http;
  for (const std::string& address : s.worker.nsqd_http_addresses) {
    auto client = BrokerHttp(io, address, s.worker, options->tls);
    if (!client) return ExitWith(client.error(), 2);
    broker_http.push_back(std::move(*client));
  }
  int exit_code = 0;
  LoggerWorker worker(io, s, std::move(*consumer), std::move(broker_http), [&] {
    exit_code = 1;
    io.stop();
  });
  auto started = WorkerHttp::Start(
      io, s.worker.http_address, [&] { return worker.Health(); },
      [&](net::Exposition& e) { worker.Expose(e); },
      [&](const net::HttpRequest& r, const net::Query& q, net::HttpResponder& respond) {
        return worker.Route(r, q, respond);
      });
  if (!started) return ExitWith(started.error(), 1);
  std::unique_ptr<WorkerHttp> http = std::move(*started);
  spdlog::info(
      "cairn-logger ready topic={} channel={} lines_per_app={} max_memory={} warm_start={}",
      s.worker.topic, s.worker.channel, s.store.lines_per_app, s.store.max_bytes,
      FormatDuration(s.warm_start));
  worker.Start();
  std::shared_ptr<asio::signal_set> signals;
  signals = OnShutdownSignal(io, [&] {
    http->Drain();  // follow streams end; requests in progress are answered
    worker.Shutdown([&] {
      http->CloseAll();
      io.stop();
    });
  });
  io.run();
  return exit_code;
}

// cairn-replay: backfills InfluxDB from a time range of a topic's retained log, through the same
// parser and writer as cairn-metrics. It reads on a channel of its own that starts at --from
// and is deleted when it is done, and stops at the first message published after --to.
// Replaying twice leaves InfluxDB as replaying once: points keep their timestamps (a point
// without one gets its message's publish time). On failure it exits non-zero and prints the
// --from to resume with.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>
#include <nlohmann/json.hpp>

#include "consumers/common/influx_writer.h"
#include "consumers/common/line_protocol.h"
#include "consumers/common/metrics_message.h"
#include "consumers/common/worker.h"
#include "net/client.h"
#include "net/duration.h"
#include "storage/clock.h"

namespace {

using namespace cairn;
using namespace cairn::consumers;
namespace asio = boost::asio;
namespace http = boost::beast::http;

struct Settings {
  WorkerFlags worker;
  InfluxWriterOptions influx;
  std::string from, to = "now";
  bool dry_run = false, json = false;
  std::chrono::milliseconds give_up_after{60'000};
  std::chrono::milliseconds idle_timeout{10'000};
};

// "now", "-2h" (that long ago), or RFC 3339.
std::optional<int64_t> ParseTime(const std::string& s, int64_t now_ns) {
  if (s == "now") return now_ns;
  if (s.starts_with("-")) {
    auto d = ParseDuration(std::string_view(s).substr(1));
    if (!d) return std::nullopt;
    return now_ns - d->count();
  }
  return ParseRfc3339(s);
}

std::string Encode(std::string_view s) {
  return boost::urls::encode(s, boost::urls::unreserved_chars);
}

class Replay {
 public:
  Replay(asio::io_context& io, const Settings& s, std::vector<asio::ip::tcp::endpoint> brokers,
         std::unique_ptr<net::HttpClient> broker_http, std::unique_ptr<InfluxWriter> writer,
         int64_t from_ns, int64_t to_ns)
      : io_(io),
        s_(s),
        brokers_(std::move(brokers)),
        broker_http_(std::move(broker_http)),
        writer_(std::move(writer)),
        from_ns_(from_ns),
        to_ns_(to_ns),
        tick_(io) {}

  // Runs the replay; the exit code lands in `exit_code` and the io_context is stopped.
  asio::awaitable<void> Run(int* exit_code) {
    *exit_code = co_await Execute();
    if (!channel_.empty()) {
      auto r =
          co_await Call(http::verb::post, fmt::format("/channel/delete?topic={}&channel={}",
                                                      Encode(s_.worker.topic), Encode(channel_)));
      if (!r.ok()) spdlog::warn("could not delete channel {}: {}", channel_, r.Describe());
    }
    io_.stop();
  }

  void Interrupt() {
    interrupted_ = true;
    tick_.cancel();
  }

  std::string Health() const { return ""; }
  void Expose(net::Exposition& e) const {
    e.Family("cairn_replay_messages_total", "counter", "Messages of the range replayed.");
    e.Sample("cairn_replay_messages_total", "", static_cast<double>(done_));
    e.Family("cairn_replay_messages_in_flight", "gauge", "Messages received, not yet written.");
    e.Sample("cairn_replay_messages_in_flight", "", static_cast<double>(pending_.size()));
    e.Family("cairn_replay_range_messages", "gauge", "Messages in the range.");
    e.Sample("cairn_replay_range_messages", "", static_cast<double>(end_ - start_));
    if (writer_) writer_->Expose(e, "cairn_replay");
  }

 private:
  asio::awaitable<net::HttpResult> Call(http::verb method, std::string target) {
    co_return co_await broker_http_->AsyncRequest(method, std::move(target), "", "",
                                                  asio::use_awaitable);
  }

  asio::awaitable<std::optional<uint64_t>> OffsetAt(int64_t ns) {
    auto r = co_await Call(http::verb::get,
                           fmt::format("/topic/offset?topic={}&at=time:{}", Encode(s_.worker.topic),
                                       Encode(FormatRfc3339(ns))));
    if (!r.ok()) {
      error_ = r.status == 404 ? fmt::format("topic {} not found", s_.worker.topic)
                               : "cairnd: " + r.Describe();
      co_return std::nullopt;
    }
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (!j.is_object() || !j["offset"].is_number_unsigned()) {
      error_ = "cairnd: unexpected answer to /topic/offset: " + r.body;
      co_return std::nullopt;
    }
    co_return j["offset"].get<uint64_t>();
  }

  asio::awaitable<int> Execute() {
    started_ = std::chrono::steady_clock::now();
    auto start = co_await OffsetAt(from_ns_);
    if (!start) co_return Fail();
    auto end = co_await OffsetAt(to_ns_ + 1);  // the first message published after --to
    if (!end) co_return Fail();
    start_ = *start;
    end_ = std::max(*start, *end);
    done_bits_.assign(end_ - start_, false);
    if (start_ == end_) {
      Summary("no messages in the range");
      co_return 0;
    }
    channel_ = s_.worker.channel.empty()
                   ? fmt::format("cairn-replay-{}-{}", getpid(), storage::WallNowNs() / 1'000'000)
                   : s_.worker.channel;
    auto r = co_await Call(http::verb::post,
                           fmt::format("/channel/create?topic={}&channel={}&start=offset:{}",
                                       Encode(s_.worker.topic), Encode(channel_), start_));
    if (!r.ok()) {
      error_ = "cairnd: creating the replay channel: " + r.Describe();
      channel_.clear();
      co_return Fail();
    }
    spdlog::info("replaying topic={} offsets [{}, {}) channel={}{}", s_.worker.topic, start_, end_,
                 channel_, s_.dry_run ? " (dry run)" : "");
    consumer_ = std::make_unique<nsq::Consumer>(io_.get_executor(), brokers_, s_.worker.topic,
                                                channel_, s_.worker.max_in_flight);
    consumer_->Start(
        [this](const nsq::Delivered& d, const nsq::MessageRef& ref) { OnMessage(d, ref); });
    last_progress_ = std::chrono::steady_clock::now();
    const bool tty = isatty(STDERR_FILENO) == 1 && !s_.json;
    while (done_ < end_ - start_ && !interrupted_) {
      tick_.expires_after(std::chrono::milliseconds(250));
      boost::system::error_code ec;
      co_await tick_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (tty) Progress();
      const auto quiet = std::chrono::steady_clock::now() - last_progress_;
      if (!pending_.empty() && quiet > s_.give_up_after) {
        error_ = fmt::format("no progress for {}: {}", FormatDuration(s_.give_up_after),
                             writer_ && !writer_->stats().last_error.empty()
                                 ? "influxdb: " + writer_->stats().last_error
                                 : "nothing written");
        break;
      }
      if (pending_.empty() && quiet > (received_ == 0 ? s_.give_up_after : s_.idle_timeout)) {
        error_ = fmt::format(
            "{} of {} messages arrived; nothing more for {} (trimmed by "
            "retention, or cairnd unreachable?)",
            received_, end_ - start_,
            FormatDuration(received_ == 0 ? s_.give_up_after : s_.idle_timeout));
        break;
      }
    }
    if (tty) std::fputs("\r\033[K", stderr);
    consumer_->Close();
    if (interrupted_ && error_.empty()) error_ = "interrupted";
    if (!error_.empty()) co_return Fail();
    Summary("");
    co_return 0;
  }

  void OnMessage(const nsq::Delivered& d, const nsq::MessageRef& ref) {
    const auto offset = nsq::DecodeMessageId(std::string_view(d.id.data(), d.id.size()));
    if (!offset || *offset < start_ || *offset >= end_) return;  // outside: the channel goes
    if (done_bits_[*offset - start_]) return ref.Finish();       // FIN lost in a cairnd restart
    if (pending_.contains(*offset)) return;                      // delivered again while written
    ++received_;
    last_progress_ = std::chrono::steady_clock::now();
    pending_.emplace(*offset, d.timestamp_ns);
    MetricsMessage m = PrepareMetricsMessage(d.body, d.timestamp_ns);
    parser_rejected_ += m.rejected.size();
    for (const auto& r : m.rejected) spdlog::warn("offset={} {}", *offset, r.reason);
    if (s_.dry_run) {
      points_ += m.points;
      return Settle(*offset, ref);
    }
    const size_t n = m.points;
    writer_->Add(m.lines, [this, off = *offset, ref, n](std::vector<RejectedLine> r) {
      for (const auto& x : r) spdlog::warn("offset={} {}", off, x.reason);
      influx_rejected_ += r.size();
      points_ += n - r.size();
      Settle(off, ref);
    });
    if (received_ == end_ - start_) writer_->Flush();  // the last one: no need to wait
  }

  void Settle(uint64_t offset, const nsq::MessageRef& ref) {
    ref.Finish();
    auto it = pending_.find(offset);
    if (it == pending_.end()) return;
    last_done_ts_ = std::max(last_done_ts_, it->second);
    done_bits_[offset - start_] = true;
    pending_.erase(it);
    ++done_;
    last_progress_ = std::chrono::steady_clock::now();
    if (done_ == end_ - start_) tick_.cancel();  // the last one: end now, not at the next tick
  }

  void Progress() {
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    const uint64_t total = end_ - start_;
    const double rate = secs > 0 ? static_cast<double>(done_) / secs : 0;
    const std::string eta = rate > 0 ? FormatDuration(std::chrono::seconds(static_cast<int64_t>(
                                           static_cast<double>(total - done_) / rate)))
                                     : "?";
    std::fprintf(stderr, "\r\033[K%llu/%llu messages  %llu points  %.0f points/s  ETA %s",
                 static_cast<unsigned long long>(done_), static_cast<unsigned long long>(total),
                 static_cast<unsigned long long>(points_),
                 secs > 0 ? static_cast<double>(points_) / secs : 0.0, eta.c_str());
    std::fflush(stderr);
  }

  void Summary(const std::string& note) {
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    nlohmann::ordered_json j;
    j["topic"] = s_.worker.topic;
    j["from"] = FormatRfc3339(from_ns_);
    j["to"] = FormatRfc3339(to_ns_);
    j["first_offset"] = start_;
    j["end_offset"] = end_;
    j["messages"] = done_;
    j["points"] = points_;
    j["rejected_by_parser"] = parser_rejected_;
    j["rejected_by_influxdb"] = influx_rejected_;
    j["seconds"] = secs;
    j["points_per_second"] = secs > 0 ? static_cast<double>(points_) / secs : 0;
    j["dry_run"] = s_.dry_run;
    if (!note.empty()) j["note"] = note;
    if (s_.json) {
      std::printf("%s\n", j.dump().c_str());
    } else if (!note.empty()) {
      std::printf("replay topic=%s from=%s to=%s: %s\n", s_.worker.topic.c_str(),
                  FormatRfc3339(from_ns_).c_str(), FormatRfc3339(to_ns_).c_str(), note.c_str());
    } else {
      std::printf(
          "replay topic=%s from=%s to=%s messages=%llu points=%llu rejected=%llu seconds=%.2f "
          "points_per_second=%.0f%s\n",
          s_.worker.topic.c_str(), FormatRfc3339(from_ns_).c_str(), FormatRfc3339(to_ns_).c_str(),
          static_cast<unsigned long long>(done_), static_cast<unsigned long long>(points_),
          static_cast<unsigned long long>(parser_rejected_ + influx_rejected_), secs,
          j["points_per_second"].get<double>(), s_.dry_run ? " (dry run: nothing written)" : "");
    }
    std::fflush(stdout);
  }

  // Says how far it got: every message before the resume point is written.
  int Fail() {
    int64_t resume = from_ns_;
    if (!pending_.empty()) {
      resume = pending_.begin()->second;
    } else if (done_ > 0) {
      resume = last_done_ts_ + 1;
    }
    const std::string from = FormatRfc3339(resume);
    if (s_.json) {
      nlohmann::ordered_json j;
      j["error"] = error_;
      j["messages"] = done_;
      j["points"] = points_;
      j["resume_from"] = from;
      std::printf("%s\n", j.dump().c_str());
      std::fflush(stdout);
    }
    std::fprintf(stderr,
                 "cairn-replay failed after %llu of %llu messages (%llu points): %s\n"
                 "resume with: --from %s\n",
                 static_cast<unsigned long long>(done_),
                 static_cast<unsigned long long>(end_ - start_),
                 static_cast<unsigned long long>(points_), error_.c_str(), from.c_str());
    return 1;
  }

  asio::io_context& io_;
  const Settings& s_;
  std::vector<asio::ip::tcp::endpoint> brokers_;
  std::unique_ptr<net::HttpClient> broker_http_;
  std::unique_ptr<InfluxWriter> writer_;
  std::unique_ptr<nsq::Consumer> consumer_;
  const int64_t from_ns_, to_ns_;
  asio::steady_timer tick_;
  std::string channel_, error_;
  uint64_t start_ = 0, end_ = 0;
  std::map<uint64_t, int64_t> pending_;  // offset -> publish time, received and not written
  std::vector<bool> done_bits_;          // per offset of the range: written
  uint64_t received_ = 0, done_ = 0, points_ = 0, parser_rejected_ = 0, influx_rejected_ = 0;
  int64_t last_done_ts_ = 0;
  bool interrupted_ = false;
  std::chrono::steady_clock::time_point started_, last_progress_;
};

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  s.worker = WorkerFlags::Defaults("metrics", "", 5000, "");
  CLI::App app{
      "cairn-replay: backfills InfluxDB from a time range of a topic (line protocol), through "
      "the parser and writer cairn-metrics uses"};
  AddWorkerFlags(app, s.worker);
  app.get_option("--channel")
      ->description(
          "channel to read on; it is created at --from and deleted at the end (default: "
          "cairn-replay-<pid>-<ms>)");
  app.get_option("--http-address")
      ->description("<addr>:<port> for /healthz and /metrics while it runs (default: none)");
  app.add_option("--from", s.from, "start of the range: RFC 3339, \"now\" or \"-2h\" (ago)")
      ->required();
  app.add_option("--to", s.to, "end of the range, inclusive: RFC 3339, \"now\" or \"-10m\"")
      ->capture_default_str();
  AddInfluxWriterFlags(app, s.influx);
  app.add_flag("--dry-run", s.dry_run, "count messages and points; write nothing");
  app.add_flag("--json", s.json, "print the summary (or the failure) as one JSON object");
  AddDurationFlag(app, "--give-up-after", &s.give_up_after,
                  "fail (and say where to resume) after this long without progress");
  CLI11_PARSE(app, argc, argv);
  SetUpLogging(s.worker);

  const int64_t now = storage::WallNowNs();
  auto from = ParseTime(s.from, now);
  auto to = ParseTime(s.to, now);
  if (!from || !to) {
    spdlog::critical("--from and --to take RFC 3339 (2026-11-25T10:00:00Z), now, or -<duration>");
    return 2;
  }
  if (*to < *from) {
    spdlog::critical("--to is before --from");
    return 2;
  }
  auto brokers = BrokerEndpoints(s.worker);
  if (!brokers) {
    spdlog::critical("{}", brokers.error());
    return 2;
  }
  asio::io_context io(1);
  auto broker_http = BrokerHttp(io, s.worker);
  if (!broker_http) {
    spdlog::critical("{}", broker_http.error());
    return 2;
  }
  std::unique_ptr<InfluxWriter> writer;
  if (!s.dry_run) {
    auto w = InfluxWriter::Create(io, s.influx);
    if (!w) {
      spdlog::critical("--influxdb-url: {}", w.error());
      return 2;
    }
    writer = std::move(*w);
  }
  Replay replay(io, s, *brokers, std::move(*broker_http), std::move(writer), *from, *to);
  std::unique_ptr<WorkerHttp> http;
  if (!s.worker.http_address.empty()) {
    http = WorkerHttp::Start(
        io, s.worker.http_address, [&] { return replay.Health(); },
        [&](net::Exposition& e) { replay.Expose(e); });
    if (!http) return 1;
  }
  auto signals = OnShutdownSignal(io, [&] { replay.Interrupt(); });
  int exit_code = 1;
  asio::co_spawn(io, replay.Run(&exit_code), asio::detached);
  io.run();
  return exit_code;
}

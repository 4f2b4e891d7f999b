// cairn-replay: backfills InfluxDB from a time range of a topic's retained log, through the same
// parser and writer as cairn-metrics. It reads on a channel of its own that starts at --from
// and is deleted when it is done, and stops at the first message published after --to.
// Replaying twice leaves InfluxDB as replaying once: points keep their timestamps (a point
// without one gets its message's publish time). On failure it exits non-zero and prints the
// --from to resume with.
//
// Several brokers (--nsqd-tcp-address and --nsqd-http-address given in pairs): each broker has
// a range of its own, from its own /topic/offset, and its own replay channel. Offsets are each
// broker's (all number from 0), so every message is known by (broker, offset).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <limits>
#include <map>

#include <fmt/format.h>
#include <fmt/ranges.h>
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
#include "src/base/clock.h"
#include "src/base/duration.h"

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
  nsq::ClientOptions client;  // TLS, compression, AUTH: from `worker` (nsq::Secure)
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

// One broker of the replay and its part of the range. Offsets are the broker's own (every broker
// numbers its topic from 0), so everything that names a message is kept per broker.
struct Source {
  std::string tcp_address, http_address;  // as given: --nsqd-tcp-address, --nsqd-http-address
  std::unique_ptr<net::HttpClient> http;
  bool resolved = false;        // its range is known
  bool has_topic = false;       // the topic exists there (else its range is empty)
  bool channel = false;         // the replay channel was created there: delete it at the end
  uint64_t start = 0, end = 0;  // [start, end): the range's offsets on this broker
  std::vector<bool> done_bits;  // per offset of the range: written
  std::map<uint64_t, int64_t> pending;  // offset -> publish time, received and not written
  uint64_t received = 0, done = 0;
  int64_t last_done_ts = 0;

  uint64_t size() const { return end - start; }
  bool finished() const { return resolved && done == size(); }
  // Every message of this broker published before it is written (messages arrive in offset
  // order, so the lowest one held, or else the one after the last written, is the first not
  // yet written).
  int64_t ResumeFrom(int64_t from_ns) const {
    if (!pending.empty()) return pending.begin()->second;
    if (done > 0) return last_done_ts + 1;
    return from_ns;
  }
};

class Replay {
 public:
  Replay(asio::io_context& io, const Settings& s, std::vector<Source> sources,
         std::unique_ptr<InfluxWriter> writer, int64_t from_ns, int64_t to_ns)
      : io_(io),
        s_(s),
        sources_(std::move(sources)),
        writer_(std::move(writer)),
        from_ns_(from_ns),
        to_ns_(to_ns),
        tick_(io) {}

  // Runs the replay; the exit code lands in `exit_code` and the io_context is stopped.
  asio::awaitable<void> Run(int* exit_code) {
    *exit_code = co_await Execute();
    for (auto& src : sources_) {
      if (!src.channel) continue;
      auto r = co_await Call(src, http::verb::post,
                             fmt::format("/channel/delete?topic={}&channel={}",
                                         Encode(s_.worker.topic), Encode(channel_)));
      if (!r.ok()) {
        spdlog::warn("could not delete channel {} on {}: {}", channel_, src.http_address,
                     r.Describe());
      }
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
    e.Sample("cairn_replay_messages_in_flight", "", static_cast<double>(in_flight_));
    e.Family("cairn_replay_range_messages", "gauge", "Messages in the range, all brokers.");
    e.Sample("cairn_replay_range_messages", "", static_cast<double>(total_));
    if (writer_) writer_->Expose(e, "cairn_replay");
  }

 private:
  asio::awaitable<net::HttpResult> Call(Source& src, http::verb method, std::string target) {
    co_return co_await src.http->AsyncRequest(method, std::move(target), "", "",
                                              asio::use_awaitable);
  }

  // The offset `ns` resolves to on `src`. nullopt with error_ empty: the topic is not there;
  // with error_ set: the broker could not tell.
  asio::awaitable<std::optional<uint64_t>> OffsetAt(Source& src, int64_t ns) {
    auto r = co_await Call(src, http::verb::get,
                           fmt::format("/topic/offset?topic={}&at=time:{}", Encode(s_.worker.topic),
                                       Encode(FormatRfc3339(ns))));
    if (r.answered() && r.status == 404 && r.body.find("TOPIC_NOT_FOUND") != std::string::npos) {
      co_return std::nullopt;
    }
    if (!r.ok()) {
      error_ = fmt::format("cairnd {}: {}", src.http_address, r.Describe());
      co_return std::nullopt;
    }
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (!j.is_object() || !j["offset"].is_number_unsigned()) {
      error_ = fmt::format("cairnd {}: unexpected answer to /topic/offset: {}", src.http_address,
                           r.body);
      co_return std::nullopt;
    }
    co_return j["offset"].get<uint64_t>();
  }

  // Each broker's range, from its own /topic/offset. A broker without the topic has an empty
  // one; only when no broker has the topic is that an error.
  asio::awaitable<bool> ResolveRanges() {
    size_t with_topic = 0;
    for (auto& src : sources_) {
      auto start = co_await OffsetAt(src, from_ns_);
      if (!error_.empty()) co_return false;
      std::optional<uint64_t> end;
      if (start) end = co_await OffsetAt(src, to_ns_ + 1);  // the first published after --to
      if (!error_.empty()) co_return false;
      src.resolved = true;
      src.has_topic = start && end;  // deleted between the two calls: not there either
      if (!src.has_topic) {
        spdlog::info("no topic {} on {}: nothing to replay there", s_.worker.topic,
                     src.http_address);
        continue;
      }
      ++with_topic;
      src.start = *start;
      src.end = std::max(*start, *end);
      src.done_bits.assign(src.size(), false);
      total_ += src.size();
    }
    if (with_topic == 0) {
      error_ = sources_.size() == 1 ? fmt::format("topic {} not found", s_.worker.topic)
                                    : fmt::format("topic {} not found on any of the {} brokers",
                                                  s_.worker.topic, sources_.size());
      co_return false;
    }
    co_return true;
  }

  asio::awaitable<int> Execute() {
    started_ = std::chrono::steady_clock::now();
    if (!co_await ResolveRanges()) co_return Fail();
    if (total_ == 0) {
      Summary("no messages in the range");
      co_return 0;
    }
    channel_ = s_.worker.channel.empty()
                   ? fmt::format("cairn-replay-{}-{}", getpid(), WallNowNs() / 1'000'000)
                   : s_.worker.channel;
    // The channel is made only where there is something to read: subscribing elsewhere would
    // create the topic and a channel there.
    std::vector<std::string> brokers;
    for (size_t i = 0; i < sources_.size(); ++i) {
      Source& src = sources_[i];
      if (src.size() == 0) continue;
      auto r = co_await Call(src, http::verb::post,
                             fmt::format("/channel/create?topic={}&channel={}&start=offset:{}",
                                         Encode(s_.worker.topic), Encode(channel_), src.start));
      if (!r.ok()) {
        error_ = fmt::format("cairnd {}: creating the replay channel: {}", src.http_address,
                             r.Describe());
        co_return Fail();
      }
      src.channel = true;
      consumed_.push_back(i);
      brokers.push_back(src.tcp_address);
      spdlog::info("replaying topic={} offsets [{}, {}) from {} channel={}{}", s_.worker.topic,
                   src.start, src.end, src.tcp_address, channel_, s_.dry_run ? " (dry run)" : "");
    }
    consumer_ =
        std::make_unique<nsq::Consumer>(io_.get_executor(), std::move(brokers), s_.worker.topic,
                                        channel_, s_.worker.max_in_flight, s_.client);
    consumer_->Start(
        [this](const nsq::Delivered& d, const nsq::MessageRef& ref) { OnMessage(d, ref); });
    last_progress_ = std::chrono::steady_clock::now();
    const bool tty = isatty(STDERR_FILENO) == 1 && !s_.json;
    while (done_ < total_ && !interrupted_) {
      tick_.expires_after(std::chrono::milliseconds(250));
      boost::system::error_code ec;
      co_await tick_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (tty) Progress();
      const auto quiet = std::chrono::steady_clock::now() - last_progress_;
      if (in_flight_ > 0 && quiet > s_.give_up_after) {
        error_ = fmt::format("no progress for {}: {}", FormatDuration(s_.give_up_after),
                             writer_ && !writer_->stats().last_error.empty()
                                 ? "influxdb: " + writer_->stats().last_error
                                 : "nothing written");
        break;
      }
      if (in_flight_ == 0 && quiet > (received_ == 0 ? s_.give_up_after : s_.idle_timeout)) {
        error_ = fmt::format(
            "{} of {} messages arrived; nothing more for {} (trimmed by "
            "retention, or cairnd unreachable?)",
            received_, total_, FormatDuration(received_ == 0 ? s_.give_up_after : s_.idle_timeout));
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
    if (d.broker >= consumed_.size()) return;
    const size_t i = consumed_[d.broker];
    Source& src = sources_[i];
    const auto offset = nsq::DecodeMessageId(std::string_view(d.id.data(), d.id.size()));
    if (!offset || *offset < src.start || *offset >= src.end) return;  // outside: the channel goes
    if (src.done_bits[*offset - src.start]) return ref.Finish();  // FIN lost in a cairnd restart
    if (src.pending.contains(*offset)) return;                    // delivered again while written
    ++src.received;
    ++received_;
    last_progress_ = std::chrono::steady_clock::now();
    src.pending.emplace(*offset, d.timestamp_ns);
    ++in_flight_;
    MetricsMessage m = PrepareMetricsMessage(d.body, d.timestamp_ns);
    parser_rejected_ += m.rejected.size();
    for (const auto& r : m.rejected) {
      spdlog::warn("broker={} offset={} {}", src.tcp_address, *offset, r.reason);
    }
    if (s_.dry_run) {
      points_ += m.points;
      return Settle(i, *offset, ref);
    }
    const size_t n = m.points;
    writer_->Add(m.lines, [this, i, off = *offset, ref, n](std::vector<RejectedLine> r) {
      for (const auto& x : r) {
        spdlog::warn("broker={} offset={} {}", sources_[i].tcp_address, off, x.reason);
      }
      influx_rejected_ += r.size();
      points_ += n - r.size();
      Settle(i, off, ref);
    });
    if (received_ == total_) writer_->Flush();  // the last one: no need to wait
  }

  void Settle(size_t i, uint64_t offset, const nsq::MessageRef& ref) {
    ref.Finish();
    Source& src = sources_[i];
    auto it = src.pending.find(offset);
    if (it == src.pending.end()) return;
    src.last_done_ts = std::max(src.last_done_ts, it->second);
    src.done_bits[offset - src.start] = true;
    src.pending.erase(it);
    --in_flight_;
    ++src.done;
    ++done_;
    last_progress_ = std::chrono::steady_clock::now();
    if (done_ == total_) tick_.cancel();  // the last one: end now, not at the next tick
  }

  void Progress() {
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    const double rate = secs > 0 ? static_cast<double>(done_) / secs : 0;
    const std::string eta = rate > 0 ? FormatDuration(std::chrono::seconds(static_cast<int64_t>(
                                           static_cast<double>(total_ - done_) / rate)))
                                     : "?";
    std::fprintf(stderr, "\r\033[K%llu/%llu messages  %llu points  %.0f points/s  ETA %s",
                 static_cast<unsigned long long>(done_), static_cast<unsigned long long>(total_),
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
    if (sources_.size() == 1) {  // as before there could be several
      j["first_offset"] = sources_[0].start;
      j["end_offset"] = sources_[0].end;
    }
    j["brokers"] = nlohmann::ordered_json::array();
    for (const auto& src : sources_) {
      nlohmann::ordered_json b;
      b["nsqd_tcp_address"] = src.tcp_address;
      b["nsqd_http_address"] = src.http_address;
      b["first_offset"] = src.has_topic ? nlohmann::ordered_json(src.start) : nullptr;
      b["end_offset"] = src.has_topic ? nlohmann::ordered_json(src.end) : nullptr;
      b["messages"] = src.done;
      j["brokers"].push_back(std::move(b));
    }
    j["messages"] = done_;
    j["points"] = points_;
    j["rejected_by_parser"] = parser_rejected_;
    j["rejected_by_influxdb"] = influx_rejected_;
    j["seconds"] = secs;
    j["points_per_second"] = secs > 0 ? static_cast<double>(points_) / secs : 0;
    j["dry_run"] = s_.dry_run;
    if (!note.empty()) j["note"] = note;
    const std::string brokers =
        sources_.size() > 1 ? fmt::format(" brokers={}", sources_.size()) : "";
    if (s_.json) {
      std::printf("%s\n", j.dump().c_str());
    } else if (!note.empty()) {
      std::printf("replay topic=%s from=%s to=%s%s: %s\n", s_.worker.topic.c_str(),
                  FormatRfc3339(from_ns_).c_str(), FormatRfc3339(to_ns_).c_str(), brokers.c_str(),
                  note.c_str());
    } else {
      std::printf(
          "replay topic=%s from=%s to=%s messages=%llu points=%llu rejected=%llu seconds=%.2f "
          "points_per_second=%.0f%s%s\n",
          s_.worker.topic.c_str(), FormatRfc3339(from_ns_).c_str(), FormatRfc3339(to_ns_).c_str(),
          static_cast<unsigned long long>(done_), static_cast<unsigned long long>(points_),
          static_cast<unsigned long long>(parser_rejected_ + influx_rejected_), secs,
          j["points_per_second"].get<double>(), brokers.c_str(),
          s_.dry_run ? " (dry run: nothing written)" : "");
    }
    std::fflush(stdout);
  }

  // Says how far it got: which brokers are not finished, and a --from before which every
  // message of every broker is written (the earliest of theirs: replaying what is already
  // written again changes nothing).
  int Fail() {
    int64_t resume = std::numeric_limits<int64_t>::max();
    std::vector<std::string> unfinished;
    nlohmann::ordered_json not_finished = nlohmann::ordered_json::array();
    for (const auto& src : sources_) {
      if (src.finished()) continue;
      const int64_t at = src.ResumeFrom(from_ns_);
      resume = std::min(resume, at);
      nlohmann::ordered_json b;
      b["nsqd_tcp_address"] = src.tcp_address;
      if (src.resolved) {
        unfinished.push_back(fmt::format("{} ({} of {} messages, from {})", src.tcp_address,
                                         src.done, src.size(), FormatRfc3339(at)));
        b["messages"] = src.done;
        b["range_messages"] = src.size();
      } else {
        unfinished.push_back(fmt::format("{} (range not known)", src.tcp_address));
      }
      b["resume_from"] = FormatRfc3339(at);
      not_finished.push_back(std::move(b));
    }
    if (unfinished.empty()) resume = from_ns_;
    const std::string from = FormatRfc3339(resume);
    if (s_.json) {
      nlohmann::ordered_json j;
      j["error"] = error_;
      j["messages"] = done_;
      j["points"] = points_;
      j["not_finished"] = std::move(not_finished);
      j["resume_from"] = from;
      std::printf("%s\n", j.dump().c_str());
      std::fflush(stdout);
    }
    std::fprintf(stderr, "cairn-replay failed after %llu of %llu messages (%llu points): %s\n",
                 static_cast<unsigned long long>(done_), static_cast<unsigned long long>(total_),
                 static_cast<unsigned long long>(points_), error_.c_str());
    if (!unfinished.empty()) {
      std::fputs(fmt::format("not finished: {}\n", fmt::join(unfinished, ", ")).c_str(), stderr);
    }
    std::fprintf(stderr, "resume with: --from %s\n", from.c_str());
    return 1;
  }

  asio::io_context& io_;
  const Settings& s_;
  std::vector<Source> sources_;
  std::vector<size_t> consumed_;  // the consumer's broker index -> index in sources_
  std::unique_ptr<InfluxWriter> writer_;
  std::unique_ptr<nsq::Consumer> consumer_;
  const int64_t from_ns_, to_ns_;
  asio::steady_timer tick_;
  std::string channel_, error_;
  // All brokers added up.
  uint64_t total_ = 0, received_ = 0, done_ = 0, in_flight_ = 0;
  uint64_t points_ = 0, parser_rejected_ = 0, influx_rejected_ = 0;
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
  app.get_option("--nsqd-http-address")
      ->description(
          "cairnd HTTP address, for the range's offsets and the replay channel; with several "
          "brokers, one per --nsqd-tcp-address, in the same order");
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

  const int64_t now = WallNowNs();
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
  asio::io_context io(1);
  if (!s.worker.lookupd_http_addresses.empty()) {
    // Every broker nsqlookupd lists for the topic now: the range is replayed from each.
    auto found = UseBrokersFromLookupd(io, s.worker);
    if (!found) return ExitWith(found.error(), 2);
    if (*found == 0) {
      spdlog::info("no broker nsqlookupd lists has topic {}: nothing to replay", s.worker.topic);
      return 0;
    }
    spdlog::info("nsqlookupd lists {} brokers for topic {}", *found, s.worker.topic);
  }
  if (auto brokers = BrokerAddresses(s.worker); !brokers) return ExitWith(brokers.error(), 2);
  const auto& tcp = s.worker.nsqd_tcp_addresses;
  const auto& http_addresses = s.worker.nsqd_http_addresses;
  // Each broker's range comes from its own API: a broker must be named by both.
  if (auto paired = CheckPairedHttp(s.worker); !paired) return ExitWith(paired.error(), 2);
  if (auto secured = nsq::Secure(s.worker.security); !secured) {
    return ExitWith(secured.error(), 2);
  } else {
    s.client = std::move(*secured);
  }
  std::vector<Source> sources(tcp.size());
  for (size_t i = 0; i < tcp.size(); ++i) {
    auto client = BrokerHttp(io, http_addresses[i], s.worker, s.client.tls);
    if (!client) return ExitWith(client.error(), 2);
    sources[i].tcp_address = tcp[i];
    sources[i].http_address = http_addresses[i];
    sources[i].http = std::move(*client);
  }
  std::unique_ptr<InfluxWriter> writer;
  if (!s.dry_run) {
    auto w = InfluxWriter::Create(io, s.influx);
    if (!w) return ExitWith(w.error(), 2);
    writer = std::move(*w);
  }
  Replay replay(io, s, std::move(sources), std::move(writer), *from, *to);
  std::unique_ptr<WorkerHttp> http;
  if (!s.worker.http_address.empty()) {
    auto started = WorkerHttp::Start(
        io, s.worker.http_address, [&] { return replay.Health(); },
        [&](net::Exposition& e) { replay.Expose(e); });
    if (!started) return ExitWith(started.error(), 1);
    http = std::move(*started);
  }
  auto signals = OnShutdownSignal(io, [&] { replay.Interrupt(); });
  int exit_code = 1;
  asio::co_spawn(io, replay.Run(&exit_code), asio::detached);
  io.run();
  return exit_code;
}

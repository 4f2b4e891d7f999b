// cairn-bench: a load generator speaking NSQ's TCP protocol, so it can be pointed at cairnd or at
// any nsqd. N publishers (PUB, or MPUB of B messages) of S-byte messages; C channels with M
// consumers each at RDY R; for T seconds or K messages, optionally at a fixed total rate. Prints
// one JSON line: publish and delivery rates, and latency percentiles of the publish
// acknowledgement and of publish-to-delivery.
//
// Message bodies are sample log records (bench/sample_traffic.h, as `cairn-sample logs` prints
// them) cut or repeated to S bytes; their first 8 bytes carry the send time, so delivery latency
// is measured end to end. They are made in-process: the image has no Python, and needs none.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <CLI/CLI.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include "bench/sample_traffic.h"
#include "net/client.h"
#include "net/client_flags.h"
#include "src/base/address.h"
#include "src/base/duration_flag.h"

namespace {

using namespace cairn;
namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// Latencies in a log-linear histogram: 32 sub-buckets per power of two of microseconds, so a
// percentile is within about 3% of the true value, in constant memory.
class Histogram {
 public:
  void Add(int64_t ns) {
    const uint64_t us = static_cast<uint64_t>(std::max<int64_t>(ns, 0) / 1000);
    ++counts_[Index(us)];
    ++total_;
  }
  double PercentileMs(double p) const {
    if (total_ == 0) return 0;
    const uint64_t want = static_cast<uint64_t>(std::ceil(p / 100.0 * static_cast<double>(total_)));
    uint64_t seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= want) return static_cast<double>(UpperUs(i)) / 1000.0;
    }
    return static_cast<double>(UpperUs(counts_.size() - 1)) / 1000.0;
  }
  uint64_t count() const { return total_; }
  nlohmann::json Json() const {
    return {{"count", total_},
            {"p50_ms", PercentileMs(50)},
            {"p90_ms", PercentileMs(90)},
            {"p99_ms", PercentileMs(99)},
            {"p999_ms", PercentileMs(99.9)},
            {"max_ms", PercentileMs(100)}};
  }

 private:
  static constexpr int kSub = 32;
  static size_t Index(uint64_t us) {
    if (us < kSub) return us;
    const int msb = 63 - __builtin_clzll(us);
    const int shift = msb - 5;
    return static_cast<size_t>((shift + 1) * kSub + static_cast<int>((us >> shift) - kSub));
  }
  static uint64_t UpperUs(size_t i) {
    if (i < kSub) return i;
    const int shift = static_cast<int>(i / kSub) - 1;
    return ((i % kSub) + kSub + 1) << shift;
  }
  std::vector<uint64_t> counts_ = std::vector<uint64_t>(kSub * 40, 0);
  uint64_t total_ = 0;
};

std::vector<std::string> SampleBodies(size_t size, size_t n) {
  std::vector<std::string> bodies;
  for (const auto& l : sample::Logs(n)) {
    std::string b;
    while (b.size() < size) b += l;
    b.resize(std::max<size_t>(size, 8));
    bodies.push_back(std::move(b));
  }
  return bodies;
}

struct Config {
  // Publishers take these in turn (publisher p the p-th, modulo); consumers subscribe on all of
  // them, unless they find the brokers through `lookupd`.
  std::vector<std::string> addresses{"127.0.0.1:4150"};
  std::string topic = "bench";
  int publishers = 4;
  int batch = 100;
  size_t size = 100;
  int pipeline = 1;
  int channels = 1;
  int consumers = 4;
  int rdy = 1000;
  double seconds = 10;
  uint64_t messages = 0;  // 0: run for `seconds`
  double rate = 0;        // total messages/s; 0: as fast as it goes
  double drain_seconds = 30;
  uint64_t expect = 0;  // with no publishers: messages each channel must receive (a backlog)
  // Consumers find the brokers through these nsqlookupd instead of consuming from `address`.
  std::vector<std::string> lookupd;
  std::chrono::milliseconds lookupd_poll_interval{1'000};
  // TLS, compression and AUTH, as the workers take them (net/client_flags.h).
  nsq::SecurityFlags security;
  nsq::ClientOptions client;  // from `security`
};

// "tcp", or what the connections asked for: "tls", "snappy", "tls+deflate", ...
std::string Transport(const nsq::SecurityFlags& f) {
  std::vector<std::string> parts;
  if (f.tls || !f.tls_cert.empty()) parts.emplace_back("tls");
  if (f.snappy) parts.emplace_back("snappy");
  if (f.deflate) parts.emplace_back("deflate");
  return parts.empty() ? "tcp" : fmt::format("{}", fmt::join(parts, "+"));
}

class Bench {
 public:
  Bench(asio::io_context& io, Config cfg, std::vector<asio::ip::tcp::endpoint> eps)
      : io_(io),
        cfg_(std::move(cfg)),
        eps_(std::move(eps)),
        timer_(io),
        con_work_(asio::make_work_guard(con_io_)) {
    bodies_ = SampleBodies(cfg_.size, 200);
  }

  // nsqlookupd lists a broker for the topic only once the topic exists there: subscribe every
  // channel once on the broker published to (a SUB creates both), then leave.
  void CreateChannels(const nsq::ClientOptions& opts) {
    for (int c = 0; c < cfg_.channels; ++c) {
      nsq::Consumer once(io_.get_executor(), eps_, cfg_.topic, fmt::format("bench{}", c), 1, opts);
      once.Start([](const nsq::Delivered&, const nsq::MessageRef&) {});
      const auto deadline = Clock::now() + std::chrono::seconds(10);
      while (once.connected() < eps_.size() && Clock::now() < deadline) {
        io_.run_for(std::chrono::milliseconds(5));
      }
      once.Close();
    }
  }

  nlohmann::json Run() {
    nsq::ClientOptions opts = cfg_.client;
    opts.client_id = "cairn-bench";
    consume_start_ = Clock::now();
    // Consumers first, so every channel exists before the first publish.
    // Every consumer subscribed on every broker (those it is given, or nsqlookupd lists).
    const int subscribed_target = cfg_.channels * cfg_.consumers * static_cast<int>(eps_.size());
    // Consumers run on a thread of their own, so that a busy publishing loop does not add its
    // queueing to the delivery latency being measured (and the other way round).
    delivered_ = std::vector<std::atomic<uint64_t>>(static_cast<size_t>(cfg_.channels));
    if (!cfg_.lookupd.empty()) CreateChannels(opts);
    for (int c = 0; c < cfg_.channels; ++c) {
      for (int m = 0; m < cfg_.consumers; ++m) {
        auto consumer =
            cfg_.lookupd.empty()
                ? std::make_unique<nsq::Consumer>(con_io_.get_executor(), eps_, cfg_.topic,
                                                  fmt::format("bench{}", c), cfg_.rdy, opts)
                : std::make_unique<nsq::Consumer>(
                      con_io_.get_executor(),
                      nsq::LookupdDiscovery{cfg_.lookupd, cfg_.lookupd_poll_interval}, cfg_.topic,
                      fmt::format("bench{}", c), cfg_.rdy, opts);
        consumer->Start([this, c](const nsq::Delivered& d, const nsq::MessageRef& ref) {
          int64_t sent = 0;
          if (d.body.size() >= 8) std::memcpy(&sent, d.body.data(), 8);
          e2e_.Add(NowNs() - sent);
          delivered_[static_cast<size_t>(c)].fetch_add(1, std::memory_order_relaxed);
          delivered_total_.fetch_add(1, std::memory_order_relaxed);
          ref.Finish();
        });
        consumers_.push_back(std::move(consumer));
      }
    }
    con_thread_ = std::thread([this] { con_io_.run(); });
    // Wait until every consumer is connected (bounded).
    const auto connect_deadline = Clock::now() + std::chrono::seconds(10);
    while (Clock::now() < connect_deadline) {
      if (static_cast<int>(OnConsumers([this] {
            size_t connected = 0;
            for (auto& c : consumers_) connected += c->connected();
            return connected;
          })) >= subscribed_target) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (cfg_.publishers > 0) io_.run_for(std::chrono::milliseconds(200));  // SUB and RDY land

    start_ = Clock::now();
    end_ = start_ +
           std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(cfg_.seconds));
    for (int p = 0; p < cfg_.publishers; ++p) {
      auto conn = std::make_shared<nsq::Connection>(
          io_.get_executor(), eps_[static_cast<size_t>(p) % eps_.size()], opts);
      publishers_.push_back(conn);
      conn->Open([this, conn](Status opened) {
        if (!opened) {
          errors_.push_back(opened.error().message);
          return;
        }
        for (int i = 0; i < cfg_.pipeline; ++i) PublishNext(*conn, Clock::now());
      });
    }
    // Publishing phase.
    while (!PublishDone()) io_.run_for(std::chrono::milliseconds(5));
    while (outstanding_ > 0 && Clock::now() < end_ + std::chrono::seconds(10)) {
      io_.run_for(std::chrono::milliseconds(5));
    }
    const double pub_secs = std::chrono::duration<double>(last_ack_ - start_).count();
    // Delivery catches up (bounded).
    if (cfg_.publishers == 0) start_ = consume_start_;
    const uint64_t want =
        (cfg_.publishers == 0 ? cfg_.expect : acked_) * static_cast<uint64_t>(cfg_.channels);
    const auto drain_deadline =
        Clock::now() + std::chrono::duration_cast<Clock::duration>(
                           std::chrono::duration<double>(cfg_.drain_seconds));
    while (cfg_.channels > 0 && delivered_total_ < want && Clock::now() < drain_deadline) {
      io_.run_for(std::chrono::milliseconds(5));
    }
    const double del_secs = std::chrono::duration<double>(Clock::now() - start_).count();
    OnConsumers([this] {
      for (auto& c : consumers_) c->Close();
      return 0;
    });
    for (auto& p : publishers_) p->Close("done");
    io_.run_for(std::chrono::milliseconds(50));
    con_work_.reset();
    con_io_.stop();
    con_thread_.join();

    nlohmann::json per_channel = nlohmann::json::array();
    for (auto& d : delivered_) per_channel.push_back(static_cast<double>(d.load()) / del_secs);
    nlohmann::json out = {
        {"target", fmt::format("{}", fmt::join(cfg_.addresses, ","))},
        {"transport", Transport(cfg_.security)},
        {"publishers", cfg_.publishers},
        {"batch", cfg_.batch},
        {"size", cfg_.size},
        {"pipeline", cfg_.pipeline},
        {"channels", cfg_.channels},
        {"consumers_per_channel", cfg_.consumers},
        {"rdy", cfg_.rdy},
        {"rate_target", cfg_.rate},
        {"published", acked_},
        {"publish_seconds", pub_secs},
        {"publish_msgs_per_sec", pub_secs > 0 ? static_cast<double>(acked_) / pub_secs : 0},
        {"delivered", delivered_total_.load()},
        {"delivery_seconds", del_secs},
        {"delivered_msgs_per_sec_per_channel", per_channel},
        {"delivered_all", delivered_total_ >= want},
        {"publish_ack_latency", ack_.Json()},
        {"publish_to_delivery_latency", e2e_.Json()},
        {"errors", errors_},
    };
    return out;
  }

 private:
  // Runs `fn` on the consumers' thread and returns its result.
  template <class F>
  auto OnConsumers(F fn) -> decltype(fn()) {
    std::packaged_task<decltype(fn())()> task(std::move(fn));
    auto result = task.get_future();
    asio::post(con_io_, [&task] { task(); });
    return result.get();
  }

  bool PublishDone() const {
    if (cfg_.publishers == 0) return true;
    if (!errors_.empty() && outstanding_ == 0) return true;
    if (cfg_.messages > 0) return sent_ >= cfg_.messages;
    return Clock::now() >= end_;
  }

  // Sends the next batch on `conn`, at `when` if a rate is set.
  void PublishNext(nsq::Connection& conn, Clock::time_point when) {
    if (PublishDone() || !conn.open()) return;
    const size_t n = static_cast<size_t>(cfg_.batch);
    if (cfg_.rate > 0) {
      // Each batch is due at its slot in the global schedule.
      const double per_batch = static_cast<double>(n) / cfg_.rate;
      const auto due = start_ + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(per_batch * batches_++));
      if (due > Clock::now()) {
        auto t = std::make_shared<asio::steady_timer>(io_, due);
        t->async_wait([this, t, w = conn.weak()](boost::system::error_code) {
          if (auto c = w.lock()) Send(*c);
        });
        return;
      }
    }
    (void)when;
    Send(conn);
  }

  void Send(nsq::Connection& conn) {
    if (PublishDone() || !conn.open()) return;
    const size_t n = static_cast<size_t>(cfg_.batch);
    std::vector<std::string> batch(n);
    const int64_t now = NowNs();
    for (size_t i = 0; i < n; ++i) {
      batch[i] = bodies_[(sent_ + i) % bodies_.size()];
      std::memcpy(batch[i].data(), &now, 8);
    }
    sent_ += n;
    ++outstanding_;
    auto done = [this, now, n, w = conn.weak()](Status published) {
      --outstanding_;
      if (!published) {
        if (errors_.size() < 5) errors_.push_back(published.error().message);
        return;
      }
      ack_.Add(NowNs() - now);
      acked_ += n;
      last_ack_ = Clock::now();
      if (auto c = w.lock()) PublishNext(*c, Clock::now());
    };
    if (n == 1) {
      conn.Publish(cfg_.topic, batch[0], std::move(done));
    } else {
      conn.MultiPublish(cfg_.topic, batch, std::move(done));
    }
  }

  asio::io_context& io_;
  Config cfg_;
  std::vector<asio::ip::tcp::endpoint> eps_;
  asio::steady_timer timer_;
  std::vector<std::string> bodies_;
  std::vector<std::shared_ptr<nsq::Connection>> publishers_;
  std::vector<std::unique_ptr<nsq::Consumer>> consumers_;
  Clock::time_point start_, end_, last_ack_, consume_start_;
  uint64_t sent_ = 0, acked_ = 0, batches_ = 0;
  int outstanding_ = 0;
  asio::io_context con_io_{1};
  asio::executor_work_guard<asio::io_context::executor_type> con_work_;
  std::thread con_thread_;
  std::vector<std::atomic<uint64_t>> delivered_;
  std::atomic<uint64_t> delivered_total_{0};
  Histogram ack_;
  Histogram e2e_;  // consumers' thread only
  std::vector<std::string> errors_;
};

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  CLI::App app{"cairn-bench: NSQ load generator (cairnd or any nsqd); prints one JSON line"};
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // last wins
  app.add_option("--nsqd-tcp-address", cfg.addresses,
                 "broker to load (repeatable: publishers take them in turn)")
      ->capture_default_str()
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--lookupd-http-address", cfg.lookupd,
                 "nsqlookupd HTTP address (repeatable): consume from every broker it lists for the "
                 "topic (publishing still goes to --nsqd-tcp-address)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  AddDurationFlag(app, "--lookupd-poll-interval", &cfg.lookupd_poll_interval,
                  "how often the consumers ask nsqlookupd");
  app.add_option("--topic", cfg.topic, "topic to publish to and consume")->capture_default_str();
  app.add_option("--publishers", cfg.publishers, "publishing connections")->capture_default_str();
  app.add_option("--batch", cfg.batch, "messages per publish: 1 sends PUB, more send MPUB")
      ->capture_default_str();
  app.add_option("--size", cfg.size, "message body bytes (at least 8)")->capture_default_str();
  app.add_option("--pipeline", cfg.pipeline,
                 "publishes each connection keeps outstanding (1: wait for each OK, as "
                 "go-nsq's Publish does)")
      ->capture_default_str();
  app.add_option("--channels", cfg.channels, "channels consuming the topic")->capture_default_str();
  app.add_option("--consumers", cfg.consumers, "consumer connections per channel")
      ->capture_default_str();
  app.add_option("--rdy", cfg.rdy, "RDY (max in flight) per consumer connection")
      ->capture_default_str();
  app.add_option("--seconds", cfg.seconds, "how long to publish")->capture_default_str();
  app.add_option("--messages", cfg.messages,
                 "publish this many messages instead (0: use --seconds)")
      ->capture_default_str();
  app.add_option("--rate", cfg.rate, "total publish rate in messages/s (0: as fast as it goes)")
      ->capture_default_str();
  app.add_option("--expect", cfg.expect,
                 "with --publishers 0: consume a backlog already in the topic until each channel "
                 "received this many (a topic's first channel starts at the log's start)")
      ->capture_default_str();
  app.add_option("--drain-seconds", cfg.drain_seconds,
                 "how long to wait after publishing for delivery to catch up")
      ->capture_default_str();
  nsq::AddSecurityFlags(app, cfg.security);
  CLI11_PARSE(app, argc, argv);
  auto client = nsq::Secure(cfg.security);
  if (!client) {
    std::fprintf(stderr, "cairn-bench: %s\n", client.error().message.c_str());
    return 2;
  }
  cfg.client = std::move(*client);
  if (cfg.batch < 1 || cfg.size < 8 || cfg.publishers < 0 || cfg.pipeline < 1) {
    std::fprintf(stderr, "cairn-bench: --batch >= 1, --size >= 8, --pipeline >= 1\n");
    return 2;
  }
  std::vector<asio::ip::tcp::endpoint> eps;
  for (const std::string& address : cfg.addresses) {
    auto ep = ParseAddress(address);
    if (!ep) {
      std::fprintf(stderr, "cairn-bench: %s\n", ep.error().message.c_str());
      return 2;
    }
    eps.push_back(*ep);
  }
  if (eps.empty()) {
    std::fprintf(stderr, "cairn-bench: --nsqd-tcp-address is required\n");
    return 2;
  }
  asio::io_context io(1);
  // The loop is run in slices; keep it from stopping when it briefly has nothing to do.
  auto work = asio::make_work_guard(io);
  Bench bench(io, cfg, std::move(eps));
  auto result = bench.Run();
  std::printf("%s\n", result.dump().c_str());
  return result["errors"].empty() ? 0 : 1;
}

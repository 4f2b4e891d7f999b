// cairn-metrics: consumes `metrics` (InfluxDB line protocol) and writes the points to InfluxDB
// in batches. A message is FINished only after InfluxDB accepted every point of it; until then it
// stays in flight (TOUCHed so it does not time out), so a crash of this worker or of InfluxDB
// loses nothing. Lines the parser or InfluxDB refuse go, with the reason, to --rejected-topic, and
// their message is FINished, so one bad line never blocks the stream.
#include <chrono>
#include <functional>
#include <string_view>
#include <unordered_map>
#include <utility>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "consumers/common/influx_writer.h"
#include "consumers/common/metrics_message.h"
#include "consumers/common/worker.h"
#include "net/client.h"

namespace {

using namespace cairn;
using namespace cairn::consumers;
namespace asio = boost::asio;

struct Settings {
  WorkerFlags worker;
  InfluxWriterOptions influx;
  std::string rejected_topic = "metrics_rejected";
  std::chrono::milliseconds touch_interval{15'000};
  std::chrono::milliseconds shutdown_timeout{20'000};
};

// A message among all the consumer receives: the broker it came from (the consumer's index for
// it: its place among --nsqd-tcp-address, or in discovery order) and its id there. Ids alone
// collide: cairnd's are topic offsets, and every broker counts from 0. A redelivery, after a
// timeout or a reconnect, has the same key.
using MessageKey = std::pair<size_t, nsq::MessageId>;

struct MessageKeyHash {
  size_t operator()(const MessageKey& k) const {
    const size_t h =
        std::hash<std::string_view>()(std::string_view(k.second.data(), k.second.size()));
    return h ^ (k.first * 0x9e3779b97f4a7c15ULL);
  }
};

std::string Describe(const MessageKey& k) {
  return fmt::format("broker={} id={}", k.first,
                     std::string_view(k.second.data(), k.second.size()));
}

class MetricsWorker {
 public:
  // Rejected lines are published to `publish_to` (the first --nsqd-tcp-address), with the
  // consumer's TLS, compression and AUTH (`client`).
  MetricsWorker(asio::io_context& io, const Settings& s, std::unique_ptr<nsq::Consumer> consumer,
                std::string publish_to, nsq::ClientOptions client,
                std::unique_ptr<InfluxWriter> writer)
      : io_(io),
        s_(s),
        writer_(std::move(writer)),
        consumer_(std::move(consumer)),
        producer_(io.get_executor(), std::move(publish_to), std::move(client)),
        touch_timer_(io),
        stop_timer_(io) {}

  void Start() {
    consumer_->Start(
        [this](const nsq::Delivered& d, const nsq::MessageRef& ref) { OnMessage(d, ref); });
    ArmTouch();
  }

  // RDY 0, write what is batched, wait (bounded) for InfluxDB to take it, hand back the rest.
  void Shutdown(std::function<void()> done) {
    if (stopping_) return;
    stopping_ = true;
    consumer_->StopReceiving();
    writer_->Flush();
    deadline_ = std::chrono::steady_clock::now() + s_.shutdown_timeout;
    WaitDrained(std::move(done));
  }

  std::string Health() const {
    // Through nsqlookupd, no broker having the topic yet is a normal state (a new cluster).
    if (consumer_->brokers() == 0) {
      return consumer_->lookupd_answering() ? "" : "nsqlookupd does not answer";
    }
    if (consumer_->connected() == 0) return "not subscribed on any nsqd";
    return "";
  }

  void Expose(net::Exposition& e) const {
    e.Family("cairn_metrics_messages_total", "counter",
             "Messages finished: every point written or refused.");
    e.Sample("cairn_metrics_messages_total", "", static_cast<double>(finished_));
    e.Family("cairn_metrics_messages_in_flight", "gauge",
             "Messages held: delivered, not yet finished.");
    e.Sample("cairn_metrics_messages_in_flight", "", static_cast<double>(held_.size()));
    e.Family("cairn_metrics_lines_rejected_total", "counter",
             "Lines sent to the rejected topic, by who refused them.");
    e.Sample("cairn_metrics_lines_rejected_total", "by=\"parser\"",
             static_cast<double>(parser_rejected_));
    e.Sample("cairn_metrics_lines_rejected_total", "by=\"influxdb\"",
             static_cast<double>(writer_->stats().lines_rejected));
    e.Family("cairn_metrics_errors_total", "counter",
             "Errors: failed InfluxDB writes (retried) and failed publishes to the rejected "
             "topic (retried).");
    e.Sample("cairn_metrics_errors_total", "kind=\"influxdb_write\"",
             static_cast<double>(writer_->stats().write_failures));
    e.Sample("cairn_metrics_errors_total", "kind=\"rejected_publish\"",
             static_cast<double>(publish_failures_));
    e.Family("cairn_metrics_nsqd_connections", "gauge", "Brokers subscribed to.");
    e.Sample("cairn_metrics_nsqd_connections", "", static_cast<double>(consumer_->connected()));
    e.Family("cairn_metrics_brokers", "gauge",
             "Brokers consumed from: subscribed, or to be dialled again (with "
             "--lookupd-http-address, the ones nsqlookupd lists).");
    e.Sample("cairn_metrics_brokers", "", static_cast<double>(consumer_->brokers()));
    writer_->Expose(e, "cairn_metrics");
  }

 private:
  struct Held {
    nsq::MessageRef ref;
    int64_t timestamp_ns = 0;
  };
  using HeldMap = std::unordered_map<MessageKey, Held, MessageKeyHash>;

  void OnMessage(const nsq::Delivered& d, const nsq::MessageRef& ref) {
    const MessageKey key{d.broker, d.id};
    if (auto it = held_.find(key); it != held_.end()) {
      // Delivered again while we still hold it (it timed out at the broker, or the connection
      // dropped and came back): its points are already on their way; settle through the newer
      // delivery.
      it->second.ref = ref;
      return;
    }
    held_.emplace(key, Held{ref, d.timestamp_ns});
    MetricsMessage m = PrepareMetricsMessage(d.body, d.timestamp_ns);
    parser_rejected_ += m.rejected.size();
    writer_->Add(m.lines, [this, key, rejected = std::move(m.rejected)](
                              std::vector<RejectedLine> refused) mutable {
      for (auto& r : refused) rejected.push_back(std::move(r));
      Settle(key, std::move(rejected));
    });
  }

  void Settle(const MessageKey& key, std::vector<RejectedLine> rejected) {
    auto it = held_.find(key);
    if (it == held_.end()) return;
    if (rejected.empty()) return Finish(it);
    std::vector<std::string> records;
    const auto id = it->second.ref.id();
    for (const auto& r : rejected) {
      spdlog::warn("line rejected {} reason=\"{}\"", Describe(key), r.reason);
      records.push_back(RejectedRecord(
          r, s_.worker.topic, s_.worker.channel, consumer_->broker_address(key.first),
          std::string_view(id.data(), id.size()), it->second.timestamp_ns));
    }
    PublishRejected(key, std::move(records));
  }

  // The message is FINished once its refused lines are safely in the rejected topic.
  void PublishRejected(const MessageKey& key, std::vector<std::string> records) {
    ++publishing_;
    std::vector<std::string> copy = records;
    producer_.MultiPublish(
        s_.rejected_topic, std::move(copy),
        [this, key, records = std::move(records)](Status published) mutable {
          --publishing_;
          auto it = held_.find(key);
          if (it == held_.end()) return;
          if (published) return Finish(it);
          ++publish_failures_;
          spdlog::warn("publish to {} failed, retrying: {}", s_.rejected_topic,
                       published.error().message);
          auto retry = std::make_shared<asio::steady_timer>(io_, std::chrono::seconds(1));
          ++publishing_;
          retry->async_wait(
              [this, retry, key, records = std::move(records)](boost::system::error_code) mutable {
                --publishing_;
                PublishRejected(key, std::move(records));
              });
        });
  }

  void Finish(HeldMap::iterator it) {
    it->second.ref.Finish();
    held_.erase(it);
    ++finished_;
  }

  void ArmTouch() {
    touch_timer_.expires_after(s_.touch_interval);
    touch_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      for (auto& [key, h] : held_) h.ref.Touch();
      ArmTouch();
    });
  }

  void WaitDrained(std::function<void()> done) {
    const bool drained = held_.empty() && publishing_ == 0;
    if (!drained && std::chrono::steady_clock::now() < deadline_) {
      stop_timer_.expires_after(std::chrono::milliseconds(20));
      stop_timer_.async_wait([this, done = std::move(done)](boost::system::error_code ec) mutable {
        if (!ec) WaitDrained(std::move(done));
      });
      return;
    }
    if (!drained) {
      spdlog::warn("shutdown: {} messages not yet written; handing them back (REQ)", held_.size());
      for (auto& [key, h] : held_) h.ref.Requeue(std::chrono::milliseconds(0));
    }
    touch_timer_.cancel();
    // Let the REQs and FINs go out before the connections close.
    stop_timer_.expires_after(std::chrono::milliseconds(100));
    stop_timer_.async_wait([this, done = std::move(done)](boost::system::error_code) {
      consumer_->Close();
      producer_.Stop();
      spdlog::info("stopped: finished={} points_written={}", finished_,
                   writer_->stats().points_written);
      done();
    });
  }

  asio::io_context& io_;
  const Settings& s_;
  std::unique_ptr<InfluxWriter> writer_;
  std::unique_ptr<nsq::Consumer> consumer_;
  nsq::Producer producer_;
  asio::steady_timer touch_timer_, stop_timer_;
  HeldMap held_;
  uint64_t finished_ = 0, parser_rejected_ = 0, publish_failures_ = 0;
  int publishing_ = 0;
  bool stopping_ = false;
  std::chrono::steady_clock::time_point deadline_;
};

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  s.worker = WorkerFlags::Defaults("metrics", "influxdb", 5000, "0.0.0.0:8089");
  CLI::App app{"cairn-metrics: consumes line protocol from a topic and writes it to InfluxDB"};
  AddWorkerFlags(app, s.worker);
  AddInfluxWriterFlags(app, s.influx);
  AddDurationFlag(app, "--write-timeout", &s.influx.timeout,
                  "a write not answered within this is retried");
  app.add_option("--rejected-topic", s.rejected_topic,
                 "topic that receives refused lines, with the reason (JSON)")
      ->capture_default_str();
  AddDurationFlag(app, "--touch-interval", &s.touch_interval,
                  "TOUCH held messages this often, so they do not time out while InfluxDB is "
                  "slow or down (keep it under cairnd's --msg-timeout)");
  AddDurationFlag(app, "--shutdown-timeout", &s.shutdown_timeout,
                  "on SIGTERM, how long to wait for InfluxDB to take what is held before handing "
                  "it back to cairnd (REQ)");
  CLI11_PARSE(app, argc, argv);
  SetUpLogging(s.worker);

  auto brokers = BrokerAddresses(s.worker);
  if (!brokers) return ExitWith(brokers.error(), 2);
  auto client = nsq::Secure(s.worker.security);
  if (!client) return ExitWith(client.error(), 2);
  asio::io_context io(1);
  auto writer = InfluxWriter::Create(io, s.influx);
  if (!writer) return ExitWith(writer.error(), 2);
  auto consumer = MakeConsumer(io, s.worker, *client);
  if (!consumer) return ExitWith(consumer.error(), 2);
  MetricsWorker worker(io, s, std::move(*consumer), brokers->front(), std::move(*client),
                       std::move(*writer));
  auto started = WorkerHttp::Start(
      io, s.worker.http_address, [&] { return worker.Health(); },
      [&](net::Exposition& e) { worker.Expose(e); });
  if (!started) return ExitWith(started.error(), 1);
  std::unique_ptr<WorkerHttp> http = std::move(*started);
  worker.Start();
  spdlog::info("cairn-metrics ready topic={} channel={} influxdb={} database={} batch_size={}",
               s.worker.topic, s.worker.channel, s.influx.url, s.influx.database,
               s.influx.batch_size);
  std::shared_ptr<asio::signal_set> signals;
  signals = OnShutdownSignal(io, [&] {
    http->Drain();
    worker.Shutdown([&] {
      http->CloseAll();
      io.stop();
    });
  });
  io.run();
  return 0;
}

// Writes points to InfluxDB 1.x over HTTP (/write, precision ns, keep-alive) in batches: a batch
// goes out when it holds `batch_size` points or `flush_interval` after its first point, whichever
// comes first. Shared by cairn-metrics and cairn-replay.
//
// The promise a caller builds on: the `done` callback of Add() runs only after InfluxDB accepted
// every line of it, or refused some of them as bad (a 400 for that line alone; the bad lines are
// passed to `done`). Until then nothing is dropped: a server that is down, slow or answering 5xx
// is retried with exponential backoff and jitter, forever. A batch InfluxDB refuses with 400 is
// split in halves and each half written again, until the bad lines stand alone; as points carry
// their timestamps, writing a good point twice leaves InfluxDB as writing it once.
//
// Threading: one io thread; callbacks run there.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include "src/base/error.h"

#include "net/http_client.h"
#include "net/prometheus.h"
#include "src/base/histogram.h"

namespace cairn::consumers {

struct InfluxWriterOptions {
  std::string url = "http://127.0.0.1:8086";  // or https://
  std::string tls_root_ca_file;  // CAs an https:// server must chain to; "" for the system's
  std::string database = "metrics";
  std::string retention_policy;  // "" for the database's default
  size_t batch_size = 1000;      // points per write
  std::chrono::milliseconds flush_interval{5000};
  size_t concurrency = 2;  // writes in flight at once, one connection each
  std::chrono::milliseconds timeout{30'000};
  std::chrono::milliseconds backoff_min{100};
  std::chrono::milliseconds backoff_max{10'000};
  bool create_database = true;  // CREATE DATABASE at start and when a write says it is missing
};

struct RejectedLine {
  std::string line;
  std::string reason;
};

struct InfluxWriterStats {
  uint64_t points_written = 0;
  uint64_t batches_written = 0;
  uint64_t write_failures = 0;  // attempts that failed and were retried (5xx, down, timeout)
  uint64_t lines_rejected = 0;  // refused by InfluxDB (400) one by one
  Histogram<12> write_seconds{
      {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10}};
  std::string last_error;  // "" once a write succeeded again
};

class InfluxWriter {
 public:
  using Done = std::function<void(std::vector<RejectedLine> rejected)>;

  // kInvalidArgument for a URL that is not http://host[:port][/path], or no database.
  static Result<std::unique_ptr<InfluxWriter>> Create(boost::asio::io_context& io,
                                                      InfluxWriterOptions options);
  ~InfluxWriter();

  // Queues one message's lines: complete line-protocol points with their timestamps, each ended
  // by '\n'. `done` runs once (never from inside Add), as the header comment says.
  void Add(std::string_view lines, Done done);
  // Sends the partly filled batch now instead of at its deadline (shutdown, end of a replay).
  void Flush();

  size_t points_pending() const { return pending_points_; }  // added, not yet settled
  bool idle() const { return tickets_.empty(); }
  const InfluxWriterStats& stats() const { return stats_; }
  // Adds the writer's families (points written, write latency, failures...) to /metrics.
  void Expose(net::Exposition& e, std::string_view prefix) const;

 private:
  struct Batch {
    std::string body;              // lines, each ended by '\n'
    std::vector<uint32_t> ends;    // end offset in body of each line
    std::vector<uint64_t> owners;  // ticket of each line
    size_t size() const { return ends.size(); }
    std::string_view line(size_t i) const;
    void Append(std::string_view line, uint64_t owner);
  };
  struct Ticket {
    size_t remaining = 0;
    std::vector<RejectedLine> rejected;
    Done done;
  };

  InfluxWriter(boost::asio::io_context& io, InfluxWriterOptions options, net::HttpUrl url,
               std::shared_ptr<net::TlsContext> tls);
  void Seal();
  void Pump();
  void Send(Batch batch);
  void OnWritten(Batch batch, const net::HttpResult& result,
                 std::chrono::steady_clock::time_point started, net::HttpClient* client);
  void SettleLine(uint64_t owner);
  void RejectLine(const Batch& batch, const std::string& reason);
  void Retry(Batch batch, const std::string& error);
  void CreateDatabase();

  boost::asio::io_context& io_;
  InfluxWriterOptions options_;
  net::HttpUrl url_;
  std::string write_target_;
  std::vector<std::unique_ptr<net::HttpClient>> clients_;
  std::vector<net::HttpClient*> free_clients_;
  Batch current_;
  std::deque<Batch> ready_;
  std::unordered_map<uint64_t, Ticket> tickets_;
  uint64_t next_ticket_ = 1;
  size_t pending_points_ = 0;
  boost::asio::steady_timer flush_timer_;
  bool flush_armed_ = false;
  boost::asio::steady_timer backoff_timer_;
  bool backing_off_ = false;
  std::chrono::milliseconds backoff_{0};
  bool creating_database_ = false;
  std::minstd_rand jitter_{std::random_device{}()};
  InfluxWriterStats stats_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace cairn::consumers

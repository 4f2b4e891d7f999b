#include "consumers/common/influx_writer.h"

#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>
#include <nlohmann/json.hpp>

namespace cairn::consumers {

namespace asio = boost::asio;
namespace http = boost::beast::http;

namespace {

std::string Encode(std::string_view s) {
  return boost::urls::encode(s, boost::urls::unreserved_chars);
}

// InfluxDB 1.x answers errors as {"error":"..."}.
std::string ErrorText(const net::HttpResult& r) {
  if (!r.answered()) return r.transport.error().message;
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (j.is_object() && j.contains("error") && j["error"].is_string()) {
    return j["error"].get<std::string>();
  }
  return r.Describe();
}

}  // namespace

std::string_view InfluxWriter::Batch::line(size_t i) const {
  const size_t begin = i == 0 ? 0 : ends[i - 1];
  return std::string_view(body).substr(begin, ends[i] - begin - 1);  // without its '\n'
}

void InfluxWriter::Batch::Append(std::string_view line, uint64_t owner) {
  body.append(line);
  body.push_back('\n');
  ends.push_back(static_cast<uint32_t>(body.size()));
  owners.push_back(owner);
}

Result<std::unique_ptr<InfluxWriter>> InfluxWriter::Create(asio::io_context& io,
                                                           InfluxWriterOptions options) {
  auto url = net::ParseHttpUrl(options.url);
  if (!url) {
    return Fail(Errc::kInvalidArgument,
                "--influxdb-url: not an http:// or https:// URL: " + options.url);
  }
  if (options.database.empty()) return Fail(Errc::kInvalidArgument, "--database is required");
  std::shared_ptr<net::TlsContext> tls;
  if (url->https) {
    auto ctx = net::MakeClientTls(net::TlsClientFiles::Trusting(options.tls_root_ca_file));
    if (!ctx) return Fail("--influxdb-tls-root-ca-file", ctx.error());
    tls = std::move(*ctx);
  }
  options.batch_size = std::max<size_t>(1, options.batch_size);
  options.concurrency = std::max<size_t>(1, options.concurrency);
  return std::unique_ptr<InfluxWriter>(
      new InfluxWriter(io, std::move(options), std::move(*url), std::move(tls)));
}

InfluxWriter::InfluxWriter(asio::io_context& io, InfluxWriterOptions options, net::HttpUrl url,
                           std::shared_ptr<net::TlsContext> tls)
    : io_(io),
      options_(std::move(options)),
      url_(std::move(url)),
      flush_timer_(io),
      backoff_timer_(io) {
  write_target_ =
      fmt::format("{}/write?db={}&precision=ns", url_.base_path, Encode(options_.database));
  if (!options_.retention_policy.empty()) {
    write_target_ += "&rp=" + Encode(options_.retention_policy);
  }
  for (size_t i = 0; i < options_.concurrency; ++i) {
    clients_.push_back(std::make_unique<net::HttpClient>(io.get_executor(), url_.host, url_.port,
                                                         options_.timeout, tls));
    free_clients_.push_back(clients_.back().get());
  }
  if (options_.create_database) CreateDatabase();
}

InfluxWriter::~InfluxWriter() {
  *alive_ = false;
  flush_timer_.cancel();
  backoff_timer_.cancel();
}

void InfluxWriter::Add(std::string_view lines, Done done) {
  if (lines.empty()) {
    asio::post(io_, [done = std::move(done)] { done({}); });
    return;
  }
  const uint64_t id = next_ticket_++;
  Ticket& t = tickets_[id];
  t.done = std::move(done);
  // Settling is asynchronous (a write's answer), so counting the lines as they go in is safe.
  for (size_t pos = 0; pos < lines.size();) {
    size_t nl = lines.find('\n', pos);
    if (nl == std::string_view::npos) nl = lines.size();
    current_.Append(lines.substr(pos, nl - pos), id);
    ++t.remaining;
    ++pending_points_;
    pos = nl + 1;
    if (current_.size() >= options_.batch_size) Seal();
  }
  if (current_.size() > 0 && !flush_armed_) {
    flush_armed_ = true;
    flush_timer_.expires_after(options_.flush_interval);
    flush_timer_.async_wait(
        [this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
          if (ec || alive.expired()) return;
          flush_armed_ = false;
          Seal();
        });
  }
}

void InfluxWriter::Flush() { Seal(); }

void InfluxWriter::Seal() {
  if (flush_armed_) {
    flush_armed_ = false;
    flush_timer_.cancel();
  }
  if (current_.size() == 0) return;
  ready_.push_back(std::move(current_));
  current_ = Batch{};
  Pump();
}

void InfluxWriter::Pump() {
  while (!backing_off_ && !ready_.empty() && !free_clients_.empty()) {
    Batch b = std::move(ready_.front());
    ready_.pop_front();
    Send(std::move(b));
  }
}

void InfluxWriter::Send(Batch batch) {
  net::HttpClient* client = free_clients_.back();
  free_clients_.pop_back();
  const auto started = std::chrono::steady_clock::now();
  std::string body = batch.body;  // the batch is kept for a retry or a split
  client->Request(http::verb::post, write_target_, std::move(body), "text/plain; charset=utf-8",
                  [this, batch = std::move(batch), started, client](net::HttpResult r) mutable {
                    OnWritten(std::move(batch), r, started, client);
                  });
}

void InfluxWriter::OnWritten(Batch batch, const net::HttpResult& r,
                             std::chrono::steady_clock::time_point started,
                             net::HttpClient* client) {
  free_clients_.push_back(client);
  stats_.write_seconds.Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  if (r.ok()) {
    backoff_ = std::chrono::milliseconds(0);
    stats_.last_error.clear();
    stats_.points_written += batch.size();
    ++stats_.batches_written;
    for (uint64_t owner : batch.owners) SettleLine(owner);
  } else if (r.answered() && (r.status == 400 || r.status == 413)) {
    // A bad line (or a body too large): find which by halves. Lines already written are
    // written again, which changes nothing.
    if (batch.size() == 1) {
      RejectLine(batch, ErrorText(r));
    } else {
      Batch halves[2];
      const size_t mid = batch.size() / 2;
      for (size_t i = 0; i < batch.size(); ++i) {
        halves[i < mid ? 0 : 1].Append(batch.line(i), batch.owners[i]);
      }
      ready_.push_front(std::move(halves[1]));
      ready_.push_front(std::move(halves[0]));
    }
  } else {
    if (r.answered() && r.status == 404 && options_.create_database) CreateDatabase();
    Retry(std::move(batch), ErrorText(r));
  }
  Pump();
}

void InfluxWriter::SettleLine(uint64_t owner) {
  auto it = tickets_.find(owner);
  if (it == tickets_.end()) return;
  --pending_points_;
  if (--it->second.remaining > 0) return;
  Ticket t = std::move(it->second);
  tickets_.erase(it);
  t.done(std::move(t.rejected));
}

void InfluxWriter::RejectLine(const Batch& batch, const std::string& reason) {
  ++stats_.lines_rejected;
  auto it = tickets_.find(batch.owners[0]);
  if (it != tickets_.end()) {
    it->second.rejected.push_back({std::string(batch.line(0)), "influxdb: " + reason});
  }
  SettleLine(batch.owners[0]);
}

void InfluxWriter::Retry(Batch batch, const std::string& error) {
  ++stats_.write_failures;
  if (stats_.last_error != error) {
    spdlog::warn("influxdb write of {} points failed, retrying: {}", batch.size(), error);
  }
  stats_.last_error = error;
  ready_.push_front(std::move(batch));
  if (backing_off_) return;
  backoff_ = std::clamp(backoff_ * 2, options_.backoff_min, options_.backoff_max);
  // Full jitter over the upper half, so that several workers do not retry in step.
  std::uniform_int_distribution<int64_t> d(backoff_.count() / 2, backoff_.count());
  backing_off_ = true;
  backoff_timer_.expires_after(std::chrono::milliseconds(d(jitter_)));
  backoff_timer_.async_wait(
      [this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
        if (alive.expired()) return;
        backing_off_ = false;
        if (!ec) Pump();
      });
}

void InfluxWriter::CreateDatabase() {
  if (creating_database_) return;
  creating_database_ = true;
  const std::string q = fmt::format("CREATE DATABASE \"{}\"", options_.database);
  clients_[0]->Request(http::verb::post, url_.base_path + "/query", "q=" + Encode(q),
                       "application/x-www-form-urlencoded",
                       [this, alive = std::weak_ptr<bool>(alive_)](net::HttpResult r) {
                         if (alive.expired()) return;
                         creating_database_ = false;
                         if (r.ok()) {
                           spdlog::info("influxdb database={} ready", options_.database);
                         } else {
                           // Writes retry on their own and ask again on a 404.
                           spdlog::warn("influxdb CREATE DATABASE {}: {}", options_.database,
                                        ErrorText(r));
                         }
                       });
}

void InfluxWriter::Expose(net::Exposition& e, std::string_view prefix) const {
  auto name = [&](std::string_view n) { return fmt::format("{}_{}", prefix, n); };
  e.Family(name("points_written_total"), "counter", "Points InfluxDB accepted.");
  e.Sample(name("points_written_total"), "", static_cast<double>(stats_.points_written));
  e.Family(name("write_batches_total"), "counter", "Successful /write requests.");
  e.Sample(name("write_batches_total"), "", static_cast<double>(stats_.batches_written));
  e.Family(name("write_failures_total"), "counter",
           "Writes that failed (InfluxDB down, slow or 5xx) and were retried.");
  e.Sample(name("write_failures_total"), "", static_cast<double>(stats_.write_failures));
  e.Family(name("lines_rejected_by_influxdb_total"), "counter",
           "Lines InfluxDB refused (400), sent to the rejected topic.");
  e.Sample(name("lines_rejected_by_influxdb_total"), "",
           static_cast<double>(stats_.lines_rejected));
  e.Family(name("points_pending"), "gauge", "Points handed to the writer and not yet settled.");
  e.Sample(name("points_pending"), "", static_cast<double>(pending_points_));
  e.Family(name("write_seconds"), "histogram", "Duration of each /write request.");
  e.Histogram(name("write_seconds"), stats_.write_seconds);
}

}  // namespace cairn::consumers

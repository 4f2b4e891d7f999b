#include "src/server/http_api.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <optional>

#include <openssl/crypto.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/beast/http/field.hpp>
#include <nlohmann/json.hpp>

#include "net/position.h"
#include "net/prometheus.h"
#include "net/protocol.h"
#include "src/base/clock.h"
#include "src/base/duration.h"
#include "src/server/errors.h"
#include "src/server/identify.h"
#include "src/server/tcp_server.h"

namespace cairn::net {
namespace {

namespace http = boost::beast::http;
using Json = nlohmann::ordered_json;

// nsqd's V1 responses all carry this header.
void Stamp(HttpResponse& r) { r.set("X-NSQ-Content-Type", "nsq; version=1.0"); }

HttpResponse Respond(http::status status, std::string body, std::string_view content_type) {
  HttpResponse r;
  r.result(status);
  Stamp(r);
  if (!content_type.empty()) r.set(http::field::content_type, content_type);
  r.body() = std::move(body);
  return r;
}

HttpResponse Ok(std::string body = "") {
  // nsqd sets no Content-Type; Go sniffs "text/plain; charset=utf-8" for a non-empty body.
  return Respond(http::status::ok, body, body.empty() ? "" : "text/plain; charset=utf-8");
}

HttpResponse Error(http::status status, std::string_view message) {
  return Respond(status, fmt::format("{{\"message\":\"{}\"}}", message),
                 "application/json; charset=utf-8");
}

// Whether a limit (0 or unset: none) becomes tighter. One set where there was none counts: the
// store's default, which it would replace, is not known here.
template <class T>
bool Shrinks(const std::optional<T>& before, const std::optional<T>& after) {
  if (!after || *after == T{}) return false;
  return !before || *before == T{} || *after < *before;
}

// The answer to an operation the core failed (errors.h); `what` names it in the log.
HttpResponse Failure(HttpOperation operation, std::string_view what, const cairn::Error& error) {
  const HttpFailure f = HttpFailed(operation, what, error);
  return Error(f.status, f.message);
}

HttpResponse JsonBody(const Json& j) {
  return Respond(http::status::ok, j.dump(), "application/json; charset=utf-8");
}

bool ParseBool(const std::string* v, bool absent) {
  if (v == nullptr) return absent;
  if (*v == "false" || *v == "0") return false;
  return true;  // nsqd: any other value counts as true
}

// The offset a position names in `log` (ParseLogPosition).
std::optional<uint64_t> ResolvePosition(Log& log, const std::string& spec) {
  const auto position = ParseLogPosition(spec);
  if (!position) return std::nullopt;
  switch (position->kind) {
    case LogPosition::Kind::kEarliest:
      return log.start_offset();
    case LogPosition::Kind::kLatest:
      return log.next_offset();
    case LogPosition::Kind::kOffset:
      return position->offset;
    case LogPosition::Kind::kTime: {
      auto off = log.OffsetForTime(position->time_ns);
      if (!off) return std::nullopt;
      return *off;
    }
  }
  return std::nullopt;
}

struct ChannelView {
  Channel* channel;
  ChannelStats stats;
  uint64_t lag_messages = 0;  // unfinished messages from the floor to the end of the log
  double lag_seconds = 0;     // age of the oldest unfinished message
  uint64_t depth = 0;         // nsqd's depth: waiting to be delivered (not in flight, deferred)
  uint64_t skipped = 0;
};

ChannelView ViewOf(Topic& topic, Channel& c, int64_t now_ns) {
  ChannelView v{&c, c.stats()};
  Log& log = topic.log();
  const auto acks = c.cursor()->acks();
  const uint64_t floor = std::max(acks.floor(), log.start_offset());
  const uint64_t end = log.next_offset();
  const uint64_t finished_above = acks.finished_above_floor();
  v.lag_messages = end > floor ? end - floor - std::min(end - floor, finished_above) : 0;
  const uint64_t held = v.stats.in_flight + v.stats.deferred;
  v.depth = v.lag_messages > held ? v.lag_messages - held : 0;
  if (const int64_t ts = c.OldestUnfinishedPublishTime(); ts > 0 && now_ns > ts) {
    v.lag_seconds = static_cast<double>(now_ns - ts) / 1e9;
  }
  v.skipped = c.cursor()->skipped_by_retention();
  return v;
}

Json ClientJson(const ClientStats& c) {
  Json j;
  j["client_id"] = c.client_id;
  j["hostname"] = c.hostname;
  j["version"] = c.version;
  j["remote_address"] = c.remote_address;
  j["state"] = c.state;
  j["ready_count"] = c.ready_count;
  j["in_flight_count"] = c.in_flight_count;
  j["message_count"] = c.message_count;
  j["finish_count"] = c.finish_count;
  j["requeue_count"] = c.requeue_count;
  j["connect_ts"] = c.connect_ts;
  j["sample_rate"] = c.sample_rate;
  j["deflate"] = c.deflate;
  j["snappy"] = c.snappy;
  j["user_agent"] = c.user_agent;
  if (c.authed) {  // as nsqd: left out when empty
    j["authed"] = true;
    if (!c.auth_identity.empty()) j["auth_identity"] = c.auth_identity;
    if (!c.auth_identity_url.empty()) j["auth_identity_url"] = c.auth_identity_url;
  }
  if (!c.pub_counts.empty()) {
    j["pub_counts"] = Json::array();
    for (const auto& [topic, count] : c.pub_counts) {
      j["pub_counts"].push_back(Json{{"topic", topic}, {"count", count}});
    }
  }
  j["tls"] = c.tls;
  j["tls_cipher_suite"] = c.tls_cipher_suite;
  j["tls_version"] = c.tls_version;
  j["tls_negotiated_protocol"] = "";
  j["tls_negotiated_protocol_is_mutual"] = false;
  return j;
}

// nsqd's text /stats names a client "hostname:port user_agent" and shows how long it has been
// connected, to the second.
std::string TextClientId(const ClientStats& c) {
  const std::string port = c.remote_address.substr(c.remote_address.rfind(':') + 1);
  return fmt::format("{}:{} {}", c.hostname, port, c.user_agent);
}

std::string TextConnected(const ClientStats& c, int64_t now_ns) {
  return FormatDuration(std::chrono::seconds(now_ns / 1'000'000'000 - c.connect_ts));
}

Json E2eJson() { return Json{{"count", 0}, {"percentiles", nullptr}}; }

std::string Health(const Broker& broker) {
  return broker.healthy() ? "OK" : "NOK - the store cannot write (disk full or failing)";
}

// What /stats shows, taken once and written as JSON or as nsqd's text.
struct StatsSnapshot {
  struct ChannelRow {
    ChannelView view;
    std::vector<ClientStats> clients;  // empty unless include_clients
  };
  struct TopicRow {
    std::shared_ptr<Topic> topic;
    TopicStats stats;
    uint64_t depth = 0;  // nsqd: a topic's own depth counts only while it has no channel
    std::vector<ChannelRow> channels;
  };
  std::string health;
  bool topic_missing = false;  // a `topic` filter named no topic
  bool include_clients = true;
  std::vector<TopicRow> topics;
  // Empty unless include_clients; the JSON form leaves them out when topic_missing, as nsqd.
  std::vector<ClientStats> producers;
};

StatsSnapshot TakeSnapshot(Broker& broker, const TcpServer* tcp, const Query& q, int64_t now_ns) {
  StatsSnapshot s;
  s.health = Health(broker);
  s.include_clients = ParseBool(q.Get("include_clients"), true);
  const std::string* topic_filter = q.Get("topic");
  const std::string* channel_filter = q.Get("channel");
  const bool filter_channel = channel_filter != nullptr && !channel_filter->empty();
  auto topics = broker.topics();
  if (topic_filter != nullptr && !topic_filter->empty()) {
    auto only = broker.FindTopic(*topic_filter);
    topics.clear();
    if (only) topics.push_back(only);
    s.topic_missing = only == nullptr;
  }
  for (auto& topic : topics) {
    StatsSnapshot::TopicRow row;
    row.topic = topic;
    row.stats = topic->stats();
    const uint64_t retained = row.stats.next_offset - row.stats.start_offset;
    row.depth = topic->channels().empty() ? retained : 0;
    for (Channel* c : topic->channels()) {
      if (filter_channel && c->name() != *channel_filter) continue;
      row.channels.push_back({ViewOf(*topic, *c, now_ns),
                              s.include_clients ? c->client_stats() : std::vector<ClientStats>{}});
    }
    s.topics.push_back(std::move(row));
  }
  if (s.include_clients && tcp != nullptr) s.producers = tcp->Producers();
  return s;
}

Json ChannelJson(const StatsSnapshot::ChannelRow& row, bool durable, bool include_clients) {
  const ChannelView& v = row.view;
  Channel& c = *v.channel;
  Json cj;
  cj["channel_name"] = c.name();
  cj["depth"] = v.depth;
  cj["backend_depth"] = durable ? v.depth : 0;
  cj["in_flight_count"] = v.stats.in_flight;
  cj["deferred_count"] = v.stats.deferred;
  cj["message_count"] = v.stats.delivered;
  cj["requeue_count"] = v.stats.requeued;
  cj["timeout_count"] = v.stats.timed_out;
  cj["client_count"] = v.stats.subscribers;
  if (include_clients) {
    cj["clients"] = Json::array();
    for (const auto& cs : row.clients) cj["clients"].push_back(ClientJson(cs));
  } else {
    cj["clients"] = nullptr;
  }
  cj["paused"] = c.paused();
  cj["e2e_processing_latency"] = E2eJson();
  // Cairn's additions.
  cj["cursor_offset"] = c.cursor()->floor();
  cj["lag_messages"] = v.lag_messages;
  cj["lag_seconds"] = v.lag_seconds;
  cj["skipped_by_retention"] = v.skipped;
  cj["expired_count"] = v.stats.expired;
  cj["skipped_unreadable"] = v.stats.skipped_unreadable;
  return cj;
}

Json StatsJson(const StatsSnapshot& s, int64_t start_time, bool filter_channel) {
  Json j;
  j["version"] = kNsqdVersion;
  j["health"] = s.health;
  j["start_time"] = start_time;
  if (s.topic_missing) {
    j["topics"] = nullptr;
  } else {
    j["topics"] = Json::array();
    for (const auto& t : s.topics) {
      // A channel filter leaves out the topics that have no such channel.
      if (filter_channel && t.channels.empty()) continue;
      const bool durable = t.topic->log().durable();
      Json channels = Json::array();
      for (const auto& c : t.channels) {
        channels.push_back(ChannelJson(c, durable, s.include_clients));
      }
      Json tj;
      tj["topic_name"] = t.topic->name();
      tj["channels"] = std::move(channels);
      tj["depth"] = t.depth;
      tj["backend_depth"] = durable ? t.depth : 0;
      tj["message_count"] = t.stats.next_offset;
      tj["message_bytes"] = t.stats.published_bytes;
      tj["paused"] = t.topic->paused();
      tj["e2e_processing_latency"] = E2eJson();
      j["topics"].push_back(std::move(tj));
    }
  }
  // nsqd: null when there are none, without clients, or when the topic filter found nothing.
  j["producers"] = nullptr;
  if (!s.topic_missing) {
    for (const auto& p : s.producers) {
      if (j["producers"].is_null()) j["producers"] = Json::array();
      j["producers"].push_back(ClientJson(p));
    }
  }
  return j;
}

// nsqd's text format.
std::string StatsText(const StatsSnapshot& s, int64_t start_time, int64_t now_ns) {
  std::string out = fmt::format("nsqd v{} (cairn {})\n", kNsqdVersion, CAIRN_VERSION);
  std::time_t st = start_time;
  char when[64];
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&st));
  out += fmt::format("start_time {}\n", when);
  out += fmt::format("uptime {}\n",
                     FormatDuration(std::chrono::seconds(now_ns / 1'000'000'000 - start_time)));
  out += fmt::format("\nHealth: {}\n", s.health);
  if (s.topics.empty()) {
    out += "\nTopics: None\n";
  } else {
    out += "\nTopics:";
    for (const auto& t : s.topics) {
      const bool durable = t.topic->log().durable();
      out += fmt::format("\n{}[{:<15}] depth: {:<5} be-depth: {:<5} msgs: {:<8} e2e%: \n",
                         t.topic->paused() ? "*P " : "   ", t.topic->name(), t.depth,
                         durable ? t.depth : 0, t.stats.next_offset);
      for (const auto& row : t.channels) {
        const ChannelView& v = row.view;
        out += fmt::format(
            "{}[{:<25}] depth: {:<5} be-depth: {:<5} inflt: {:<4} def: {:<4} re-q: {:<5} "
            "timeout: {:<5} msgs: {:<8} e2e%: \n",
            v.channel->paused() ? "   *P " : "      ", v.channel->name(), v.depth,
            durable ? v.depth : 0, v.stats.in_flight, v.stats.deferred, v.stats.requeued,
            v.stats.timed_out, v.stats.delivered);
        for (const auto& cs : row.clients) {
          out += fmt::format(
              "        [{} {:<21}] state: {} inflt: {:<4} rdy: {:<4} fin: {:<8} re-q: {:<8} "
              "msgs: {:<8} connected: {}\n",
              cs.version, TextClientId(cs), cs.state, cs.in_flight_count, cs.ready_count,
              cs.finish_count, cs.requeue_count, cs.message_count, TextConnected(cs, now_ns));
        }
      }
    }
  }
  if (s.producers.empty()) {
    out += "\nProducers: None\n";
  } else {
    out += "\nProducers:\n";
    for (const auto& p : s.producers) {
      uint64_t total = 0;
      std::string topics;
      for (const auto& [topic, count] : p.pub_counts) {
        total += count;
        topics += fmt::format("{}{}={}", topics.empty() ? "" : ",", topic, count);
      }
      out += fmt::format("   [{} {:<21}] msgs: {:<8} topics: {} connected: {}\n", p.version,
                         TextClientId(p), total, topics, TextConnected(p, now_ns));
    }
  }
  return out;
}

// The store's part of /metrics.
void StoreMetrics(Exposition& e, const Broker& broker) {
  const storage::StoreStats store = broker.store_stats();
  auto counter = [&e](std::string_view name, std::string_view help, uint64_t value) {
    e.Family(name, "counter", help);
    e.Sample(name, "", static_cast<double>(value));
  };
  counter("cairn_store_group_commits_total", "Group writes to RocksDB.", store.commits.groups);
  counter("cairn_store_fsyncs_total", "WAL syncs.", store.commits.syncs);
  counter("cairn_store_write_failures_total", "Group writes that failed.", store.commits.failures);
  e.Family("cairn_store_fsync_duration_seconds", "histogram",
           "Time of each synced group write (write and fsync).");
  e.Histogram("cairn_store_fsync_duration_seconds", store.commits.sync_seconds);
  e.Family("cairn_store_append_duration_seconds", "histogram",
           "Time of each publish in the store, from its append to the end of its group's write "
           "(and fsync): the wait for the write in progress and its own.");
  e.Histogram("cairn_store_append_duration_seconds", store.commits.append_seconds);
  e.Family("cairn_store_group_size_requests", "histogram",
           "Requests (appends, trims, cursor flushes) per group commit.");
  e.Histogram("cairn_store_group_size_requests", store.commits.group_ops);
  e.Family("cairn_store_wal_files_total", "counter",
           "WAL files started, over a prepared spare of zeros or as a plain file.");
  e.Sample("cairn_store_wal_files_total", "kind=\"spare\"",
           static_cast<double>(store.wals_on_spares));
  e.Sample("cairn_store_wal_files_total", "kind=\"plain\"", static_cast<double>(store.plain_wals));
  counter("cairn_store_wal_spare_failures_total",
          "Attempts to prepare a spare WAL file that failed (a full disk, most likely).",
          store.wal_spare_failures);
  counter("cairn_store_unreadable_ranges_total",
          "Parts of topic logs found unreadable since cairnd started (damaged batches); "
          "channels skip them and go on.",
          store.unreadable_ranges);
  counter("cairn_store_cursor_flushes_total",
          "Passes that wrote every channel cursor changed since the last one to RocksDB "
          "(without fsync), every 100 ms.",
          store.cursor_flushes);
  e.Family("cairn_store_healthy", "gauge", "1 while the store can write, 0 after a failure.");
  e.Sample("cairn_store_healthy", "", broker.healthy() ? 1 : 0);
  if (store.volume_size_bytes > 0) {
    e.Family("cairn_store_volume_size_bytes", "gauge",
             "Size of the file system that holds the store (--data-path).");
    e.Sample("cairn_store_volume_size_bytes", "", static_cast<double>(store.volume_size_bytes));
    e.Family("cairn_store_volume_available_bytes", "gauge",
             "Bytes of that file system cairnd can still write.");
    e.Sample("cairn_store_volume_available_bytes", "",
             static_cast<double>(store.volume_available_bytes));
  }
}

// /metrics: per topic and channel, then the store's counters.
std::string MetricsText(Broker& broker, const TcpServer* tcp, const HttpApiInfo& info,
                        int64_t now_ns) {
  Exposition e;
  struct Row {
    std::string labels;
    ChannelView view;
  };
  std::vector<Row> rows;
  const auto topics = broker.topics();
  for (auto& topic : topics) {
    for (Channel* c : topic->channels()) {
      rows.push_back({fmt::format("topic=\"{}\",channel=\"{}\"", LabelValue(topic->name()),
                                  LabelValue(c->name())),
                      ViewOf(*topic, *c, now_ns)});
    }
  }
  // Each topic's log, read once for the families below (ephemeral topics have none).
  std::vector<std::optional<storage::LogInfo>> infos;
  for (auto& t : topics) infos.push_back(t->log().Info());
  auto topic_family = [&](std::string_view name, std::string_view type, std::string_view help,
                          auto value) {
    e.Family(name, type, help);
    for (size_t i = 0; i < topics.size(); ++i) {
      if (const auto v = value(*topics[i], infos[i])) {
        e.Sample(name, fmt::format("topic=\"{}\"", LabelValue(topics[i]->name())),
                 static_cast<double>(*v));
      }
    }
  };
  using Info = std::optional<storage::LogInfo>;
  topic_family(
      "cairn_topic_messages_total", "counter",
      "Messages ever appended to the topic's log (its next offset).",
      [](Topic& t, const Info&) { return std::optional<uint64_t>(t.stats().next_offset); });
  topic_family("cairn_topic_retained_messages", "gauge", "Messages in the topic's retained log.",
               [](Topic& t, const Info&) {
                 const auto s = t.stats();
                 return std::optional<uint64_t>(s.next_offset - s.start_offset);
               });
  topic_family("cairn_topic_bytes_on_disk", "gauge", "Stored bytes of the topic's log batches.",
               [](Topic&, const Info& info) {
                 return info ? std::optional<uint64_t>(info->bytes) : std::nullopt;
               });
  topic_family("cairn_topic_retention_bytes", "gauge",
               "The topic's retention by size: stored bytes it keeps at most (0: no limit).",
               [](Topic&, const Info& info) {
                 return info ? std::optional<uint64_t>(info->retention.bytes) : std::nullopt;
               });
  topic_family(
      "cairn_topic_retention_age_seconds", "gauge",
      "The topic's retention by age: seconds a message is kept (0: no limit).",
      [](Topic&, const Info& info) -> std::optional<uint64_t> {
        if (!info) return std::nullopt;
        return std::chrono::duration_cast<std::chrono::seconds>(info->retention.age).count();
      });
  auto channel_family = [&](std::string_view name, std::string_view type, std::string_view help,
                            auto value) {
    e.Family(name, type, help);
    for (auto& r : rows) e.Sample(name, r.labels, static_cast<double>(value(r.view)));
  };
  channel_family("cairn_channel_delivered_total", "counter",
                 "Messages sent to the channel's consumers, redeliveries included.",
                 [](const ChannelView& v) { return v.stats.delivered; });
  channel_family("cairn_channel_finished_total", "counter", "Messages finished (FIN).",
                 [](const ChannelView& v) { return v.stats.finished; });
  channel_family("cairn_channel_requeued_total", "counter", "Messages requeued (REQ).",
                 [](const ChannelView& v) { return v.stats.requeued; });
  channel_family("cairn_channel_timed_out_total", "counter",
                 "Messages not finished within their timeout.",
                 [](const ChannelView& v) { return v.stats.timed_out; });
  channel_family("cairn_channel_skipped_by_retention_total", "counter",
                 "Messages trimmed by retention before the channel finished them.",
                 [](const ChannelView& v) { return v.skipped; });
  channel_family("cairn_channel_expired_total", "counter",
                 "Messages skipped because they were older than the topic's message TTL.",
                 [](const ChannelView& v) { return v.stats.expired; });
  channel_family("cairn_channel_skipped_unreadable_total", "counter",
                 "Messages skipped because their part of the log cannot be read (a damaged "
                 "batch); cairnd logs each damaged part once.",
                 [](const ChannelView& v) { return v.stats.skipped_unreadable; });
  channel_family("cairn_channel_depth", "gauge",
                 "Messages waiting to be delivered (not in flight, not deferred).",
                 [](const ChannelView& v) { return v.depth; });
  channel_family("cairn_channel_in_flight", "gauge", "Messages delivered and not yet settled.",
                 [](const ChannelView& v) { return v.stats.in_flight; });
  channel_family("cairn_channel_deferred", "gauge",
                 "Messages waiting for their DPUB time or REQ delay.",
                 [](const ChannelView& v) { return v.stats.deferred; });
  channel_family("cairn_channel_lag_messages", "gauge",
                 "Unfinished messages between the channel's cursor and the end of the log.",
                 [](const ChannelView& v) { return v.lag_messages; });
  channel_family("cairn_channel_lag_seconds", "gauge",
                 "Age of the oldest message the channel has not finished.",
                 [](const ChannelView& v) { return v.lag_seconds; });
  channel_family("cairn_channel_consumers", "gauge", "Connections subscribed to the channel.",
                 [](const ChannelView& v) { return v.stats.subscribers; });
  StoreMetrics(e, broker);
  e.Family("cairn_tcp_connections", "gauge", "Open NSQ TCP connections.");
  e.Sample("cairn_tcp_connections", "",
           static_cast<double>(tcp != nullptr ? tcp->connection_count() : 0));
  const auto lookupds = info.lookupd_registrations ? info.lookupd_registrations()
                                                   : std::vector<std::pair<std::string, bool>>{};
  if (!lookupds.empty()) {
    e.Family("cairn_lookupd_registered", "gauge",
             "1 while the broker is registered with the nsqlookupd (--lookupd-tcp-address), "
             "0 while it is not.");
    for (const auto& [address, registered] : lookupds) {
      e.Sample("cairn_lookupd_registered", fmt::format("lookupd=\"{}\"", LabelValue(address)),
               registered ? 1 : 0);
    }
  }
  return e.Take();
}

}  // namespace

const HttpApi::Route HttpApi::kRoutes[] = {
    {"/ping", http::verb::get, &HttpApi::Ping},
    {"/info", http::verb::get, &HttpApi::Info},
    {"/stats", http::verb::get, &HttpApi::Stats},
    {"/metrics", http::verb::get, &HttpApi::Metrics},
    {"/pub", http::verb::post, &HttpApi::Pub},
    {"/dpub", http::verb::post, &HttpApi::Pub},
    {"/mpub", http::verb::post, &HttpApi::Mpub},
    {"/topic/create", http::verb::post, &HttpApi::TopicCreate},
    {"/topic/delete", http::verb::post, &HttpApi::TopicDelete},
    {"/topic/empty", http::verb::post, &HttpApi::TopicEmpty},
    {"/topic/pause", http::verb::post, &HttpApi::TopicPause},
    {"/topic/unpause", http::verb::post, &HttpApi::TopicUnpause},
    {"/topic/log", http::verb::get, &HttpApi::TopicLog},
    {"/topic/offset", http::verb::get, &HttpApi::TopicOffset},
    {"/topic/config", http::verb::post, &HttpApi::TopicConfig},
    {"/channel/create", http::verb::post, &HttpApi::ChannelCreate},
    {"/channel/delete", http::verb::post, &HttpApi::ChannelDelete},
    {"/channel/empty", http::verb::post, &HttpApi::ChannelEmpty},
    {"/channel/pause", http::verb::post, &HttpApi::ChannelPause},
    {"/channel/unpause", http::verb::post, &HttpApi::ChannelUnpause},
    {"/channel/seek", http::verb::post, &HttpApi::ChannelSeek},
};

HttpApi::HttpApi(Broker& broker, const SessionOptions& options, HttpApiInfo info,
                 const TcpServer* tcp)
    : broker_(broker), options_(options), info_(std::move(info)), tcp_(tcp) {}

HttpResponse HttpApi::TooLarge(const HttpRequest& request) const {
  const Query q = ParseTarget(request.target());
  if (q.path == "/pub" || q.path == "/dpub") {
    return Error(http::status::payload_too_large, "MSG_TOO_BIG");
  }
  return Error(http::status::payload_too_large, "BODY_TOO_BIG");
}

void HttpApi::Handle(const HttpRequest& request, HttpResponder respond, bool over_tls) {
  if (!over_tls && options_.tls_required == SessionOptions::TlsRequired::kAll) {
    // nsqd's body, spaces included; nsqadmin reads https_port from it and retries there.
    return respond(Respond(
        http::status::forbidden,
        fmt::format("{{\"message\": \"TLS_REQUIRED\", \"https_port\": {}}}", info_.https_port),
        "application/json; charset=utf-8"));
  }
  const Query q = ParseTarget(request.target());
  const Route* route = nullptr;
  for (const auto& r : kRoutes) {
    if (r.path == q.path) route = &r;
  }
  if (route == nullptr) return respond(Error(http::status::not_found, "NOT_FOUND"));
  const char* allow = route->method == http::verb::get ? "GET, OPTIONS" : "OPTIONS, POST";
  if (request.method() == http::verb::options) {
    HttpResponse r;
    r.result(http::status::ok);
    r.set(http::field::allow, allow);
    return respond(std::move(r));
  }
  if (request.method() != route->method) {
    HttpResponse r = Error(http::status::method_not_allowed, "METHOD_NOT_ALLOWED");
    r.set(http::field::allow, allow);
    return respond(std::move(r));
  }
  if (!q.valid) return respond(Error(http::status::bad_request, "INVALID_REQUEST"));
  (this->*route->handler)(Call{request, q, std::move(respond)});
}

bool HttpApi::AdminAllowed(const Call& call) const {
  if (options_.admin_open) return true;
  const std::string_view given = call.request[http::field::authorization];
  const std::string expected = "Bearer " + options_.admin_secret;
  if (!options_.admin_secret.empty() && given.size() == expected.size() &&
      CRYPTO_memcmp(given.data(), expected.data(), given.size()) == 0) {
    return true;
  }
  spdlog::warn("HTTP {}: refused, {}", call.query.path,
               options_.admin_secret.empty() ? "no --admin-secret-file is configured"
               : given.empty()               ? "no admin credential given"
                                             : "wrong admin credential");
  // 401, not 403: NSQ's HTTP clients (nsqadmin's) take a 403 for nsqd's TLS_REQUIRED and retry
  // over HTTPS.
  HttpResponse r = Error(http::status::unauthorized, "ADMIN_SECRET_REQUIRED");
  r.set(http::field::www_authenticate, "Bearer realm=\"cairnd admin\"");
  call.respond(std::move(r));
  return false;
}

// ---- Broker and its state ----

void HttpApi::Ping(const Call& call) {
  if (!broker_.healthy()) {
    return call.respond(
        Respond(http::status::internal_server_error, Health(broker_), "text/plain; charset=utf-8"));
  }
  call.respond(Respond(http::status::ok, "OK", "text/plain; charset=utf-8"));
}

void HttpApi::Info(const Call& call) {
  auto ns = [](auto d) { return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count(); };
  Json j;
  j["version"] = kNsqdVersion;
  j["broadcast_address"] = info_.broadcast_address;
  j["hostname"] = info_.hostname;
  j["http_port"] = info_.http_port;
  j["tcp_port"] = info_.tcp_port;
  j["start_time"] = info_.start_time;
  j["max_heartbeat_interval"] = ns(options_.max_heartbeat_interval);
  j["max_output_buffer_size"] = options_.max_output_buffer_size;
  j["max_output_buffer_timeout"] = ns(options_.max_output_buffer_timeout);
  j["max_deflate_level"] = options_.max_deflate_level;
  call.respond(JsonBody(j));
}

void HttpApi::Stats(const Call& call) {
  const int64_t now_ns = WallNowNs();
  const StatsSnapshot s = TakeSnapshot(broker_, tcp_, call.query, now_ns);
  const std::string* format = call.query.Get("format");
  if (format != nullptr && *format == "json") {
    const std::string* channel = call.query.Get("channel");
    return call.respond(
        JsonBody(StatsJson(s, info_.start_time, channel != nullptr && !channel->empty())));
  }
  call.respond(Respond(http::status::ok, StatsText(s, info_.start_time, now_ns),
                       "text/plain; charset=utf-8"));
}

void HttpApi::Metrics(const Call& call) {
  call.respond(Respond(http::status::ok, MetricsText(broker_, tcp_, info_, WallNowNs()),
                       "text/plain; version=0.0.4; charset=utf-8"));
}

// ---- Publishing: answered once durable ----

void HttpApi::Publish(const std::string& topic_name, std::vector<storage::MessageIn> messages,
                      HttpResponder respond) {
  auto topic = broker_.GetOrCreateTopic(topic_name);
  if (!topic) return respond(Failure(HttpOperation::kPublish, "publish", topic.error()));
  if (messages.empty()) return respond(Ok("OK"));  // nsqd: an /mpub of no lines is OK
  (*topic)->Publish(messages, [respond](storage::Result<storage::AppendResult> r) {
    if (!r) return respond(Failure(HttpOperation::kPublish, "publish", r.error()));
    respond(Ok("OK"));
  });
}

namespace {

// The `topic` parameter, or nsqd's answer: MISSING_ARG_TOPIC, or INVALID_TOPIC if `validate`
// (nsqd does not check the name of a topic it only looks up).
tl::expected<const std::string*, HttpResponse> TopicName(const Query& q, bool validate) {
  const std::string* t = q.Get("topic");
  if (t == nullptr) return tl::unexpected(Error(http::status::bad_request, "MISSING_ARG_TOPIC"));
  if (validate && !IsValidTopicName(*t)) {
    return tl::unexpected(Error(http::status::bad_request, "INVALID_TOPIC"));
  }
  return t;
}

}  // namespace

void HttpApi::Pub(const Call& call) {
  const std::string& body = call.request.body();
  if (body.size() > broker_.options().max_msg_size) {
    return call.respond(Error(http::status::payload_too_large, "MSG_TOO_BIG"));
  }
  if (body.empty()) return call.respond(Error(http::status::bad_request, "MSG_EMPTY"));
  auto name = TopicName(call.query, /*validate=*/true);
  if (!name) return call.respond(std::move(name.error()));
  const int64_t now = WallNowNs();
  int64_t deliver_at = 0;
  if (const std::string* d = call.query.Get("defer")) {
    auto ms = nsq::ParseDecimal(*d);
    if (!ms || d->empty() || *ms > options_.max_req_timeout.count()) {
      (void)broker_.GetOrCreateTopic(**name);  // nsqd creates the topic before this check
      return call.respond(Error(http::status::bad_request, "INVALID_DEFER"));
    }
    if (*ms > 0) deliver_at = now + *ms * 1'000'000;
  }
  Publish(**name, {storage::MessageIn{body, now, deliver_at}}, call.respond);
}

void HttpApi::Mpub(const Call& call) {
  auto name = TopicName(call.query, /*validate=*/true);
  if (!name) return call.respond(std::move(name.error()));
  const std::string& body = call.request.body();
  const uint32_t max_msg_size = broker_.options().max_msg_size;
  const int64_t now = WallNowNs();
  std::vector<storage::MessageIn> messages;
  if (ParseBool(call.query.Get("binary"), false)) {
    nsq::ParseLimits limits;
    limits.max_msg_size = max_msg_size;
    limits.max_body_size = options_.max_body_size;
    boost::container::small_vector<std::string_view, 4> bodies;
    if (auto e = nsq::ParseMpubBody(body, limits, &bodies)) {
      return call.respond(Error(http::status::payload_too_large, e->code.substr(2)));
    }
    for (auto b : bodies) messages.push_back({b, now, 0});
  } else {
    size_t pos = 0;
    while (pos < body.size()) {
      size_t nl = body.find('\n', pos);
      if (nl == std::string::npos) nl = body.size();
      const std::string_view line(body.data() + pos, nl - pos);
      pos = nl + 1;
      if (line.empty()) continue;  // nsqd skips empty lines
      if (line.size() > max_msg_size) {
        return call.respond(Error(http::status::payload_too_large, "MSG_TOO_BIG"));
      }
      messages.push_back({line, now, 0});
    }
  }
  Publish(**name, std::move(messages), call.respond);
}

// ---- Topics ----

tl::expected<std::shared_ptr<Topic>, HttpResponse> HttpApi::FindTopic(const Query& q,
                                                                      bool validate) {
  auto name = TopicName(q, validate);
  if (!name) return tl::unexpected(std::move(name.error()));
  auto topic = broker_.FindTopic(**name);
  if (!topic) return tl::unexpected(Error(http::status::not_found, "TOPIC_NOT_FOUND"));
  return topic;
}

void HttpApi::TopicCreate(const Call& call) {
  auto name = TopicName(call.query, /*validate=*/true);
  if (!name) return call.respond(std::move(name.error()));
  if (auto created = broker_.GetOrCreateTopic(**name); !created) {
    return call.respond(Failure(HttpOperation::kManage, call.query.path, created.error()));
  }
  call.respond(Ok());
}

void HttpApi::TopicDelete(const Call& call) {
  if (!AdminAllowed(call)) return;
  auto topic = FindTopic(call.query, /*validate=*/false);
  if (!topic) return call.respond(std::move(topic.error()));
  if (auto deleted = broker_.DeleteTopic((*topic)->name()); !deleted) {
    return call.respond(Failure(HttpOperation::kManage, call.query.path, deleted.error()));
  }
  call.respond(Ok());
}

void HttpApi::TopicEmpty(const Call& call) {
  if (!AdminAllowed(call)) return;
  auto topic = FindTopic(call.query, /*validate=*/true);
  if (!topic) return call.respond(std::move(topic.error()));
  (*topic)->Empty();
  call.respond(Ok());
}

void HttpApi::TopicPause(const Call& call) {
  auto topic = FindTopic(call.query, /*validate=*/false);
  if (!topic) return call.respond(std::move(topic.error()));
  (*topic)->SetPaused(true);
  call.respond(Ok());
}

void HttpApi::TopicUnpause(const Call& call) {
  auto topic = FindTopic(call.query, /*validate=*/false);
  if (!topic) return call.respond(std::move(topic.error()));
  (*topic)->SetPaused(false);
  call.respond(Ok());
}

void HttpApi::TopicLog(const Call& call) {
  auto topic = FindTopic(call.query, /*validate=*/true);
  if (!topic) return call.respond(std::move(topic.error()));
  Log& log = (*topic)->log();
  Json j;
  j["topic"] = (*topic)->name();
  j["durable"] = log.durable();
  j["first_offset"] = log.start_offset();
  j["next_offset"] = log.next_offset();
  j["messages"] = log.next_offset() - log.start_offset();
  if (const auto info = log.Info()) {
    j["first_publish_time"] = info->first_ts;
    j["last_publish_time"] = info->last_ts;
    j["bytes_on_disk"] = info->bytes;
    j["codec"] = storage::CodecName(info->codec);
    j["retention_age"] = FormatDuration(info->retention.age);
    j["retention_bytes"] = info->retention.bytes;
    j["message_ttl"] = FormatDuration((*topic)->message_ttl());
  }
  j["channels"] = (*topic)->channels().size();
  call.respond(JsonBody(j));
}

void HttpApi::TopicOffset(const Call& call) {
  auto topic = FindTopic(call.query, /*validate=*/true);
  if (!topic) return call.respond(std::move(topic.error()));
  const std::string* at = call.query.Get("at");
  if (at == nullptr) return call.respond(Error(http::status::bad_request, "MISSING_ARG_AT"));
  Log& log = (*topic)->log();
  auto offset = ResolvePosition(log, *at);
  if (!offset) return call.respond(Error(http::status::bad_request, "INVALID_ARG_AT"));
  Json j;
  j["topic"] = (*topic)->name();
  j["at"] = *at;
  j["offset"] = *offset;
  j["first_offset"] = log.start_offset();
  j["next_offset"] = log.next_offset();
  call.respond(JsonBody(j));
}

void HttpApi::TopicConfig(const Call& call) {
  auto topic = FindTopic(call.query, /*validate=*/true);
  if (!topic) return call.respond(std::move(topic.error()));
  const auto info = (*topic)->log().Info();
  if (!info) return call.respond(Error(http::status::bad_request, "EPHEMERAL_TOPIC"));
  const Query& q = call.query;
  storage::TopicSettings settings = info->settings;
  if (const std::string* v = q.Get("retention_age")) {
    auto age = ParseDurationIn<std::chrono::milliseconds>(*v);
    if (!age) return call.respond(Error(http::status::bad_request, "INVALID_ARG_RETENTION_AGE"));
    settings.retention_age = *age;
  }
  if (const std::string* v = q.Get("retention_bytes")) {
    auto bytes = nsq::ParseDecimal(*v);
    if (!bytes || v->empty()) {
      return call.respond(Error(http::status::bad_request, "INVALID_ARG_RETENTION_BYTES"));
    }
    settings.retention_bytes = static_cast<uint64_t>(*bytes);
  }
  if (const std::string* v = q.Get("message_ttl")) {
    auto ttl = ParseDurationIn<std::chrono::milliseconds>(*v);
    if (!ttl) return call.respond(Error(http::status::bad_request, "INVALID_ARG_MESSAGE_TTL"));
    settings.message_ttl = *ttl;
  }
  if (const std::string* v = q.Get("codec")) {
    auto codec = storage::ParseCodec(*v);
    if (!codec) return call.respond(Error(http::status::bad_request, "INVALID_ARG_CODEC"));
    settings.codec = *codec;
  }
  // Less retention, or a shorter message_ttl, can erase what was acknowledged.
  const storage::TopicSettings& was = info->settings;
  if ((Shrinks(was.retention_age, settings.retention_age) ||
       Shrinks(was.retention_bytes, settings.retention_bytes) ||
       Shrinks(was.message_ttl, settings.message_ttl)) &&
      !AdminAllowed(call)) {
    return;
  }
  if (auto configured = (*topic)->Configure(settings); !configured) {
    return call.respond(Failure(HttpOperation::kManage, call.query.path, configured.error()));
  }
  call.respond(Ok());
}

// ---- Channels ----

tl::expected<std::pair<std::shared_ptr<Topic>, Channel*>, HttpResponse> HttpApi::FindChannel(
    const Query& q, bool must_exist) {
  const std::string* t = q.Get("topic");
  if (t == nullptr) return tl::unexpected(Error(http::status::bad_request, "MISSING_ARG_TOPIC"));
  if (!IsValidTopicName(*t)) {
    return tl::unexpected(Error(http::status::bad_request, "INVALID_ARG_TOPIC"));
  }
  const std::string* c = q.Get("channel");
  if (c == nullptr) {
    return tl::unexpected(Error(http::status::bad_request, "MISSING_ARG_CHANNEL"));
  }
  if (!IsValidChannelName(*c)) {
    return tl::unexpected(Error(http::status::bad_request, "INVALID_ARG_CHANNEL"));
  }
  auto topic = broker_.FindTopic(*t);
  if (!topic) return tl::unexpected(Error(http::status::not_found, "TOPIC_NOT_FOUND"));
  Channel* channel = topic->FindChannel(*c);
  if (must_exist && channel == nullptr) {
    return tl::unexpected(Error(http::status::not_found, "CHANNEL_NOT_FOUND"));
  }
  return std::make_pair(topic, channel);
}

void HttpApi::ChannelCreate(const Call& call) {
  auto found = FindChannel(call.query, /*must_exist=*/false);
  if (!found) return call.respond(std::move(found.error()));
  const std::shared_ptr<Topic>& topic = found->first;
  std::optional<uint64_t> start;
  if (const std::string* s = call.query.Get("start")) {
    start = ResolvePosition(topic->log(), *s);
    if (!start) return call.respond(Error(http::status::bad_request, "INVALID_ARG_START"));
  }
  if (auto created = topic->GetOrCreateChannel(*call.query.Get("channel"), start); !created) {
    return call.respond(Failure(HttpOperation::kManage, call.query.path, created.error()));
  }
  call.respond(Ok());
}

void HttpApi::ChannelDelete(const Call& call) {
  if (!AdminAllowed(call)) return;
  auto found = FindChannel(call.query, /*must_exist=*/true);
  if (!found) return call.respond(std::move(found.error()));
  if (auto deleted = found->first->DeleteChannel(*call.query.Get("channel")); !deleted) {
    return call.respond(Failure(HttpOperation::kManage, call.query.path, deleted.error()));
  }
  call.respond(Ok());
}

void HttpApi::ChannelEmpty(const Call& call) {
  if (!AdminAllowed(call)) return;
  auto found = FindChannel(call.query, /*must_exist=*/true);
  if (!found) return call.respond(std::move(found.error()));
  found->second->Seek(found->first->log().next_offset());
  call.respond(Ok());
}

void HttpApi::ChannelPause(const Call& call) {
  auto found = FindChannel(call.query, /*must_exist=*/true);
  if (!found) return call.respond(std::move(found.error()));
  found->second->SetPaused(true);
  call.respond(Ok());
}

void HttpApi::ChannelUnpause(const Call& call) {
  auto found = FindChannel(call.query, /*must_exist=*/true);
  if (!found) return call.respond(std::move(found.error()));
  found->second->SetPaused(false);
  call.respond(Ok());
}

void HttpApi::ChannelSeek(const Call& call) {
  auto found = FindChannel(call.query, /*must_exist=*/true);
  if (!found) return call.respond(std::move(found.error()));
  const std::string* to = call.query.Get("to");
  if (to == nullptr) return call.respond(Error(http::status::bad_request, "MISSING_ARG_TO"));
  auto offset = ResolvePosition(found->first->log(), *to);
  if (!offset) return call.respond(Error(http::status::bad_request, "INVALID_ARG_TO"));
  // Forward past unfinished messages skips them; a rewind only replays.
  if (*offset > found->second->cursor()->floor() && !AdminAllowed(call)) return;
  found->second->Seek(*offset);
  call.respond(Ok());
}

}  // namespace cairn::net

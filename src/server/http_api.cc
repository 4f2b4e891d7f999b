#include "src/server/http_api.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <optional>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/beast/http/field.hpp>
#include <nlohmann/json.hpp>

#include "net/position.h"
#include "net/prometheus.h"
#include "net/protocol.h"
#include "src/base/clock.h"
#include "src/base/duration.h"
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
  j["deflate"] = false;
  j["snappy"] = false;
  j["user_agent"] = c.user_agent;
  if (!c.pub_counts.empty()) {
    j["pub_counts"] = Json::array();
    for (const auto& [topic, count] : c.pub_counts) {
      j["pub_counts"].push_back(Json{{"topic", topic}, {"count", count}});
    }
  }
  j["tls"] = false;
  j["tls_cipher_suite"] = "";
  j["tls_version"] = "";
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

}  // namespace

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

void HttpApi::Handle(const HttpRequest& request, HttpResponder respond) {
  const Query q = ParseTarget(request.target());
  const SessionOptions& options = options_;
  const uint32_t max_msg_size = broker_.options().max_msg_size;
  using Method = http::verb;
  struct Route {
    std::string_view path;
    Method method;
  };
  static constexpr Route kRoutes[] = {
      {"/ping", Method::get},
      {"/info", Method::get},
      {"/stats", Method::get},
      {"/metrics", Method::get},
      {"/pub", Method::post},
      {"/dpub", Method::post},
      {"/mpub", Method::post},
      {"/topic/create", Method::post},
      {"/topic/delete", Method::post},
      {"/topic/empty", Method::post},
      {"/topic/pause", Method::post},
      {"/topic/unpause", Method::post},
      {"/topic/log", Method::get},
      {"/topic/offset", Method::get},
      {"/topic/config", Method::post},
      {"/channel/create", Method::post},
      {"/channel/delete", Method::post},
      {"/channel/empty", Method::post},
      {"/channel/pause", Method::post},
      {"/channel/unpause", Method::post},
      {"/channel/seek", Method::post},
  };
  const Route* route = nullptr;
  for (const auto& r : kRoutes) {
    if (r.path == q.path) route = &r;
  }
  if (route == nullptr) return respond(Error(http::status::not_found, "NOT_FOUND"));
  if (request.method() == Method::options) {
    HttpResponse r;
    r.result(http::status::ok);
    r.set(http::field::allow, route->method == Method::get ? "GET, OPTIONS" : "OPTIONS, POST");
    return respond(std::move(r));
  }
  if (request.method() != route->method) {
    HttpResponse r = Error(http::status::method_not_allowed, "METHOD_NOT_ALLOWED");
    r.set(http::field::allow, route->method == Method::get ? "GET, OPTIONS" : "OPTIONS, POST");
    return respond(std::move(r));
  }
  if (!q.valid) return respond(Error(http::status::bad_request, "INVALID_REQUEST"));
  const std::string_view path = q.path;

  if (path == "/ping") {
    if (!broker_.store().healthy()) {
      return respond(Respond(http::status::internal_server_error,
                             "NOK - the store cannot write (disk full or failing)",
                             "text/plain; charset=utf-8"));
    }
    return respond(Respond(http::status::ok, "OK", "text/plain; charset=utf-8"));
  }

  if (path == "/info") {
    Json j;
    j["version"] = kNsqdVersion;
    j["broadcast_address"] = info_.broadcast_address;
    j["hostname"] = info_.hostname;
    j["http_port"] = info_.http_port;
    j["tcp_port"] = info_.tcp_port;
    j["start_time"] = info_.start_time;
    j["max_heartbeat_interval"] =
        std::chrono::duration_cast<std::chrono::nanoseconds>(options.max_heartbeat_interval)
            .count();
    j["max_output_buffer_size"] = options.max_output_buffer_size;
    j["max_output_buffer_timeout"] =
        std::chrono::duration_cast<std::chrono::nanoseconds>(options.max_output_buffer_timeout)
            .count();
    j["max_deflate_level"] = 6;
    return respond(JsonBody(j));
  }

  // ---- Publishing: answered once durable ----
  auto topic_arg = [&](std::string_view invalid_code) -> std::variant<std::string, HttpResponse> {
    const std::string* t = q.Get("topic");
    if (t == nullptr) return Error(http::status::bad_request, "MISSING_ARG_TOPIC");
    if (!nsq::IsValidTopicName(*t)) return Error(http::status::bad_request, invalid_code);
    return *t;
  };
  auto publish = [&](const std::string& topic_name, std::vector<storage::MessageIn> messages) {
    auto topic = broker_.GetOrCreateTopic(topic_name);
    if (!topic) return respond(Error(http::status::service_unavailable, "EXITING"));
    if (messages.empty()) return respond(Ok("OK"));  // nsqd: an /mpub of no lines is OK
    (*topic)->Publish(messages, [respond](storage::Result<storage::AppendResult> r) {
      if (!r) {
        spdlog::error("HTTP publish failed: {}", r.error().ToString());
        return respond(Error(http::status::service_unavailable, "EXITING"));
      }
      respond(Ok("OK"));
    });
  };

  if (path == "/pub" || path == "/dpub") {
    const std::string& body = request.body();
    if (body.size() > max_msg_size) {
      return respond(Error(http::status::payload_too_large, "MSG_TOO_BIG"));
    }
    if (body.empty()) return respond(Error(http::status::bad_request, "MSG_EMPTY"));
    auto t = topic_arg("INVALID_TOPIC");
    if (auto* r = std::get_if<HttpResponse>(&t)) return respond(std::move(*r));
    const std::string& name = std::get<std::string>(t);
    const int64_t now = WallNowNs();
    int64_t deliver_at = 0;
    if (const std::string* d = q.Get("defer")) {
      auto ms = nsq::ParseDecimal(*d);
      if (!ms || d->empty() || *ms > options.max_req_timeout.count()) {
        (void)broker_.GetOrCreateTopic(name);  // nsqd creates the topic before this check
        return respond(Error(http::status::bad_request, "INVALID_DEFER"));
      }
      if (*ms > 0) deliver_at = now + *ms * 1'000'000;
    }
    return publish(name, {storage::MessageIn{body, now, deliver_at}});
  }

  if (path == "/mpub") {
    auto t = topic_arg("INVALID_TOPIC");
    if (auto* r = std::get_if<HttpResponse>(&t)) return respond(std::move(*r));
    const std::string& body = request.body();
    const int64_t now = WallNowNs();
    std::vector<storage::MessageIn> messages;
    const std::string* binary = q.Get("binary");
    const bool is_binary = binary != nullptr && *binary != "false" && *binary != "0";
    if (is_binary) {
      nsq::ParseLimits limits;
      limits.max_msg_size = max_msg_size;
      limits.max_body_size = options.max_body_size;
      boost::container::small_vector<std::string_view, 4> bodies;
      if (auto e = nsq::ParseMpubBody(body, limits, &bodies)) {
        return respond(Error(http::status::payload_too_large, e->code.substr(2)));
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
          return respond(Error(http::status::payload_too_large, "MSG_TOO_BIG"));
        }
        messages.push_back({line, now, 0});
      }
    }
    return publish(std::get<std::string>(t), std::move(messages));
  }

  // ---- Topics ----
  if (path.starts_with("/topic/")) {
    const std::string* t = q.Get("topic");
    if (t == nullptr) return respond(Error(http::status::bad_request, "MISSING_ARG_TOPIC"));
    const bool validates = path == "/topic/create" || path == "/topic/empty" ||
                           path == "/topic/log" || path == "/topic/config" ||
                           path == "/topic/offset";
    if (validates && !nsq::IsValidTopicName(*t)) {
      return respond(Error(http::status::bad_request, "INVALID_TOPIC"));
    }
    if (path == "/topic/create") {
      if (!broker_.GetOrCreateTopic(*t)) {
        return respond(Error(http::status::internal_server_error, "INTERNAL_ERROR"));
      }
      return respond(Ok());
    }
    auto topic = broker_.FindTopic(*t);
    if (!topic) return respond(Error(http::status::not_found, "TOPIC_NOT_FOUND"));
    if (path == "/topic/delete") {
      if (!broker_.DeleteTopic(*t)) {
        return respond(Error(http::status::internal_server_error, "INTERNAL_ERROR"));
      }
      return respond(Ok());
    }
    if (path == "/topic/empty") {
      topic->Empty();
      return respond(Ok());
    }
    if (path == "/topic/pause" || path == "/topic/unpause") {
      topic->SetPaused(path == "/topic/pause");
      return respond(Ok());
    }
    if (path == "/topic/log") {
      Log& log = topic->log();
      Json j;
      j["topic"] = *t;
      j["durable"] = log.durable();
      j["first_offset"] = log.start_offset();
      j["next_offset"] = log.next_offset();
      j["messages"] = log.next_offset() - log.start_offset();
      if (auto* d = dynamic_cast<DurableLog*>(&log)) {
        const auto info = d->topic_log()->Info();
        j["first_publish_time"] = info.first_ts;
        j["last_publish_time"] = info.last_ts;
        j["bytes_on_disk"] = info.bytes;
        j["codec"] = storage::CodecName(info.codec);
        j["retention_age"] = FormatDuration(info.retention.age);
        j["retention_bytes"] = info.retention.bytes;
        j["message_ttl"] = FormatDuration(topic->message_ttl());
      }
      j["channels"] = topic->channels().size();
      return respond(JsonBody(j));
    }
    if (path == "/topic/offset") {
      const std::string* at = q.Get("at");
      if (at == nullptr) return respond(Error(http::status::bad_request, "MISSING_ARG_AT"));
      auto offset = ResolvePosition(topic->log(), *at);
      if (!offset) return respond(Error(http::status::bad_request, "INVALID_ARG_AT"));
      Json j;
      j["topic"] = *t;
      j["at"] = *at;
      j["offset"] = *offset;
      j["first_offset"] = topic->log().start_offset();
      j["next_offset"] = topic->log().next_offset();
      return respond(JsonBody(j));
    }
    if (path == "/topic/config") {
      auto* d = dynamic_cast<DurableLog*>(&topic->log());
      if (d == nullptr) return respond(Error(http::status::bad_request, "EPHEMERAL_TOPIC"));
      storage::TopicSettings settings = d->topic_log()->Info().settings;
      if (const std::string* v = q.Get("retention_age")) {
        auto age = ParseDurationIn<std::chrono::milliseconds>(*v);
        if (!age) return respond(Error(http::status::bad_request, "INVALID_ARG_RETENTION_AGE"));
        settings.retention_age = *age;
      }
      if (const std::string* v = q.Get("retention_bytes")) {
        auto bytes = nsq::ParseDecimal(*v);
        if (!bytes || v->empty()) {
          return respond(Error(http::status::bad_request, "INVALID_ARG_RETENTION_BYTES"));
        }
        settings.retention_bytes = static_cast<uint64_t>(*bytes);
      }
      if (const std::string* v = q.Get("message_ttl")) {
        auto ttl = ParseDurationIn<std::chrono::milliseconds>(*v);
        if (!ttl) return respond(Error(http::status::bad_request, "INVALID_ARG_MESSAGE_TTL"));
        settings.message_ttl = *ttl;
      }
      if (const std::string* v = q.Get("codec")) {
        auto codec = storage::ParseCodec(*v);
        if (!codec) return respond(Error(http::status::bad_request, "INVALID_ARG_CODEC"));
        settings.codec = *codec;
      }
      if (!broker_.store().ConfigureTopic(*t, settings)) {
        return respond(Error(http::status::internal_server_error, "INTERNAL_ERROR"));
      }
      topic->SetMessageTtl(settings.message_ttl.value_or(std::chrono::milliseconds(0)));
      topic->Pump();  // a shorter TTL may expire what channels hold back
      return respond(Ok());
    }
  }

  // ---- Channels ----
  if (path.starts_with("/channel/")) {
    const std::string* t = q.Get("topic");
    if (t == nullptr) return respond(Error(http::status::bad_request, "MISSING_ARG_TOPIC"));
    if (!nsq::IsValidTopicName(*t)) {
      return respond(Error(http::status::bad_request, "INVALID_ARG_TOPIC"));
    }
    const std::string* c = q.Get("channel");
    if (c == nullptr) return respond(Error(http::status::bad_request, "MISSING_ARG_CHANNEL"));
    if (!nsq::IsValidChannelName(*c)) {
      return respond(Error(http::status::bad_request, "INVALID_ARG_CHANNEL"));
    }
    auto topic = broker_.FindTopic(*t);
    if (!topic) return respond(Error(http::status::not_found, "TOPIC_NOT_FOUND"));
    if (path == "/channel/create") {
      std::optional<uint64_t> start;
      if (const std::string* s = q.Get("start")) {
        start = ResolvePosition(topic->log(), *s);
        if (!start) return respond(Error(http::status::bad_request, "INVALID_ARG_START"));
      }
      if (!topic->GetOrCreateChannel(*c, start)) {
        return respond(Error(http::status::internal_server_error, "INTERNAL_ERROR"));
      }
      return respond(Ok());
    }
    Channel* channel = topic->FindChannel(*c);
    if (channel == nullptr) return respond(Error(http::status::not_found, "CHANNEL_NOT_FOUND"));
    if (path == "/channel/delete") {
      if (!topic->DeleteChannel(*c)) {
        return respond(Error(http::status::internal_server_error, "INTERNAL_ERROR"));
      }
      return respond(Ok());
    }
    if (path == "/channel/empty") {
      channel->Seek(topic->log().next_offset());
      return respond(Ok());
    }
    if (path == "/channel/pause" || path == "/channel/unpause") {
      channel->SetPaused(path == "/channel/pause");
      return respond(Ok());
    }
    if (path == "/channel/seek") {
      const std::string* to = q.Get("to");
      if (to == nullptr) return respond(Error(http::status::bad_request, "MISSING_ARG_TO"));
      auto offset = ResolvePosition(topic->log(), *to);
      if (!offset) return respond(Error(http::status::bad_request, "INVALID_ARG_TO"));
      channel->Seek(*offset);
      return respond(Ok());
    }
  }

  // ---- Stats ----
  const int64_t now_ns = WallNowNs();
  if (path == "/stats") {
    const std::string* format = q.Get("format");
    const std::string* topic_filter = q.Get("topic");
    const std::string* channel_filter = q.Get("channel");
    const bool include_clients = ParseBool(q.Get("include_clients"), true);
    const bool json = format != nullptr && *format == "json";
    auto topics = broker_.topics();
    bool topic_missing = false;
    if (topic_filter != nullptr && !topic_filter->empty()) {
      auto only = broker_.FindTopic(*topic_filter);
      topics.clear();
      if (only) {
        topics.push_back(only);
      } else {
        topic_missing = true;
      }
    }
    const bool filter_channel = channel_filter != nullptr && !channel_filter->empty();
    const std::string health =
        broker_.store().healthy() ? "OK" : "NOK - the store cannot write (disk full or failing)";
    if (json) {
      Json j;
      j["version"] = kNsqdVersion;
      j["health"] = health;
      j["start_time"] = info_.start_time;
      if (topic_missing) {
        j["topics"] = nullptr;
      } else {
        j["topics"] = Json::array();
        for (auto& topic : topics) {
          Json channels = Json::array();
          for (Channel* c : topic->channels()) {
            if (filter_channel && c->name() != *channel_filter) continue;
            const ChannelView v = ViewOf(*topic, *c, now_ns);
            Json cj;
            cj["channel_name"] = c->name();
            cj["depth"] = v.depth;
            cj["backend_depth"] = topic->log().durable() ? v.depth : 0;
            cj["in_flight_count"] = v.stats.in_flight;
            cj["deferred_count"] = v.stats.deferred;
            cj["message_count"] = v.stats.delivered;
            cj["requeue_count"] = v.stats.requeued;
            cj["timeout_count"] = v.stats.timed_out;
            cj["client_count"] = v.stats.subscribers;
            if (include_clients) {
              cj["clients"] = Json::array();
              for (const auto& cs : c->client_stats()) cj["clients"].push_back(ClientJson(cs));
            } else {
              cj["clients"] = nullptr;
            }
            cj["paused"] = c->paused();
            cj["e2e_processing_latency"] = E2eJson();
            // Cairn's additions.
            cj["cursor_offset"] = c->cursor()->floor();
            cj["lag_messages"] = v.lag_messages;
            cj["lag_seconds"] = v.lag_seconds;
            cj["skipped_by_retention"] = v.skipped;
            cj["expired_count"] = v.stats.expired;
            cj["skipped_unreadable"] = v.stats.skipped_unreadable;
            channels.push_back(std::move(cj));
          }
          if (filter_channel && channels.empty()) continue;
          const TopicStats ts = topic->stats();
          Json tj;
          tj["topic_name"] = topic->name();
          tj["channels"] = std::move(channels);
          const uint64_t retained = ts.next_offset - ts.start_offset;
          tj["depth"] = topic->channels().empty() ? retained : 0;
          tj["backend_depth"] = topic->channels().empty() && topic->log().durable() ? retained : 0;
          tj["message_count"] = ts.next_offset;
          tj["message_bytes"] = ts.published_bytes;
          tj["paused"] = topic->paused();
          tj["e2e_processing_latency"] = E2eJson();
          j["topics"].push_back(std::move(tj));
        }
      }
      j["producers"] = nullptr;  // nsqd: null when there are none, or without clients
      if (include_clients && !topic_missing && tcp_ != nullptr) {
        for (const auto& p : tcp_->Producers()) {
          if (j["producers"].is_null()) j["producers"] = Json::array();
          j["producers"].push_back(ClientJson(p));
        }
      }
      return respond(JsonBody(j));
    }
    // nsqd's text format.
    std::string out = fmt::format("nsqd v{} (cairn {})\n", kNsqdVersion, CAIRN_VERSION);
    std::time_t st = info_.start_time;
    char when[64];
    std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&st));
    out += fmt::format("start_time {}\n", when);
    out += fmt::format("uptime {}\n", FormatDuration(std::chrono::seconds(now_ns / 1'000'000'000 -
                                                                          info_.start_time)));
    out += fmt::format("\nHealth: {}\n", health);
    if (topics.empty()) {
      out += "\nTopics: None\n";
    } else {
      out += "\nTopics:";
      for (auto& topic : topics) {
        const TopicStats ts = topic->stats();
        const uint64_t retained = ts.next_offset - ts.start_offset;
        const uint64_t depth = topic->channels().empty() ? retained : 0;
        out += fmt::format("\n{}[{:<15}] depth: {:<5} be-depth: {:<5} msgs: {:<8} e2e%: \n",
                           topic->paused() ? "*P " : "   ", topic->name(), depth,
                           topic->log().durable() ? depth : 0, ts.next_offset);
        for (Channel* c : topic->channels()) {
          if (filter_channel && c->name() != *channel_filter) continue;
          const ChannelView v = ViewOf(*topic, *c, now_ns);
          out += fmt::format(
              "{}[{:<25}] depth: {:<5} be-depth: {:<5} inflt: {:<4} def: {:<4} re-q: {:<5} "
              "timeout: {:<5} msgs: {:<8} e2e%: \n",
              c->paused() ? "   *P " : "      ", c->name(), v.depth,
              topic->log().durable() ? v.depth : 0, v.stats.in_flight, v.stats.deferred,
              v.stats.requeued, v.stats.timed_out, v.stats.delivered);
          if (!include_clients) continue;
          for (const auto& cs : c->client_stats()) {
            out += fmt::format(
                "        [{} {:<21}] state: {} inflt: {:<4} rdy: {:<4} fin: {:<8} re-q: {:<8} "
                "msgs: {:<8} connected: {}\n",
                cs.version, TextClientId(cs), cs.state, cs.in_flight_count, cs.ready_count,
                cs.finish_count, cs.requeue_count, cs.message_count, TextConnected(cs, now_ns));
          }
        }
      }
    }
    const auto producers =
        include_clients && tcp_ != nullptr ? tcp_->Producers() : std::vector<ClientStats>{};
    if (producers.empty()) {
      out += "\nProducers: None\n";
    } else {
      out += "\nProducers:\n";
      for (const auto& p : producers) {
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
    return respond(Respond(http::status::ok, std::move(out), "text/plain; charset=utf-8"));
  }

  if (path == "/metrics") {
    Exposition e;
    const auto store = broker_.store().stats();
    struct Row {
      std::string labels;
      std::shared_ptr<Topic> topic;
      Channel* channel;
      ChannelView view;
    };
    std::vector<Row> rows;
    auto topics = broker_.topics();
    for (auto& topic : topics) {
      for (Channel* c : topic->channels()) {
        rows.push_back({fmt::format("topic=\"{}\",channel=\"{}\"", LabelValue(topic->name()),
                                    LabelValue(c->name())),
                        topic, c, ViewOf(*topic, *c, now_ns)});
      }
    }
    e.Family("cairn_topic_messages_total", "counter",
             "Messages ever appended to the topic's log (its next offset).");
    for (auto& t : topics) {
      e.Sample("cairn_topic_messages_total", fmt::format("topic=\"{}\"", LabelValue(t->name())),
               static_cast<double>(t->stats().next_offset));
    }
    e.Family("cairn_topic_retained_messages", "gauge", "Messages in the topic's retained log.");
    for (auto& t : topics) {
      const auto s = t->stats();
      e.Sample("cairn_topic_retained_messages", fmt::format("topic=\"{}\"", LabelValue(t->name())),
               static_cast<double>(s.next_offset - s.start_offset));
    }
    e.Family("cairn_topic_bytes_on_disk", "gauge", "Stored bytes of the topic's log batches.");
    for (auto& t : topics) {
      if (auto* d = dynamic_cast<DurableLog*>(&t->log())) {
        e.Sample("cairn_topic_bytes_on_disk", fmt::format("topic=\"{}\"", LabelValue(t->name())),
                 static_cast<double>(d->topic_log()->Info().bytes));
      }
    }
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
    e.Family("cairn_store_group_commits_total", "counter", "Group writes to RocksDB.");
    e.Sample("cairn_store_group_commits_total", "", static_cast<double>(store.commits.groups));
    e.Family("cairn_store_fsyncs_total", "counter", "WAL syncs.");
    e.Sample("cairn_store_fsyncs_total", "", static_cast<double>(store.commits.syncs));
    e.Family("cairn_store_write_failures_total", "counter", "Group writes that failed.");
    e.Sample("cairn_store_write_failures_total", "", static_cast<double>(store.commits.failures));
    e.Family("cairn_store_fsync_duration_seconds", "histogram",
             "Time of each synced group write (write and fsync).");
    e.Histogram("cairn_store_fsync_duration_seconds", store.commits.sync_seconds);
    e.Family("cairn_store_group_size_requests", "histogram",
             "Requests (appends, trims, cursor flushes) per group commit.");
    e.Histogram("cairn_store_group_size_requests", store.commits.group_ops);
    e.Family("cairn_store_wal_files_total", "counter",
             "WAL files started, over a prepared spare of zeros or as a plain file.");
    e.Sample("cairn_store_wal_files_total", "kind=\"spare\"",
             static_cast<double>(store.wals_on_spares));
    e.Sample("cairn_store_wal_files_total", "kind=\"plain\"",
             static_cast<double>(store.plain_wals));
    e.Family("cairn_store_wal_spare_failures_total", "counter",
             "Attempts to prepare a spare WAL file that failed (a full disk, most likely).");
    e.Sample("cairn_store_wal_spare_failures_total", "",
             static_cast<double>(store.wal_spare_failures));
    e.Family("cairn_store_unreadable_ranges_total", "counter",
             "Parts of topic logs found unreadable since cairnd started (damaged batches); "
             "channels skip them and go on.");
    e.Sample("cairn_store_unreadable_ranges_total", "",
             static_cast<double>(store.unreadable_ranges));
    e.Family("cairn_store_cursor_flushes_total", "counter",
             "Passes that wrote every channel cursor changed since the last one to RocksDB "
             "(without fsync), every 100 ms.");
    e.Sample("cairn_store_cursor_flushes_total", "", static_cast<double>(store.cursor_flushes));
    e.Family("cairn_store_healthy", "gauge", "1 while the store can write, 0 after a failure.");
    e.Sample("cairn_store_healthy", "", broker_.store().healthy() ? 1 : 0);
    e.Family("cairn_tcp_connections", "gauge", "Open NSQ TCP connections.");
    e.Sample("cairn_tcp_connections", "",
             static_cast<double>(tcp_ != nullptr ? tcp_->connection_count() : 0));
    HttpResponse r =
        Respond(http::status::ok, e.Take(), "text/plain; version=0.0.4; charset=utf-8");
    return respond(std::move(r));
  }
  respond(Error(http::status::not_found, "NOT_FOUND"));
}

}  // namespace cairn::net

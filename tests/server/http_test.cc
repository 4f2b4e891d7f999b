// nsqd's HTTP API on cairnd, over real HTTP on loopback: every endpoint, its errors, and /stats
// checked against what the broker actually did.
#include <sys/statvfs.h>

#include <regex>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/server/test_support.h"

namespace cairn::testing {
namespace {

ServerOptions Small() {
  ServerOptions o;
  o.broker.max_msg_size = 100;
  o.session.max_body_size = 1000;
  return o;
}

TEST(Http, PingAndInfo) {
  BrokerHarness broker(Small());
  HttpClient c(broker.http_port());
  auto ping = c.Get("/ping");
  EXPECT_EQ(ping.status, 200);
  EXPECT_EQ(ping.body, "OK");
  auto info = c.Get("/info");
  ASSERT_EQ(info.status, 200);
  EXPECT_EQ(info.content_type, "application/json; charset=utf-8");
  EXPECT_EQ(info.nsq_header, "nsq; version=1.0");
  auto j = nlohmann::json::parse(info.body);
  EXPECT_EQ(j["version"], "1.3.0");
  EXPECT_EQ(j["tcp_port"], broker.port());
  EXPECT_EQ(j["http_port"], broker.http_port());
  EXPECT_EQ(j["max_heartbeat_interval"], 60000000000LL);
  EXPECT_EQ(info.body.substr(0, 30), R"({"version":"1.3.0","broadcast_)");
}

TEST(Http, PublishIsDeliveredAndErrorsAreNsqds) {
  BrokerHarness broker(Small());
  HttpClient c(broker.http_port());
  RawClient sub(broker.port());
  sub.Subscribe("t", "c");
  sub.Cmd("RDY 10");
  auto pub = c.Post("/pub?topic=t", "hello");
  EXPECT_EQ(pub.status, 200);
  EXPECT_EQ(pub.body, "OK");
  auto m = sub.ReadMessage();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->body, "hello");
  sub.Cmd("FIN " + m->id);

  auto mpub = c.Post("/mpub?topic=t", "a\n\nb\nc\n");
  EXPECT_EQ(mpub.body, "OK");
  for (const char* want : {"a", "b", "c"}) {
    auto x = sub.ReadMessage();
    ASSERT_TRUE(x);
    EXPECT_EQ(x->body, want);
    sub.Cmd("FIN " + x->id);
  }
  std::string binary;
  std::vector<std::string> bodies = {"x", "yy"};
  nsq::AppendMpub(binary, "t", bodies);
  binary = binary.substr(binary.find('\n') + 1 + 4);  // drop the command line and size
  EXPECT_EQ(c.Post("/mpub?topic=t&binary=true", binary).body, "OK");
  for (const char* want : {"x", "yy"}) {
    auto x = sub.ReadMessage();
    ASSERT_TRUE(x);
    EXPECT_EQ(x->body, want);
    sub.Cmd("FIN " + x->id);
  }
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(c.Post("/pub?topic=t&defer=400", "later").body, "OK");
  auto later = sub.ReadMessage();
  ASSERT_TRUE(later);
  EXPECT_EQ(later->body, "later");
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 400ms);
  EXPECT_EQ(c.Post("/dpub?topic=t&defer=0", "now").body, "OK");

  auto err = [&](const std::string& target, std::string body) {
    auto r = c.Post(target, std::move(body));
    return std::to_string(r.status) + " " + r.body;
  };
  EXPECT_EQ(err("/pub?topic=t", ""), R"(400 {"message":"MSG_EMPTY"})");
  EXPECT_EQ(err("/pub?topic=t", std::string(101, 'x')), R"(413 {"message":"MSG_TOO_BIG"})");
  EXPECT_EQ(err("/pub", "x"), R"(400 {"message":"MISSING_ARG_TOPIC"})");
  EXPECT_EQ(err("/pub?topic=a:b", "x"), R"(400 {"message":"INVALID_TOPIC"})");
  EXPECT_EQ(err("/pub?topic=t&defer=-1", "x"), R"(400 {"message":"INVALID_DEFER"})");
  EXPECT_EQ(err("/pub?topic=t&defer=3600001", "x"), R"(400 {"message":"INVALID_DEFER"})");
  EXPECT_EQ(err("/mpub?topic=t", std::string(101, 'x')), R"(413 {"message":"MSG_TOO_BIG"})");
  EXPECT_EQ(err("/mpub?topic=t&binary=true", std::string("\0\0\0\0", 4)),
            R"(413 {"message":"BAD_BODY"})");
  EXPECT_EQ(err("/mpub?topic=t&binary=true", std::string("\0\0\0\1\0\0\0\5ab", 10)),
            R"(413 {"message":"BAD_MESSAGE"})");
  // The keep-alive connection survives every error above.
  EXPECT_EQ(c.Get("/ping").body, "OK");
}

TEST(Http, OversizeBodiesAndBadRequests) {
  BrokerHarness broker(Small());
  {
    HttpClient c(broker.http_port());
    auto r = c.Post("/mpub?topic=t", std::string(1001, 'x'));
    EXPECT_EQ(r.status, 413);
    EXPECT_EQ(r.body, R"({"message":"BODY_TOO_BIG"})");
  }
  HttpClient c(broker.http_port());
  EXPECT_EQ(c.Get("/nope").body, R"({"message":"NOT_FOUND"})");
  auto wrong = c.Get("/pub?topic=t");
  EXPECT_EQ(wrong.status, 405);
  EXPECT_EQ(wrong.body, R"({"message":"METHOD_NOT_ALLOWED"})");
  EXPECT_EQ(c.Post("/stats").status, 405);
  // Garbage that is not HTTP gets 400 and a close; the server goes on.
  {
    RawClient junk(broker.http_port(), /*send_magic=*/false);
    junk.Send("THIS IS NOT HTTP\r\n\r\n");
    EXPECT_TRUE(junk.ClosedByPeer());
  }
  EXPECT_EQ(c.Get("/ping").body, "OK");
}

// The calls that can erase acknowledged messages need the admin credential; reading,
// publishing, creating, pausing and rewinding do not.
TEST(Http, CallsThatEraseMessagesNeedTheAdminCredential) {
  BrokerHarness broker(Small());  // requires kTestAdminSecret
  HttpClient admin(broker.http_port());
  HttpClient anyone(broker.http_port(), "");
  HttpClient wrong(broker.http_port(), "not-the-secret");
  ASSERT_EQ(anyone.Post("/mpub?topic=t", "a\nb\nc").status, 200);
  ASSERT_EQ(anyone.Post("/channel/create?topic=t&channel=c&start=earliest").status, 200);
  ASSERT_EQ(admin.Post("/topic/config?topic=t&retention_age=24h").status,
            200);  // a first limit needs it too
  const std::string refused = R"(401 {"message":"ADMIN_SECRET_REQUIRED"})";
  auto st = [](HttpClient& c, const std::string& target) {
    auto r = c.Post(target);
    return std::to_string(r.status) + " " + r.body;
  };
  for (const char* target :
       {"/topic/delete?topic=t", "/topic/empty?topic=t", "/channel/delete?topic=t&channel=c",
        "/channel/empty?topic=t&channel=c", "/channel/seek?topic=t&channel=c&to=latest",
        "/topic/config?topic=t&retention_age=1h", "/topic/config?topic=t&retention_bytes=1",
        "/topic/config?topic=t&message_ttl=1s"}) {
    EXPECT_EQ(st(anyone, target), refused) << target;
    EXPECT_EQ(st(wrong, target), refused) << target;
  }
  // Nothing was erased: the channel still holds its three.
  auto depth = [&] {
    const auto j = nlohmann::json::parse(anyone.Get("/stats?format=json&topic=t&channel=c").body);
    return j["topics"][0]["channels"][0]["depth"].get<int>();
  };
  EXPECT_EQ(depth(), 3);
  // Allowed without it: what only replays or keeps more.
  EXPECT_EQ(st(anyone, "/channel/seek?topic=t&channel=c&to=earliest"), "200 ");
  EXPECT_EQ(st(anyone, "/topic/config?topic=t&retention_age=48h"), "200 ");
  EXPECT_EQ(st(anyone, "/channel/pause?topic=t&channel=c"), "200 ");
  EXPECT_EQ(anyone.Get("/stats?format=json").status, 200);
  // With it, they go through.
  EXPECT_EQ(st(admin, "/channel/seek?topic=t&channel=c&to=latest"), "200 ");
  EXPECT_EQ(depth(), 0);
  EXPECT_EQ(st(admin, "/topic/delete?topic=t"), "200 ");
}

TEST(Http, AdminOpenLetsAnyoneEraseAsNsqdDoes) {
  ServerOptions open = Small();
  open.session.admin_open = true;
  BrokerHarness broker(open);
  HttpClient anyone(broker.http_port(), "");
  ASSERT_EQ(anyone.Post("/topic/create?topic=t").status, 200);
  EXPECT_EQ(anyone.Post("/topic/empty?topic=t").status, 200);
  EXPECT_EQ(anyone.Post("/topic/delete?topic=t").status, 200);
}

TEST(Http, TopicAndChannelActions) {
  BrokerHarness broker(Small());
  HttpClient c(broker.http_port());
  auto st = [&](const std::string& target) {
    auto r = c.Post(target);
    return std::to_string(r.status) + " " + r.body;
  };
  EXPECT_EQ(st("/topic/create?topic=t"), "200 ");
  EXPECT_EQ(st("/topic/create"), R"(400 {"message":"MISSING_ARG_TOPIC"})");
  EXPECT_EQ(st("/topic/create?topic=a:b"), R"(400 {"message":"INVALID_TOPIC"})");
  EXPECT_EQ(st("/topic/pause?topic=missing"), R"(404 {"message":"TOPIC_NOT_FOUND"})");
  EXPECT_EQ(st("/channel/create?topic=missing&channel=c"), R"(404 {"message":"TOPIC_NOT_FOUND"})");
  EXPECT_EQ(st("/channel/create?topic=t"), R"(400 {"message":"MISSING_ARG_CHANNEL"})");
  EXPECT_EQ(st("/channel/create?topic=t&channel=a:b"), R"(400 {"message":"INVALID_ARG_CHANNEL"})");
  EXPECT_EQ(st("/channel/create?topic=a:b&channel=c"), R"(400 {"message":"INVALID_ARG_TOPIC"})");
  EXPECT_EQ(st("/channel/pause?topic=t&channel=missing"), R"(404 {"message":"CHANNEL_NOT_FOUND"})");
  EXPECT_EQ(st("/channel/create?topic=t&channel=c"), "200 ");

  // Pause stops delivery; unpause resumes it.
  RawClient sub(broker.port());
  sub.Subscribe("t", "c");
  sub.Cmd("RDY 10");
  EXPECT_EQ(st("/channel/pause?topic=t&channel=c"), "200 ");
  EXPECT_EQ(c.Post("/pub?topic=t", "p").status, 200);
  EXPECT_FALSE(sub.Read(300ms)) << "a paused channel delivered";
  EXPECT_EQ(st("/channel/unpause?topic=t&channel=c"), "200 ");
  auto m = sub.ReadMessage();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->body, "p");
  sub.Cmd("FIN " + m->id);
  EXPECT_EQ(st("/topic/pause?topic=t"), "200 ");
  EXPECT_EQ(c.Post("/pub?topic=t", "q").status, 200);
  EXPECT_FALSE(sub.Read(300ms)) << "a paused topic delivered";
  EXPECT_EQ(st("/topic/unpause?topic=t"), "200 ");
  m = sub.ReadMessage();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->body, "q");
  sub.Cmd("FIN " + m->id);

  // Empty: the backlog is skipped; what is published after it arrives.
  sub.Cmd("RDY 0");
  for (int i = 0; i < 5; ++i) EXPECT_EQ(c.Post("/pub?topic=t", "old").status, 200);
  EXPECT_EQ(st("/channel/empty?topic=t&channel=c"), "200 ");
  EXPECT_EQ(c.Post("/pub?topic=t", "new").status, 200);
  sub.Cmd("RDY 10");
  m = sub.ReadMessage();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->body, "new");
  sub.Cmd("FIN " + m->id);

  // Deleting the channel disconnects its subscriber.
  EXPECT_EQ(st("/channel/delete?topic=t&channel=c"), "200 ");
  EXPECT_TRUE(sub.ClosedByPeer());
  EXPECT_EQ(st("/channel/delete?topic=t&channel=c"), R"(404 {"message":"CHANNEL_NOT_FOUND"})");
  EXPECT_EQ(st("/topic/delete?topic=t"), "200 ");
  EXPECT_EQ(st("/topic/delete?topic=t"), R"(404 {"message":"TOPIC_NOT_FOUND"})");
  EXPECT_EQ(broker.store().FindTopic("t"), nullptr) << "the topic is still in the store";
}

TEST(Http, StatsShowWhatHappened) {
  BrokerHarness broker(Small());
  HttpClient c(broker.http_port());
  RawClient pub(broker.port()), sub(broker.port());
  sub.Identify(R"({"client_id":"worker1","hostname":"w1.local","user_agent":"test/1"})");
  sub.Subscribe("t", "c");
  sub.Cmd("RDY 2");
  for (int i = 0; i < 5; ++i) pub.Publish("t", fmt::format("m{}", i));
  auto a = sub.ReadMessage(), b = sub.ReadMessage();
  ASSERT_TRUE(a && b);
  sub.Cmd("FIN " + a->id);
  sub.Cmd("REQ " + b->id + " 60000");
  ASSERT_TRUE(Eventually([&] {
    const ChannelStats st = broker.Stats("t", "c");
    return st.finished == 1 && st.requeued == 1;
  }));
  auto r = c.Get("/stats?format=json");
  ASSERT_EQ(r.status, 200);
  auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["version"], "1.3.0");
  EXPECT_EQ(j["health"], "OK");
  ASSERT_EQ(j["topics"].size(), 1u);
  auto& t = j["topics"][0];
  EXPECT_EQ(t["topic_name"], "t");
  EXPECT_EQ(t["message_count"], 5);
  EXPECT_EQ(t["paused"], false);
  EXPECT_EQ(t["e2e_processing_latency"]["count"], 0);
  auto& ch = t["channels"][0];
  EXPECT_EQ(ch["channel_name"], "c");
  EXPECT_EQ(ch["requeue_count"], 1);
  EXPECT_EQ(ch["deferred_count"], 1);
  EXPECT_EQ(ch["client_count"], 1);
  // 5 published: m0 finished, m1 deferred by the REQ, m2 and m3 in flight (RDY 2 refilled),
  // m4 waiting.
  EXPECT_EQ(ch["in_flight_count"], 2);
  EXPECT_EQ(ch["lag_messages"], 4);
  EXPECT_EQ(ch["depth"], 1);
  EXPECT_EQ(ch["cursor_offset"], 1);
  ASSERT_EQ(ch["clients"].size(), 1u);
  auto& cl = ch["clients"][0];
  EXPECT_EQ(cl["client_id"], "worker1");
  EXPECT_EQ(cl["hostname"], "w1.local");
  EXPECT_EQ(cl["user_agent"], "test/1");
  EXPECT_EQ(cl["state"], 3);
  EXPECT_EQ(cl["ready_count"], 2);
  EXPECT_EQ(cl["finish_count"], 1);
  EXPECT_EQ(cl["requeue_count"], 1);
  EXPECT_EQ(cl["message_count"], 4);

  // The publishing connection is a producer, with its count per topic.
  ASSERT_TRUE(j["producers"].is_array()) << r.body;
  ASSERT_EQ(j["producers"].size(), 1u);
  EXPECT_EQ(j["producers"][0]["pub_counts"], nlohmann::json::parse(R"([{"topic":"t","count":5}])"));
  auto filtered = nlohmann::json::parse(
      c.Get("/stats?format=json&topic=t&channel=c&include_clients=false").body);
  EXPECT_TRUE(filtered["topics"][0]["channels"][0]["clients"].is_null());
  EXPECT_TRUE(
      nlohmann::json::parse(c.Get("/stats?format=json&topic=nope").body)["topics"].is_null());
  auto text = c.Get("/stats");
  EXPECT_NE(text.body.find("\nTopics:\n   [t              ] depth: 0     be-depth: 0     msgs: 5"),
            std::string::npos)
      << text.body;
  EXPECT_NE(text.body.find("[V2 w1.local:"), std::string::npos) << text.body;
  EXPECT_NE(text.body.find("\nProducers:\n   [V2 127.0.0.1:"), std::string::npos) << text.body;
  EXPECT_NE(text.body.find("msgs: 5        topics: t=5 connected:"), std::string::npos)
      << text.body;
}

// A publish answered by the committer (DirectAnswers) is counted by the session's io thread only
// once that thread runs its completion; /stats must count it as soon as the client has its OK,
// as nsqd's does. Before the fix, 3 runs failed at the 3rd, 6th and 14th publish.
TEST(Http, AProducersCountIncludesEveryPublishItHasAnOkFor) {
  BrokerHarness broker;
  HttpClient c(broker.http_port());
  RawClient pub(broker.port());
  for (int i = 1; i <= 300; ++i) {
    pub.Publish("t", "m");
    const auto j = nlohmann::json::parse(c.Get("/stats?format=json&topic=t").body);
    ASSERT_EQ(j["producers"].size(), 1u);
    ASSERT_EQ(j["producers"][0]["pub_counts"][0]["count"], i) << "after publish " << i;
  }
}

TEST(Http, SeekAndStartAtReplayFromThePosition) {
  BrokerHarness broker(Small());
  HttpClient c(broker.http_port());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(c.Post("/pub?topic=t", fmt::format("m{}", i)).status, 200);
  EXPECT_EQ(c.Post("/channel/create?topic=t&channel=late&start=offset:7").status, 200);
  EXPECT_EQ(c.Post("/channel/create?topic=t&channel=x&start=sometime").body,
            R"({"message":"INVALID_ARG_START"})");
  RawClient late(broker.port());
  late.Subscribe("t", "late");
  late.Cmd("RDY 10");
  for (int i = 7; i < 10; ++i) {
    auto m = late.ReadMessage();
    ASSERT_TRUE(m);
    EXPECT_EQ(m->body, fmt::format("m{}", i));
    late.Cmd("FIN " + m->id);
  }
  EXPECT_FALSE(late.Read(200ms));
  // Rewind in place: the subscriber stays connected and gets everything again.
  EXPECT_EQ(c.Post("/channel/seek?topic=t&channel=late&to=earliest").status, 200);
  for (int i = 0; i < 10; ++i) {
    auto m = late.ReadMessage();
    ASSERT_TRUE(m);
    EXPECT_EQ(m->body, fmt::format("m{}", i));
    late.Cmd("FIN " + m->id);
  }
  EXPECT_EQ(c.Post("/channel/seek?topic=t&channel=late&to=time:2000-01-01T00:00:00Z").status, 200);
  auto again = late.ReadMessage();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->body, "m0");
  EXPECT_EQ(c.Post("/channel/seek?topic=t&channel=late&to=latest").status, 200);
  EXPECT_EQ(c.Post("/channel/seek?topic=t&channel=late").body, R"({"message":"MISSING_ARG_TO"})");
  auto log = nlohmann::json::parse(c.Get("/topic/log?topic=t").body);
  EXPECT_EQ(log["first_offset"], 0);
  EXPECT_EQ(log["next_offset"], 10);
  EXPECT_EQ(log["codec"], "lz4");
  EXPECT_GT(log["bytes_on_disk"].get<uint64_t>(), 0u);
  // Positions resolve to offsets without a channel (cairn-replay reads its range so).
  auto at = nlohmann::json::parse(c.Get("/topic/offset?topic=t&at=offset:4").body);
  EXPECT_EQ(at["offset"], 4);
  EXPECT_EQ(at["next_offset"], 10);
  at = nlohmann::json::parse(c.Get("/topic/offset?topic=t&at=time:2000-01-01T00:00:00Z").body);
  EXPECT_EQ(at["offset"], 0);
  at = nlohmann::json::parse(c.Get("/topic/offset?topic=t&at=time:2200-01-01T00:00:00Z").body);
  EXPECT_EQ(at["offset"], 10);  // past the end: where the next message will go
  EXPECT_EQ(c.Get("/topic/offset?topic=t&at=soon").body, R"({"message":"INVALID_ARG_AT"})");
  EXPECT_EQ(c.Get("/topic/offset?topic=t").body, R"({"message":"MISSING_ARG_AT"})");
  EXPECT_EQ(c.Post("/topic/config?topic=t&retention_age=1h&codec=zstd").status, 200);
  log = nlohmann::json::parse(c.Get("/topic/log?topic=t").body);
  EXPECT_EQ(log["codec"], "zstd");
  EXPECT_EQ(log["retention_age"], "1h");
  EXPECT_EQ(c.Post("/topic/config?topic=t&codec=gzip").body, R"({"message":"INVALID_ARG_CODEC"})");
}

TEST(Http, MetricsAreWellFormedPrometheusText) {
  BrokerHarness broker(Small());
  HttpClient c(broker.http_port());
  RawClient sub(broker.port());
  sub.Subscribe("t", "c");
  sub.Cmd("RDY 1");
  EXPECT_EQ(c.Post("/pub?topic=t", "x").status, 200);
  ASSERT_TRUE(sub.ReadMessage());
  auto r = c.Get("/metrics");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_NE(r.body.find("cairn_channel_in_flight{topic=\"t\",channel=\"c\"} 1\n"),
            std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find("cairn_topic_messages_total{topic=\"t\"} 1\n"), std::string::npos);
  EXPECT_NE(r.body.find("cairn_tcp_connections 1\n"), std::string::npos);
  EXPECT_NE(r.body.find("cairn_store_fsync_duration_seconds_bucket{le=\"+Inf\"}"),
            std::string::npos);
  // What the volume and retention alerts (deploy/prometheus) compare: the topic's retention as
  // configured, and the volume the store is on.
  ASSERT_EQ(c.Post("/topic/config?topic=t&retention_age=90m&retention_bytes=1000000").status, 200);
  r = c.Get("/metrics");
  EXPECT_NE(r.body.find("cairn_topic_retention_age_seconds{topic=\"t\"} 5400\n"), std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find("cairn_topic_retention_bytes{topic=\"t\"} 1000000\n"), std::string::npos);
  struct statvfs vfs {};
  ASSERT_EQ(::statvfs(broker.path().c_str(), &vfs), 0);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.body, m, std::regex("\ncairn_store_volume_size_bytes (\\d+)\n")));
  EXPECT_EQ(std::stoull(m[1]), static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize);
  ASSERT_TRUE(
      std::regex_search(r.body, m, std::regex("\ncairn_store_volume_available_bytes (\\d+)\n")));
  EXPECT_GT(std::stoull(m[1]), 0u);
  EXPECT_LE(std::stoull(m[1]), static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize);
  // Every line is a comment or `name{labels} value` (a strict check of the text format; the
  // Python suite parses it with prometheus_client as well).
  std::istringstream lines(r.body);
  std::string line;
  const std::regex sample(
      R"(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? -?[0-9.e+-]+(Inf)?$)");
  const std::regex comment(R"(^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$)");
  int samples = 0;
  while (std::getline(lines, line)) {
    if (line.starts_with("#")) {
      EXPECT_TRUE(std::regex_match(line, comment)) << line;
    } else {
      EXPECT_TRUE(std::regex_match(line, sample)) << line;
      ++samples;
    }
  }
  EXPECT_GT(samples, 20);
}

// cairn_store_append_duration_seconds times each publish in the store, and nothing else: creating a
// topic and a channel also goes through the group commit, and is not counted.
TEST(Http, MetricsTimeEachPublishInTheStore) {
  BrokerHarness broker(Small());
  HttpClient c(broker.http_port());
  ASSERT_EQ(c.Post("/topic/create?topic=t").status, 200);
  ASSERT_EQ(c.Post("/channel/create?topic=t&channel=c").status, 200);
  EXPECT_EQ(c.Metric("cairn_store_append_duration_seconds_count"), 0);
  RawClient pub(broker.port());
  for (int i = 0; i < 3; ++i) pub.Publish("t", "x");
  ASSERT_EQ(c.Post("/mpub?topic=t", "a\nb\nc").status, 200);  // one append of 3 messages
  EXPECT_EQ(c.Metric("cairn_store_append_duration_seconds_count"), 4);
  EXPECT_EQ(c.Metric("cairn_store_append_duration_seconds_bucket{le=\"+Inf\"}"), 4);
  EXPECT_GT(c.Metric("cairn_store_append_duration_seconds_sum"), 0);
  EXPECT_EQ(c.Metric("cairn_topic_messages_total{topic=\"t\"}"), 6);
}

// Every integer and duration parameter refuses what it cannot represent. (defer=2^64-1 used to
// wrap to -1 and be taken as "now"; retention_age=500us was cut to 0 ms, which means "keep
// forever"; a duration of 400 digits threw out of the handler.)
TEST(Http, NumbersAndDurationsOutOfRangeAreRefusedNotWrapped) {
  BrokerHarness broker(Small());
  HttpClient c(broker.http_port());
  EXPECT_EQ(c.Post("/pub?topic=t&defer=18446744073709551615", "x").body,
            R"({"message":"INVALID_DEFER"})");
  EXPECT_EQ(c.Post("/pub?topic=t&defer=9223372036854775808", "x").body,
            R"({"message":"INVALID_DEFER"})");
  EXPECT_EQ(c.Post("/topic/config?topic=t&retention_age=500us").body,
            R"({"message":"INVALID_ARG_RETENTION_AGE"})");
  EXPECT_EQ(c.Post("/topic/config?topic=t&retention_age=" + std::string(400, '9') + "h").body,
            R"({"message":"INVALID_ARG_RETENTION_AGE"})");
  EXPECT_EQ(c.Post("/topic/config?topic=t&retention_age=2562048h").body,  // past int64 ns
            R"({"message":"INVALID_ARG_RETENTION_AGE"})");
  EXPECT_EQ(c.Post("/topic/config?topic=t&message_ttl=1.0000001s").body,
            R"({"message":"INVALID_ARG_MESSAGE_TTL"})");
  EXPECT_EQ(c.Post("/topic/config?topic=t&retention_bytes=18446744073709551616").body,
            R"({"message":"INVALID_ARG_RETENTION_BYTES"})");
  EXPECT_EQ(c.Post("/channel/create?topic=t&channel=c&start=offset:99999999999999999999").body,
            R"({"message":"INVALID_ARG_START"})");
  // Nothing was changed by the refused ones; what can be represented is taken.
  auto log = nlohmann::json::parse(c.Get("/topic/log?topic=t").body);
  EXPECT_EQ(log["retention_age"], "72h") << log.dump();
  EXPECT_EQ(c.Post("/topic/config?topic=t&retention_age=1.5s").status, 200);
  EXPECT_EQ(nlohmann::json::parse(c.Get("/topic/log?topic=t").body)["retention_age"], "1500ms");
  // Over TCP too: a RDY count past int64 is refused, not wrapped.
  RawClient sub(broker.port());
  sub.Subscribe("t", "c");
  sub.Cmd("RDY 18446744073709551617");
  sub.ExpectError("E_INVALID RDY could not parse count 18446744073709551617");
}

// /stats and /metrics read no batch for a channel whose oldest unfinished message did not move
// since the last scrape. (Each scrape used to decode a batch from RocksDB, on the event loop, for
// every lagging channel.)
TEST(Http, ScrapesReadTheLogOnlyForChannelsThatMoved) {
  BrokerHarness broker;
  {
    HttpClient c(broker.http_port());
    ASSERT_EQ(c.Post("/topic/create?topic=t").status, 200);
    for (int i = 0; i < 50; ++i) {
      ASSERT_EQ(c.Post(fmt::format("/channel/create?topic=t&channel=c{}", i)).status, 200);
    }
    std::string lines;
    for (int i = 0; i < 1000; ++i) lines += fmt::format("message {}\n", i);
    EXPECT_EQ(c.Post("/mpub?topic=t", lines).status, 200);
  }
  broker.Restart();  // nothing in memory: every lag comes from the log on disk
  HttpClient c(broker.http_port());
  const uint64_t before = broker.store().stats().rocksdb_reads;
  ASSERT_EQ(c.Get("/metrics").status, 200);
  const uint64_t first = broker.store().stats().rocksdb_reads - before;
  EXPECT_LE(first, 50u) << "one header read per lagging channel at most";
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(c.Get("/metrics").status, 200);
    ASSERT_EQ(c.Get("/stats?format=json").status, 200);
  }
  EXPECT_EQ(broker.store().stats().rocksdb_reads - before, first)
      << "scrapes of channels that did not move read the log again";
  auto j = nlohmann::json::parse(c.Get("/stats?format=json&topic=t&channel=c7").body);
  EXPECT_GT(j["topics"][0]["channels"][0]["lag_seconds"].get<double>(), 0.0);
}

}  // namespace
}  // namespace cairn::testing

namespace cairn::testing {
namespace {

TEST(Http, MessageTtlSkipsOldMessagesAndCountsThem) {
  BrokerHarness broker(Small());
  HttpClient c(broker.http_port());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(c.Post("/pub?topic=t", "old").status, 200);
  EXPECT_EQ(c.Post("/topic/config?topic=t&message_ttl=200ms").status, 200);
  EXPECT_EQ(c.Post("/topic/config?topic=t&message_ttl=soon").body,
            R"({"message":"INVALID_ARG_MESSAGE_TTL"})");
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(c.Post("/pub?topic=t", "fresh").status, 200);
  RawClient sub(broker.port());
  sub.Subscribe("t", "c");  // the first channel starts at the start of the log
  sub.Cmd("RDY 10");
  auto m = sub.ReadMessage();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->body, "fresh");
  sub.Cmd("FIN " + m->id);
  EXPECT_FALSE(sub.Read(200ms));
  auto j = nlohmann::json::parse(c.Get("/stats?format=json&topic=t").body);
  EXPECT_EQ(j["topics"][0]["channels"][0]["expired_count"], 3);
  EXPECT_NE(
      c.Get("/metrics").body.find("cairn_channel_expired_total{topic=\"t\",channel=\"c\"} 3\n"),
      std::string::npos);
  // The log still holds them: a seek replays them once the TTL is lifted.
  EXPECT_EQ(nlohmann::json::parse(c.Get("/topic/log?topic=t").body)["messages"], 4);
  EXPECT_EQ(c.Post("/topic/config?topic=t&message_ttl=0").status, 200);
  EXPECT_EQ(c.Post("/channel/seek?topic=t&channel=c&to=earliest").status, 200);
  auto replayed = sub.ReadMessage();
  ASSERT_TRUE(replayed);
  EXPECT_EQ(replayed->body, "old");
}

}  // namespace
}  // namespace cairn::testing

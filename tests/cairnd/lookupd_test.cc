// cairnd in a fleet: it registers with a real nsqlookupd (from $NSQ_BIN_DIR) as nsqd does, and
// NSQ's own consumers find it there.
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <future>
#include <set>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/eventually.h"
#include "tests/server/test_support.h"

namespace cairn::testing {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;

// nsqlookupd's /lookup?topic= answer, or null when it knows no such topic.
Json Lookup(uint16_t lookupd_http_port, const std::string& topic) {
  HttpClient http(lookupd_http_port);
  const Reply r = http.Get("/lookup?topic=" + topic);
  if (r.status != 200) return nullptr;
  return Json::parse(r.body, nullptr, false);
}

// The producers nsqlookupd lists for `topic` with this TCP port.
size_t ListedWithPort(const Json& lookup, uint16_t tcp_port) {
  size_t n = 0;
  if (!lookup.is_object() || !lookup["producers"].is_array()) return 0;
  for (const Json& p : lookup["producers"]) n += p.value("tcp_port", 0) == tcp_port ? 1 : 0;
  return n;
}

bool HasChannel(const Json& lookup, const std::string& channel) {
  if (!lookup.is_object() || !lookup["channels"].is_array()) return false;
  for (const Json& c : lookup["channels"]) {
    if (c == channel) return true;
  }
  return false;
}

// The topics nsqlookupd's /nodes lists for the producer with this TCP port; null if it lists
// no such producer.
Json NodeTopics(uint16_t lookupd_http_port, uint16_t tcp_port) {
  HttpClient http(lookupd_http_port);
  const Json nodes = Json::parse(http.Get("/nodes").body, nullptr, false);
  if (!nodes.is_object() || !nodes["producers"].is_array()) return nullptr;
  for (const Json& p : nodes["producers"]) {
    if (p.value("tcp_port", 0) == tcp_port) return p["topics"];
  }
  return nullptr;
}

std::vector<std::string> LookupdFlags(const LookupdProcess& lookupd) {
  return {"--broadcast-address=127.0.0.1", "--lookupd-tcp-address=" + lookupd.tcp_address()};
}

using Brokers = std::vector<std::unique_ptr<CairndProcess>>;

// `n` cairnd registered with `lookupd`, each on its own data under `dir` (b0, b1, ...). One that
// did not start has port() 0: the caller asserts, with its log.
// `n` brokers registered with `lookupd`; `extra(i)` gives broker i more flags.
Brokers StartBrokers(const TempDir& dir, const LookupdProcess& lookupd, int n,
                     const std::function<std::vector<std::string>(int)>& extra = nullptr) {
  Brokers brokers;
  for (int i = 0; i < n; ++i) {
    std::vector<std::string> flags = LookupdFlags(lookupd);
    if (extra) {
      for (std::string& f : extra(i)) flags.push_back(std::move(f));
    }
    brokers.push_back(std::make_unique<CairndProcess>(dir.sub(fmt::format("b{}", i)), flags));
  }
  return brokers;
}

// How many of `brokers` (null entries: stopped) nsqlookupd lists for `topic`.
size_t ListedBrokers(const LookupdProcess& lookupd, const Brokers& brokers,
                     const std::string& topic) {
  const Json lookup = Lookup(lookupd.http_port(), topic);
  size_t n = 0;
  for (const auto& b : brokers) n += b ? ListedWithPort(lookup, b->port()) : 0;
  return n;
}

// cairnd's cairn_lookupd_registered gauge for the nsqlookupd at `lookupd_tcp_port`: "1", "0",
// or "" when /metrics has no such sample.
std::string RegisteredGauge(uint16_t cairnd_http_port, uint16_t lookupd_tcp_port) {
  HttpClient http(cairnd_http_port);
  const std::string body = http.Get("/metrics").body;
  const std::string key =
      fmt::format("cairn_lookupd_registered{{lookupd=\"127.0.0.1:{}\"}} ", lookupd_tcp_port);
  const size_t at = body.find(key);
  return at == std::string::npos ? "" : body.substr(at + key.size(), 1);
}

// One nsqlookupd, and one cairnd registered with it.
struct OneBroker {
  explicit OneBroker(const std::string& nsqlookupd)
      : lookupd(nsqlookupd), cairnd(dir.path(), LookupdFlags(lookupd)) {}
  bool up() const { return lookupd.http_port() != 0 && cairnd.port() != 0; }
  // Runs a client against the fleet to its end: `program` and `flags`, whose {tcp} and {lookupd}
  // name cairnd's TCP address and nsqlookupd's HTTP one. Its output; a failure unless it exits 0.
  std::string RunClient(const std::string& program, const std::string& flags) {
    const auto [status, output] =
        RunCommand(program + " " +
                   fmt::format(fmt::runtime(flags),
                               fmt::arg("tcp", fmt::format("127.0.0.1:{}", cairnd.port())),
                               fmt::arg("lookupd", lookupd.http_address())) +
                   " 2>&1");
    EXPECT_EQ(status, 0) << program << ": " << output << "\n" << cairnd.log();
    return output;
  }

  TempDir dir;
  LookupdProcess lookupd;
  CairndProcess cairnd;
};

TEST(Lookupd, RegistersTopicsAndChannelsAsTheyComeAndTakesThemBack) {
  REQUIRE_NSQ_BINARY(nsqlookupd, "nsqlookupd");
  OneBroker fleet(nsqlookupd);
  ASSERT_TRUE(fleet.up()) << fleet.lookupd.log() << fleet.cairnd.startup_log();

  HttpClient http(fleet.cairnd.http_port());
  ASSERT_EQ(http.Post("/pub?topic=logs", "a line").status, 200);
  ASSERT_EQ(http.Post("/channel/create?topic=logs&channel=archive").status, 200);
  ASSERT_TRUE(Eventually([&] {
    return HasChannel(Lookup(fleet.lookupd.http_port(), "logs"), "archive");
  })) << fleet.cairnd.log();
  const Json lookup = Lookup(fleet.lookupd.http_port(), "logs");
  ASSERT_EQ(ListedWithPort(lookup, fleet.cairnd.port()), 1u) << lookup.dump();
  const Json& producer = lookup["producers"][0];
  EXPECT_EQ(producer["broadcast_address"], "127.0.0.1");
  EXPECT_EQ(producer["http_port"], fleet.cairnd.http_port());
  EXPECT_EQ(producer["version"], "1.3.0");

  // An ephemeral channel is registered while it has a subscriber, and gone with the last one
  // (nsqlookupd drops an ephemeral channel nobody has any more).
  {
    RawClient sub(fleet.cairnd.port());
    sub.Identify("{}");
    sub.Subscribe("logs", "tail#ephemeral");
    EXPECT_TRUE(Eventually(
        [&] { return HasChannel(Lookup(fleet.lookupd.http_port(), "logs"), "tail#ephemeral"); }));
  }
  EXPECT_TRUE(Eventually([&] {
    return !HasChannel(Lookup(fleet.lookupd.http_port(), "logs"), "tail#ephemeral");
  })) << Lookup(fleet.lookupd.http_port(), "logs").dump();

  // Deleting the topic takes it back: nsqlookupd lists this broker with no topics.
  ASSERT_EQ(http.Post("/topic/delete?topic=logs").status, 200);
  EXPECT_TRUE(Eventually([&] {
    return NodeTopics(fleet.lookupd.http_port(), fleet.cairnd.port()) == Json::array();
  })) << NodeTopics(fleet.lookupd.http_port(), fleet.cairnd.port()).dump();
  EXPECT_EQ(ListedWithPort(Lookup(fleet.lookupd.http_port(), "logs"), fleet.cairnd.port()), 0u);
}

// nsqlookupd forgets a broker whose connection closed. When it comes back (or cairnd does), every
// topic and channel is registered again, those cairnd loaded from its store included.
TEST(Lookupd, EverythingIsRegisteredAgainAfterEitherSideRestarts) {
  REQUIRE_NSQ_BINARY(nsqlookupd, "nsqlookupd");
  TempDir dir;
  auto lookupd = std::make_unique<LookupdProcess>(nsqlookupd);
  ASSERT_NE(lookupd->http_port(), 0) << lookupd->log();
  const uint16_t tcp_port = lookupd->port(), http_port = lookupd->http_port();
  const std::vector<std::string> flags = LookupdFlags(*lookupd);
  auto cairnd = std::make_unique<CairndProcess>(dir.path(), flags);
  ASSERT_NE(cairnd->port(), 0) << cairnd->startup_log();
  {
    HttpClient http(cairnd->http_port());
    ASSERT_EQ(http.Post("/pub?topic=metrics", "m 1").status, 200);
    ASSERT_EQ(http.Post("/channel/create?topic=metrics&channel=influx").status, 200);
    ASSERT_EQ(http.Post("/topic/create?topic=quiet").status, 200);
  }
  auto listed = [&](uint16_t cairnd_port) {
    const Json m = Lookup(http_port, "metrics");
    return ListedWithPort(m, cairnd_port) == 1 && HasChannel(m, "influx") &&
           ListedWithPort(Lookup(http_port, "quiet"), cairnd_port) == 1;
  };
  ASSERT_TRUE(Eventually([&] { return listed(cairnd->port()); })) << cairnd->log();
  // /metrics says so, for the alert on a broker missing from nsqlookupd (deploy/prometheus).
  EXPECT_EQ(RegisteredGauge(cairnd->http_port(), tcp_port), "1");

  lookupd->Signal(SIGKILL);
  EXPECT_TRUE(Eventually([&] { return RegisteredGauge(cairnd->http_port(), tcp_port) == "0"; }))
      << "/metrics still says registered with a dead nsqlookupd";
  lookupd = std::make_unique<LookupdProcess>(nsqlookupd, tcp_port, http_port);
  ASSERT_EQ(lookupd->http_port(), http_port) << "nsqlookupd could not have its ports back\n"
                                             << lookupd->log();
  EXPECT_TRUE(Eventually([&] { return listed(cairnd->port()); }, 30s))
      << "not registered again with the new nsqlookupd:\n"
      << cairnd->log();
  EXPECT_TRUE(Eventually([&] { return RegisteredGauge(cairnd->http_port(), tcp_port) == "1"; }));

  cairnd->Signal(SIGKILL);
  cairnd = std::make_unique<CairndProcess>(dir.path(), flags);
  ASSERT_NE(cairnd->port(), 0) << cairnd->startup_log();
  EXPECT_TRUE(Eventually([&] { return listed(cairnd->port()); }))
      << "the topics loaded from the store are not registered:\n"
      << cairnd->log();
}

// An nsqlookupd that accepts connections and never answers, and one that refuses them, hold up
// nothing: publishing and delivery go on, and a working nsqlookupd beside them is kept told.
TEST(Lookupd, ASilentOrAbsentLookupdHoldsUpNothing) {
  REQUIRE_NSQ_BINARY(nsqlookupd, "nsqlookupd");
  TempDir dir;
  LookupdProcess lookupd(nsqlookupd);
  ASSERT_NE(lookupd.http_port(), 0) << lookupd.log();
  // Silent: the kernel completes connections into the backlog; nobody ever reads.
  boost::asio::io_context io;
  const auto loopback = boost::asio::ip::make_address("127.0.0.1");
  boost::asio::ip::tcp::acceptor silent(io, {loopback, 0});
  // Absent: a port that was just free.
  uint16_t absent_port = 0;
  {
    boost::asio::ip::tcp::acceptor a(io, {loopback, 0});
    absent_port = a.local_endpoint().port();
  }
  CairndProcess cairnd(dir.path(), {"--broadcast-address=127.0.0.1",
                                    fmt::format("--lookupd-tcp-address=127.0.0.1:{}",
                                                silent.local_endpoint().port()),
                                    fmt::format("--lookupd-tcp-address=127.0.0.1:{}", absent_port),
                                    "--lookupd-tcp-address=" + lookupd.tcp_address()});
  ASSERT_NE(cairnd.port(), 0) << cairnd.startup_log();

  RawClient pub(cairnd.port());
  pub.Identify("{}");
  RawClient sub(cairnd.port());
  sub.Identify("{}");
  sub.Subscribe("events", "c");
  sub.Cmd("RDY 100");
  for (int i = 0; i < 50; ++i) pub.Publish("events", fmt::format("e{}", i));
  for (int i = 0; i < 50; ++i) {
    auto m = sub.ReadMessage();
    ASSERT_TRUE(m) << "delivery stalled at " << i << "\n" << cairnd.log();
    EXPECT_EQ(m->body, fmt::format("e{}", i));
    sub.Cmd("FIN " + m->id);
  }
  EXPECT_TRUE(Eventually([&] { return HasChannel(Lookup(lookupd.http_port(), "events"), "c"); }))
      << cairnd.log();
  HttpClient http(cairnd.http_port());
  EXPECT_EQ(http.Get("/ping").status, 200);
}

// NSQ's own consumers find cairnd through nsqlookupd: nsq_tail, and go-nsq (gonsq_roundtrip2
// publishes to cairnd and consumes through nsqlookupd, checking every message).
TEST(Lookupd, NsqToolsAndGoNsqConsumeThroughLookupd) {
  REQUIRE_NSQ_BINARY(nsqlookupd, "nsqlookupd");
  REQUIRE_NSQ_BINARY(roundtrip, "gonsq_roundtrip2");
  REQUIRE_NSQ_BINARY(nsq_tail, "nsq_tail");
  OneBroker fleet(nsqlookupd);
  ASSERT_TRUE(fleet.up()) << fleet.lookupd.log() << fleet.cairnd.startup_log();

  fleet.RunClient(roundtrip,
                  "-nsqd-tcp-address={tcp} -lookupd-http-address={lookupd} -topic=fleet "
                  "-channel=check -n 400 -lookupd-poll-interval=200ms -timeout=60s");

  // nsq_tail subscribes an ephemeral channel on every broker nsqlookupd lists for the topic; a
  // new channel starts at the end of the log, so publish once it is there.
  const std::string tail = fmt::format("timeout 60 {} --lookupd-http-address={} --topic=fleet -n 1",
                                       nsq_tail, fleet.lookupd.http_address());
  auto tailed = std::async(std::launch::async, RunCommand, tail);
  const bool subscribed = Eventually(
      [&] {
        const Json l = Lookup(fleet.lookupd.http_port(), "fleet");
        if (!l.is_object()) return false;
        for (const Json& c : l["channels"]) {
          if (c.get<std::string>().starts_with("tail")) return true;
        }
        return false;
      },
      30s);
  HttpClient http(fleet.cairnd.http_port());
  EXPECT_EQ(http.Post("/pub?topic=fleet", "seen by nsq_tail").status, 200);
  const auto [tail_status, tail_output] = tailed.get();
  EXPECT_EQ(tail_status, 0);
  EXPECT_TRUE(subscribed) << fleet.cairnd.log();
  EXPECT_EQ(tail_output, "seen by nsq_tail\n");
}

// Three brokers registered with one nsqlookupd, as a fleet is run: nsqlookupd shows all three
// (/lookup, /nodes, /topics, /channels); nsq_tail and go-nsq read what is published across them;
// a broker killed with -9 leaves nsqlookupd while the others keep delivering, and restarted on
// its volume it registers again and delivers what it held unfinished.
TEST(Lookupd, AFleetOfThreeIsFoundAndSurvivesABrokerKilled) {
  REQUIRE_NSQ_BINARY(nsqlookupd, "nsqlookupd");
  REQUIRE_NSQ_BINARY(roundtrip, "gonsq_roundtrip2");
  REQUIRE_NSQ_BINARY(nsq_tail, "nsq_tail");
  TempDir dir;
  LookupdProcess lookupd(nsqlookupd);
  ASSERT_NE(lookupd.http_port(), 0) << lookupd.log();
  Brokers brokers = StartBrokers(dir, lookupd, 3);
  for (const auto& b : brokers) ASSERT_NE(b->port(), 0) << b->startup_log();
  auto listed = [&](const std::string& topic) { return ListedBrokers(lookupd, brokers, topic); };
  // Created over HTTP on each, a channel over TCP (SUB) on one.
  for (const auto& b : brokers) {
    HttpClient http(b->http_port());
    ASSERT_EQ(http.Post("/topic/create?topic=fleet").status, 200);
  }
  {
    RawClient sub(brokers[0]->port());
    sub.Identify("{}");
    sub.Subscribe("fleet", "audit");
  }
  ASSERT_TRUE(Eventually([&] { return listed("fleet") == 3; })) << lookupd.log();
  HttpClient ui(lookupd.http_port());
  EXPECT_EQ(Json::parse(ui.Get("/nodes").body)["producers"].size(), 3u);
  EXPECT_NE(ui.Get("/topics").body.find("\"fleet\""), std::string::npos);
  EXPECT_TRUE(Eventually(
      [&] { return ui.Get("/channels?topic=fleet").body.find("\"audit\"") != std::string::npos; }));

  // go-nsq publishes across the three (round robin) and consumes through nsqlookupd.
  const std::string all = fmt::format("127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}", brokers[0]->port(),
                                      brokers[1]->port(), brokers[2]->port());
  const auto [go_status, go_output] = RunCommand(fmt::format(
      "{} -nsqd-tcp-address={} -lookupd-http-address={} -topic=go -channel=check -n 300 "
      "-lookupd-poll-interval=200ms -timeout=60s 2>&1",
      roundtrip, all, lookupd.http_address()));
  EXPECT_EQ(go_status, 0) << go_output;

  // nsq_tail subscribes on every broker listed: one line published to each reaches it.
  auto tailed = std::async(std::launch::async, RunCommand,
                           fmt::format("timeout 60 {} --lookupd-http-address={} --topic=fleet -n 3",
                                       nsq_tail, lookupd.http_address()));
  auto tail_on = [&](const CairndProcess& b) {
    HttpClient http(b.http_port());
    return http.Get("/stats?format=json&topic=fleet").body.find("\"tail") != std::string::npos;
  };
  ASSERT_TRUE(Eventually(
      [&] { return tail_on(*brokers[0]) && tail_on(*brokers[1]) && tail_on(*brokers[2]); }, 30s));
  for (int i = 0; i < 3; ++i) {
    HttpClient http(brokers[i]->http_port());
    EXPECT_EQ(http.Post("/pub?topic=fleet", fmt::format("from b{}", i)).status, 200);
  }
  auto [tail_status, tail_output] = tailed.get();
  EXPECT_EQ(tail_status, 0) << tail_output;
  std::vector<std::string> got;
  for (size_t at = 0, nl; (nl = tail_output.find('\n', at)) != std::string::npos; at = nl + 1) {
    got.push_back(tail_output.substr(at, nl - at));
  }
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<std::string>{"from b0", "from b1", "from b2"})) << tail_output;

  // b2 holds 50 messages nobody has finished on channel `keep`; killed with -9 it leaves
  // nsqlookupd, and the other two keep taking and delivering.
  {
    HttpClient http(brokers[2]->http_port());
    ASSERT_EQ(http.Post("/topic/create?topic=kept").status, 200);
    ASSERT_EQ(http.Post("/channel/create?topic=kept&channel=keep").status, 200);
    std::string body;
    for (int i = 0; i < 50; ++i) body += fmt::format("kept {}\n", i);
    ASSERT_EQ(http.Post("/mpub?topic=kept", body).status, 200);
  }
  const std::string dir2 = dir.sub("b2");
  brokers[2]->Signal(SIGKILL);
  brokers[2].reset();
  EXPECT_TRUE(Eventually([&] { return listed("fleet") == 2; }));
  const auto [two_status, two_output] = RunCommand(fmt::format(
      "{} -nsqd-tcp-address=127.0.0.1:{},127.0.0.1:{} -lookupd-http-address={} -topic=after "
      "-channel=check -n 200 -lookupd-poll-interval=200ms -timeout=60s 2>&1",
      roundtrip, brokers[0]->port(), brokers[1]->port(), lookupd.http_address()));
  EXPECT_EQ(two_status, 0) << two_output;

  // Back on its volume: registered again, and its unfinished messages delivered.
  brokers[2] = std::make_unique<CairndProcess>(dir2, LookupdFlags(lookupd));
  ASSERT_NE(brokers[2]->port(), 0) << brokers[2]->startup_log();
  EXPECT_TRUE(Eventually([&] { return listed("fleet") == 3; }));
  const auto [kept_status, kept_output] = RunCommand(
      fmt::format("timeout 60 {} --lookupd-http-address={} --topic=kept --channel=keep -n 50",
                  nsq_tail, lookupd.http_address()));
  EXPECT_EQ(kept_status, 0) << kept_output;
  std::string expected;
  for (int i = 0; i < 50; ++i) expected += fmt::format("kept {}\n", i);
  EXPECT_EQ(kept_output, expected);
}

// nsqadmin pointed at nsqlookupd shows every cairnd of the fleet, their topics and channels with
// depths added up, and its actions reach every broker.
TEST(Lookupd, NsqadminShowsTheFleetAndItsActionsReachEveryBroker) {
  REQUIRE_NSQ_BINARY(nsqlookupd, "nsqlookupd");
  REQUIRE_NSQ_BINARY(nsqadmin, "nsqadmin");
  TempDir dir;
  LookupdProcess lookupd(nsqlookupd);
  ASSERT_NE(lookupd.http_port(), 0) << lookupd.log();
  // nsqadmin sends no credential: its actions that erase messages reach the brokers whose
  // operator allowed them (--admin-open, the first two), not the third (the default).
  Brokers brokers = StartBrokers(dir, lookupd, 3, [](int i) {
    return i < 2 ? std::vector<std::string>{"--admin-open"} : std::vector<std::string>{};
  });
  for (const auto& b : brokers) {
    ASSERT_NE(b->port(), 0) << b->startup_log();
    HttpClient http(b->http_port());
    ASSERT_EQ(http.Post("/mpub?topic=logs", "one\ntwo").status, 200);
    ASSERT_EQ(http.Post("/channel/create?topic=logs&channel=archive").status, 200);
  }
  // A channel that lives on one broker only.
  ASSERT_EQ(
      HttpClient(brokers[1]->http_port()).Post("/channel/create?topic=logs&channel=audit").status,
      200);
  ASSERT_TRUE(Eventually([&] { return ListedBrokers(lookupd, brokers, "logs") == 3; }));
  NsqadminProcess admin(nsqadmin, lookupd.http_address());
  ASSERT_NE(admin.http_port(), 0) << admin.log();
  HttpClient ui(admin.http_port());

  const Json nodes = Json::parse(ui.Get("/api/nodes").body, nullptr, false);
  ASSERT_TRUE(nodes.is_object()) << ui.Get("/api/nodes").body;
  std::set<int> ports;
  for (const Json& n : nodes["nodes"]) ports.insert(n.value("tcp_port", 0));
  EXPECT_EQ(ports, (std::set<int>{brokers[0]->port(), brokers[1]->port(), brokers[2]->port()}))
      << nodes.dump();

  const Reply channel = ui.Get("/api/topics/logs/archive");
  const Json c = Json::parse(channel.body, nullptr, false);
  ASSERT_TRUE(c.is_object()) << channel.body;
  EXPECT_EQ(c["depth"], 6) << "two messages waiting on each broker: " << channel.body;
  EXPECT_EQ(c["nodes"].size(), 3u) << channel.body;

  // Actions: nsqadmin calls /channel/pause and /channel/empty on every broker that has the
  // channel: all three for `archive` (the third refuses to empty it), the one for `audit`.
  const Reply emptied = ui.Post("/api/topics/logs/archive", R"({"action":"empty"})");
  EXPECT_NE(emptied.body.find("401"), std::string::npos) << "the third refused: " << emptied.body;
  EXPECT_EQ(ui.Post("/api/topics/logs/audit", R"({"action":"pause"})").status, 200);
  for (size_t i = 0; i < brokers.size(); ++i) {
    HttpClient http(brokers[i]->http_port());
    const Json stats = Json::parse(http.Get("/stats?format=json&topic=logs").body);
    for (const Json& ch : stats["topics"][0]["channels"]) {
      if (ch["channel_name"] == "archive") {
        EXPECT_EQ(ch["depth"], i < 2 ? 0 : 2) << stats.dump();
        EXPECT_EQ(ch["paused"], false) << stats.dump();
      } else {
        EXPECT_EQ(i, 1u) << stats.dump();
        EXPECT_EQ(ch["paused"], true) << stats.dump();
      }
    }
  }
}

// cairn-bench's consumers find the broker through nsqlookupd and get every message on every
// channel.
TEST(Lookupd, CairnBenchConsumesThroughLookupd) {
  REQUIRE_NSQ_BINARY(nsqlookupd, "nsqlookupd");
  if (access(CAIRN_BIN_DIR "/cairn-bench", X_OK) != 0) {
    GTEST_SKIP() << "cairn-bench is not built (-DCAIRN_BUILD_BENCH=OFF)";
  }
  OneBroker fleet(nsqlookupd);
  ASSERT_TRUE(fleet.up()) << fleet.lookupd.log() << fleet.cairnd.startup_log();
  const std::string output = fleet.RunClient(
      "timeout 120 " CAIRN_BIN_DIR "/cairn-bench",
      "--nsqd-tcp-address={tcp} --lookupd-http-address={lookupd} --lookupd-poll-interval=100ms "
      "--messages=2000 --channels=2 --consumers=2");
  const Json result = Json::parse(output.substr(output.rfind("\n{") + 1), nullptr, false);
  ASSERT_TRUE(result.is_object()) << output;
  EXPECT_EQ(result["published"], 2000) << output;
  EXPECT_EQ(result["delivered"], 4000) << output;
  EXPECT_EQ(result["delivered_all"], true) << output;
}

}  // namespace
}  // namespace cairn::testing

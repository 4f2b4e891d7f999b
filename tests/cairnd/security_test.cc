// cairnd secured as nsqd is: TLS, snappy and deflate negotiated in IDENTIFY, with go-nsq
// (gonsq_roundtrip2 from $NSQ_BIN_DIR) on the other end; the clients that must not get in are
// refused with nsqd's errors, compared with a real nsqd where the text matters. Certificates are
// made for each run with openssl.
#include <chrono>
#include <fstream>
#include <functional>
#include <future>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/eventually.h"
#include "tests/server/test_support.h"

namespace cairn::testing {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;

// gonsq_roundtrip2 against `port` with `flags`: its exit status and output.
std::pair<int, std::string> GoNsq(const std::string& roundtrip, uint16_t port,
                                  const std::string& flags) {
  return RunCommand(fmt::format("{} -nsqd-tcp-address=127.0.0.1:{} -n 100 -timeout=20s {} 2>&1",
                                roundtrip, port, flags));
}

// cairnd with a certificate for 127.0.0.1 (certs.ServerFlags()) and the flags `more` gives.
struct TlsBroker {
  explicit TlsBroker(
      const std::function<std::vector<std::string>(const Certificates&)>& more = nullptr)
      : cairnd(dir.path(), Flags(certs, more)) {}
  static std::vector<std::string> Flags(
      const Certificates& certs,
      const std::function<std::vector<std::string>(const Certificates&)>& more) {
    std::vector<std::string> flags = certs.ServerFlags();
    if (more) {
      for (std::string& f : more(certs)) flags.push_back(std::move(f));
    }
    return flags;
  }
  bool up() const { return certs.ok() && cairnd.port() != 0; }

  Certificates certs;
  TempDir dir;
  CairndProcess cairnd;
};

TEST(Security, GoNsqRoundTripsOverTlsSnappyDeflateAndTheirCombinations) {
  REQUIRE_NSQ_BINARY(roundtrip, "gonsq_roundtrip2");
  TlsBroker broker;
  ASSERT_TRUE(broker.up()) << broker.cairnd.startup_log();
  const CairndProcess& cairnd = broker.cairnd;
  const std::string tls = "-tls -tls-root-ca-file=" + broker.certs["ca.pem"];
  const std::pair<std::string, std::string> cases[] = {
      {"", "negotiated=none-requested"},
      {"-snappy", "negotiated=snappy(producer=1,consumer=1)"},
      {"-deflate -deflate-level=9", "negotiated=deflate(producer=1,consumer=1)"},
      {tls, "negotiated=tls(producer=1,consumer=1)"},
      {tls + " -snappy", "tls(producer=1,consumer=1),snappy(producer=1,consumer=1)"},
      {tls + " -deflate", "tls(producer=1,consumer=1),deflate(producer=1,consumer=1)"},
  };
  int topic = 0;
  for (const auto& [flags, negotiated] : cases) {
    auto [status, output] =
        GoNsq(roundtrip, cairnd.port(), fmt::format("-topic=t{} {}", topic++, flags));
    EXPECT_EQ(status, 0) << flags << "\n" << output << cairnd.log();
    EXPECT_NE(output.find("gonsq_roundtrip2 ok"), std::string::npos) << flags << "\n" << output;
    EXPECT_NE(output.find(negotiated), std::string::npos) << flags << "\n" << output;
  }
}

// NSQ's own tools with go-nsq's options: to_nsq publishes over TLS and snappy, nsq_tail reads
// over TLS and deflate; /stats shows how a connection was negotiated.
TEST(Security, ToNsqAndNsqTailOverTlsWithCompression) {
  REQUIRE_NSQ_BINARY(to_nsq, "to_nsq");
  REQUIRE_NSQ_BINARY(nsq_tail, "nsq_tail");
  TlsBroker broker;
  ASSERT_TRUE(broker.up()) << broker.cairnd.startup_log();
  const CairndProcess& cairnd = broker.cairnd;
  const Certificates& certs = broker.certs;
  const std::string tls = fmt::format("tls_v1,true --{{0}}=tls_root_ca_file,{}", certs["ca.pem"]);
  auto [published, pub_output] = RunCommand(
      fmt::format("printf 'one\\ntwo\\nthree\\n' | timeout 30 {} --nsqd-tcp-address=127.0.0.1:{} "
                  "--topic=secure --producer-opt={} --producer-opt=snappy,true 2>&1",
                  to_nsq, cairnd.port(), fmt::format(fmt::runtime(tls), "producer-opt")));
  EXPECT_EQ(published, 0) << pub_output << cairnd.log();
  // nsq_tail's channel is the topic's first, so it starts at the log's start: it reads the three,
  // stays connected while /stats is read, and a fourth ends it.
  auto tailed = std::async(std::launch::async, [&] {
    return RunCommand(fmt::format(
        "timeout 30 {} --nsqd-tcp-address=127.0.0.1:{} --topic=secure -n 4 --consumer-opt={} "
        "--consumer-opt=deflate,true 2>/dev/null",
        nsq_tail, cairnd.port(), fmt::format(fmt::runtime(tls), "consumer-opt")));
  });
  HttpClient http(cairnd.http_port());
  Json client;
  ASSERT_TRUE(Eventually([&] {
    const Json stats =
        Json::parse(http.Get("/stats?format=json&topic=secure").body, nullptr, false);
    if (!stats.is_object() || stats["topics"].empty()) return false;
    for (const Json& ch : stats["topics"][0]["channels"]) {
      for (const Json& c : ch["clients"]) client = c;
    }
    return client.is_object();
  }));
  EXPECT_EQ(client.value("tls", false), true) << client.dump();
  EXPECT_EQ(client.value("deflate", false), true) << client.dump();
  EXPECT_EQ(client.value("snappy", true), false) << client.dump();
  EXPECT_FALSE(client.value("tls_version", "").empty()) << client.dump();
  EXPECT_FALSE(client.value("tls_cipher_suite", "").empty()) << client.dump();
  EXPECT_EQ(http.Post("/pub?topic=secure", "four").status, 200);
  auto [status, output] = tailed.get();
  EXPECT_EQ(status, 0) << output;
  EXPECT_EQ(output, "one\ntwo\nthree\nfour\n");
}

// curl, verifying the broker against the test CA: "<status code> <body>".
std::string Curl(const Certificates& certs, const std::string& args) {
  auto [status, output] = RunCommand(fmt::format(
      "curl -sS --max-time 10 --cacert {} -w '\\n%{{http_code}}' {} 2>&1", certs["ca.pem"], args));
  const size_t nl = output.rfind('\n');
  if (nl == std::string::npos) return output;
  return output.substr(nl + 1) + " " + output.substr(0, nl);
}

TEST(Security, ClientsWithoutTheRightCertificatesAreRefused) {
  REQUIRE_NSQ_BINARY(roundtrip, "gonsq_roundtrip2");
  TlsBroker broker([](const Certificates& c) {
    return std::vector<std::string>{"--tls-client-auth-policy=require-verify",
                                    "--tls-root-ca-file=" + c["ca.pem"]};
  });
  ASSERT_TRUE(broker.up()) << broker.cairnd.startup_log();
  const CairndProcess& cairnd = broker.cairnd;
  const Certificates& certs = broker.certs;
  const std::string tls = "-tls -tls-root-ca-file=" + certs["ca.pem"];
  // The CA's own client gets in.
  auto [good, good_output] = GoNsq(
      roundtrip, cairnd.port(),
      fmt::format("{} -tls-cert={} -tls-key={}", tls, certs["client.pem"], certs["client.key"]));
  EXPECT_EQ(good, 0) << good_output << cairnd.log();
  // One whose certificate another CA signed, one with none, and one that does not trust the
  // server's CA: refused in the handshake; cairnd carries on.
  const std::string refused[] = {
      fmt::format("{} -tls-cert={} -tls-key={}", tls, certs["stranger.pem"], certs["stranger.key"]),
      tls,
      fmt::format("-tls -tls-root-ca-file={} -tls-cert={} -tls-key={}", certs["other-ca.pem"],
                  certs["client.pem"], certs["client.key"]),
  };
  for (const std::string& f : refused) {
    auto [status, output] = GoNsq(roundtrip, cairnd.port(), f + " -timeout=5s");
    EXPECT_NE(status, 0) << f << "\n" << output;
    EXPECT_EQ(output.find("gonsq_roundtrip2 ok"), std::string::npos) << f << "\n" << output;
  }
  // Under a client auth policy TLS is required, as in nsqd: a plain client may IDENTIFY, and
  // nothing else.
  RawClient plain(cairnd.port());
  plain.Identify("{}");
  plain.CmdBody("PUB t", "x");
  plain.ExpectError("E_INVALID cannot PUB in current state (TLS required)");
  EXPECT_TRUE(plain.ClosedByPeer());
  // HTTP too: plain HTTP is sent to HTTPS, where the same certificates are asked for.
  EXPECT_EQ(HttpClient(cairnd.http_port()).Get("/ping").status, 403);
  const std::string https = fmt::format("https://127.0.0.1:{}/ping", cairnd.https_port());
  EXPECT_EQ(Curl(certs, fmt::format("--cert {} --key {} {}", certs["client.pem"],
                                    certs["client.key"], https)),
            "200 OK");
  for (const char* who : {"stranger", ""}) {
    const std::string cert =
        *who ? fmt::format("--cert {0}.pem --key {0}.key ", certs[who]) : std::string();
    EXPECT_FALSE(Curl(certs, cert + https).starts_with("200")) << who;
  }
}

// What nsqd answers a raw exchange, beside cairnd's, when $NSQ_BIN_DIR has nsqd.
struct Answers {
  std::vector<std::string> cairnd, nsqd;
};

// Runs `exchange` (which returns what it read, as text) against cairnd and nsqd started with the
// same `flags`; it is given the server, for its ports.
template <class Exchange>
Answers BothAnswer(const std::vector<std::string>& flags, Exchange exchange) {
  Answers a;
  TempDir dir;
  CairndProcess cairnd(dir.path(), flags);
  if (cairnd.port() == 0) {
    ADD_FAILURE() << cairnd.startup_log();
    return a;
  }
  a.cairnd = exchange(static_cast<const ListeningProcess&>(cairnd));
  std::string why;
  const std::string nsqd_bin = NsqBinary("nsqd", &why);
  if (nsqd_bin.empty()) return a;
  TempDir nsqd_dir;
  std::vector<std::string> args = {nsqd_bin, "--data-path=" + nsqd_dir.path(),
                                   "--tcp-address=127.0.0.1:0", "--http-address=127.0.0.1:0",
                                   "--https-address=127.0.0.1:0"};
  args.insert(args.end(), flags.begin(), flags.end());
  ListeningProcess nsqd(args);
  if (nsqd.port() == 0) {
    ADD_FAILURE() << nsqd.log();
    return a;
  }
  a.nsqd = exchange(nsqd);
  return a;
}

std::string FrameText(const std::optional<RawFrame>& f) {
  if (!f) return "(closed)";
  return fmt::format("{} {}", static_cast<int>(f->type), f->data);
}

TEST(Security, RefusalsAreNsqds) {
  Certificates certs;
  ASSERT_TRUE(certs.ok());
  // Both compressions at once.
  auto both = BothAnswer({}, [](const ListeningProcess& server) {
    RawClient c(server.port());
    c.CmdBody("IDENTIFY", R"({"feature_negotiation":true,"snappy":true,"deflate":true})");
    return std::vector<std::string>{FrameText(c.Read()), c.ClosedByPeer() ? "closed" : "open"};
  });
  EXPECT_EQ(
      both.cairnd,
      (std::vector<std::string>{
          "1 E_IDENTIFY_FAILED cannot enable both deflate and snappy compression", "closed"}));
  if (!both.nsqd.empty()) {
    EXPECT_EQ(both.cairnd, both.nsqd);
  }
  // A plain client where TLS is required: every command but IDENTIFY.
  std::vector<std::string> flags = certs.ServerFlags();
  flags.push_back("--tls-required=tcp-https");
  auto required = BothAnswer(flags, [](const ListeningProcess& server) {
    std::vector<std::string> out;
    for (const char* cmd : {"NOP", "SUB t c", "RDY 1"}) {
      RawClient c(server.port());
      c.Cmd(cmd);
      out.push_back(FrameText(c.Read()));
    }
    RawClient c(server.port());
    c.CmdBody("IDENTIFY", R"({"feature_negotiation":true,"tls_v1":true})");
    auto negotiated = c.Read();
    out.push_back(negotiated && Json::parse(negotiated->data, nullptr, false).value("tls_v1", false)
                      ? "tls negotiated"
                      : "no tls");
    return out;
  });
  EXPECT_EQ(required.cairnd,
            (std::vector<std::string>{"1 E_INVALID cannot NOP in current state (TLS required)",
                                      "1 E_INVALID cannot SUB in current state (TLS required)",
                                      "1 E_INVALID cannot RDY in current state (TLS required)",
                                      "tls negotiated"}));
  if (!required.nsqd.empty()) {
    EXPECT_EQ(required.cairnd, required.nsqd);
  }
}

// HTTPS serves the same API with the same certificate. Under --tls-required=true, plain HTTP gets
// nsqd's 403 TLS_REQUIRED with the port to retry on (nsqadmin reads it); under tcp-https plain
// HTTP stays open.
TEST(Security, HttpsServesTheApiAndARequirementOfTlsSendsPlainHttpThere) {
  Certificates certs;
  ASSERT_TRUE(certs.ok());
  std::vector<std::string> flags = certs.ServerFlags();
  flags.push_back("--tls-required=true");
  auto refused = BothAnswer(flags, [&](const ListeningProcess& server) {
    const Reply plain = HttpClient(server.http_port(), "").Get("/ping");
    const Json body = Json::parse(plain.body, nullptr, false);
    return std::vector<std::string>{
        std::to_string(plain.status), body.value("message", "?"),
        body.value("https_port", 0) == server.https_port() ? "https_port is right" : plain.body,
        plain.content_type};
  });
  EXPECT_EQ(refused.cairnd, (std::vector<std::string>{"403", "TLS_REQUIRED", "https_port is right",
                                                      "application/json; charset=utf-8"}));
  if (!refused.nsqd.empty()) {
    EXPECT_EQ(refused.cairnd, refused.nsqd);
  }

  TlsBroker broker([](const Certificates&) { return std::vector<std::string>{"--tls-required"}; });
  ASSERT_TRUE(broker.up()) << broker.cairnd.startup_log();
  const uint16_t https = broker.cairnd.https_port();
  ASSERT_NE(https, 0) << broker.cairnd.log();
  const std::string base = fmt::format("https://127.0.0.1:{}", https);
  EXPECT_EQ(Curl(broker.certs, base + "/ping"), "200 OK");
  // A publish over HTTPS is read back over HTTPS, and what needs the admin credential still does.
  EXPECT_EQ(Curl(broker.certs, "-d hello " + base + "/pub?topic=t"), "200 OK");
  const std::string stats = Curl(broker.certs, base + "/stats?format=json&topic=t");
  EXPECT_TRUE(stats.starts_with("200 ") && stats.find(R"("message_count":1)") != std::string::npos)
      << stats;
  const std::string erase = Curl(broker.certs, "-X POST " + base + "/topic/delete?topic=t");
  EXPECT_TRUE(erase.starts_with("401 ")) << erase;
  // A client that does not trust the broker's CA is refused in the handshake.
  auto [status, output] = RunCommand(fmt::format("curl -sS --max-time 10 --cacert {} {}/ping 2>&1",
                                                 broker.certs["other-ca.pem"], base));
  EXPECT_NE(status, 0) << output;

  TlsBroker tcp_only(
      [](const Certificates&) { return std::vector<std::string>{"--tls-required=tcp-https"}; });
  ASSERT_TRUE(tcp_only.up()) << tcp_only.cairnd.startup_log();
  EXPECT_EQ(HttpClient(tcp_only.cairnd.http_port()).Get("/ping").status, 200);
}

TEST(Security, ACorruptCompressedStreamClosesThatConnectionOnly) {
  TempDir dir;
  CairndProcess cairnd(dir.path());
  ASSERT_NE(cairnd.port(), 0) << cairnd.startup_log();
  for (const char* codec : {"snappy", "deflate"}) {
    RawClient c(cairnd.port());
    c.CmdBody("IDENTIFY", fmt::format(R"({{"feature_negotiation":true,"{}":true}})", codec));
    auto answer = c.Read();
    ASSERT_TRUE(answer);
    EXPECT_TRUE(Json::parse(answer->data).value(codec, false)) << answer->data;
    c.Send(std::string(64, '\xff'));  // neither a snappy stream nor deflate
    EXPECT_TRUE(c.ClosedByPeer()) << codec;
  }
  RawClient other(cairnd.port());
  other.Identify("{}");
  other.Publish("t", "still served");
  EXPECT_TRUE(Eventually([&] { return cairnd.log().find("closing") != std::string::npos; }))
      << cairnd.log();
}

// AUTH as nsqd does it, beside nsqd where it is there: what needs AUTH first, what the answer
// allows and refuses.
TEST(Security, AuthAnswersAsNsqdDoes) {
  AuthServer authd;
  ASSERT_NE(authd.http_port(), 0) << authd.log();
  auto answers =
      BothAnswer({"--auth-http-address=" + authd.address()}, [](const ListeningProcess& server) {
        const uint16_t port = server.port();
        std::vector<std::string> out;
        {
          RawClient c(port);
          c.CmdBody("IDENTIFY", R"({"feature_negotiation":true})");
          auto negotiated = c.Read();
          out.push_back(
              negotiated &&
                      Json::parse(negotiated->data, nullptr, false).value("auth_required", false)
                  ? "auth required"
                  : "no auth");
          c.CmdBody("PUB logs", "x");
          out.push_back(FrameText(c.Read()));
        }
        {
          RawClient c(port);
          c.CmdBody("AUTH", "pub-logs");
          out.push_back(FrameText(c.Read()));
          c.CmdBody("PUB logs", "x");
          out.push_back(FrameText(c.Read()));
          c.Cmd("SUB metrics ch");
          out.push_back(FrameText(c.Read()));
        }
        for (const char* secret : {"nothing", "other"}) {
          RawClient c(port);
          c.CmdBody("AUTH", secret);
          out.push_back(FrameText(c.Read()));
        }
        {
          RawClient c(port);
          c.CmdBody("AUTH", "pub-logs");
          c.Read();
          c.CmdBody("AUTH", "pub-logs");
          out.push_back(FrameText(c.Read()));
        }
        return out;
      });
  EXPECT_EQ(answers.cairnd,
            (std::vector<std::string>{
                "auth required", "1 E_AUTH_FIRST AUTH required before PUB",
                R"(0 {"identity":"logs-writer","identity_url":"http://auth.invalid/logs-writer",)"
                R"("permission_count":1})",
                "0 OK", R"(1 E_UNAUTHORIZED AUTH failed for SUB on "metrics" "ch")",
                "1 E_UNAUTHORIZED AUTH no authorizations found", "1 E_AUTH_FAILED AUTH failed",
                "1 E_INVALID AUTH already set"}));
  if (!answers.nsqd.empty()) {
    EXPECT_EQ(answers.cairnd, answers.nsqd);
  }
  // go-nsq authenticates with its auth_secret, and publishes and consumes what it may.
  std::string why;
  if (const std::string roundtrip = NsqBinary("gonsq_roundtrip2", &why); !roundtrip.empty()) {
    TempDir dir;
    CairndProcess cairnd(dir.path(), {"--auth-http-address=" + authd.address()});
    auto [status, output] = GoNsq(roundtrip, cairnd.port(), "-topic=logs -auth-secret=pub-logs");
    EXPECT_EQ(status, 0) << output << cairnd.log();
    auto [denied, denied_output] =
        GoNsq(roundtrip, cairnd.port(), "-topic=metrics -auth-secret=pub-logs -timeout=5s");
    EXPECT_NE(denied, 0) << denied_output;
  }
  // The auth server was told who asked, as nsqd tells it.
  const Json seen = authd.Seen();
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen[0].value("remote_ip", ""), "127.0.0.1") << seen.dump();
  EXPECT_EQ(seen[0].value("tls", ""), "false") << seen.dump();
  EXPECT_EQ(seen[0].value("secret", ""), "pub-logs") << seen.dump();
  EXPECT_TRUE(seen[0].contains("common_name")) << seen.dump();
}

TEST(Security, AuthIsAskedAgainAfterItsTtlAndASlowOrDeadServerHurtsNoOtherClient) {
  AuthServer authd;
  ASSERT_NE(authd.http_port(), 0) << authd.log();
  TempDir dir;
  CairndProcess cairnd(dir.path(), {"--auth-http-address=" + authd.address()});
  ASSERT_NE(cairnd.port(), 0) << cairnd.startup_log();
  auto asked = [&](const std::string& secret) {
    size_t n = 0;
    for (const Json& q : authd.Seen()) n += q.value("secret", "") == secret ? 1 : 0;
    return n;
  };
  // A ttl of one second: publishing on, the server is asked again, and publishes go on.
  RawClient short_lived(cairnd.port());
  short_lived.CmdBody("AUTH", "short");
  ASSERT_TRUE(short_lived.Read());
  ASSERT_EQ(asked("short"), 1u);
  EXPECT_TRUE(Eventually(
      [&] {
        short_lived.Publish("logs", "again");
        return asked("short") >= 2;
      },
      10s));
  short_lived.Publish("logs", "after asking again");
  // A client whose auth server hangs waits alone; others authenticate and publish meanwhile;
  // it is refused once cairnd stops waiting.
  RawClient slow(cairnd.port());
  slow.CmdBody("AUTH", "slow");
  ASSERT_TRUE(Eventually([&] { return asked("slow") == 1; }));
  RawClient meanwhile(cairnd.port());
  meanwhile.CmdBody("AUTH", "pub-logs");
  auto ok = meanwhile.Read();
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->type, nsq::FrameType::kResponse) << ok->data;
  meanwhile.Publish("logs", "not held up");
  // /stats shows who the authenticated clients are.
  HttpClient http(cairnd.http_port());
  EXPECT_NE(http.Get("/stats?format=json").body.find(R"("auth_identity":"logs-writer")"),
            std::string::npos);
  slow.ExpectError("E_AUTH_FAILED AUTH failed");
  // An auth server that is not there (one that was, stopped): AUTH fails, the broker serves on.
  AuthServer gone;
  ASSERT_NE(gone.http_port(), 0) << gone.log();
  const std::string gone_address = gone.address();
  gone.Signal(SIGKILL);
  TempDir dir2;
  CairndProcess orphan(dir2.path(), {"--auth-http-address=" + gone_address});
  ASSERT_NE(orphan.port(), 0) << orphan.startup_log();
  RawClient refused(orphan.port());
  refused.CmdBody("AUTH", "pub-logs");
  refused.ExpectError("E_AUTH_FAILED AUTH failed");
  EXPECT_EQ(HttpClient(orphan.http_port()).Get("/ping").status, 200);
}

// cairnd's default: with no --admin-secret-file and no --admin-open, no credential erases
// anything over HTTP; the two flags exclude each other, and an empty secret file is refused.
// An auth server at an https:// URL is asked over TLS, and its certificate is checked: against
// --tls-root-ca-file when given, else the system's CAs, which do not know the test CA.
TEST(Security, AuthServersAtHttpsUrlsAreAskedOverTlsAndChecked) {
  Certificates certs;
  ASSERT_TRUE(certs.ok());
  AuthServer authd(certs);
  ASSERT_NE(authd.http_port(), 0) << authd.log();
  const std::string url =
      fmt::format("--auth-http-address=https://127.0.0.1:{}/auth", authd.http_port());
  auto answer = [](const CairndProcess& cairnd) {
    RawClient c(cairnd.port());
    c.CmdBody("AUTH", "pub-logs");
    auto r = c.Read();
    if (!r || r->type == nsq::FrameType::kError) return FrameText(r);
    c.CmdBody("PUB logs", "x");
    return FrameText(c.Read());
  };
  TempDir trusting_dir, untrusting_dir;
  CairndProcess trusting(trusting_dir.path(), {url, "--tls-root-ca-file=" + certs["ca.pem"]});
  CairndProcess untrusting(untrusting_dir.path(), {url});
  ASSERT_NE(trusting.port(), 0) << trusting.startup_log();
  ASSERT_NE(untrusting.port(), 0) << untrusting.startup_log();
  EXPECT_EQ(answer(trusting), "0 OK") << trusting.log();
  EXPECT_EQ(answer(untrusting), "1 E_AUTH_FAILED AUTH failed") << untrusting.log();
  // Its log says why (read from its stderr by another thread: waited for).
  EXPECT_TRUE(Eventually([&] {
    return untrusting.log().find("certificate verify failed") != std::string::npos;
  })) << untrusting.log();
}

TEST(Security, ByDefaultNobodyMayEraseOverHttp) {
  TempDir dir;
  ListeningProcess bare({CAIRN_BIN_DIR "/cairnd", "--data-path=" + dir.path(),
                         "--tcp-address=127.0.0.1:0", "--http-address=127.0.0.1:0"});
  ASSERT_NE(bare.http_port(), 0) << bare.log();
  HttpClient http(bare.http_port());  // sends the tests' secret, which this cairnd does not know
  ASSERT_EQ(http.Post("/topic/create?topic=t").status, 200);
  const Reply refused = http.Post("/topic/delete?topic=t");
  EXPECT_EQ(refused.status, 401);
  EXPECT_EQ(refused.body, R"({"message":"ADMIN_SECRET_REQUIRED"})");
  EXPECT_TRUE(Eventually([&] {
    return bare.log().find("no --admin-secret-file is configured") != std::string::npos;
  })) << bare.log();
  TempDir other;
  const std::string empty = other.path() + "/empty";
  std::ofstream(empty) << "\n";
  for (const std::string& flags : {"--admin-open --admin-secret-file=" + TestAdminSecretFile(),
                                   "--admin-secret-file=" + empty}) {
    auto [status, output] =
        RunCommand(fmt::format("timeout 10 {}/cairnd --data-path={}/d --tcp-address=127.0.0.1:0 "
                               "--http-address=127.0.0.1:0 "
                               "{} 2>&1",
                               CAIRN_BIN_DIR, other.path(), flags));
    EXPECT_EQ(status, 2) << flags << ": " << output;
    EXPECT_NE(output.find("--admin-"), std::string::npos) << output;
  }
}

// nsqd's TLS flag rules: TLS cannot be required without a certificate, bare --tls-required is
// "true", and a client auth policy requires TLS.
TEST(Security, TlsFlagsAreCheckedAsNsqdChecksThem) {
  TempDir dir;
  const std::pair<std::string, std::string> refused[] = {
      {"--tls-required", "cannot require TLS client connections without TLS key and cert"},
      {"--tls-required --sync=always", "cannot require TLS client connections"},
      {"--tls-required=tcp-https", "cannot require TLS client connections"},
      {"--tls-client-auth-policy=require", "cannot require TLS client connections"},
      {"--tls-required=maybe", "is not true, false or tcp-https"},
      {"--tls-client-auth-policy=sometimes", "unknown client auth policy"},
      {"--max-deflate-level=10", "--max-deflate-level"},
  };
  for (const auto& [flags, why] : refused) {
    auto [status, output] = RunCommand(fmt::format(
        "timeout 10 {}/cairnd --data-path={}/d --tcp-address=127.0.0.1:0 "
        "--http-address=127.0.0.1:0 {} 2>&1",
        CAIRN_BIN_DIR, dir.path(), flags));  // bounded: a cairnd that accepts them would serve on
    EXPECT_NE(status, 0) << flags << ": " << output;
    EXPECT_NE(output.find(why), std::string::npos) << flags << ": " << output;
  }
}

// A worker where cairnd requires TLS with a verified client certificate and AUTH:
// cairn-replay, given the flags, reads the whole range over TLS with deflate and deletes its
// channel with the admin credential, over HTTPS.
TEST(Security, AWorkerConnectsWithTlsACertificateAndAuth) {
  Certificates certs;
  ASSERT_TRUE(certs.ok());
  AuthServer authd;
  ASSERT_NE(authd.http_port(), 0) << authd.log();
  TempDir dir;
  std::vector<std::string> flags = certs.ServerFlags();
  flags.push_back("--tls-client-auth-policy=require-verify");
  flags.push_back("--tls-root-ca-file=" + certs["ca.pem"]);
  flags.push_back("--auth-http-address=" + authd.address());
  CairndProcess cairnd(dir.path(), flags);
  ASSERT_NE(cairnd.port(), 0) << cairnd.startup_log();
  // HTTPS only, with a client certificate: plain HTTP answers TLS_REQUIRED.
  const std::string https =
      fmt::format("--cert {} --key {} https://127.0.0.1:{}", certs["client.pem"],
                  certs["client.key"], cairnd.https_port());
  ASSERT_EQ(
      Curl(certs, "--data-binary 'cpu v=1 1\ncpu v=2 2\ncpu v=3 3' " + https + "/mpub?topic=logs"),
      "200 OK");
  const std::string replay = fmt::format(
      "timeout 60 {}/cairn-replay --nsqd-tcp-address=127.0.0.1:{} "
      "--nsqd-http-address=127.0.0.1:{} --topic=logs --from=-1h --dry-run --json "
      "--admin-secret-file={} --auth-secret=pub-logs --deflate",
      CAIRN_BIN_DIR, cairnd.port(), cairnd.http_port(), TestAdminSecretFile());
  const std::string tls = fmt::format(" --tls --tls-root-ca-file={} --tls-cert={} --tls-key={}",
                                      certs["ca.pem"], certs["client.pem"], certs["client.key"]);
  // In plain text the broker refuses it; over TLS, with its certificate, every message is read.
  auto [refused, refused_output] = RunCommand(replay + " --give-up-after=2s 2>&1");
  EXPECT_NE(refused, 0) << refused_output;
  auto [status, output] = RunCommand(replay + tls + " 2>/dev/null");
  EXPECT_EQ(status, 0) << output << cairnd.log();
  const Json summary = Json::parse(output, nullptr, false);
  ASSERT_TRUE(summary.is_object()) << output;
  EXPECT_EQ(summary.value("messages", 0), 3) << output;
  // Its channel is gone: the admin credential deleted it, over HTTPS, where the broker's
  // TLS_REQUIRED sent the worker.
  const std::string stats = Curl(certs, https + "/stats?format=json&topic=logs");
  EXPECT_NE(stats.find(R"("channels":[])"), std::string::npos) << stats;
}

}  // namespace
}  // namespace cairn::testing

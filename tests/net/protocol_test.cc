// The NSQ V2 codec as pure functions: every command, every malformed form of it, the frames
// byte for byte, and a bounded random-input run that must never crash or misread.
#include "net/protocol.h"

#include <random>

#include <gtest/gtest.h>

namespace cairn::nsq {
namespace {

std::string Be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

ParseLimits Small() {
  ParseLimits l;
  l.max_msg_size = 100;
  l.max_body_size = 1000;
  l.max_identify_size = 1000;
  return l;
}

Command ParseOk(std::string_view bytes, const ParseLimits& limits = Small()) {
  auto outcome = ParseCommand(bytes, limits);
  if (auto* e = std::get_if<ProtocolError>(&outcome)) {
    ADD_FAILURE() << "unexpected error: " << e->Frame();
    return {};
  }
  if (std::holds_alternative<NeedMore>(outcome)) {
    ADD_FAILURE() << "unexpected NeedMore for " << bytes;
    return {};
  }
  auto& p = std::get<Parsed>(outcome);
  EXPECT_EQ(p.consumed, bytes.size());
  return p.command;
}

ProtocolError ParseErr(std::string_view bytes, const ParseLimits& limits = Small()) {
  auto outcome = ParseCommand(bytes, limits);
  if (auto* e = std::get_if<ProtocolError>(&outcome)) return *e;
  ADD_FAILURE() << "expected an error for " << bytes;
  return {};
}

std::string Pub(std::string_view topic, std::string_view body) {
  std::string out;
  AppendCommandWithBody(out, std::string("PUB ") + std::string(topic), body);
  return out;
}

TEST(Protocol, EveryCommandParses) {
  EXPECT_EQ(ParseOk("NOP\n").verb, Verb::kNop);
  EXPECT_EQ(ParseOk("CLS\n").verb, Verb::kCls);
  auto sub = ParseOk("SUB logs archive\n");
  EXPECT_EQ(sub.verb, Verb::kSub);
  EXPECT_EQ(std::vector<std::string_view>(sub.params.begin(), sub.params.end()),
            (std::vector<std::string_view>{"logs", "archive"}));
  auto rdy = ParseOk("RDY 100\n");
  EXPECT_EQ(rdy.verb, Verb::kRdy);
  EXPECT_EQ(rdy.params.at(0), "100");
  EXPECT_EQ(ParseOk("FIN 000000000000002a\n").params.at(0), "000000000000002a");
  auto req = ParseOk("REQ 000000000000002a 500\n");
  EXPECT_EQ(req.verb, Verb::kReq);
  EXPECT_EQ(req.params.at(1), "500");
  EXPECT_EQ(ParseOk("TOUCH 000000000000002a\n").verb, Verb::kTouch);
  const std::string pub_bytes = Pub("logs", "hello");
  auto pub = ParseOk(pub_bytes);
  EXPECT_EQ(pub.verb, Verb::kPub);
  EXPECT_EQ(pub.body, "hello");
  std::string dpub;
  AppendCommandWithBody(dpub, "DPUB logs 1500", "later");
  auto d = ParseOk(dpub);
  EXPECT_EQ(d.verb, Verb::kDpub);
  EXPECT_EQ(d.params.at(1), "1500");
  EXPECT_EQ(d.body, "later");
  std::string mpub;
  const std::vector<std::string> bodies = {"a", "bb", "ccc"};
  AppendMpub(mpub, "logs", bodies);
  auto m = ParseOk(mpub);
  EXPECT_EQ(m.verb, Verb::kMpub);
  EXPECT_EQ(std::vector<std::string_view>(m.bodies.begin(), m.bodies.end()),
            (std::vector<std::string_view>{"a", "bb", "ccc"}));
  std::string identify;
  AppendCommandWithBody(identify, "IDENTIFY", R"({"client_id":"x"})");
  EXPECT_EQ(ParseOk(identify).body, R"({"client_id":"x"})");
  std::string auth;
  AppendCommandWithBody(auth, "AUTH", "secret");
  EXPECT_EQ(ParseOk(auth).verb, Verb::kAuth);
  // A trailing \r is dropped, as nsqd does.
  EXPECT_EQ(ParseOk("SUB logs archive\r\n").params.at(1), "archive");
}

TEST(Protocol, EveryPrefixOfAValidCommandAsksForMoreAndNeverFails) {
  std::string all;
  AppendCommandWithBody(all, "IDENTIFY", R"({"heartbeat_interval":1000})");
  all += Pub("logs", "hello world");
  std::string mpub;
  const std::vector<std::string> bodies = {"one", "two"};
  AppendMpub(mpub, "metrics", bodies);
  all += mpub;
  for (std::string_view cmd : {std::string_view(all)}) {
    size_t pos = 0;
    int commands = 0;
    while (pos < cmd.size()) {
      auto rest = cmd.substr(pos);
      size_t consumed = 0;
      for (size_t n = 0; n <= rest.size(); ++n) {
        auto outcome = ParseCommand(rest.substr(0, n), Small());
        ASSERT_FALSE(std::holds_alternative<ProtocolError>(outcome)) << "prefix " << n;
        if (auto* p = std::get_if<Parsed>(&outcome)) {
          consumed = p->consumed;
          break;
        }
      }
      ASSERT_GT(consumed, 0u);
      pos += consumed;
      ++commands;
    }
    EXPECT_EQ(commands, 3);
  }
}

TEST(Protocol, MalformedCommandsGetNsqdsErrors) {
  EXPECT_EQ(ParseErr("PUB\n").Frame(), "E_INVALID PUB insufficient number of parameters");
  EXPECT_EQ(ParseErr("PUB bad!topic\n").Frame(),
            "E_BAD_TOPIC PUB topic name \"bad!topic\" is not valid");
  EXPECT_EQ(ParseErr("PUB logs\n" + Be32(0)).Frame(),
            "E_BAD_MESSAGE PUB invalid message body size 0");
  EXPECT_EQ(ParseErr("PUB logs\n" + Be32(0xffffffff)).Frame(),
            "E_BAD_MESSAGE PUB invalid message body size -1");
  EXPECT_EQ(ParseErr("PUB logs\n" + Be32(101)).Frame(),
            "E_BAD_MESSAGE PUB message too big 101 > 100");
  EXPECT_EQ(ParseErr("DPUB logs\n").Frame(), "E_INVALID DPUB insufficient number of parameters");
  EXPECT_EQ(ParseErr("DPUB logs 10\n" + Be32(101)).Frame(),
            "E_BAD_MESSAGE DPUB message too big 101 > 100");
  // nsqd writes the code twice in MPUB's bad-topic text; clients only read the first word.
  EXPECT_EQ(ParseErr("MPUB a:b\n").Frame(),
            "E_BAD_TOPIC E_BAD_TOPIC MPUB topic name \"a:b\" is not valid");
  EXPECT_EQ(ParseErr("MPUB logs\n" + Be32(0)).Frame(), "E_BAD_BODY MPUB invalid body size 0");
  EXPECT_EQ(ParseErr("MPUB logs\n" + Be32(1001)).Frame(),
            "E_BAD_BODY MPUB body too big 1001 > 1000");
  EXPECT_EQ(ParseErr("MPUB logs\n" + Be32(4) + Be32(0)).Frame(),
            "E_BAD_BODY MPUB invalid message count 0");
  EXPECT_EQ(ParseErr("MPUB logs\n" + Be32(4) + Be32(500)).Frame(),
            "E_BAD_BODY MPUB invalid message count 500");
  EXPECT_EQ(ParseErr("MPUB logs\n" + Be32(14) + Be32(2) + Be32(1) + "a" + Be32(0) + "x").Frame(),
            "E_BAD_MESSAGE MPUB invalid message(1) body size 0");
  EXPECT_EQ(ParseErr("MPUB logs\n" + Be32(12) + Be32(2) + Be32(1) + "a" + "xyz").Frame(),
            "E_BAD_MESSAGE MPUB failed to read message(1) body size");
  EXPECT_EQ(ParseErr("MPUB logs\n" + Be32(9) + Be32(1) + Be32(5) + "a").Frame(),
            "E_BAD_MESSAGE MPUB failed to read message body");
  EXPECT_EQ(
      ParseErr("MPUB logs\n" + Be32(200) + Be32(1) + Be32(150) + std::string(192, 'x')).Frame(),
      "E_BAD_MESSAGE MPUB message too big 150 > 100");
  EXPECT_EQ(ParseErr("SUB logs\n").Frame(), "E_INVALID SUB insufficient number of parameters");
  EXPECT_EQ(ParseErr("SUB lo\"gs c\n").Frame(),
            "E_BAD_TOPIC SUB topic name \"lo\\\"gs\" is not valid");
  EXPECT_EQ(ParseErr("SUB logs a\tb\n").Frame(),
            "E_BAD_CHANNEL SUB channel name \"a\\tb\" is not valid");
  EXPECT_EQ(ParseErr("FIN\n").Frame(), "E_INVALID FIN insufficient number of params");
  EXPECT_EQ(ParseErr("FIN 12345\n").Frame(), "E_INVALID invalid message ID");
  EXPECT_EQ(ParseErr("REQ 000000000000002a\n").Frame(),
            "E_INVALID REQ insufficient number of params");
  EXPECT_EQ(ParseErr("TOUCH\n").Frame(), "E_INVALID TOUCH insufficient number of params");
  EXPECT_EQ(ParseErr("AUTH x\n").Frame(), "E_INVALID AUTH invalid number of parameters");
  EXPECT_EQ(ParseErr("IDENTIFY\n" + Be32(1001)).Frame(),
            "E_BAD_BODY IDENTIFY body too big 1001 > 1000");
  EXPECT_EQ(ParseErr("IDENTIFY\n" + Be32(0)).Frame(), "E_BAD_BODY IDENTIFY invalid body size 0");
  EXPECT_EQ(ParseErr("ASDF\n").Frame(), "E_INVALID invalid command ASDF");
  EXPECT_EQ(ParseErr("\n").Frame(), "E_INVALID invalid command ");
  EXPECT_EQ(ParseErr("pub logs\n").Frame(), "E_INVALID invalid command pub");
  for (const auto& e : {ParseErr("PUB\n"), ParseErr("ASDF\n")}) EXPECT_TRUE(e.fatal);
  // A line longer than nsqd's read buffer: nsqd hangs up without an error frame.
  auto overlong = ParseErr(std::string(Small().max_line, 'A'));
  EXPECT_TRUE(overlong.fatal);
  EXPECT_TRUE(overlong.silent);
}

TEST(Protocol, AnOverlongLineIsRefusedHoweverItArrives) {
  // The session parses whatever its reads brought: a line over max_line ('\n' included) must be
  // refused whether its '\n' arrived in the same read or not (found by tests/fuzz/nsq_command).
  const size_t max = Small().max_line;
  const std::string fits = "NOP " + std::string(max - 5, 'x') + "\n";
  ASSERT_EQ(fits.size(), max);
  EXPECT_EQ(ParseOk(fits).verb, Verb::kNop);
  const std::string over = "NOP " + std::string(max - 4, 'x') + "\n";
  for (size_t n : {max, over.size(), over.size() + 5}) {
    auto e = ParseErr((over + "NOP\n").substr(0, n));
    EXPECT_TRUE(e.silent) << n;
    EXPECT_EQ(e.Frame(), "E_INVALID command line over " + std::to_string(max) + " bytes") << n;
  }
}

TEST(Protocol, BadTopicIsReportedBeforeTheBodyArrives) {
  // nsqd checks the name first, so a client gets the error without sending the body.
  EXPECT_EQ(ParseErr("PUB a:b\n").code, "E_BAD_TOPIC");
}

TEST(Protocol, FramesAreByteExact) {
  std::string out;
  AppendResponse(out, "OK");
  EXPECT_EQ(out, std::string("\0\0\0\x06\0\0\0\0OK", 10));
  out.clear();
  AppendError(out, {"E_INVALID", "invalid command X", true});
  EXPECT_EQ(out, Be32(4 + 27) + Be32(1) + "E_INVALID invalid command X");
  out.clear();
  AppendMessage(out, 0x0102030405060708, 0x0a0b, EncodeMessageId(42), "body");
  EXPECT_EQ(out, Be32(4 + 26 + 4) + Be32(2) + std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8) +
                     "\x0a\x0b" + "000000000000002a" + "body");
  auto parsed = ParseFrame(out, 1 << 20);
  auto& p = std::get<FrameParsed>(parsed);
  EXPECT_EQ(p.consumed, out.size());
  auto m = ParseMessage(p.frame.data);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->timestamp_ns, 0x0102030405060708);
  EXPECT_EQ(m->attempts, 0x0a0b);
  EXPECT_EQ(m->id, "000000000000002a");
  EXPECT_EQ(m->body, "body");
  EXPECT_TRUE(std::holds_alternative<FrameNeedMore>(ParseFrame(out.substr(0, 9), 1 << 20)));
  EXPECT_TRUE(std::holds_alternative<FrameError>(ParseFrame(out, 8)));
}

// Found by tests/fuzz/nsq_frame: a broker answering {"version":8888888} made the client's
// reading of the answer throw (nlohmann's value() on a mistyped field) and terminate the worker.
TEST(Protocol, NegotiationAnswersOfAnyShapeAreReadWithoutThrowing) {
  auto n = ParseNegotiated(R"({"max_rdy_count":500,"version":"1.3.0","msg_timeout":5000})");
  EXPECT_EQ(n.max_rdy_count, 500);
  EXPECT_EQ(n.msg_timeout_ms, 5000);
  EXPECT_EQ(n.version, "1.3.0");
  const Negotiated defaults;
  for (std::string_view json :
       {R"({"version":8888888})", R"({"max_rdy_count":"x","msg_timeout":[1]})",
        R"({"max_rdy_count":2.5,"msg_timeout":1e300})", R"({"max_rdy_count":0})",
        R"({"max_rdy_count":-3,"msg_timeout":-1})", R"({"msg_timeout":18446744073709551615})", "[]",
        "{", "null"}) {
    n = ParseNegotiated(json);
    EXPECT_EQ(n.max_rdy_count, defaults.max_rdy_count) << json;
    EXPECT_EQ(n.msg_timeout_ms, defaults.msg_timeout_ms) << json;
    EXPECT_EQ(n.version, defaults.version) << json;
  }
}

TEST(Protocol, MessageIdsMapStraightToOffsets) {
  for (uint64_t off : {uint64_t{0}, uint64_t{1}, uint64_t{0xdeadbeef}, UINT64_MAX}) {
    auto id = EncodeMessageId(off);
    EXPECT_EQ(DecodeMessageId(std::string_view(id.data(), id.size())), off);
  }
  EXPECT_EQ(DecodeMessageId("000000000000002A"), 42u);
  EXPECT_FALSE(DecodeMessageId("00000000000000zz"));
  EXPECT_FALSE(DecodeMessageId("2a"));
}

TEST(Protocol, NamesFollowNsqdsRules) {
  EXPECT_TRUE(IsValidTopicName("logs"));
  EXPECT_TRUE(IsValidTopicName("test-with_period."));
  EXPECT_TRUE(IsValidTopicName("a#ephemeral"));
  EXPECT_TRUE(IsValidTopicName(std::string(64, 'a')));
  EXPECT_FALSE(IsValidTopicName(std::string(65, 'a')));
  EXPECT_TRUE(IsValidTopicName(std::string(54, 'a') + "#ephemeral"));
  EXPECT_FALSE(IsValidTopicName(std::string(55, 'a') + "#ephemeral"));
  EXPECT_FALSE(IsValidTopicName("#ephemeral"));
  EXPECT_FALSE(IsValidTopicName("test:ephemeral"));
  EXPECT_FALSE(IsValidTopicName(""));
  EXPECT_FALSE(IsValidChannelName("a b"));
  EXPECT_FALSE(IsValidChannelName("a#ephemeral#ephemeral"));
}

TEST(Protocol, DecimalsParseAsNsqdReadsThem) {
  EXPECT_EQ(ParseDecimal("2500"), 2500);
  EXPECT_EQ(ParseDecimal(""), 0);
  EXPECT_FALSE(ParseDecimal("-1"));
  EXPECT_FALSE(ParseDecimal("+1"));
  EXPECT_FALSE(ParseDecimal("1x"));
}

// Random inputs, and valid commands with random bytes flipped: the parser must never crash,
// never read past the buffer (ASan checks this build), and never consume more than it was given.
TEST(Protocol, RandomInputNeverCrashesTheParser) {
  std::mt19937 rng(7);
  std::string valid;
  AppendCommandWithBody(valid, "IDENTIFY", R"({"a":1})");
  valid += Pub("logs", "hello");
  const std::vector<std::string> bodies = {"x", "yy"};
  AppendMpub(valid, "m", bodies);
  valid += "SUB a b\nRDY 5\nFIN 0000000000000001\nREQ 0000000000000001 5\n";
  for (int i = 0; i < 20000; ++i) {
    std::string input = valid;
    const int flips = 1 + static_cast<int>(rng() % 8);
    for (int f = 0; f < flips; ++f) input[rng() % input.size()] = static_cast<char>(rng());
    if (i % 2 == 0) input.resize(rng() % input.size());
    size_t pos = 0;
    for (int guard = 0; guard < 100 && pos < input.size(); ++guard) {
      auto outcome = ParseCommand(std::string_view(input).substr(pos), Small());
      if (auto* p = std::get_if<Parsed>(&outcome)) {
        ASSERT_GT(p->consumed, 0u);
        ASSERT_LE(p->consumed, input.size() - pos);
        pos += p->consumed;
        continue;
      }
      break;
    }
  }
}

}  // namespace
}  // namespace cairn::nsq

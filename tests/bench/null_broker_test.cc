// cairn-null-broker (bench/null_broker.cc), the ceiling bench/run_vs_nsqd measures beside cairnd
// and nsqd: it must answer every publish a client sends, pipelined or not, or the ceiling it gives
// is not the rate of the same load; and it must refuse what it does not do rather than hang. With
// --flush-to, the flush-only broker, an OK must come only after the publish is in its file.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/server/test_support.h"

namespace cairn::testing {
namespace {

// Runs cairn-bench's pipelined MPUBs and many PUB connections against `port`: every message
// published and none refused.
void ExpectCairnBenchPublishesEverything(int port) {
  for (const char* load : {"--publishers=4 --batch=100 --pipeline=8", "--publishers=16"}) {
    const auto [status, output] = RunCommand(fmt::format(
        "timeout 60 " CAIRN_BIN_DIR
        "/cairn-bench --nsqd-tcp-address=127.0.0.1:{} --messages=4000 --channels=0 {} 2>&1",
        port, load));
    ASSERT_EQ(status, 0) << load << ": " << output;
    // Its one line of JSON comes last.
    const auto result =
        nlohmann::json::parse(output.substr(output.rfind("\n{") + 1), nullptr, false);
    ASSERT_TRUE(result.is_object()) << output;
    EXPECT_EQ(result["published"], 4000) << load << ": " << output;
    EXPECT_TRUE(result["errors"].empty()) << load << ": " << output;
  }
}

class NullBroker : public ::testing::Test {
 protected:
  void SetUp() override {
    broker_ = std::make_unique<ListeningProcess>(
        std::vector<std::string>{CAIRN_BIN_DIR "/cairn-null-broker", "--tcp-address=127.0.0.1:0"},
        true, ListeningProcess::Listens::kTcp);
    ASSERT_NE(broker_->port(), 0) << broker_->log();
  }

  std::unique_ptr<ListeningProcess> broker_;
};

TEST_F(NullBroker, AnswersEveryPublishOkInOrderAndRefusesTheRest) {
  RawClient c(broker_->port());
  c.Identify(R"({"client_id":"t","feature_negotiation":true})");
  c.Publish("logs", "one");

  // A PUB, an MPUB of three, a NOP (no answer) and a DPUB, in one write: three OKs.
  std::string burst;
  nsq::AppendCommandWithBody(burst, "PUB logs", "two");
  const std::vector<std::string> bodies = {"a", "b", "c"};
  nsq::AppendMpub(burst, "logs", bodies);
  nsq::AppendCommand(burst, "NOP");
  nsq::AppendCommandWithBody(burst, "DPUB logs 10", "later");
  ASSERT_TRUE(c.Send(burst));
  for (int i = 0; i < 3; ++i) c.ExpectResponse("OK");

  // A command split across writes is answered once it is whole.
  std::string split;
  nsq::AppendCommandWithBody(split, "PUB logs", "in two parts");
  ASSERT_TRUE(c.Send(split.substr(0, 7)));
  ASSERT_TRUE(c.Send(split.substr(7)));
  c.ExpectResponse("OK");

  c.Cmd("SUB logs archive");
  c.ExpectError("E_INVALID cairn-null-broker takes publishes only");
  EXPECT_FALSE(c.Read(std::chrono::seconds(5))) << "the connection stays open after an error";
}

TEST_F(NullBroker, RefusesABadMagicAndAMalformedCommandAsNsqdDoes) {
  RawClient wrong(broker_->port(), /*send_magic=*/false);
  ASSERT_TRUE(wrong.Send("  V1"));
  wrong.ExpectError("E_BAD_PROTOCOL");
  EXPECT_FALSE(wrong.Read(std::chrono::seconds(5)));

  // The codec's own answer to a PUB whose body is over the limit, as cairnd gives it.
  RawClient big(broker_->port());
  ASSERT_TRUE(big.Send("PUB logs\n\xff\xff\xff\xff"));
  auto f = big.Read();
  ASSERT_TRUE(f);
  EXPECT_EQ(f->type, nsq::FrameType::kError);
  EXPECT_TRUE(f->data.starts_with("E_BAD_MESSAGE")) << f->data;

  // Every other connection carries on.
  RawClient after(broker_->port());
  after.Publish("logs", "still here");
}

// A second benchmark started on an address in use says so and exits, as cairnd does, rather than
// dying of an uncaught exception (SIGABRT, and a core file).
TEST_F(NullBroker, AnAddressInUseIsAnErrorMessageNotACrash) {
  const auto [status, output] = RunCommand(
      fmt::format("timeout 30 " CAIRN_BIN_DIR "/cairn-null-broker --tcp-address=127.0.0.1:{} 2>&1",
                  broker_->port()));
  EXPECT_EQ(status, 1) << output;
  EXPECT_NE(output.find(
                fmt::format("cairn-null-broker: cannot listen on 127.0.0.1:{}: ", broker_->port())),
            std::string::npos)
      << output;

  // The first one is untouched.
  RawClient c(broker_->port());
  c.Publish("logs", "still here");
}

TEST_F(NullBroker, CairnBenchPublishesEveryMessageToIt) {
  ExpectCairnBenchPublishesEverything(broker_->port());
}

// It stores nothing: what it is sent does not stay in its memory (a ceiling that kept every
// publish would pay for copying them).
TEST_F(NullBroker, KeepsNothingOfWhatItIsSent) {
  const auto [status, output] = RunCommand(
      fmt::format("timeout 60 " CAIRN_BIN_DIR
                  "/cairn-bench --nsqd-tcp-address=127.0.0.1:{} --messages=25600 --size=10240 "
                  "--batch=100 --publishers=4 --channels=0 2>&1",
                  broker_->port()));
  ASSERT_EQ(status, 0) << output;  // 256 MiB published; the connections are closed now
  const uint64_t peak = broker_->PeakRssBytes();
  ASSERT_GT(peak, 0u);
  EXPECT_LT(peak, 64u << 20) << "peak RSS over 256 MiB of publishes, bytes";
}

// --flush-to: each OK comes after its publish's bytes are in the file (written and fdatasync'ed;
// the sync itself shows only in a crash, which this cannot cause), and cairn-bench's loads all
// complete through the group commit.
TEST(FlushOnlyBroker, AnswersAPublishOnlyOnceItIsInTheFile) {
  TempDir dir;
  ListeningProcess broker(
      {CAIRN_BIN_DIR "/cairn-null-broker", "--tcp-address=127.0.0.1:0", "--flush-to=" + dir.path()},
      true, ListeningProcess::Listens::kTcp);
  ASSERT_NE(broker.port(), 0) << broker.log();
  const std::string file = dir.sub("cairn-null-broker.flush");
  EXPECT_EQ(std::filesystem::file_size(file), 64u << 20) << "laid down in full at start";

  auto contents = [&] {
    std::ifstream in(file, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  RawClient c(broker.port());
  c.Identify(R"({"client_id":"t"})");
  c.Publish("logs", "first-durable-body");
  EXPECT_NE(contents().find("first-durable-body"), std::string::npos);
  const std::vector<std::string> bodies = {"mpub-body-one", "mpub-body-two"};
  std::string mpub;
  nsq::AppendMpub(mpub, "logs", bodies);
  ASSERT_TRUE(c.Send(mpub));
  c.ExpectResponse("OK");
  const std::string after = contents();
  for (const auto& body : bodies) EXPECT_NE(after.find(body), std::string::npos) << body;

  ExpectCairnBenchPublishesEverything(broker.port());
}

TEST(FlushOnlyBroker, ADirectoryItCannotWriteIsAnErrorMessage) {
  TempDir dir;
  const auto [status, output] =
      RunCommand(fmt::format("timeout 30 " CAIRN_BIN_DIR "/cairn-null-broker "
                             "--tcp-address=127.0.0.1:0 --flush-to={} 2>&1",
                             dir.sub("missing")));
  EXPECT_EQ(status, 1) << output;
  EXPECT_NE(output.find("cairn-null-broker: --flush-to: " + dir.sub("missing") +
                        "/cairn-null-broker.flush: No such file or directory"),
            std::string::npos)
      << output;
}

}  // namespace
}  // namespace cairn::testing

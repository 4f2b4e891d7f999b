// The broker core without sockets: a Broker on a real store in a temporary directory, its
// topics' channels driven by fake subscribers, and time passed in (Channel::OnTimer takes the
// instant to act as of, so a timeout or a REQ delay needs no waiting). What the TCP session would
// do after a command (Pump once it has credit again) the tests do by hand.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>

#include "src/base/clock.h"
#include "src/core/broker.h"
#include "tests/eventually.h"
#include "tests/storage/test_util.h"

namespace cairn {
namespace {

using namespace std::chrono_literals;
using storage::testing::TempDir;
using testing::Eventually;

// A consumer as the channel sees it: RDY, msg_timeout and sample rate it is given, and every
// message it was sent.
class FakeSubscriber final : public Subscriber {
 public:
  struct Got {
    uint64_t offset;
    uint16_t attempts;
    std::string body;
  };

  int64_t rdy = 0;
  int64_t in_flight = 0;
  std::chrono::milliseconds timeout = 60s;
  int sample_rate = 0;
  std::vector<Got> got;
  bool kicked = false;

  int64_t Credit() const override { return std::max<int64_t>(0, rdy - in_flight); }
  std::chrono::milliseconds MsgTimeout() const override { return timeout; }
  int SampleRate() const override { return sample_rate; }
  void Send(const Delivery& d) override {
    ++in_flight;
    got.push_back({d.offset, d.attempts, std::string(d.body)});
  }
  void Settled() override { --in_flight; }
  void Flush() override {}
  void Kick() override { kicked = true; }
  ClientStats Stats() const override { return {}; }

  std::vector<std::string> Bodies() const {
    std::vector<std::string> out;
    for (const auto& g : got) out.push_back(g.body);
    return out;
  }
};

class Core : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = storage::Store::Open(storage::testing::TestOptions(dir_.path()));
    ASSERT_TRUE(opened) << opened.error().ToString();
    store_ = std::move(*opened);
    broker_ = std::make_unique<Broker>(io_, *store_, options_);
    broker_->Start();
  }
  void TearDown() override {
    broker_->Stop();
    // As cairnd: the store closes while the broker exists (completions are handed to it).
    (void)store_->Close();
    broker_.reset();
  }

  // Runs what is queued on the io thread (completions of appends, wake-ups of channels).
  void Poll() {
    io_.restart();
    io_.poll();
  }

  Topic& MakeTopic(const std::string& name) {
    auto t = broker_->GetOrCreateTopic(name);
    EXPECT_TRUE(t);
    return **t;
  }

  // Publishes `bodies` as one batch and returns once it is durable and the channels have been
  // woken. A non-zero `defer` makes every message a DPUB deferred that long.
  void Publish(Topic& topic, const std::vector<std::string>& bodies,
               std::chrono::milliseconds defer = 0ms) {
    const int64_t now = WallNowNs();
    std::vector<storage::MessageIn> in;
    for (const auto& b : bodies) {
      in.push_back({b, now, defer.count() == 0 ? 0 : now + defer.count() * 1'000'000});
    }
    bool done = false;
    topic.Publish(in, [&](storage::Result<storage::AppendResult> r) {
      EXPECT_TRUE(r) << r.error().ToString();
      done = true;
    });
    ASSERT_TRUE(Eventually([&] {
      Poll();
      return done;
    }));
    Poll();
  }

  static std::vector<std::string> Numbered(const std::string& prefix, int n) {
    std::vector<std::string> out;
    for (int i = 0; i < n; ++i) out.push_back(fmt::format("{}{}", prefix, i));
    return out;
  }

  static auto Now() { return std::chrono::steady_clock::now(); }

  BrokerOptions options_;
  TempDir dir_;
  boost::asio::io_context io_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<Broker> broker_;
};

TEST_F(Core, DeliversInPublishOrderAndNeverPastRdy) {
  Topic& t = MakeTopic("t");
  Channel* c = *t.GetOrCreateChannel("c");
  Publish(t, Numbered("m", 10));
  FakeSubscriber s;
  s.rdy = 3;
  c->AddSubscriber(&s);
  EXPECT_EQ(s.Bodies(), (std::vector<std::string>{"m0", "m1", "m2"}));
  for (const auto& g : s.got) EXPECT_EQ(g.attempts, 1);
  // Credit comes back with each FIN; the next messages follow in order.
  EXPECT_EQ(c->Finish(&s, 0), Channel::Settle::kOk);
  EXPECT_EQ(c->Finish(&s, 1), Channel::Settle::kOk);
  c->Pump();
  EXPECT_EQ(s.Bodies(), (std::vector<std::string>{"m0", "m1", "m2", "m3", "m4"}));
  EXPECT_EQ(s.in_flight, 3);
  // RDY 0 stops delivery without touching what is in flight.
  s.rdy = 0;
  EXPECT_EQ(c->Finish(&s, 2), Channel::Settle::kOk);
  c->Pump();
  EXPECT_EQ(s.got.size(), 5u);
  EXPECT_EQ(c->stats().finished, 3u);
  EXPECT_EQ(c->stats().in_flight, 2u);
}

TEST_F(Core, SubscribersShareAChannelAndEveryChannelGetsEverything) {
  Topic& t = MakeTopic("t");
  Channel* a = *t.GetOrCreateChannel("a");
  Channel* b = *t.GetOrCreateChannel("b");
  FakeSubscriber a1, a2, b1;
  a1.rdy = a2.rdy = b1.rdy = 100;
  a->AddSubscriber(&a1);
  a->AddSubscriber(&a2);
  b->AddSubscriber(&b1);
  // Published one at a time, a channel's idle subscribers take turns (a backlog goes out in
  // bursts to one subscriber at a time instead).
  for (int i = 0; i < 6; ++i) Publish(t, {fmt::format("m{}", i)});
  EXPECT_EQ(a1.got.size(), 3u);
  EXPECT_EQ(a2.got.size(), 3u);
  EXPECT_EQ(b1.Bodies(), Numbered("m", 6));
  // Each message in flight to one subscriber: a FIN from another is refused.
  ASSERT_FALSE(a1.got.empty());
  const uint64_t held_by_a1 = a1.got.front().offset;
  EXPECT_EQ(a->Finish(&a2, held_by_a1), Channel::Settle::kNotOwner);
  EXPECT_EQ(a->Finish(&a1, 999), Channel::Settle::kNotInFlight);
  EXPECT_EQ(a->Finish(&a1, held_by_a1), Channel::Settle::kOk);
  EXPECT_EQ(a->Finish(&a1, held_by_a1), Channel::Settle::kNotInFlight) << "finished twice";
}

TEST_F(Core, ATimedOutMessageIsDeliveredAgainWithOneMoreAttempt) {
  Topic& t = MakeTopic("t");
  Channel* c = *t.GetOrCreateChannel("c");
  Publish(t, {"only"});
  FakeSubscriber s;
  s.rdy = 1;
  s.timeout = 5s;
  c->AddSubscriber(&s);
  ASSERT_EQ(s.got.size(), 1u);
  // Not yet: a second before the deadline nothing moves.
  c->OnTimer(Now() + 4s);
  EXPECT_EQ(s.got.size(), 1u);
  c->OnTimer(Now() + 6s);
  ASSERT_EQ(s.got.size(), 2u);
  EXPECT_EQ(s.got[1].offset, 0u);
  EXPECT_EQ(s.got[1].attempts, 2);
  EXPECT_EQ(c->stats().timed_out, 1u);
  // The timed-out delivery is settled: a late FIN for it finds the new one (same offset) in
  // flight and finishes it, as nsqd's message IDs would.
  EXPECT_EQ(c->Finish(&s, 0), Channel::Settle::kOk);
  c->OnTimer(Now() + 60s);
  EXPECT_EQ(s.got.size(), 2u);
}

TEST_F(Core, TouchMovesTheDeadlineButNotPastMaxMsgTimeout) {
  options_.max_msg_timeout = 8s;
  TearDown();
  SetUp();
  Topic& t = MakeTopic("t");
  Channel* c = *t.GetOrCreateChannel("c");
  Publish(t, {"slow"});
  FakeSubscriber s;
  s.rdy = 1;
  s.timeout = 5s;
  c->AddSubscriber(&s);
  const auto delivered = Now();
  ASSERT_EQ(c->Touch(&s, 0), Channel::Settle::kOk);  // deadline: now + 5 s again
  // TOUCH at (about) delivery moved nothing much; but touching again later cannot take the
  // deadline past delivery + 8 s.
  c->OnTimer(delivered + 4900ms);
  EXPECT_EQ(s.got.size(), 1u);
  EXPECT_EQ(c->stats().timed_out, 0u);
  c->OnTimer(delivered + 8100ms);
  EXPECT_EQ(s.got.size(), 2u) << "a touched message must still time out at max_msg_timeout";
}

TEST_F(Core, RequeueWithADelayWaitsAndWithoutOneComesBackAtOnce) {
  Topic& t = MakeTopic("t");
  Channel* c = *t.GetOrCreateChannel("c");
  Publish(t, {"a", "b"});
  FakeSubscriber s;
  s.rdy = 2;
  c->AddSubscriber(&s);
  ASSERT_EQ(s.got.size(), 2u);
  EXPECT_EQ(c->Requeue(&s, 0, 30s), Channel::Settle::kOk);
  EXPECT_EQ(c->Requeue(&s, 1, 0ms), Channel::Settle::kOk);
  c->Pump();
  ASSERT_EQ(s.got.size(), 3u);
  EXPECT_EQ(s.got[2].body, "b");
  EXPECT_EQ(s.got[2].attempts, 2);
  EXPECT_EQ(c->stats().deferred, 1u);
  c->OnTimer(Now() + 29s);
  EXPECT_EQ(s.got.size(), 3u);
  c->OnTimer(Now() + 31s);
  ASSERT_EQ(s.got.size(), 4u);
  EXPECT_EQ(s.got[3].body, "a");
  EXPECT_EQ(s.got[3].attempts, 2);
  EXPECT_EQ(c->stats().requeued, 2u);
}

TEST_F(Core, ADeferredPublishWaitsForItsTimeWhileLaterMessagesGoAhead) {
  Topic& t = MakeTopic("t");
  Channel* c = *t.GetOrCreateChannel("c");
  Publish(t, {"later"}, 20s);
  Publish(t, {"now"});
  FakeSubscriber s;
  s.rdy = 10;
  c->AddSubscriber(&s);
  EXPECT_EQ(s.Bodies(), (std::vector<std::string>{"now"}));
  EXPECT_EQ(c->stats().deferred, 1u);
  c->OnTimer(Now() + 21s);
  EXPECT_EQ(s.Bodies(), (std::vector<std::string>{"now", "later"}));
}

TEST_F(Core, SamplingDeliversAboutTheRateAndFinishesTheRest) {
  Topic& t = MakeTopic("t");
  Channel* c = *t.GetOrCreateChannel("c");
  Publish(t, Numbered("m", 1000));
  FakeSubscriber s;
  s.rdy = 2000;
  s.sample_rate = 25;
  c->AddSubscriber(&s);
  // A fixed seed: the count is the same on every run, and near a quarter.
  EXPECT_GT(s.got.size(), 150u);
  EXPECT_LT(s.got.size(), 350u);
  // What was not sent counts as done: finishing what was sent empties the channel.
  for (const auto& g : s.got) ASSERT_EQ(c->Finish(&s, g.offset), Channel::Settle::kOk);
  EXPECT_EQ(c->cursor()->floor(), 1000u);
}

TEST_F(Core, SeekWhileInFlightNeverHasAnOffsetInFlightTwice) {
  Topic& t = MakeTopic("t");
  Channel* c = *t.GetOrCreateChannel("c");
  Publish(t, Numbered("m", 6));
  FakeSubscriber s;
  s.rdy = 3;
  c->AddSubscriber(&s);
  ASSERT_EQ(s.got.size(), 3u);  // 0, 1, 2 in flight
  // Back to the start while 0..2 are in flight: they stay with their subscriber until settled.
  c->Seek(0);
  c->Pump();
  EXPECT_EQ(s.got.size(), 3u) << "no credit, and nothing in flight may be sent twice";
  // A FIN for a delivery from before the seek does not finish the offset the seek asked for:
  // it comes again, as the seek said.
  EXPECT_EQ(c->Finish(&s, 0), Channel::Settle::kOk);
  c->Pump();
  ASSERT_EQ(s.got.size(), 4u);
  EXPECT_EQ(s.got[3].offset, 0u);
  EXPECT_FALSE(c->cursor()->IsFinished(0));
  // Forward past everything: the rest counts as finished, and the old deliveries' FINs change
  // nothing.
  c->Seek(6);
  EXPECT_EQ(c->Finish(&s, 1), Channel::Settle::kOk);
  EXPECT_EQ(c->Finish(&s, 2), Channel::Settle::kOk);
  EXPECT_EQ(c->Finish(&s, 0), Channel::Settle::kOk);
  c->Pump();
  EXPECT_EQ(s.got.size(), 4u);
  EXPECT_EQ(c->cursor()->floor(), 6u);
}

TEST_F(Core, ARemovedSubscribersMessagesGoToTheOthers) {
  Topic& t = MakeTopic("t");
  Channel* c = *t.GetOrCreateChannel("c");
  Publish(t, Numbered("m", 4));
  FakeSubscriber first, second;
  first.rdy = 4;
  c->AddSubscriber(&first);
  ASSERT_EQ(first.got.size(), 4u);
  second.rdy = 4;
  c->AddSubscriber(&second);
  EXPECT_TRUE(second.got.empty());
  c->RemoveSubscriber(&first);
  EXPECT_EQ(second.Bodies(), Numbered("m", 4));
  for (const auto& g : second.got) EXPECT_EQ(g.attempts, 2);
}

TEST_F(Core, EphemeralChannelsLeaveNothingInTheStore) {
  Topic& t = MakeTopic("t");
  Channel* durable = *t.GetOrCreateChannel("kept");
  Channel* ephemeral = *t.GetOrCreateChannel("tail#ephemeral");
  EXPECT_FALSE(durable->ephemeral());
  EXPECT_TRUE(ephemeral->ephemeral());
  Publish(t, {"x"});
  FakeSubscriber s;
  s.rdy = 1;
  ephemeral->AddSubscriber(&s);
  EXPECT_EQ(s.Bodies(), (std::vector<std::string>{"x"}));
  const auto stored = store_->FindTopic("t")->Channels();
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0]->name(), "kept");
}

TEST_F(Core, AnEphemeralTopicKeepsItsNewestMessagesInMemoryOnly) {
  options_.ephemeral_queue_size = 3;
  TearDown();
  SetUp();
  Topic& t = MakeTopic("e#ephemeral");
  EXPECT_FALSE(t.log().durable());
  Channel* c = *t.GetOrCreateChannel("c");
  for (int i = 0; i < 5; ++i) Publish(t, {fmt::format("m{}", i)});
  EXPECT_EQ(store_->FindTopic("e#ephemeral"), nullptr);
  FakeSubscriber s;
  s.rdy = 10;
  c->AddSubscriber(&s);
  EXPECT_EQ(s.Bodies(), (std::vector<std::string>{"m2", "m3", "m4"}));
}

// What nsqlookupd is told: every topic and channel as it comes and goes, ephemeral ones included
// (an ephemeral channel goes with its last subscriber, an ephemeral topic with its last channel),
// and a snapshot of everything for a fresh connection.
TEST_F(Core, TopicsAndChannelsAreAnnouncedAsTheyComeAndGo) {
  std::vector<std::string> said;
  broker_->SetRegistryListener([&](const RegistryChange& c) {
    said.push_back(
        fmt::format("{} {} {}", c.registered ? "REGISTER" : "UNREGISTER", c.topic, c.channel));
  });
  Topic& t = MakeTopic("t");
  MakeTopic("t");  // exists: nothing new
  ASSERT_TRUE(t.GetOrCreateChannel("kept"));
  Channel* tail = *t.GetOrCreateChannel("tail#ephemeral");
  Topic& e = MakeTopic("e#ephemeral");
  Channel* only = *e.GetOrCreateChannel("c#ephemeral");
  MakeTopic("quiet");
  auto snapshot = [&] {
    std::vector<std::string> out;
    for (const RegistryChange& r : broker_->Registrations())
      out.push_back(r.topic + "/" + r.channel);
    return out;
  };
  EXPECT_EQ(snapshot(), (std::vector<std::string>{"e#ephemeral/c#ephemeral", "quiet/", "t/kept",
                                                  "t/tail#ephemeral"}));

  FakeSubscriber s;
  tail->AddSubscriber(&s);
  tail->RemoveSubscriber(&s);
  only->AddSubscriber(&s);
  only->RemoveSubscriber(&s);
  Poll();
  ASSERT_TRUE(t.DeleteChannel("kept"));
  ASSERT_TRUE(broker_->DeleteTopic("t"));
  EXPECT_EQ(said,
            (std::vector<std::string>{
                "REGISTER t ", "REGISTER t kept", "REGISTER t tail#ephemeral",
                "REGISTER e#ephemeral ", "REGISTER e#ephemeral c#ephemeral", "REGISTER quiet ",
                "UNREGISTER t tail#ephemeral", "UNREGISTER e#ephemeral c#ephemeral",
                "UNREGISTER e#ephemeral ", "UNREGISTER t kept", "UNREGISTER t "}));
  EXPECT_EQ(snapshot(), (std::vector<std::string>{"quiet/"}));
}

}  // namespace
}  // namespace cairn

// Cairn's own NSQ client (net/client.h) against cairnd's parts over loopback: publishing,
// consuming with RDY, FIN and REQ, heartbeats, errors, and reconnecting after a broker restart.
#include "net/client.h"

#include <future>
#include <mutex>
#include <set>

#include <gtest/gtest.h>
#include <boost/asio/executor_work_guard.hpp>

#include "tests/server/test_support.h"

namespace cairn::testing {
namespace {

namespace asio = boost::asio;

// The client's io thread. Client objects are created, used and destroyed on it.
class ClientLoop {
 public:
  ClientLoop() : work_(asio::make_work_guard(io_)), thread_([this] { io_.run(); }) {}
  ~ClientLoop() {
    work_.reset();
    io_.stop();
    thread_.join();
  }
  template <class F>
  auto Run(F fn) -> decltype(fn()) {
    std::packaged_task<decltype(fn())()> task(std::move(fn));
    auto result = task.get_future();
    asio::post(io_, [&task] { task(); });
    return result.get();
  }
  asio::any_io_executor executor() { return io_.get_executor(); }

 private:
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;
};

asio::ip::tcp::endpoint Loopback(uint16_t port) {
  return {asio::ip::make_address("127.0.0.1"), port};
}

// What a consumer's handler saw, readable from the test thread.
struct Received {
  std::mutex mu;
  std::vector<std::string> bodies;
  std::vector<uint16_t> attempts;

  size_t size() {
    std::lock_guard lock(mu);
    return bodies.size();
  }
  bool WaitFor(size_t n, std::chrono::milliseconds timeout = 5s) {
    return Eventually([&] { return size() >= n; }, timeout);
  }
};

// "" once published, otherwise the error with its code ("rejected: E_BAD_TOPIC ...").
std::string PublishSync(ClientLoop& loop, nsq::Producer& p, std::string topic, std::string body) {
  std::promise<std::string> done;
  loop.Run([&] {
    p.Publish(std::move(topic), std::move(body),
              [&](Status st) { done.set_value(st ? "" : st.error().ToString()); });
    return 0;
  });
  return done.get_future().get();
}

TEST(Client, PublishesAndConsumesEveryKindOfPublish) {
  BrokerHarness broker;
  ClientLoop loop;
  const auto lines = SampleLines("logs", 50);
  ASSERT_EQ(lines.size(), 50u);
  auto producer = loop.Run(
      [&] { return std::make_unique<nsq::Producer>(loop.executor(), Loopback(broker.port())); });
  Received got;
  auto consumer = loop.Run([&] {
    auto c = std::make_unique<nsq::Consumer>(loop.executor(), std::vector{Loopback(broker.port())},
                                             "logs", "archive", 10);
    c->Start([&](const nsq::Delivered& d, const nsq::MessageRef& ref) {
      std::lock_guard lock(got.mu);
      got.bodies.emplace_back(d.body);
      ref.Finish();
    });
    return c;
  });
  // PUB one at a time, MPUB the rest, and one DPUB; all pipelined on one connection.
  std::promise<int> all;
  loop.Run([&] {
    auto left = std::make_shared<int>(12);
    auto done = [&all, left](Status st) {
      EXPECT_TRUE(st) << st.error().ToString();
      if (--*left == 0) all.set_value(0);
    };
    for (int i = 0; i < 10; ++i) producer->Publish("logs", lines[static_cast<size_t>(i)], done);
    producer->MultiPublish("logs", std::vector<std::string>(lines.begin() + 10, lines.end() - 1),
                           done);
    producer->DeferredPublish("logs", 300ms, lines.back(), done);
    return 0;
  });
  all.get_future().get();
  ASSERT_TRUE(got.WaitFor(50));
  std::lock_guard lock(got.mu);
  EXPECT_EQ(std::vector<std::string>(got.bodies.begin(), got.bodies.end()),
            std::vector<std::string>(lines.begin(), lines.end()))
      << "the deferred message comes last, the others in publish order";
  loop.Run([&] {
    consumer.reset();
    producer.reset();
    return 0;
  });
}

TEST(Client, RequeueComesBackWithMoreAttempts) {
  BrokerHarness broker;
  ClientLoop loop;
  auto producer = loop.Run(
      [&] { return std::make_unique<nsq::Producer>(loop.executor(), Loopback(broker.port())); });
  Received got;
  auto consumer = loop.Run([&] {
    auto c = std::make_unique<nsq::Consumer>(loop.executor(), std::vector{Loopback(broker.port())},
                                             "t", "c", 1);
    c->Start([&](const nsq::Delivered& d, const nsq::MessageRef& ref) {
      std::lock_guard lock(got.mu);
      got.bodies.emplace_back(d.body);
      got.attempts.push_back(d.attempts);
      if (d.attempts < 3) {
        ref.Requeue(0ms);
      } else {
        ref.Finish();
      }
    });
    return c;
  });
  EXPECT_EQ(PublishSync(loop, *producer, "t", "again"), "");
  ASSERT_TRUE(got.WaitFor(3));
  EXPECT_FALSE(got.WaitFor(4, 300ms));
  std::lock_guard lock(got.mu);
  EXPECT_EQ(got.attempts, (std::vector<uint16_t>{1, 2, 3}));
  loop.Run([&] {
    consumer.reset();
    producer.reset();
    return 0;
  });
}

TEST(Client, BrokerErrorsReachTheCallerAndTheProducerRecovers) {
  BrokerHarness broker;
  ClientLoop loop;
  auto producer = loop.Run(
      [&] { return std::make_unique<nsq::Producer>(loop.executor(), Loopback(broker.port())); });
  EXPECT_EQ(PublishSync(loop, *producer, "bad!topic", "x"),
            "rejected: E_BAD_TOPIC PUB topic name \"bad!topic\" is not valid");
  // The broker closed that connection; the next publish dials again.
  EXPECT_EQ(PublishSync(loop, *producer, "t", "x"), "");
  loop.Run([&] {
    producer.reset();
    return 0;
  });
}

TEST(Client, HeartbeatsKeepAnIdleConsumerConnected) {
  BrokerHarness broker;
  ClientLoop loop;
  nsq::ClientOptions options;
  options.heartbeat_interval = 1000ms;
  auto consumer = loop.Run([&] {
    auto c = std::make_unique<nsq::Consumer>(loop.executor(), std::vector{Loopback(broker.port())},
                                             "t", "c", 5, options);
    c->Start([](const nsq::Delivered&, const nsq::MessageRef& ref) { ref.Finish(); });
    return c;
  });
  std::this_thread::sleep_for(3500ms);
  EXPECT_EQ(loop.Run([&] { return consumer->connected(); }), 1u);
  EXPECT_EQ(loop.Run([&] { return consumer->reconnects(); }), 0u)
      << "the broker dropped a client that answers heartbeats";
  loop.Run([&] {
    consumer.reset();
    return 0;
  });
}

TEST(Client, ConsumerReconnectsAfterARestartAndGetsWhatWasUnfinished) {
  BrokerHarness broker;
  ClientLoop loop;
  nsq::ClientOptions options;
  options.backoff_min = 50ms;
  options.backoff_max = 200ms;
  auto producer = loop.Run(
      [&] { return std::make_unique<nsq::Producer>(loop.executor(), Loopback(broker.port())); });
  Received got;
  std::atomic<bool> finish{false};
  auto consumer = loop.Run([&] {
    auto c = std::make_unique<nsq::Consumer>(loop.executor(), std::vector{Loopback(broker.port())},
                                             "t", "c", 10, options);
    c->Start([&](const nsq::Delivered& d, const nsq::MessageRef& ref) {
      std::lock_guard lock(got.mu);
      got.bodies.emplace_back(d.body);
      if (finish.load()) ref.Finish();  // before the restart: leave it unfinished
    });
    return c;
  });
  EXPECT_EQ(PublishSync(loop, *producer, "t", "before"), "");
  ASSERT_TRUE(got.WaitFor(1));
  finish = true;
  broker.Restart();
  // The consumer dials again on its own and gets the unfinished message again.
  ASSERT_TRUE(got.WaitFor(2, 5s)) << "no redelivery after the restart";
  EXPECT_GE(loop.Run([&] { return consumer->reconnects(); }), 1u);
  EXPECT_EQ(PublishSync(loop, *producer, "t", "after"), "");
  ASSERT_TRUE(got.WaitFor(3));
  std::lock_guard lock(got.mu);
  EXPECT_EQ(got.bodies, (std::vector<std::string>{"before", "before", "after"}));
  loop.Run([&] {
    consumer.reset();
    producer.reset();
    return 0;
  });
}

TEST(Client, ConsumerSaysWhichBrokerEachMessageCameFromAlsoAfterAReconnect) {
  // Two brokers, each with one message: both are offset 0, so both have the same id.
  BrokerHarness first, second;
  ClientLoop loop;
  nsq::ClientOptions options;
  options.backoff_min = 50ms;
  options.backoff_max = 200ms;
  auto producers = loop.Run([&] {
    std::vector<std::unique_ptr<nsq::Producer>> p;
    p.push_back(std::make_unique<nsq::Producer>(loop.executor(), Loopback(first.port())));
    p.push_back(std::make_unique<nsq::Producer>(loop.executor(), Loopback(second.port())));
    return p;
  });
  EXPECT_EQ(PublishSync(loop, *producers[0], "t", "from the first"), "");
  EXPECT_EQ(PublishSync(loop, *producers[1], "t", "from the second"), "");
  struct Seen {
    std::string body;
    nsq::MessageId id;
    size_t broker, ref_broker;
  };
  std::mutex mu;
  std::vector<Seen> seen;
  std::atomic<bool> finish{false};
  auto consumer = loop.Run([&] {
    auto c = std::make_unique<nsq::Consumer>(
        loop.executor(), std::vector{Loopback(first.port()), Loopback(second.port())}, "t", "c", 10,
        options);
    c->Start([&](const nsq::Delivered& d, const nsq::MessageRef& ref) {
      std::lock_guard lock(mu);
      seen.push_back({std::string(d.body), d.id, d.broker, ref.broker()});
      if (finish.load()) ref.Finish();  // before the restart: leave them unfinished
    });
    return c;
  });
  auto count = [&] {
    std::lock_guard lock(mu);
    return seen.size();
  };
  auto wait_for = [&](size_t n) { return Eventually([&] { return count() >= n; }, 5s); };
  ASSERT_TRUE(wait_for(2));
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(seen[0].id, seen[1].id) << "both brokers number from 0";
    for (const auto& s : seen) {
      const size_t want = s.body == "from the first" ? 0 : 1;
      EXPECT_EQ(s.broker, want) << s.body;
      EXPECT_EQ(s.ref_broker, want) << s.body;
    }
  }
  finish = true;
  // The second broker goes away and comes back: its message arrives again on a new connection,
  // still as the second broker's.
  second.Restart();
  ASSERT_TRUE(wait_for(3)) << "no redelivery after the restart";
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(seen[2].body, "from the second");
    EXPECT_EQ(seen[2].id, seen[1].id);
    EXPECT_EQ(seen[2].broker, 1u);
    EXPECT_EQ(seen[2].ref_broker, 1u);
  }
  loop.Run([&] {
    consumer.reset();
    producers.clear();
    return 0;
  });
}

}  // namespace
}  // namespace cairn::testing

// A small NSQ client over the codec in protocol.h: a publisher and a consumer, for cairn-bench,
// the workers in consumers/ and the tests. It speaks to any nsqd, not only to cairnd.
//
// Threading: everything runs on the executor given to the constructor (one strand: an
// io_context run by one thread). Callbacks are called there. Calls from other threads must be
// posted to it.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>

#include "net/input_buffer.h"
#include "net/protocol.h"
#include "net/stream_codec.h"
#include "src/base/error.h"

namespace cairn::net {
class HttpClient;
}

namespace cairn::nsq {

struct ClientOptions {
  std::string client_id = "cairn";
  std::string hostname = "localhost";
  std::string user_agent = "cairn-client/0.1";
  // Asked of the broker; it sends a heartbeat this often and drops us after two missed
  // replies. We drop the connection if nothing arrives for two intervals.
  std::chrono::milliseconds heartbeat_interval{30'000};
  // 0: the broker's default.
  std::chrono::milliseconds msg_timeout{0};
  std::chrono::milliseconds dial_timeout{5'000};
  // Reconnect backoff: doubles from min to max after each failed attempt.
  std::chrono::milliseconds backoff_min{100};
  std::chrono::milliseconds backoff_max{10'000};
  size_t max_frame = 64u << 20;
  // A Consumer with more connections than max_in_flight gives RDY 1 to some of them in turn, as
  // go-nsq does (the names are its). Every rdy_redistribute_interval, a connection gives its RDY
  // back if no message came or was settled on it for low_rdy_idle_timeout, or if it has held the
  // RDY for low_rdy_timeout; what is freed goes to those that have waited longest.
  std::chrono::milliseconds rdy_redistribute_interval{5'000};
  std::chrono::milliseconds low_rdy_idle_timeout{10'000};
  std::chrono::milliseconds low_rdy_timeout{30'000};
  // TLS, compression and AUTH, as go-nsq's tls_v1, snappy, deflate, deflate_level and
  // auth_secret: asked for in IDENTIFY and used when the broker agrees. A broker that requires
  // TLS refuses a client without it.
  std::shared_ptr<boost::asio::ssl::context> tls;  // null: plain TCP (net/tls.h MakeClientTls)
  bool snappy = false, deflate = false;
  int deflate_level = 6;
  std::string auth_secret;  // sent with AUTH when the broker says auth_required
};

// Result of a command: success; kRejected with the broker's error frame ("E_BAD_TOPIC ...") as
// the message; kUnavailable when the connection failed or closed before the answer; kClosed when
// the producer was stopped.
using CommandCallback = std::function<void(Status)>;

class Connection;

// One message as delivered. `body` is valid only during the handler call; keep a MessageRef to
// settle the message later.
struct Delivered {
  MessageId id;
  // The broker it came from: its index in the list given to the Consumer (0 on a Connection of
  // one's own). An id is unique only on its broker (cairnd's are topic offsets, and every broker
  // counts from 0), so (broker, id) is what names a message. The index is the broker's, not the
  // connection's: a redelivery after a reconnect comes with the same one.
  size_t broker = 0;
  uint16_t attempts = 0;
  int64_t timestamp_ns = 0;
  std::string_view body;
};

// A handle to settle a delivered message after the handler returned. Settling after the
// connection dropped does nothing (the broker redelivers the message).
class MessageRef {
 public:
  MessageRef() = default;
  MessageRef(std::weak_ptr<Connection> conn, const MessageId& id, size_t broker = 0)
      : conn_(std::move(conn)), id_(id), broker_(broker) {}
  void Finish() const;
  void Requeue(std::chrono::milliseconds delay) const;
  void Touch() const;
  const MessageId& id() const { return id_; }
  size_t broker() const { return broker_; }  // as Delivered::broker

 private:
  std::weak_ptr<Connection> conn_;
  MessageId id_{};
  size_t broker_ = 0;
};

// One TCP connection: magic, IDENTIFY, heartbeats, ordered command responses.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  using MessageHandler = std::function<void(Connection&, const Delivered&)>;
  using CloseHandler = std::function<void(const std::string& reason)>;
  using SettleHandler = std::function<void()>;

  // `server_name`: what the broker's certificate must name under TLS ("" for the endpoint's
  // address).
  Connection(boost::asio::any_io_executor ex, boost::asio::ip::tcp::endpoint endpoint,
             const ClientOptions& options, std::string server_name = "");
  // The addresses a name resolved to, tried in order until one accepts (as Go's net.Dial).
  Connection(boost::asio::any_io_executor ex, std::vector<boost::asio::ip::tcp::endpoint> endpoints,
             const ClientOptions& options, std::string server_name);
  ~Connection();

  // Connects, identifies, switches to TLS and compression as negotiated, and sends AUTH when
  // required; `done` succeeds once ready for commands.
  void Open(CommandCallback done);
  void SetMessageHandler(MessageHandler handler) { on_message_ = std::move(handler); }
  void SetCloseHandler(CloseHandler handler) { on_close_ = std::move(handler); }
  // Called after each FIN or REQ, once in_flight() has dropped.
  void SetSettleHandler(SettleHandler handler) { on_settle_ = std::move(handler); }

  // Commands with a response: `done` runs when it arrives, in order.
  void Subscribe(std::string_view topic, std::string_view channel, CommandCallback done);
  void Publish(std::string_view topic, std::string_view body, CommandCallback done);
  void MultiPublish(std::string_view topic, std::span<const std::string> bodies,
                    CommandCallback done);
  void DeferredPublish(std::string_view topic, std::chrono::milliseconds delay,
                       std::string_view body, CommandCallback done);
  void StartClose(CommandCallback done);  // CLS; the broker answers CLOSE_WAIT
  // Commands without a response. Buffered and written together at the end of the current
  // handler run.
  void Ready(int64_t count);
  void Finish(const MessageId& id);
  void Requeue(const MessageId& id, std::chrono::milliseconds delay);
  void Touch(const MessageId& id);

  void Close(const std::string& reason = "closed");
  bool open() const { return ready_ && !closed_; }
  const Negotiated& negotiated() const { return negotiated_; }
  // Messages delivered on this connection and not yet finished or requeued through it.
  int64_t in_flight() const { return in_flight_; }
  std::weak_ptr<Connection> weak() { return weak_from_this(); }

 private:
  void Send(std::string_view bytes, CommandCallback done);
  void Flush();
  void OnWritten(boost::system::error_code ec);
  void ReadLoop();
  void Drain();
  bool ParseFrames();
  void OnFrame(const Frame& frame);
  void ArmIdleTimer();
  void Settled();
  void Negotiate(CommandCallback done);
  void StartTls(CommandCallback done);
  void AwaitOk(CommandCallback done);

  boost::asio::ip::tcp::socket socket_;
  std::vector<boost::asio::ip::tcp::endpoint> endpoints_;
  ClientOptions options_;
  std::string server_name_;
  // The stream's layers, set up after IDENTIFY; switch_ runs once the frame before the switch
  // has been handled (what follows it is in the new form).
  std::unique_ptr<boost::asio::ssl::stream<boost::asio::ip::tcp::socket&>> tls_;
  std::unique_ptr<StreamEncoder> encoder_;
  std::unique_ptr<StreamDecoder> decoder_;
  std::function<void()> switch_;
  bool handshaking_ = false, identified_ = false, auth_sent_ = false;
  Negotiated negotiated_;
  MessageHandler on_message_;
  CloseHandler on_close_;
  SettleHandler on_settle_;
  int64_t in_flight_ = 0;
  std::deque<CommandCallback> pending_;
  net::InputBuffer in_;
  std::string out_, writing_buf_;
  bool writing_ = false, ready_ = false, closed_ = false;
  bool flush_posted_ = false;
  boost::asio::steady_timer idle_timer_;
  std::chrono::steady_clock::time_point last_frame_;
};

// Publishes to one broker over one connection, reconnecting (with backoff) when it drops.
// Publishes are pipelined: several may be outstanding; each completes in order.
class Producer {
 public:
  Producer(boost::asio::any_io_executor ex, boost::asio::ip::tcp::endpoint endpoint,
           ClientOptions options = {});
  // "host:port", resolved on every connect (a broker's DNS name may move to another address);
  // under TLS the broker's certificate must name `host`.
  Producer(boost::asio::any_io_executor ex, std::string address, ClientOptions options = {});
  ~Producer();
  void Publish(std::string topic, std::string body, CommandCallback done);
  void MultiPublish(std::string topic, std::vector<std::string> bodies, CommandCallback done);
  void DeferredPublish(std::string topic, std::chrono::milliseconds delay, std::string body,
                       CommandCallback done);
  void Stop();

 private:
  // Runs `op` on an open connection, connecting first if needed.
  void WithConnection(std::function<void(Connection&)> op, CommandCallback on_fail);
  void Connect();
  // `server_name`: the host the address named ("" for the endpoint dialled).
  void Open(std::vector<boost::asio::ip::tcp::endpoint> endpoints, std::string server_name);
  // Fails the publishes waiting for a connection and dials again after the backoff.
  void ConnectFailed(const Status& why);

  boost::asio::any_io_executor ex_;
  boost::asio::ip::tcp::endpoint endpoint_;
  std::string address_;  // "host:port" to resolve on every connect; "" to dial endpoint_
  std::unique_ptr<boost::asio::ip::tcp::resolver> resolver_;
  ClientOptions options_;
  std::shared_ptr<Connection> conn_;
  bool connecting_ = false, stopped_ = false;
  std::chrono::milliseconds backoff_{0};
  std::deque<std::pair<std::function<void(Connection&)>, CommandCallback>> waiting_;
  boost::asio::steady_timer retry_;
  // Expires with the producer: its timer's and resolver's handlers check it (Guarded).
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// Where a Consumer finds its brokers: asking nsqlookupd, as go-nsq does.
struct LookupdDiscovery {
  std::vector<std::string> http_addresses;  // each nsqlookupd's HTTP API, "host:port"
  // How often they are asked (go-nsq's lookupd_poll_interval); each wait is jittered by up to
  // 15% either way, so that a fleet of consumers does not ask in step.
  std::chrono::milliseconds poll_interval{60'000};
};

// Consumes one topic/channel from one or more brokers, keeping a connection to each (reconnect
// with backoff) and spreading max_in_flight over them as RDY: each connection's share is
// max_in_flight divided among those connected, or RDY 1 in turn when they outnumber it (see
// ClientOptions). The messages held stay within max_in_flight while shares change: a connection
// that keeps messages sent under a larger RDY holds them against the total, and the others are
// raised only as they are settled. One transient, as in go-nsq: messages the broker had already
// sent when a lower RDY reached it still arrive (a share shrinks when a broker joins, or an
// active connection's RDY 1 rotates away after low_rdy_timeout).
//
// With LookupdDiscovery the brokers are the producers nsqlookupd lists for the topic: all of
// them, asked at every poll (their union, so one nsqlookupd that restarted and lost some
// registrations hides none). A new broker is connected at once; one no longer listed is dropped:
// at once if it is not connected, else when its connection closes (it is then not dialled
// again). A poll that no nsqlookupd answers changes nothing.
class Consumer {
 public:
  // The handler settles each message: ref.Finish(), ref.Requeue(delay), or later through the
  // MessageRef it keeps. Delivered::broker and MessageRef::broker() name the broker the message
  // came from: its index in `brokers`, or with discovery the order in which it was first listed
  // (an index is never reused for another address).
  using Handler = std::function<void(const Delivered&, const MessageRef&)>;

  Consumer(boost::asio::any_io_executor ex, std::vector<boost::asio::ip::tcp::endpoint> brokers,
           std::string topic, std::string channel, int64_t max_in_flight,
           ClientOptions options = {});
  // Brokers as "host:port", each resolved on every dial (a DNS name may move to another
  // address); under TLS a broker's certificate must name its host.
  Consumer(boost::asio::any_io_executor ex, std::vector<std::string> brokers, std::string topic,
           std::string channel, int64_t max_in_flight, ClientOptions options = {});
  Consumer(boost::asio::any_io_executor ex, LookupdDiscovery discovery, std::string topic,
           std::string channel, int64_t max_in_flight, ClientOptions options = {});
  ~Consumer();
  void Start(Handler handler);
  // Stops taking messages: RDY 0 and CLS on every connection. Messages already delivered can
  // still be settled; call Close() once they are.
  void StopReceiving();
  void Close();
  // Connections subscribed and ready for messages.
  size_t connected() const;
  uint64_t reconnects() const { return reconnects_; }
  // Brokers consumed from: connected, or to be dialled again.
  size_t brokers() const;
  // With discovery: whether nsqlookupd answered the last poll (a topic no broker has yet is an
  // answer); true without discovery.
  bool lookupd_answering() const { return lookupd_answering_; }
  // The address of broker `i` ("host:port"), as Delivered::broker names it.
  std::string broker_address(size_t i) const;

 private:
  struct Link {
    std::string address;  // "host:port"; resolved on every dial unless `endpoint` is given
    std::optional<boost::asio::ip::tcp::endpoint> endpoint;
    std::shared_ptr<Connection> conn;
    int64_t rdy = 0;  // last sent on conn
    // When RDY last changed; when a message last came or was settled (while rotating).
    std::chrono::steady_clock::time_point rdy_changed, last_active;
    std::chrono::milliseconds backoff{0};
    std::unique_ptr<boost::asio::steady_timer> retry;
    bool subscribed = false;
    bool unlisted = false;  // nsqlookupd no longer lists it: dropped once its connection closes
    bool dropped = false;
  };
  size_t AddLink(std::string address, std::optional<boost::asio::ip::tcp::endpoint> endpoint);
  void Dial(size_t i);
  void Connect(size_t i, std::vector<boost::asio::ip::tcp::endpoint> endpoints,
               std::string server_name);
  void ScheduleRedial(size_t i);
  bool Live(const Link& link) const;
  void SetRdy(Link& link, int64_t rdy);
  void UpdateRdy();
  void RaiseRdy(std::vector<size_t>& live, bool rotating, int64_t share);
  void RedistributeRdy();
  void Poll();
  void ApplyListing(const std::vector<std::string>& addresses);

  boost::asio::any_io_executor ex_;
  std::string topic_, channel_;
  int64_t max_in_flight_;
  ClientOptions options_;
  Handler handler_;
  std::vector<Link> links_;
  bool receiving_ = true, closed_ = false;
  // A connection is below its share for want of room: a settled message calls UpdateRdy.
  bool rdy_wanted_ = false;
  bool rotating_ = false;                // more connections than max_in_flight
  boost::asio::steady_timer rdy_timer_;  // RedistributeRdy while rotating
  bool rdy_timer_armed_ = false;
  uint64_t reconnects_ = 0;
  LookupdDiscovery discovery_;
  std::vector<std::unique_ptr<net::HttpClient>> lookupds_;
  std::unique_ptr<boost::asio::steady_timer> poll_timer_;
  std::unique_ptr<boost::asio::ip::tcp::resolver> resolver_;
  std::minstd_rand jitter_;
  // Expires with the consumer: its timers' and resolver's handlers check it (Guarded).
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  bool lookupd_answering_ = true;
};

}  // namespace cairn::nsq

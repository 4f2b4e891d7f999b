// nsqlookupd's TCP protocol (V1) from the broker's side, as nsqd 1.3.0 speaks it: a broker keeps
// one connection to each nsqlookupd, says who it is (IDENTIFY, with the address and ports
// consumers should dial), announces every topic and channel (REGISTER), takes back the ones it
// deletes (UNREGISTER) and PINGs so that nsqlookupd keeps it listed. nsqlookupd forgets all of a
// broker's registrations when its connection closes, so after every reconnect everything is
// registered again, from a snapshot the broker provides.
//
// The exchange is in net/lookupd_protocol.h.
//
// A LookupdPeer never blocks its caller: Register() and Unregister() only queue a line, and
// everything else happens on the executor's thread. A nsqlookupd that is down, slow or
// unreachable costs a reconnect with backoff and nothing else.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "net/lookupd_protocol.h"
#include "src/base/error.h"

namespace cairn::net {
class HttpClient;
}

namespace cairn::nsq {

struct LookupdOptions {
  // nsqd's: a PING this often keeps the broker listed (nsqlookupd's --inactive-producer-timeout
  // is 300 s by default).
  std::chrono::milliseconds ping_interval{15'000};
  // Resolving and connecting, and each answer, must take less than this; otherwise the
  // connection is dropped and made again.
  std::chrono::milliseconds timeout{5'000};
  // Between failed attempts: doubles from min to max, with up to a quarter of jitter.
  std::chrono::milliseconds backoff_min{1'000};
  std::chrono::milliseconds backoff_max{15'000};
  size_t max_response = 1u << 20;
  // Changes queued while connected beyond this (nsqlookupd stalled, topics churning) renew the
  // connection instead, which registers from a snapshot: memory stays bounded.
  size_t max_queued = 100'000;
};

// Asks every nsqlookupd (their HTTP APIs, given as clients) which brokers have `topic`. `done`
// gets the union of the answers, in order; a 404 (no broker has the topic, yet) is an answer
// with none; kUnavailable if no nsqlookupd answered. The clients must outlive the call, or
// drop it with them (an HttpClient destroyed calls nothing back).
void LookupTopic(const std::vector<net::HttpClient*>& lookupds, std::string_view topic,
                 std::function<void(Result<std::vector<LookupdProducer>>)> done);

class LookupdPeer : public std::enable_shared_from_this<LookupdPeer> {
 public:
  // Every current registration, for a fresh connection.
  using Snapshot = std::function<std::vector<LookupdRegistration>()>;

  // `address` is "host:port", resolved again on every connect (a DNS name may move).
  LookupdPeer(boost::asio::any_io_executor ex, std::string address, LookupdIdentity identity,
              Snapshot snapshot, LookupdOptions options = {});
  ~LookupdPeer();
  LookupdPeer(const LookupdPeer&) = delete;
  LookupdPeer& operator=(const LookupdPeer&) = delete;

  void Start();
  // Stops for good; the connection closes and nsqlookupd forgets this broker.
  void Close();

  // Sent in order while registered; dropped while not, as the next connection registers the
  // snapshot instead.
  void Register(LookupdRegistration r) { Queue(true, std::move(r)); }
  void Unregister(LookupdRegistration r) { Queue(false, std::move(r)); }

  const std::string& address() const { return address_; }
  // Identified to nsqlookupd and its snapshot sent (the answers may still be on their way).
  bool registered() const { return registered_; }
  uint64_t connects() const { return connects_; }
  uint64_t failures() const { return failures_; }

 private:
  void Queue(bool registered, LookupdRegistration r);
  boost::asio::awaitable<void> Run();
  boost::asio::awaitable<Status> Session();
  boost::asio::awaitable<Status> Exchange(std::string commands, size_t answers,
                                          std::string* first_answer);
  boost::asio::awaitable<void> Watchdog();
  // While idle, a read-readiness wait notices at once that nsqlookupd closed the connection
  // (otherwise only the next PING would).
  void WatchReadable();
  Status CheckIdle();
  void Arm(std::chrono::steady_clock::duration d);
  void Disarm();

  boost::asio::any_io_executor ex_;
  std::string address_;
  LookupdIdentity identity_;
  Snapshot snapshot_;
  LookupdOptions options_;
  boost::asio::ip::tcp::resolver resolver_;
  boost::asio::ip::tcp::socket socket_;
  boost::asio::steady_timer deadline_, wake_, retry_;
  std::string in_;
  std::deque<std::string> queued_;  // command lines waiting to be sent
  bool closed_ = false, registered_ = false, watching_ = false, readable_ = false;
  uint64_t connects_ = 0, failures_ = 0;
};

}  // namespace cairn::nsq

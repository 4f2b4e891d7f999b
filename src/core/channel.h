// A channel: a cursor into its topic's log, and the delivery state of its messages. Every channel
// of a topic gets every message; a channel's subscribers share its messages, each message to one
// subscriber at a time, within each subscriber's RDY.
//
// Order: messages go out in offset (publish) order; only redeliveries (timeout, REQ) and deferred
// messages (DPUB, REQ with a delay) come out of it.
//
// Memory is bounded whatever the backlog: the channel reads the log ahead of its subscribers in
// one bounded window (BrokerOptions::window_*), and otherwise keeps a few words per message in
// flight or deferred. A channel nobody reads costs its window, not its lag.
//
// Durability: FIN marks the message finished in the channel's cursor, which the store persists
// within its cursor_flush_interval. Messages in flight, requeued or deferred are simply
// unfinished in the cursor, so after a restart they are delivered again (a REQ's delay and the
// attempt count start over; a DPUB's time is in the log and still holds).
//
// Thread-safety: none; every call on the broker's io thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <queue>
#include <random>
#include <string>
#include <string_view>

#include <optional>
#include <vector>

#include <boost/asio/steady_timer.hpp>
#include <boost/unordered/unordered_flat_map.hpp>

#include "src/core/options.h"
#include "storage/cursor.h"
#include "storage/topic_log.h"

namespace cairn {

class Topic;
using SteadyTime = std::chrono::steady_clock::time_point;

// One message handed to a subscriber. `body` is valid only during the Send call.
struct Delivery {
  uint64_t offset = 0;
  int64_t timestamp_ns = 0;
  uint16_t attempts = 0;
  std::string_view body;
};

// One subscriber as /stats shows it (nsqd's client fields).
struct ClientStats {
  std::string client_id, hostname, user_agent, remote_address;
  std::string version = "V2";
  int state = 0;  // nsqd's numbers: 0 init, 3 subscribed, 4 closing
  int64_t ready_count = 0, in_flight_count = 0;
  uint64_t message_count = 0, finish_count = 0, requeue_count = 0;
  int64_t connect_ts = 0;  // seconds since the epoch
  int32_t sample_rate = 0;
  std::vector<std::pair<std::string, uint64_t>> pub_counts;  // messages published, per topic
  bool snappy = false, deflate = false, tls = false;
  std::string tls_cipher_suite, tls_version;  // IANA's suite name; "TLS1.2", as nsqd shows them
  bool authed = false;
  std::string auth_identity, auth_identity_url;
};

// A consumer connection subscribed to a channel: the TCP session implements it.
class Subscriber {
 public:
  virtual ~Subscriber() = default;
  // How many more messages it may be sent now: its RDY minus its messages in flight; 0 while it
  // is closing or its output is backed up.
  virtual int64_t Credit() const = 0;
  virtual std::chrono::milliseconds MsgTimeout() const = 0;
  // Percentage of messages it wants (IDENTIFY sample_rate); 0 means all of them.
  virtual int SampleRate() const = 0;
  // Writes one message; the subscriber counts it in flight until Settled().
  virtual void Send(const Delivery& delivery) = 0;
  // One of its messages left flight: finished, requeued, or timed out.
  virtual void Settled() = 0;
  // Called after a run of Sends, so output can be written in one go.
  virtual void Flush() = 0;
  // The channel (or its topic) is going away: close the connection.
  virtual void Kick() = 0;
  virtual ClientStats Stats() const = 0;
};

struct ChannelStats {
  uint64_t delivered = 0;  // MSG frames sent, redeliveries included (nsqd's message_count)
  uint64_t requeued = 0;   // REQ'd
  uint64_t timed_out = 0;  // not finished in time
  uint64_t finished = 0;   // FIN'd
  uint64_t expired = 0;    // older than the topic's message TTL: skipped, and so finished
  // In a part of the log that cannot be read (a damaged batch): skipped, and so finished.
  uint64_t skipped_unreadable = 0;
  uint64_t in_flight = 0;
  uint64_t deferred = 0;  // waiting for a DPUB time or a REQ delay
  size_t subscribers = 0;
};

class Channel {
 public:
  Channel(Topic* topic, std::string name, std::shared_ptr<storage::ChannelCursor> cursor,
          const BrokerOptions& options);
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  const std::string& name() const { return name_; }
  bool ephemeral() const { return ephemeral_; }
  const std::shared_ptr<storage::ChannelCursor>& cursor() const { return cursor_; }

  void AddSubscriber(Subscriber* subscriber);
  // Its messages in flight go back to the channel at once, for the other subscribers.
  void RemoveSubscriber(Subscriber* subscriber);
  size_t subscriber_count() const { return subscribers_.size(); }

  // FIN, REQ, TOUCH from `by`: kNotInFlight for an unknown, stale, finished or timed-out
  // message; kNotOwner for one in flight to another subscriber.
  enum class Settle { kOk, kNotInFlight, kNotOwner };
  Settle Finish(Subscriber* by, uint64_t offset);
  Settle Requeue(Subscriber* by, uint64_t offset, std::chrono::milliseconds delay);
  Settle Touch(Subscriber* by, uint64_t offset);

  // Sends what can be sent: called when the log grows, a subscriber gains credit, or a timer
  // fires.
  void Pump();

  // nsqd's pause: nothing is delivered until unpaused; FIN, REQ and TOUCH still work and the
  // cursor is still persisted.
  void SetPaused(bool paused);
  bool paused() const { return paused_; }
  // Moves the channel to `offset`, clamped to the retained log: everything before it counts as
  // finished, nothing after it does. Subscribers keep their connections and receive from the new
  // position. Requeued and deferred messages are dropped (the new position decides what comes
  // again); a message in flight stays in flight to its subscriber until FIN, REQ or its timeout,
  // which settle it without finishing it, and if it is at or past the new position it is then
  // delivered again. So no offset is ever in flight twice on a channel, and a FIN the client sent
  // for a delivery from before the seek can never finish the delivery the seek asked for
  // (message IDs are offsets: the broker could not tell the two apart). Emptying a channel is a
  // seek to the end of the log.
  void Seek(uint64_t offset);
  // Closes every subscriber's connection (the channel or its topic is being deleted).
  void KickSubscribers();
  std::vector<ClientStats> client_stats() const;
  // Moves timed-out and due deferred messages back to delivery. The channel's own timer calls it
  // when something is due; public for tests.
  void OnTimer(SteadyTime now);
  // The broker is stopping: no more timers.
  void StopTimer();

  ChannelStats stats() const;
  // Publish time of the oldest message the channel has not finished (0 if it finished all): what
  // its lag in seconds is measured from. Remembered for as long as that message stays the oldest,
  // so /stats and /metrics scrapes read the log only for channels that moved.
  int64_t OldestUnfinishedPublishTime();

 private:
  struct InFlight {
    Subscriber* owner;
    SteadyTime deadline;
    SteadyTime delivered_at;
    uint16_t attempts;
    uint32_t seq;    // matches the live entry in timeouts_
    uint32_t epoch;  // the channel's seek_epoch_ when it was delivered
  };
  struct Timed {
    SteadyTime at;
    uint64_t offset;
    uint32_t seq_or_attempts;
    bool operator>(const Timed& o) const { return at > o.at; }
  };
  struct Redelivery {
    uint64_t offset;
    uint16_t attempts;  // deliveries so far
  };
  template <class T>
  using MinHeap = std::priority_queue<T, std::vector<T>, std::greater<T>>;

  Subscriber* NextWithCredit();
  // The in-flight entry of `offset` if `by` owns it; `result` says why not otherwise.
  InFlight* Owned(Subscriber* by, uint64_t offset, Settle* result);
  // Reads the next window from the log; false if there is nothing to read.
  bool Fill();
  // A part of the log that cannot be read is skipped: finished in the cursor, and counted.
  void SkipUnreadable(const storage::Unreadable& part);
  // The next message in log order, or nullptr; deferred ones go to deferred_ on the way.
  const storage::StoredMessage* PeekWindow(SteadyTime now, int64_t wall_now);
  void PopWindow();
  void Deliver(Subscriber* to, uint64_t offset, int64_t ts, std::string_view body,
               uint16_t prior_attempts, SteadyTime now);
  // Sends one requeued message to `to`; false if it no longer exists in the log.
  bool DeliverRedelivery(Subscriber* to, const Redelivery& r, SteadyTime now);
  bool SampledOut(Subscriber* to, uint64_t offset);
  // A message left flight without being finished (REQ, timeout, its subscriber gone, or any
  // settling of a delivery from before a seek): it is delivered again, unless a seek since its
  // delivery put it behind the channel, or the window has yet to reach it.
  void Release(uint64_t offset, const InFlight& f);
  // The offset the window delivers next.
  uint64_t WindowPosition() const;
  // True (and the message finished and counted) if it is older than the topic's message TTL.
  bool Expired(uint64_t offset, int64_t timestamp_ns, int64_t wall_now);
  // Settled messages leave their entry in timeouts_ until its deadline; rebuild the heap from
  // what is in flight once stale entries outnumber live ones, so its size stays proportional to
  // the messages in flight, not to the message rate times msg_timeout.
  void CompactTimeouts();
  // Sets the timer for the earliest deadline in flight or deferred, if it is not already set
  // that early: a channel with nothing in flight or deferred has no timer, and a busy one wakes
  // at most once per timer_resolution.
  void ArmTimer();

  Topic* const topic_;
  const std::string name_;
  const bool ephemeral_;
  std::shared_ptr<storage::ChannelCursor> cursor_;
  const BrokerOptions& options_;

  std::vector<Subscriber*> subscribers_;
  size_t next_subscriber_ = 0;

  // Read-ahead window: chunks read from the log, consumed from the front.
  std::deque<storage::ReadResult> window_;
  size_t window_pos_ = 0;  // index into window_.front().messages
  uint64_t read_pos_ = 0;  // next offset to read from the log
  // Offsets below this may have been finished before they were read (after a restart or a
  // seek), so they are checked against the cursor; above it, nothing is finished unread.
  uint64_t check_finished_below_ = 0;

  // Open addressing: no allocation per message delivered.
  boost::unordered_flat_map<uint64_t, InFlight> in_flight_;
  MinHeap<Timed> timeouts_;  // lazily pruned: entries whose seq no longer matches are stale
  uint32_t next_seq_ = 0;
  MinHeap<Timed> deferred_;       // seq_or_attempts holds the attempts so far
  std::deque<Redelivery> ready_;  // requeued or due: delivered before the window
  uint32_t seek_epoch_ = 0;       // seeks so far

  bool paused_ = false;
  std::minstd_rand sampler_{12345};
  ChannelStats counters_;
  // OldestUnfinishedPublishTime()'s last answer, for the offset it was for.
  uint64_t oldest_offset_ = UINT64_MAX;
  int64_t oldest_ts_ = 0;

  boost::asio::steady_timer timer_;
  std::optional<SteadyTime> timer_at_;  // when the armed timer fires; unset if none is armed
  bool timer_stopped_ = false;
  // Held only by the channel: a timer handler already queued when the channel goes away sees it
  // expired (asio runs such a handler with success, not operation_aborted).
  std::shared_ptr<Channel*> alive_ = std::make_shared<Channel*>(this);
};

}  // namespace cairn

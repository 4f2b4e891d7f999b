#include "src/core/channel.h"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "src/base/clock.h"
#include "src/base/names.h"
#include "src/core/topic.h"

namespace cairn {
namespace {

uint16_t NextAttempts(uint16_t prior) { return prior == UINT16_MAX ? prior : prior + 1; }

// Messages handed to one subscriber before the next one gets a turn.
constexpr int64_t kBurst = 64;

}  // namespace

Channel::Channel(Topic* topic, std::string name, std::shared_ptr<storage::ChannelCursor> cursor,
                 const BrokerOptions& options)
    : topic_(topic),
      name_(std::move(name)),
      ephemeral_(IsEphemeral(name_)),
      cursor_(std::move(cursor)),
      options_(options),
      timer_(topic->executor()) {
  read_pos_ = cursor_->floor();
  check_finished_below_ = topic_->log().next_offset();
}

void Channel::AddSubscriber(Subscriber* subscriber) {
  subscribers_.push_back(subscriber);
  Pump();
}

void Channel::RemoveSubscriber(Subscriber* subscriber) {
  std::erase(subscribers_, subscriber);
  std::vector<uint64_t> held;
  for (const auto& [offset, f] : in_flight_) {
    if (f.owner == subscriber) held.push_back(offset);
  }
  std::sort(held.begin(), held.end());
  for (uint64_t offset : held) {
    auto it = in_flight_.find(offset);
    const InFlight f = it->second;
    in_flight_.erase(it);
    Release(offset, f);
  }
  if (subscribers_.empty() && ephemeral_) {
    topic_->OnEphemeralChannelIdle(name_);
    return;
  }
  Pump();
}

Subscriber* Channel::NextWithCredit() {
  const size_t n = subscribers_.size();
  for (size_t i = 0; i < n; ++i) {
    Subscriber* s = subscribers_[(next_subscriber_ + i) % n];
    if (s->Credit() > 0) {
      next_subscriber_ = (next_subscriber_ + i) % n;
      return s;
    }
  }
  return nullptr;
}

bool Channel::Fill() {
  Log& log = topic_->log();
  const uint64_t start = log.start_offset();
  if (read_pos_ < start) {
    // Retention trimmed what this channel had not read. A durable cursor is moved (and the loss
    // counted) by the store; an ephemeral one is moved here.
    if (ephemeral_) cursor_->SkipTo(start);
    read_pos_ = start;
  }
  for (;;) {
    if (read_pos_ < check_finished_below_) read_pos_ = cursor_->NextUnfinished(read_pos_);
    if (read_pos_ >= log.next_offset()) return false;
    auto r = log.Read(read_pos_, options_.window_messages, options_.window_bytes);
    if (!r) {
      spdlog::error("topic={} channel={} offset={} read failed: {}", topic_->name(), name_,
                    read_pos_, r.error().ToString());
      return false;
    }
    if (r->unreadable) {
      // Everything readable is delivered: skip exactly the damaged part and read on.
      SkipUnreadable(*r->unreadable);
      read_pos_ = std::max(read_pos_ + 1, r->next_offset);
      continue;
    }
    if (r->messages.empty()) {
      read_pos_ = r->next_offset;
      return false;
    }
    read_pos_ = r->next_offset;
    window_.push_back(std::move(*r));
    return true;
  }
}

void Channel::SkipUnreadable(const storage::Unreadable& part) {
  // The store logged the damage once; what each channel skipped shows in /stats and /metrics.
  counters_.skipped_unreadable += cursor_->FinishRange(part.begin, part.end);
}

const storage::StoredMessage* Channel::PeekWindow(SteadyTime now, int64_t wall_now) {
  for (;;) {
    if (window_.empty() && !Fill()) return nullptr;
    const auto& m = window_.front().messages[window_pos_];
    if (m.offset < check_finished_below_ &&
        (cursor_->IsFinished(m.offset) || in_flight_.contains(m.offset))) {
      PopWindow();
      continue;
    }
    if (Expired(m.offset, m.timestamp_ns, wall_now)) {
      PopWindow();
      continue;
    }
    if (m.deliver_at_ns > wall_now) {
      deferred_.push({now + std::chrono::nanoseconds(m.deliver_at_ns - wall_now), m.offset, 0});
      PopWindow();
      continue;
    }
    return &m;
  }
}

void Channel::PopWindow() {
  if (++window_pos_ == window_.front().messages.size()) {
    window_.pop_front();
    window_pos_ = 0;
  }
}

bool Channel::Expired(uint64_t offset, int64_t timestamp_ns, int64_t wall_now) {
  const int64_t ttl = topic_->message_ttl().count();
  if (ttl <= 0 || timestamp_ns >= wall_now - ttl) return false;
  cursor_->Finish(offset);
  ++counters_.expired;
  return true;
}

bool Channel::SampledOut(Subscriber* to, uint64_t offset) {
  const int rate = to->SampleRate();
  if (rate <= 0 || rate >= 100) return false;
  if (static_cast<int>(sampler_() % 100) < rate) return false;
  // nsqd drops a message a sampling subscriber skips; Cairn finishes it, which is the same to
  // the channel and keeps the cursor moving.
  cursor_->Finish(offset);
  return true;
}

void Channel::Deliver(Subscriber* to, uint64_t offset, int64_t ts, std::string_view body,
                      uint16_t prior_attempts, SteadyTime now) {
  const uint16_t attempts = NextAttempts(prior_attempts);
  const uint32_t seq = ++next_seq_;
  const SteadyTime deadline = now + to->MsgTimeout();
  in_flight_[offset] = InFlight{to, deadline, now, attempts, seq, seek_epoch_};
  timeouts_.push({deadline, offset, seq});
  if (timeouts_.size() > 2 * in_flight_.size() + 1024) CompactTimeouts();
  ++counters_.delivered;
  to->Send(Delivery{offset, ts, attempts, body});
}

bool Channel::DeliverRedelivery(Subscriber* to, const Redelivery& r, SteadyTime now) {
  if (cursor_->IsFinished(r.offset)) return false;
  auto read = topic_->log().Read(r.offset, 1, options_.max_msg_size);
  if (read && read->unreadable) {
    SkipUnreadable(storage::Unreadable{r.offset, r.offset + 1, read->unreadable->reason});
    return false;
  }
  if (!read || read->messages.empty() || read->messages.front().offset != r.offset) {
    return false;  // trimmed by retention meanwhile (the cursor counts it), or a read error
  }
  const auto& m = read->messages.front();
  if (Expired(r.offset, m.timestamp_ns, WallNowNs())) return false;
  if (SampledOut(to, r.offset)) return true;
  Deliver(to, r.offset, m.timestamp_ns, m.body, r.attempts, now);
  return true;
}

void Channel::Pump() {
  if (subscribers_.empty() || paused_ || topic_->paused()) return;
  const SteadyTime now = std::chrono::steady_clock::now();
  const int64_t wall_now = WallNowNs();
  std::vector<Subscriber*> touched;
  while (Subscriber* s = NextWithCredit()) {
    int64_t burst = kBurst;
    bool sent = false;
    // Credit is asked again before every message: it falls to 0 once the subscriber's unsent
    // output reaches its bound, so that bound holds to within one message, not one burst.
    while (burst > 0 && s->Credit() > 0) {
      if (!ready_.empty()) {
        const Redelivery r = ready_.front();
        ready_.pop_front();
        if (DeliverRedelivery(s, r, now)) {
          sent = true;
          --burst;
        }
        continue;
      }
      const storage::StoredMessage* m = PeekWindow(now, wall_now);
      if (m == nullptr) break;
      if (!SampledOut(s, m->offset)) {
        Deliver(s, m->offset, m->timestamp_ns, m->body, 0, now);
        sent = true;
        --burst;
      }
      PopWindow();
    }
    if (sent && std::find(touched.begin(), touched.end(), s) == touched.end()) {
      touched.push_back(s);
    }
    // The next message goes to the next subscriber, even when this turn ended because the
    // channel ran dry: under light traffic idle subscribers take turns, as with nsqd.
    next_subscriber_ = (next_subscriber_ + 1) % subscribers_.size();
    if (burst > 0 && s->Credit() > 0) break;  // out of messages
  }
  for (Subscriber* s : touched) s->Flush();
  ArmTimer();
}

void Channel::ArmTimer() {
  if (timer_stopped_) return;
  std::optional<SteadyTime> next;
  if (!timeouts_.empty()) next = timeouts_.top().at;
  if (!deferred_.empty() && (!next || deferred_.top().at < *next)) next = deferred_.top().at;
  if (!next) return;
  // Coalesced: deadlines a few ms apart (one per message delivered) share one wake-up.
  next = std::max(*next, std::chrono::steady_clock::now() + options_.timer_resolution);
  if (timer_at_ && *timer_at_ <= *next) return;
  timer_at_ = *next;
  timer_.expires_at(*next);
  timer_.async_wait(
      [this, alive = std::weak_ptr<Channel*>(alive_)](const boost::system::error_code& ec) {
        if (ec || alive.expired()) return;
        timer_at_.reset();
        OnTimer(std::chrono::steady_clock::now());
        ArmTimer();
      });
}

void Channel::StopTimer() {
  timer_stopped_ = true;
  timer_at_.reset();
  timer_.cancel();
}

Channel::InFlight* Channel::Owned(Subscriber* by, uint64_t offset, Settle* result) {
  auto it = in_flight_.find(offset);
  if (it == in_flight_.end()) {
    *result = Settle::kNotInFlight;
    return nullptr;
  }
  if (it->second.owner != by) {
    *result = Settle::kNotOwner;
    return nullptr;
  }
  *result = Settle::kOk;
  return &it->second;
}

Channel::Settle Channel::Finish(Subscriber* by, uint64_t offset) {
  Settle result;
  InFlight* f = Owned(by, offset, &result);
  if (f == nullptr) return result;
  const InFlight settled = *f;
  in_flight_.erase(offset);
  by->Settled();
  if (settled.epoch != seek_epoch_) {
    // Delivered before a seek: the seek, not this FIN, decides whether the channel is done with
    // the offset.
    Release(offset, settled);
    return result;
  }
  cursor_->Finish(offset);
  ++counters_.finished;
  return result;
}

Channel::Settle Channel::Requeue(Subscriber* by, uint64_t offset, std::chrono::milliseconds delay) {
  Settle result;
  InFlight* f = Owned(by, offset, &result);
  if (f == nullptr) return result;
  const InFlight settled = *f;
  in_flight_.erase(offset);
  ++counters_.requeued;
  by->Settled();
  if (delay.count() <= 0 || settled.epoch != seek_epoch_) {
    Release(offset, settled);
  } else {
    deferred_.push({std::chrono::steady_clock::now() + delay, offset, settled.attempts});
    ArmTimer();
  }
  return result;
}

void Channel::Release(uint64_t offset, const InFlight& f) {
  if (f.epoch != seek_epoch_) {
    // A seek since: behind the new position it is finished; ahead of the window, the window
    // delivers it when it gets there.
    if (cursor_->IsFinished(offset) || offset >= WindowPosition()) return;
  }
  ready_.push_back({offset, f.attempts});
}

uint64_t Channel::WindowPosition() const {
  return window_.empty() ? read_pos_ : window_.front().messages[window_pos_].offset;
}

Channel::Settle Channel::Touch(Subscriber* by, uint64_t offset) {
  Settle result;
  InFlight* f = Owned(by, offset, &result);
  if (f == nullptr) return result;
  const SteadyTime now = std::chrono::steady_clock::now();
  // As nsqd: a message may be touched until max_msg_timeout after its delivery, not beyond.
  f->deadline = std::min(now + by->MsgTimeout(), f->delivered_at + options_.max_msg_timeout);
  f->seq = ++next_seq_;
  timeouts_.push({f->deadline, offset, f->seq});
  if (timeouts_.size() > 2 * in_flight_.size() + 1024) CompactTimeouts();
  ArmTimer();
  return result;
}

void Channel::OnTimer(SteadyTime now) {
  bool moved = false;
  while (!timeouts_.empty() && timeouts_.top().at <= now) {
    const Timed t = timeouts_.top();
    timeouts_.pop();
    auto it = in_flight_.find(t.offset);
    if (it == in_flight_.end() || it->second.seq != t.seq_or_attempts) continue;  // stale
    const InFlight f = it->second;
    in_flight_.erase(it);
    ++counters_.timed_out;
    f.owner->Settled();
    Release(t.offset, f);
    moved = true;
  }
  while (!deferred_.empty() && deferred_.top().at <= now) {
    const Timed t = deferred_.top();
    deferred_.pop();
    ready_.push_back({t.offset, static_cast<uint16_t>(t.seq_or_attempts)});
    moved = true;
  }
  if (moved) Pump();
}

void Channel::SetPaused(bool paused) {
  paused_ = paused;
  if (!paused_) Pump();
}

void Channel::Seek(uint64_t offset) {
  Log& log = topic_->log();
  offset = std::clamp(offset, log.start_offset(), log.next_offset());
  ++seek_epoch_;
  deferred_ = {};
  ready_.clear();
  window_.clear();
  window_pos_ = 0;
  cursor_->Seek(offset);
  read_pos_ = offset;
  // The cursor holds nothing finished at or past `offset`, but what is still in flight must not
  // be read into the window a second time: check offsets up to the highest of those.
  check_finished_below_ = offset;
  for (const auto& [in_flight, _] : in_flight_) {
    check_finished_below_ = std::max(check_finished_below_, in_flight + 1);
  }
  Pump();
}

void Channel::KickSubscribers() {
  // Kick() ends in RemoveSubscriber, which changes subscribers_.
  for (Subscriber* s : std::vector<Subscriber*>(subscribers_)) s->Kick();
}

std::vector<ClientStats> Channel::client_stats() const {
  std::vector<ClientStats> out;
  out.reserve(subscribers_.size());
  for (const Subscriber* s : subscribers_) out.push_back(s->Stats());
  return out;
}

void Channel::CompactTimeouts() {
  std::vector<Timed> live;
  live.reserve(in_flight_.size());
  for (const auto& [offset, f] : in_flight_) live.push_back({f.deadline, offset, f.seq});
  timeouts_ = MinHeap<Timed>(std::greater<Timed>(), std::move(live));
}

int64_t Channel::OldestUnfinishedPublishTime() {
  Log& log = topic_->log();
  const uint64_t next = cursor_->NextUnfinished(std::max(cursor_->floor(), log.start_offset()));
  if (next >= log.next_offset()) return 0;
  if (next != oldest_offset_) {
    oldest_offset_ = next;
    oldest_ts_ = log.PublishTimeOf(next);
  }
  return oldest_ts_;
}

ChannelStats Channel::stats() const {
  ChannelStats s = counters_;
  s.in_flight = in_flight_.size();
  s.deferred = deferred_.size();  // requeued without delay waits in ready_: depth, as nsqd
  s.subscribers = subscribers_.size();
  return s;
}

}  // namespace cairn

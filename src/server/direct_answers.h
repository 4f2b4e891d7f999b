// The answer to a publish, written to the client's socket by the thread that completes the
// publish (the store's committer), instead of by the session's io thread once that thread wakes.
// With few publishers each waiting for its answer (4 connections of MPUB 100, one outstanding),
// that wake-up is a hop on every round trip. Writing the OK from the committer measured 1.07 to
// 1.10 times as fast as a prototype, and 1.00 and 1.04 as landed (alternating A/B runs of 7 and 9
// pairs; README, Benchmarks); neutral with 8 MPUB, 16 PUB and 64 PUB connections when only groups
// of up to kMaxGroup requests are answered so.
//
// The io thread owns the socket's writes. The committer may write only while this object says
// that the io thread is idle (nothing queued, no write in progress) and that the publish is the
// oldest one unanswered, so every earlier answer is already in the kernel and nothing the io thread
// writes can be cut by it. The io thread says Busy() before it queues any byte, under the same
// lock the committer writes under, and Idle() when it has nothing left to write.
//
// Thread-safety: TrySend() on any thread; everything else on the session's io thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

namespace cairn::net {

class DirectAnswers {
 public:
  // Groups of more requests are answered by the io thread: one write each on the committer, the
  // busiest stage when 64 connections share a group, cost more than the hop (0.95 with 64 PUB
  // connections when every group answered directly).
  static constexpr size_t kMaxGroup = 4;

  explicit DirectAnswers(int fd) : fd_(fd) {}
  DirectAnswers(const DirectAnswers&) = delete;
  DirectAnswers& operator=(const DirectAnswers&) = delete;

  // Any thread: writes `frame`, the answer to the request numbered `seq`, if the io thread is
  // idle and `seq` is the oldest request unanswered. True if it was written, wholly or in part
  // (the rest is then written first by the io thread: TakeLeftover()).
  bool TrySend(uint64_t seq, std::string_view frame);

  // Whether TrySend() wrote the answer to `seq`. Asked by the io thread once it learns that
  // `seq` completed (after the thread that completed it has returned from TrySend).
  bool Sent(uint64_t seq) const { return seq < next_.load(); }

  // Every request numbered below the result has its answer written, by TrySend() or by the io
  // thread. It waits for a TrySend() that is writing, so the answer a client may already hold
  // counts as written (what /stats reports).
  uint64_t AnsweredBelow() const;

  // Before the io thread queues output: TrySend() writes nothing from now on. Cheap while it is
  // already busy (one load): only the io thread makes it idle.
  void Busy() {
    if (idle_.load()) SetBusy();
  }

  // The io thread has nothing left to write, and `oldest` is the number of the oldest request
  // whose answer it has not queued.
  void Idle(uint64_t oldest);

  // Before the io thread starts writing `out`: puts in front of it what TrySend() could not
  // write of a frame.
  void TakeLeftover(std::string& out);

  // For good (the socket is closing): TrySend() writes nothing. After this returns, no TrySend()
  // is writing.
  void Disable();

 private:
  void SetBusy();

  const int fd_;
  mutable std::mutex mu_;  // held while TrySend() writes, and while the io thread changes idle_
  std::atomic<bool> idle_{false};
  bool disabled_ = false;
  // The oldest request not answered by TrySend(): it answers `seq` only when seq == next_.
  std::atomic<uint64_t> next_{0};
  std::atomic<bool> has_leftover_{false};
  std::string leftover_;
};

}  // namespace cairn::net

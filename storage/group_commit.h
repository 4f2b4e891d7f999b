// The group committer: the one thread that writes to RocksDB on behalf of appends, trims and
// metadata changes. It takes every request that queued up while the previous write was in flight,
// from every topic and connection, and writes them as one WriteBatch with (under sync=always) one
// fsync. This is what turns ~3,000 fsyncs a second into hundreds of thousands of messages.
//
// Requests of one topic are applied in the order submitted; a request's Complete() runs on the
// committer thread after its group's write finished, so it must be quick (post elsewhere).
#pragma once

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "src/base/histogram.h"
#include "storage/error.h"
#include "storage/options.h"

namespace rocksdb {
class DB;
class WriteBatch;
}  // namespace rocksdb

namespace cairn::storage {

class TopicLog;

// What a group shares while it is prepared: the topics it touched, whose LogState it writes once.
class GroupContext {
 public:
  void Touch(TopicLog* topic);
  const std::vector<TopicLog*>& touched() const { return touched_; }

 private:
  std::vector<TopicLog*> touched_;
};

class CommitOp {
 public:
  virtual ~CommitOp() = default;
  // Whether this write must be fsynced before it completes under sync=always.
  virtual bool durable() const { return true; }
  // Bytes this request adds to the group's write, to bound a group's size.
  virtual size_t bytes() const { return 0; }
  // Whether this request appends messages (a publish), whose time in the store is measured
  // (CommitStats::append_seconds).
  virtual bool appends() const { return false; }
  // Adds this request's writes to `batch`; an error fails this request alone.
  virtual Status Prepare(rocksdb::WriteBatch& batch, GroupContext& ctx) = 0;
  // The group was written (ok) or not (error).
  virtual void Complete(const Status& status) = 0;

  // When GroupCommitter::Submit() queued it.
  std::chrono::steady_clock::time_point submitted;
};

// The bounds, in seconds, of CommitStats' latency histograms.
inline constexpr std::array<double, 12> kCommitSecondsBounds{
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1};

struct CommitStats {
  uint64_t groups = 0;    // RocksDB writes
  uint64_t syncs = 0;     // of which fsynced (plus interval syncs)
  uint64_t ops = 0;       // requests committed
  uint64_t failures = 0;  // groups whose write failed
  // Seconds each synced group write took (the write and its fsync).
  Histogram<12> sync_seconds{kCommitSecondsBounds};
  // Seconds from each append's Submit() until its group was written (and synced, under
  // sync=always): the wait for the group in progress and for its own. What a publish spends in the
  // store before its OK can be sent; appends of a failed group are not counted.
  Histogram<12> append_seconds{kCommitSecondsBounds};
  // Requests (appends, trims, cursor flushes) per group: how well group commit gathers them.
  Histogram<12> group_ops{{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096}};
};

// Runs `fn` once the committer has called Complete() (and the append listeners) for every request
// of the group it is finishing; on any other thread, or outside that, runs `fn` at once. A
// completion that hands its result to another thread should wake that thread this way: one
// wake-up for the whole group, after the last result is in, instead of one per request, each
// racing the next request's hand-off for the lock. (storage_bench, 4 appenders of 100, 8
// alternating runs: the median time between a group's write and the next fell from 222 to 174 us,
// and the thread woke once per group instead of 1.5 to 3 times.)
void AfterGroupCompleted(std::function<void()> fn);

// While the committer completes a group (in Complete() and the append listeners): the number of
// requests in it. 0 on any other thread, or outside that.
size_t CompletingGroupSize();

class GroupCommitter {
 public:
  GroupCommitter(rocksdb::DB* db, SyncPolicy sync);
  ~GroupCommitter();  // Stop()s

  // Queues `op`. After Stop() the op completes at once with kClosed.
  void Submit(std::unique_ptr<CommitOp> op);
  // Commits what is queued, syncs the WAL, and ends the thread.
  void Stop();

  CommitStats stats() const;
  // False while the last write failed and RocksDB has not taken writes since.
  bool healthy() const;

 private:
  void Run();
  void CommitGroup(std::vector<std::unique_ptr<CommitOp>>& ops);
  void SyncIfDue(bool force);

  rocksdb::DB* const db_;
  const SyncPolicy sync_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<CommitOp>> queue_;
  bool stopping_ = false;
  CommitStats stats_;
  bool healthy_ = true;
  // Submit() wakes the committer only once this many requests are queued: 1 while it waits for
  // work, the size of the last group while it lingers for the next, never while it writes. A
  // wake-up per request would cost the submitting thread a futex call and the committer a
  // context switch, for a group it is not going to write yet.
  size_t wake_at_ = 1;

  // Committer thread only.
  bool unsynced_ = false;      // written since the last sync (interval policy)
  bool needs_resume_ = false;  // the last write failed; RocksDB wants Resume() first
  std::chrono::steady_clock::time_point next_sync_;

  std::thread thread_;
};

}  // namespace cairn::storage

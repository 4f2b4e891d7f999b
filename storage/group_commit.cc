#include "storage/group_commit.h"

#include <algorithm>

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>

#include "storage/topic_log.h"

namespace cairn::storage {
namespace {

// A group stops growing past this many requests or bytes, so one huge burst cannot hold every
// producer behind a single enormous write.
constexpr size_t kMaxGroupOps = 8192;
constexpr size_t kMaxGroupBytes = 16u << 20;

// Under sync=always, producers whose appends were just acknowledged usually append again at once.
// Before the next fsync the committer waits, at most this long, until as many requests are queued
// as the last group held, so they share that fsync instead of splitting into a group of one and
// a group of the rest. The wait ends as soon as they are there; a lone producer waits for nothing
// but its own next append.
//
// The committer lingers asleep on the condition variable, woken once the group is there
// (wake_at_). It used to spend a linger that was expected to fill awake, calling sched_yield
// between looks at the queue, to save the wake-up between the last request's arrival and the write.
// On the broker that saving did not show (cairn-bench, alternating pairs, medians of 7: 1.00 on 64
// PUB connections, 1.01 on MPUB x4, 0.99 pipelined without the spin), while on a node whose cores
// were all busy with other work a sched_yield handed the core to that work for up to a scheduler
// tick at every linger: with a CPU-bound process on each core, 64 PUB connections carried 1.33
// times as much without the spin (5 pairs), and 1.56 with those processes at nice 19 (7 pairs;
// bench/run_vs_nsqd busy).
constexpr auto kMaxLinger = std::chrono::microseconds(200);

// The committer lingers only after a group of at least this many requests, as PostgreSQL applies
// commit_delay only with commit_siblings transactions open. A few producers behind one I/O thread
// arrive one after another, each after the tens of microseconds it takes to take in its batch:
// waiting for all of them holds the fsync back about as long as the fsync itself takes, while
// writing the first at once overlaps its fsync with taking in the rest, and the groups settle at
// one or two requests each (1.4 on average with 4 connections). With many producers a group of one
// would spend an fsync, and committer CPU, on almost nothing. (cairn-bench, alternating A/B,
// medians of 7: MPUB of 100 from 4 connections 1.08 against lingering after every group, 1.11 in a
// run of 9; 64 connections of PUB 1.03, 4 connections with 8 MPUBs pipelined 1.01. From 8 and 16
// MPUB connections and 16 PUB connections, lingering was 1.01, 1.03 and 1.05 of not lingering.
// storage_bench's BM_AppendAsync with 4 appenders of 100, which one thread submits all at once with
// no parsing between them, loses: 0.87, medians of 3; the broker's producers all come through its
// I/O thread.)
constexpr size_t kLingerMinGroup = 8;

// While the committer completes a group: what AfterGroupCompleted() deferred, and how many
// requests the group holds.
thread_local std::vector<std::function<void()>>* t_after_group = nullptr;
thread_local size_t t_group_size = 0;

}  // namespace

void AfterGroupCompleted(std::function<void()> fn) {
  if (t_after_group != nullptr) {
    t_after_group->push_back(std::move(fn));
  } else {
    fn();
  }
}

size_t CompletingGroupSize() { return t_group_size; }

void GroupContext::Touch(TopicLog* topic) {
  if (std::find(touched_.begin(), touched_.end(), topic) == touched_.end()) {
    touched_.push_back(topic);
  }
}

GroupCommitter::GroupCommitter(rocksdb::DB* db, SyncPolicy sync)
    : db_(db), sync_(sync), thread_([this] { Run(); }) {}

GroupCommitter::~GroupCommitter() { Stop(); }

void GroupCommitter::Submit(std::unique_ptr<CommitOp> op) {
  op->submitted = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      queue_.push_back(std::move(op));
      if (queue_.size() >= wake_at_) cv_.notify_one();
      return;
    }
  }
  op->Complete(Fail(Errc::kClosed, "the store is closing"));
}

void GroupCommitter::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
    cv_.notify_one();
  }
  if (thread_.joinable()) thread_.join();
}

bool GroupCommitter::healthy() const {
  std::lock_guard lock(mu_);
  return healthy_;
}

CommitStats GroupCommitter::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

void GroupCommitter::SyncIfDue(bool force) {
  // A WAL whose last write failed must not be synced (RocksDB asserts); RocksDB replaces it when
  // it resumes.
  if (!unsynced_ || needs_resume_) return;
  const auto now = std::chrono::steady_clock::now();
  if (!force && now < next_sync_) return;
  const auto st = db_->SyncWAL();
  if (!st.ok()) {
    spdlog::error("storage: WAL sync failed: {}", st.ToString());
    return;  // stays unsynced; retried at the next deadline
  }
  unsynced_ = false;
  std::lock_guard lock(mu_);
  ++stats_.syncs;
}

void GroupCommitter::Run() {
  std::vector<std::unique_ptr<CommitOp>> group;
  size_t last_group = 0;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      wake_at_ = 1;
      if (sync_.mode == SyncMode::kInterval && unsynced_) {
        cv_.wait_until(lock, next_sync_, [&] { return stopping_ || !queue_.empty(); });
      } else {
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      }
      if (sync_.mode == SyncMode::kAlways && last_group >= kLingerMinGroup &&
          queue_.size() < last_group) {
        wake_at_ = last_group;
        cv_.wait_until(lock, std::chrono::steady_clock::now() + kMaxLinger,
                       [&] { return stopping_ || queue_.size() >= last_group; });
      }
      wake_at_ = SIZE_MAX;  // it looks at the queue before it waits again
      if (queue_.empty() && stopping_) break;
      size_t bytes = 0;
      while (!queue_.empty() && group.size() < kMaxGroupOps && bytes < kMaxGroupBytes) {
        bytes += queue_.front()->bytes();
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    last_group = group.size();
    if (!group.empty()) CommitGroup(group);
    group.clear();
    if (sync_.mode == SyncMode::kInterval) SyncIfDue(false);
  }
  SyncIfDue(true);
}

void GroupCommitter::CommitGroup(std::vector<std::unique_ptr<CommitOp>>& ops) {
  rocksdb::WriteBatch batch;
  GroupContext ctx;
  bool durable = false;
  size_t prepared = 0;
  for (auto& op : ops) {
    if (auto st = op->Prepare(batch, ctx); !st) {
      op->Complete(st);
      op.reset();
      continue;
    }
    durable = durable || op->durable();
    ++prepared;
  }
  if (prepared == 0) return;
  for (TopicLog* topic : ctx.touched()) topic->WriteState(batch);
  if (batch.Count() == 0) {  // e.g. a cursor flush with nothing to flush
    for (auto& op : ops) {
      if (op) op->Complete({});
    }
    return;
  }

  Status result;
  if (needs_resume_) {
    // A failed write (a full disk, an I/O error) stops RocksDB until it is resumed. RocksDB
    // resumes by itself once a full disk has room again (Resume() then answers Busy); either way
    // the write below tells whether it is writable again, so the store carries on once the cause
    // is gone.
    if (auto st = db_->Resume(); !st.ok() && !st.IsBusy()) {
      result = tl::unexpected(FromRocks(st, "resuming after a failed write"));
    }
  }
  const bool sync = durable && sync_.mode == SyncMode::kAlways;
  double write_seconds = 0;
  std::chrono::steady_clock::time_point written;
  if (result) {
    rocksdb::WriteOptions wo;
    wo.sync = sync;
    const auto started = std::chrono::steady_clock::now();
    auto st = db_->Write(wo, &batch);
    written = std::chrono::steady_clock::now();
    write_seconds = std::chrono::duration<double>(written - started).count();
    if (!st.ok()) {
      result = tl::unexpected(FromRocks(st, "writing to the log"));
      if (!needs_resume_) {
        spdlog::error("storage: group write of {} requests failed: {}", prepared, st.ToString());
      }
      needs_resume_ = true;
    } else if (needs_resume_) {
      needs_resume_ = false;
      spdlog::info("storage: writing again after an earlier failure");
    }
  }
  // Observed outside the lock, which Submit() takes for every request.
  Histogram<12> appends{kCommitSecondsBounds};
  if (result) {
    for (const auto& op : ops) {
      if (op && op->appends()) {
        appends.Observe(std::chrono::duration<double>(written - op->submitted).count());
      }
    }
  }
  {
    std::lock_guard lock(mu_);
    healthy_ = !needs_resume_;
    ++stats_.groups;
    if (result) {
      stats_.ops += prepared;
      stats_.append_seconds.Add(appends);
      stats_.group_ops.Observe(static_cast<double>(prepared));
      if (sync) {
        ++stats_.syncs;
        stats_.sync_seconds.Observe(write_seconds);
      }
    } else {
      ++stats_.failures;
    }
  }
  if (result && sync_.mode == SyncMode::kInterval && !unsynced_) {
    unsynced_ = true;
    next_sync_ = std::chrono::steady_clock::now() + sync_.interval;
  }
  std::vector<std::function<void()>> after;
  t_after_group = &after;
  t_group_size = ops.size();
  for (TopicLog* topic : ctx.touched()) {
    if (result) {
      topic->CommitPending();
    } else {
      topic->RollbackPending();
    }
  }
  for (auto& op : ops) {
    if (op) op->Complete(result);
  }
  t_after_group = nullptr;
  t_group_size = 0;
  for (auto& fn : after) fn();
}

}  // namespace cairn::storage

// A topic's durable append-only log: consecutive offsets from start_offset() to next_offset(),
// stored as record batches in RocksDB, with the recent tail kept decoded in memory.
//
// Thread-safety: every public method may be called from any thread. Appends go through the
// store's group committer; reads never block appends (they take the topic's mutex only to copy
// a few pointers).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "storage/cursor.h"
#include "storage/error.h"
#include "storage/options.h"
#include "storage/record_batch.h"

namespace rocksdb {
class Status;
class WriteBatch;
}  // namespace rocksdb

namespace cairn::storage {

struct Engine;
class GroupContext;

struct AppendResult {
  uint64_t base_offset = 0;  // the batch holds base_offset .. base_offset + count - 1
  uint32_t count = 0;
  int64_t first_ts = 0;  // publish times as stored (never decreasing within a topic)
  int64_t last_ts = 0;
};

// A part of the log that cannot be read: a batch that fails its checksum or does not decode,
// a block RocksDB cannot read even unchecked, or offsets no batch holds.
struct Unreadable {
  uint64_t begin = 0, end = 0;  // [begin, end)
  std::string reason;
};

struct ReadResult {
  std::vector<StoredMessage> messages;  // in offset order, with no gaps
  // Where the next read should start: one past the last message returned, or where the log
  // starts if `from` had been trimmed away, or past `unreadable`.
  uint64_t next_offset = 0;
  // Keeps the bodies alive; they point into these batches.
  std::vector<std::shared_ptr<const DecodedBatch>> batches;
  // Set when the read starts on an unreadable part of the log: it holds no messages then, and
  // next_offset is the end of that part, where the log can be read again. A read that reaches
  // an unreadable part after some messages stops before it.
  std::optional<Unreadable> unreadable;
};

// Appends to `out` the messages of `batch` in [from, end), while `out` holds fewer than
// `max_count` and their bodies stay within `max_bytes` (the first message always fits). `bytes`
// carries the bodies' size across calls. Shared by every log that serves reads from batches.
void TakeFromBatch(const std::shared_ptr<const DecodedBatch>& batch, uint64_t from, uint64_t end,
                   size_t max_count, size_t max_bytes, size_t* bytes, ReadResult* out);

struct LogInfo {
  std::string name;
  uint64_t id = 0;
  uint64_t start_offset = 0;
  uint64_t next_offset = 0;  // messages in the log: next_offset - start_offset
  int64_t first_ts = 0;      // publish time of the first message; 0 for an empty log
  int64_t last_ts = 0;       // of the last message appended; 0 if none ever was
  uint64_t bytes = 0;        // stored bytes of the batches in the log
  Codec codec = Codec::kLz4;
  RetentionPolicy retention;
  TopicSettings settings;  // as configured; unset fields follow the store's defaults
};

class TopicLog : public std::enable_shared_from_this<TopicLog> {
 public:
  // Where the log stands: [start_offset, next_offset), its stored bytes and publish times.
  struct Extent {
    uint64_t start_offset = 0, next_offset = 0, bytes = 0;
    int64_t first_ts = 0, last_ts = 0;
  };
  TopicLog(Engine* engine, uint64_t id, std::string name, TopicSettings settings,
           const Extent& extent);

  uint64_t id() const { return id_; }
  const std::string& name() const { return name_; }

  using AppendCallback = std::function<void(Result<AppendResult>)>;
  // Appends `messages` (at least one) as one batch with consecutive offsets and calls `done` on
  // the committer thread once the batch is durable under the sync policy, or failed. The bodies
  // are copied before AppendAsync returns.
  // A `done` that hands its result to another thread should wake that thread through
  // AfterGroupCompleted() (group_commit.h), once for the whole group.
  void AppendAsync(std::span<const MessageIn> messages, AppendCallback done);
  // The same, waiting for the result.
  Result<AppendResult> Append(std::span<const MessageIn> messages);

  // Up to `max_count` messages from `from` on, stopping once `max_bytes` of bodies are gathered
  // (at least one message is returned if any is there). A `from` below the log's start reads
  // from the start. Offsets past the committed end return nothing. Damage does not fail a read:
  // an unreadable part of the log is returned as ReadResult::unreadable (and logged once), so
  // that readers can skip exactly it.
  Result<ReadResult> Read(uint64_t from, size_t max_count, size_t max_bytes) const;

  // The first offset whose publish time is at or after `ts_ns`; next_offset() if none is.
  Result<uint64_t> OffsetForTime(int64_t ts_ns) const;
  // When `offset` was published: exactly if its batch is in the tail cache, else its batch's first
  // publish time, read from the batch's header alone (nothing is decoded or decompressed). 0 if
  // the offset is not in the log or its batch cannot be read.
  int64_t PublishTimeOf(uint64_t offset) const;

  LogInfo Info() const;
  uint64_t start_offset() const;
  uint64_t next_offset() const;
  bool deleted() const { return deleted_.load(); }

  // Called on the committer thread after each durable append (or trim) with the new end of the
  // log. One listener; the broker uses it to wake channels. Must be quick.
  void SetAppendListener(std::function<void(uint64_t next_offset)> listener);

  std::vector<std::shared_ptr<ChannelCursor>> Channels() const;
  std::shared_ptr<ChannelCursor> FindChannel(std::string_view name) const;

 private:
  friend class Store;
  friend class GroupCommitter;
  friend class AppendOp;
  friend class TrimOp;
  friend class DeleteTopicOp;

  // Committer thread only.
  Status PrepareAppend(BatchBuilder& batch, rocksdb::WriteBatch& wb, GroupContext& ctx,
                       AppendResult* result);
  Status PrepareTrim(uint64_t new_start, uint64_t removed_bytes, int64_t new_first_ts,
                     rocksdb::WriteBatch& wb, GroupContext& ctx);
  void WriteState(rocksdb::WriteBatch& wb) const;
  void CommitPending();
  void RollbackPending();

  // Retention: drops the batches below `new_start` through the committer, moving the channels'
  // cursors along in the same atomic write.
  Status TrimTo(uint64_t new_start, uint64_t removed_bytes, int64_t new_first_ts);

  void AddChannel(std::shared_ptr<ChannelCursor> cursor);
  void RemoveChannel(std::string_view name);
  void SetSettings(TopicSettings settings);
  Codec EffectiveCodec() const;

  // Reads from RocksDB: batches from the one holding `from`, until a budget is spent.
  Status ReadCold(uint64_t from, uint64_t end, size_t max_count, size_t max_bytes,
                  ReadResult* out) const;
  // One scan of ReadCold, with or without RocksDB's block checksums; returns the iterator's
  // status (a Corruption is a block RocksDB could not read).
  rocksdb::Status ScanCold(uint64_t from, uint64_t end, size_t max_count, size_t max_bytes,
                           bool verify_checksums, ReadResult* out) const;
  // The base offset of the first batch after `from` (and below `end`) that RocksDB can reach;
  // `end` if there is none.
  uint64_t NextReadableBatch(uint64_t from, uint64_t end) const;
  // Makes `out` the report of [begin, end) being unreadable; logs each part once.
  void MarkUnreadable(uint64_t begin, uint64_t end, std::string reason, ReadResult* out) const;
  // Offsets below this are trimmed or being trimmed.
  uint64_t TrimmedBelow() const;

  Engine* const engine_;
  const uint64_t id_;
  const std::string name_;
  std::atomic<bool> deleted_{false};

  mutable std::mutex mu_;
  TopicSettings settings_;
  Extent committed_;  // as of the last successful write; what readers see
  // The start a trim in the group being written moves to. Its range delete can land in RocksDB
  // before committed_ shows it, and a read in that gap must see a trim, not a hole.
  uint64_t trimming_to_ = 0;
  std::deque<std::shared_ptr<const DecodedBatch>>
      tail_;  // contiguous, ends at committed_.next_offset
  size_t tail_bytes_ = 0;
  std::map<std::string, std::shared_ptr<ChannelCursor>, std::less<>> channels_;
  std::function<void(uint64_t)> listener_;
  // Ends of the unreadable parts already logged (every reader finds the same end: where the log
  // can be read again), so that each is logged once, not once per channel and read.
  mutable std::set<uint64_t> reported_unreadable_;

  // Committer thread only: as of the last prepared request.
  Extent w_;
  std::vector<std::shared_ptr<const DecodedBatch>> pending_;
};

}  // namespace cairn::storage

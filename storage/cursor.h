// A channel's cursor into its topic's log: the ack floor (every offset below it is finished) and
// the finished offsets above it, kept as ranges. Only unfinished offsets are delivered again after
// a restart.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "storage/error.h"

namespace cairn::storage {

namespace pb {
class CursorState;
}

// The set of finished offsets. Not thread-safe; ChannelCursor guards it.
class AckSet {
 public:
  explicit AckSet(uint64_t floor = 0) : floor_(floor) {}

  uint64_t floor() const { return floor_; }
  // Number of disjoint finished ranges above the floor (memory and encoded size grow with it).
  size_t range_count() const { return ranges_.size(); }
  // Number of finished offsets above the floor.
  uint64_t finished_above_floor() const;

  bool Contains(uint64_t offset) const;
  // Marks `offset` finished; false if it already was.
  bool Add(uint64_t offset);
  // Marks [begin, end) finished; returns how many of them were not already.
  uint64_t AddRange(uint64_t begin, uint64_t end);
  // The smallest unfinished offset at or after `from`.
  uint64_t NextUnfinished(uint64_t from) const;
  // Moves the floor up to `start` (retention trimmed the log below it). Returns how many offsets
  // below `start` were not finished: the messages the channel lost.
  uint64_t SkipTo(uint64_t start);
  // Forgets everything and puts the floor at `offset` (rewind or fast-forward).
  void Reset(uint64_t offset);

  // Ranges as (gap from the previous range's end or the floor, length) pairs.
  std::vector<uint64_t> EncodeRanges() const;
  static Result<AckSet> Decode(uint64_t floor, const std::vector<uint64_t>& ranges);

  friend bool operator==(const AckSet&, const AckSet&) = default;

 private:
  void AbsorbFloor();

  uint64_t floor_;
  std::map<uint64_t, uint64_t> ranges_;  // begin -> end (exclusive), disjoint, not adjacent
};

// One channel's cursor, shared by the broker (which finishes messages) and the store (which
// persists it in batches and moves it on retention). Thread-safe.
class ChannelCursor {
 public:
  ChannelCursor(uint64_t topic_id, uint64_t channel_id, std::string name, AckSet acks,
                uint64_t skipped)
      : topic_id_(topic_id),
        channel_id_(channel_id),
        name_(std::move(name)),
        acks_(std::move(acks)),
        skipped_(skipped) {}

  uint64_t topic_id() const { return topic_id_; }
  uint64_t channel_id() const { return channel_id_; }
  const std::string& name() const { return name_; }

  uint64_t floor() const;
  bool IsFinished(uint64_t offset) const;
  uint64_t NextUnfinished(uint64_t from) const;
  uint64_t skipped_by_retention() const;
  AckSet acks() const;

  // Marks `offset` finished. Persisted by the store's next cursor flush (within its
  // cursor_flush_interval), never on the append path.
  bool Finish(uint64_t offset);
  // Marks [begin, end) finished (a part of the log that cannot be read); returns how many of
  // those offsets were not finished yet.
  uint64_t FinishRange(uint64_t begin, uint64_t end);
  // Rewinds or fast-forwards the channel to `offset`.
  void Seek(uint64_t offset);
  // Retention moved the log's start to `start`: skip ahead, counting what was lost.
  void SkipTo(uint64_t start);

  // For the store: the state to persist, and whether it changed since the last Snapshot.
  bool TakeDirty(pb::CursorState* out);
  void MarkDirty();
  void Snapshot(pb::CursorState* out) const;

 private:
  const uint64_t topic_id_;
  const uint64_t channel_id_;
  const std::string name_;
  mutable std::mutex mu_;
  AckSet acks_;
  uint64_t skipped_;
  bool dirty_ = false;
};

}  // namespace cairn::storage

// What a topic appends to and its channels read from: the durable TopicLog of storage/, or, for
// an #ephemeral topic, a bounded log in memory that nothing writes to disk.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>

#include "storage/topic_log.h"

namespace cairn {

class Log {
 public:
  using AppendCallback = storage::TopicLog::AppendCallback;
  virtual ~Log() = default;

  // Appends `messages` with consecutive offsets; `done` runs once they are durable (or failed),
  // on any thread.
  virtual void Append(std::span<const storage::MessageIn> messages, AppendCallback done) = 0;
  virtual storage::Result<storage::ReadResult> Read(uint64_t from, size_t max_count,
                                                    size_t max_bytes) const = 0;
  virtual uint64_t start_offset() const = 0;
  virtual uint64_t next_offset() const = 0;
  // The first offset published at or after `ts_ns`; next_offset() if none was.
  virtual storage::Result<uint64_t> OffsetForTime(int64_t ts_ns) const = 0;
  // When `offset` was published (to within its batch: a batch's messages share their publish
  // time); 0 if it is not in the log or cannot be read. Cheap: no batch is decoded.
  virtual int64_t PublishTimeOf(uint64_t offset) const = 0;
  // Called after each append with the new end of the log, on any thread.
  virtual void SetAppendListener(std::function<void(uint64_t next_offset)> listener) = 0;
  virtual bool durable() const = 0;
  // The durable log's description (bytes on disk, publish times, codec, retention, settings);
  // nullopt for a log in memory.
  virtual std::optional<storage::LogInfo> Info() const = 0;
};

// The durable log: a TopicLog in the store.
class DurableLog final : public Log {
 public:
  explicit DurableLog(std::shared_ptr<storage::TopicLog> log) : log_(std::move(log)) {}
  void Append(std::span<const storage::MessageIn> messages, AppendCallback done) override {
    log_->AppendAsync(messages, std::move(done));
  }
  storage::Result<storage::ReadResult> Read(uint64_t from, size_t max_count,
                                            size_t max_bytes) const override {
    return log_->Read(from, max_count, max_bytes);
  }
  uint64_t start_offset() const override { return log_->start_offset(); }
  uint64_t next_offset() const override { return log_->next_offset(); }
  storage::Result<uint64_t> OffsetForTime(int64_t ts_ns) const override {
    return log_->OffsetForTime(ts_ns);
  }
  int64_t PublishTimeOf(uint64_t offset) const override { return log_->PublishTimeOf(offset); }
  void SetAppendListener(std::function<void(uint64_t)> listener) override {
    log_->SetAppendListener(std::move(listener));
  }
  bool durable() const override { return true; }
  std::optional<storage::LogInfo> Info() const override { return log_->Info(); }

 private:
  std::shared_ptr<storage::TopicLog> log_;
};

// An ephemeral topic's log: batches in memory, at most `max_messages` of them kept (older ones
// are dropped, as nsqd drops an ephemeral topic's overflow). Appends complete at once.
class MemoryLog final : public Log {
 public:
  explicit MemoryLog(size_t max_messages) : max_messages_(max_messages) {}
  void Append(std::span<const storage::MessageIn> messages, AppendCallback done) override;
  storage::Result<storage::ReadResult> Read(uint64_t from, size_t max_count,
                                            size_t max_bytes) const override;
  uint64_t start_offset() const override;
  uint64_t next_offset() const override;
  storage::Result<uint64_t> OffsetForTime(int64_t ts_ns) const override;
  int64_t PublishTimeOf(uint64_t offset) const override;
  void SetAppendListener(std::function<void(uint64_t)> listener) override;
  bool durable() const override { return false; }
  std::optional<storage::LogInfo> Info() const override { return std::nullopt; }

 private:
  const size_t max_messages_;
  mutable std::mutex mu_;
  std::deque<std::shared_ptr<const storage::DecodedBatch>> batches_;
  uint64_t start_ = 0, next_ = 0;
  int64_t last_ts_ = 0;
  std::function<void(uint64_t)> listener_;
};

}  // namespace cairn

#include "storage/topic_log.h"

#include <algorithm>
#include <future>

#include <fmt/format.h>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include "storage/cairn_storage.pb.h"
#include "storage/engine.h"
#include "storage/group_commit.h"
#include "storage/keys.h"

namespace cairn::storage {

class AppendOp final : public CommitOp {
 public:
  AppendOp(std::shared_ptr<TopicLog> topic, std::span<const MessageIn> messages, Codec codec,
           TopicLog::AppendCallback done)
      : topic_(std::move(topic)), batch_(codec, messages), done_(std::move(done)) {}

  size_t bytes() const override { return batch_.value().size(); }
  Status Prepare(rocksdb::WriteBatch& wb, GroupContext& ctx) override {
    return topic_->PrepareAppend(batch_, wb, ctx, &result_);
  }
  void Complete(const Status& status) override {
    if (status) {
      done_(result_);
    } else {
      done_(tl::unexpected(status.error()));
    }
  }

 private:
  std::shared_ptr<TopicLog> topic_;
  BatchBuilder batch_;
  TopicLog::AppendCallback done_;
  AppendResult result_;
};

class TrimOp final : public CommitOp {
 public:
  TrimOp(std::shared_ptr<TopicLog> topic, uint64_t new_start, uint64_t removed, int64_t first_ts)
      : topic_(std::move(topic)), new_start_(new_start), removed_(removed), first_ts_(first_ts) {}

  Status Prepare(rocksdb::WriteBatch& wb, GroupContext& ctx) override {
    return topic_->PrepareTrim(new_start_, removed_, first_ts_, wb, ctx);
  }
  void Complete(const Status& status) override { done_.set_value(status); }
  std::future<Status> result() { return done_.get_future(); }

 private:
  std::shared_ptr<TopicLog> topic_;
  uint64_t new_start_, removed_;
  int64_t first_ts_;
  std::promise<Status> done_;
};

TopicLog::TopicLog(Engine* engine, uint64_t id, std::string name, TopicSettings settings,
                   const Extent& extent)
    : engine_(engine),
      id_(id),
      name_(std::move(name)),
      settings_(std::move(settings)),
      committed_(extent),
      w_(extent) {}

void TopicLog::AppendAsync(std::span<const MessageIn> messages, AppendCallback done) {
  if (messages.empty()) {
    done(Fail(Errc::kInvalidArgument, "an append needs at least one message"));
    return;
  }
  if (deleted_) {
    done(Fail(Errc::kNotFound, fmt::format("topic {} was deleted", name_)));
    return;
  }
  // Encoding, compression and the payload checksum happen here, on the caller's thread.
  engine_->committer->Submit(
      std::make_unique<AppendOp>(shared_from_this(), messages, EffectiveCodec(), std::move(done)));
}

Result<AppendResult> TopicLog::Append(std::span<const MessageIn> messages) {
  std::promise<Result<AppendResult>> promise;
  auto future = promise.get_future();
  AppendAsync(messages, [&promise](Result<AppendResult> r) { promise.set_value(std::move(r)); });
  return future.get();
}

Status TopicLog::PrepareAppend(BatchBuilder& batch, rocksdb::WriteBatch& wb, GroupContext& ctx,
                               AppendResult* result) {
  if (deleted_) return Fail(Errc::kNotFound, fmt::format("topic {} was deleted", name_));
  const int64_t after = w_.last_ts > 0 ? w_.last_ts + 1 : 0;  // after the last message ever
  const int64_t shift = std::max<int64_t>(0, after - batch.first_ts());
  const std::string& value = batch.Seal(w_.next_offset, shift);
  const auto& h = batch.decoded()->header();
  if (auto st = wb.Put(engine_->log, keys::Batch(id_, w_.next_offset), value); !st.ok()) {
    return tl::unexpected(FromRocks(st, "adding a batch to the group"));
  }
  if (w_.next_offset == w_.start_offset) w_.first_ts = h.first_ts;
  *result = AppendResult{w_.next_offset, h.count, h.first_ts, h.last_ts};
  w_.next_offset += h.count;
  w_.bytes += value.size();
  w_.last_ts = h.last_ts;
  pending_.push_back(batch.decoded());
  ctx.Touch(this);
  return {};
}

Status TopicLog::PrepareTrim(uint64_t new_start, uint64_t removed_bytes, int64_t new_first_ts,
                             rocksdb::WriteBatch& wb, GroupContext& ctx) {
  if (deleted_) return Fail(Errc::kNotFound, fmt::format("topic {} was deleted", name_));
  if (new_start <= w_.start_offset) return {};
  // The range starts at the old start, not at 0, so tombstones never overlap one another.
  if (auto st = wb.DeleteRange(engine_->log, keys::Batch(id_, w_.start_offset),
                               keys::Batch(id_, new_start));
      !st.ok()) {
    return tl::unexpected(FromRocks(st, "adding a trim to the group"));
  }
  w_.start_offset = new_start;
  {
    std::lock_guard lock(mu_);
    trimming_to_ = new_start;
  }
  w_.bytes -= std::min(w_.bytes, removed_bytes);
  if (w_.start_offset == w_.next_offset) {
    w_.first_ts = 0;
  } else if (new_first_ts != 0) {
    w_.first_ts = new_first_ts;
  } else {
    // Retention trimmed everything it saw, and appends landed after its scan: the new first
    // batch is one of those, still in memory.
    std::lock_guard lock(mu_);
    for (const auto& b : tail_) {
      if (b->base_offset() == new_start) w_.first_ts = b->header().first_ts;
    }
    for (const auto& b : pending_) {
      if (b->base_offset() == new_start) w_.first_ts = b->header().first_ts;
    }
  }
  for (const auto& cursor : Channels()) {
    cursor->SkipTo(new_start);
    pb::CursorState state;
    cursor->Snapshot(&state);
    wb.Put(engine_->cursors, keys::Cursor(id_, cursor->channel_id()), state.SerializeAsString());
  }
  ctx.Touch(this);
  return {};
}

void TopicLog::WriteState(rocksdb::WriteBatch& wb) const {
  if (deleted_) return;
  pb::LogState state;
  state.set_start_offset(w_.start_offset);
  state.set_next_offset(w_.next_offset);
  state.set_bytes(w_.bytes);
  state.set_last_ts(w_.last_ts);
  wb.Put(engine_->meta, keys::LogState(id_), state.SerializeAsString());
}

void TopicLog::CommitPending() {
  std::function<void(uint64_t)> listener;
  {
    std::lock_guard lock(mu_);
    committed_ = w_;
    trimming_to_ = 0;
    for (auto& batch : pending_) {
      tail_bytes_ += batch->memory_bytes();
      tail_.push_back(std::move(batch));
    }
    while (!tail_.empty() && (tail_bytes_ > engine_->options.tail_cache_bytes_per_topic ||
                              tail_.front()->end_offset() <= committed_.start_offset)) {
      tail_bytes_ -= tail_.front()->memory_bytes();
      tail_.pop_front();
    }
    listener = listener_;
  }
  pending_.clear();
  if (listener) listener(w_.next_offset);
}

void TopicLog::RollbackPending() {
  std::lock_guard lock(mu_);
  w_ = committed_;
  trimming_to_ = 0;
  pending_.clear();
}

Status TopicLog::TrimTo(uint64_t new_start, uint64_t removed_bytes, int64_t new_first_ts) {
  auto op = std::make_unique<TrimOp>(shared_from_this(), new_start, removed_bytes, new_first_ts);
  auto result = op->result();
  engine_->committer->Submit(std::move(op));
  return result.get();
}

void TakeFromBatch(const std::shared_ptr<const DecodedBatch>& batch, uint64_t from, uint64_t end,
                   size_t max_count, size_t max_bytes, size_t* bytes, ReadResult* out) {
  bool used = false;
  for (const auto& m : batch->messages()) {
    if (m.offset < from) continue;
    if (m.offset >= end || out->messages.size() >= max_count) break;
    if (!out->messages.empty() && *bytes + m.body.size() > max_bytes) break;
    out->messages.push_back(m);
    *bytes += m.body.size();
    out->next_offset = m.offset + 1;
    used = true;
  }
  if (used) out->batches.push_back(batch);
}

Result<ReadResult> TopicLog::Read(uint64_t from, size_t max_count, size_t max_bytes) const {
  ReadResult out;
  std::vector<std::shared_ptr<const DecodedBatch>> cached;
  uint64_t end;
  {
    std::lock_guard lock(mu_);
    from = std::max({from, committed_.start_offset, trimming_to_});
    end = committed_.next_offset;
    out.next_offset = from;
    if (from >= end || max_count == 0) return out;
    if (!tail_.empty() && from >= tail_.front()->base_offset()) {
      // The first cached batch ending after `from`, then as many after it as can be needed.
      auto it = std::upper_bound(
          tail_.begin(), tail_.end(), from,
          [](uint64_t off, const auto& batch) { return off < batch->end_offset(); });
      size_t count = 0;
      for (; it != tail_.end() && count < max_count; ++it) {
        cached.push_back(*it);
        count += (*it)->end_offset() - std::max(from, (*it)->base_offset());
      }
    }
  }
  if (!cached.empty()) {
    engine_->tail_reads.fetch_add(1, std::memory_order_relaxed);
    size_t bytes = 0;
    for (const auto& batch : cached) {
      TakeFromBatch(batch, from, end, max_count, max_bytes, &bytes, &out);
      if (out.next_offset < batch->end_offset()) break;  // a budget ran out
    }
    return out;
  }
  engine_->rocksdb_reads.fetch_add(1, std::memory_order_relaxed);
  for (;;) {
    auto st = ReadCold(from, end, max_count, max_bytes, &out);
    if (st) return out;
    // Retention may have trimmed `from` away since it was checked: read from the new start.
    const uint64_t start = TrimmedBelow();
    if (st.error().code != Errc::kNotFound || start <= from) return tl::unexpected(st.error());
    from = start;
    out = ReadResult{};
    out.next_offset = from;
    if (from >= end) return out;
  }
}

Status TopicLog::ReadCold(uint64_t from, uint64_t end, size_t max_count, size_t max_bytes,
                          ReadResult* out) const {
  uint64_t start;
  {
    std::lock_guard lock(mu_);
    start = committed_.start_offset;
  }
  // Bounding the iterator to the live part of this topic keeps seeks clear of the range
  // tombstones retention leaves below the start.
  const std::string lower = keys::Batch(id_, start);
  const std::string upper = keys::Batch(id_, end);
  rocksdb::Slice lower_slice(lower), upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_lower_bound = &lower_slice;
  ro.iterate_upper_bound = &upper_slice;
  ro.readahead_size = 1u << 20;
  std::unique_ptr<rocksdb::Iterator> it(engine_->db->NewIterator(ro, engine_->log));
  it->SeekForPrev(keys::Batch(id_, from));
  if (!it->Valid()) it->Seek(keys::Batch(id_, from));
  size_t bytes = 0;
  for (; it->Valid(); it->Next()) {
    const uint64_t base = keys::PairLow(it->key().ToStringView());
    auto batch = DecodeBatch(it->value().ToStringView(), base);
    if (!batch) {
      return Fail(batch.error().code, fmt::format("topic {}: {}", name_, batch.error().message));
    }
    if ((*batch)->end_offset() <= from) continue;
    TakeFromBatch(*batch, from, end, max_count, max_bytes, &bytes, out);
    if (out->next_offset < (*batch)->end_offset()) break;
  }
  if (!it->status().ok()) return tl::unexpected(FromRocks(it->status(), "reading the log"));
  if (out->messages.empty() || out->messages.front().offset != from) {
    // Offsets in [start, end) must be there. Read() retries if retention trimmed them meanwhile;
    // otherwise a hole is damage, not an empty read.
    if (TrimmedBelow() > from) {
      return Fail(Errc::kNotFound, fmt::format("topic {}: offset {} was trimmed", name_, from));
    }
    return Fail(Errc::kCorruption,
                fmt::format("topic {}: offset {} is missing from the log", name_, from));
  }
  return {};
}

Result<uint64_t> TopicLog::OffsetForTime(int64_t ts_ns) const {
  uint64_t lo, hi;
  std::vector<std::shared_ptr<const DecodedBatch>> tail;
  {
    std::lock_guard lock(mu_);
    lo = committed_.start_offset;
    hi = committed_.next_offset;
    if (lo == hi || ts_ns <= committed_.first_ts) return lo;
    if (ts_ns > committed_.last_ts) return hi;
    if (!tail_.empty() && tail_.front()->header().first_ts < ts_ns) {
      tail.assign(tail_.begin(), tail_.end());
    }
  }
  if (!tail.empty()) {
    auto it = std::partition_point(tail.begin(), tail.end(), [&](const auto& batch) {
      return batch->header().last_ts < ts_ns;
    });
    if (it == tail.end()) return hi;
    for (const auto& m : (*it)->messages()) {
      if (m.timestamp_ns >= ts_ns) return m.offset;
    }
    return (*it)->end_offset();
  }
  // Binary search over batches: each probe reads one header, decoding only the batch that
  // straddles `ts_ns`.
  const std::string lower = keys::Batch(id_, lo);
  const std::string upper = keys::Batch(id_, hi);
  rocksdb::Slice lower_slice(lower), upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_lower_bound = &lower_slice;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(engine_->db->NewIterator(ro, engine_->log));
  engine_->rocksdb_reads.fetch_add(1, std::memory_order_relaxed);
  while (lo < hi) {
    const uint64_t mid = lo + (hi - lo) / 2;
    it->SeekForPrev(keys::Batch(id_, mid));
    if (!it->Valid()) {
      if (!it->status().ok()) return tl::unexpected(FromRocks(it->status(), "seeking by time"));
      return Fail(Errc::kCorruption, fmt::format("topic {}: no batch holds offset {}", name_, mid));
    }
    auto h = ParseBatchHeader(it->value().ToStringView());
    if (!h) return tl::unexpected(h.error());
    if (h->last_ts < ts_ns) {
      lo = h->base_offset + h->count;
    } else if (h->first_ts >= ts_ns) {
      hi = h->base_offset;
    } else {
      auto batch = DecodeBatch(it->value().ToStringView(), h->base_offset);
      if (!batch) return tl::unexpected(batch.error());
      for (const auto& m : (*batch)->messages()) {
        if (m.timestamp_ns >= ts_ns) return m.offset;
      }
      return (*batch)->end_offset();
    }
  }
  return lo;
}

LogInfo TopicLog::Info() const {
  std::lock_guard lock(mu_);
  LogInfo info;
  info.name = name_;
  info.id = id_;
  info.start_offset = committed_.start_offset;
  info.next_offset = committed_.next_offset;
  info.first_ts = committed_.start_offset == committed_.next_offset ? 0 : committed_.first_ts;
  info.last_ts = committed_.last_ts;
  info.bytes = committed_.bytes;
  info.settings = settings_;
  info.codec = settings_.codec.value_or(engine_->options.default_codec);
  info.retention.age = settings_.retention_age.value_or(engine_->options.default_retention.age);
  info.retention.bytes =
      settings_.retention_bytes.value_or(engine_->options.default_retention.bytes);
  return info;
}

uint64_t TopicLog::start_offset() const {
  std::lock_guard lock(mu_);
  return committed_.start_offset;
}

uint64_t TopicLog::TrimmedBelow() const {
  std::lock_guard lock(mu_);
  return std::max(committed_.start_offset, trimming_to_);
}

uint64_t TopicLog::next_offset() const {
  std::lock_guard lock(mu_);
  return committed_.next_offset;
}

void TopicLog::SetAppendListener(std::function<void(uint64_t)> listener) {
  std::lock_guard lock(mu_);
  listener_ = std::move(listener);
}

std::vector<std::shared_ptr<ChannelCursor>> TopicLog::Channels() const {
  std::lock_guard lock(mu_);
  std::vector<std::shared_ptr<ChannelCursor>> out;
  out.reserve(channels_.size());
  for (const auto& [name, cursor] : channels_) out.push_back(cursor);
  return out;
}

std::shared_ptr<ChannelCursor> TopicLog::FindChannel(std::string_view name) const {
  std::lock_guard lock(mu_);
  auto it = channels_.find(name);
  return it == channels_.end() ? nullptr : it->second;
}

void TopicLog::AddChannel(std::shared_ptr<ChannelCursor> cursor) {
  std::lock_guard lock(mu_);
  channels_[cursor->name()] = std::move(cursor);
}

void TopicLog::RemoveChannel(std::string_view name) {
  std::lock_guard lock(mu_);
  if (auto it = channels_.find(name); it != channels_.end()) channels_.erase(it);
}

void TopicLog::SetSettings(TopicSettings settings) {
  std::lock_guard lock(mu_);
  settings_ = std::move(settings);
}

Codec TopicLog::EffectiveCodec() const {
  std::lock_guard lock(mu_);
  return settings_.codec.value_or(engine_->options.default_codec);
}

}  // namespace cairn::storage

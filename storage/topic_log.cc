#include "storage/topic_log.h"

#include <algorithm>
#include <future>

#include <fmt/format.h>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>

#include "storage/cairn_storage.pb.h"
#include "storage/engine.h"
#include "storage/group_commit.h"
#include "storage/keys.h"

namespace cairn::storage {

namespace {

size_t BodyBytes(std::span<const MessageIn> messages) {
  size_t n = 0;
  for (const auto& m : messages) n += m.body.size();
  return n;
}

}  // namespace

class AppendOp final : public CommitOp {
 public:
  AppendOp(std::shared_ptr<TopicLog> topic, std::span<const MessageIn> messages, Codec codec,
           TopicLog::AppendCallback done)
      : topic_(std::move(topic)), batch_(codec, messages), done_(std::move(done)) {}

  size_t bytes() const override { return batch_.value().size(); }
  bool appends() const override { return true; }
  const BatchBuilder& batch() const { return batch_; }
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
  auto op =
      std::make_unique<AppendOp>(shared_from_this(), messages, EffectiveCodec(), std::move(done));
  if (!op->batch().within_bounds()) {
    // No reader would accept such a batch (record_batch.h, "Bounds"), so it is never written.
    op->Complete(Fail(
        Errc::kInvalidArgument,
        fmt::format("topic {}: an append of {} messages and {} bytes is over a "
                    "batch's bounds ({} messages, {} bytes encoded)",
                    name_, messages.size(), BodyBytes(messages), kMaxBatchCount, kMaxBatchRawLen)));
    return;
  }
  engine_->committer->Submit(std::move(op));
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
  auto reset = [&] {
    *out = ReadResult{};
    out->next_offset = from;
  };
  rocksdb::Status rs = ScanCold(from, end, max_count, max_bytes, /*verify_checksums=*/true, out);
  if (rs.IsCorruption()) {
    // RocksDB's checksum failed for a whole block (64 KiB, many batches). Read it again
    // unchecked: each batch's own CRC-32C then picks out exactly the damaged batches, and the
    // block's intact ones are still delivered.
    reset();
    rs = ScanCold(from, end, max_count, max_bytes, /*verify_checksums=*/false, out);
    if (rs.IsCorruption()) {
      // Not even its entries can be parsed: skip to the first batch past the block.
      const std::string reason = rs.ToString();
      reset();
      MarkUnreadable(from, NextReadableBatch(from, end), reason, out);
      return {};
    }
  }
  if (!rs.ok()) return tl::unexpected(FromRocks(rs, "reading the log"));
  if (out->unreadable) return {};
  if (out->messages.empty() || out->messages.front().offset != from) {
    // Offsets in [start, end) must be there. Read() retries if retention trimmed them meanwhile;
    // otherwise a hole is damage, reported as unreadable up to the next batch.
    if (TrimmedBelow() > from) {
      return Fail(Errc::kNotFound, fmt::format("topic {}: offset {} was trimmed", name_, from));
    }
    const uint64_t next =
        out->messages.empty() ? NextReadableBatch(from, end) : out->messages.front().offset;
    reset();
    MarkUnreadable(from, next, "no batch holds these offsets", out);
  }
  return {};
}

rocksdb::Status TopicLog::ScanCold(uint64_t from, uint64_t end, size_t max_count, size_t max_bytes,
                                   bool verify_checksums, ReadResult* out) const {
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
  ro.verify_checksums = verify_checksums;
  ro.fill_cache = verify_checksums;  // an unchecked block stays out of the cache checked reads use
  std::unique_ptr<rocksdb::Iterator> it(engine_->db->NewIterator(ro, engine_->log));
  it->SeekForPrev(keys::Batch(id_, from));
  if (!it->Valid()) {
    if (!it->status().ok()) return it->status();
    it->Seek(keys::Batch(id_, from));
  }
  size_t bytes = 0;
  for (; it->Valid(); it->Next()) {
    const uint64_t base = keys::PairLow(it->key().ToStringView());
    auto batch = DecodeBatch(it->value().ToStringView(), base);
    if (!batch) {
      // What comes before the damage is delivered; the next read starts on it and reports it.
      if (!out->messages.empty()) return rocksdb::Status::OK();
      if (base > from) {
        MarkUnreadable(from, base, "no batch holds these offsets", out);
        return rocksdb::Status::OK();
      }
      // The batch holding `from` is damaged: it ends where the next batch begins.
      std::string reason = batch.error().message;
      it->Next();
      if (!it->Valid() && !it->status().ok()) return it->status();
      uint64_t next = it->Valid() ? keys::PairLow(it->key().ToStringView()) : end;
      next = std::clamp(next, from + 1, std::max(end, from + 1));
      MarkUnreadable(from, next, std::move(reason), out);
      return rocksdb::Status::OK();
    }
    if ((*batch)->end_offset() <= from) continue;
    TakeFromBatch(*batch, from, end, max_count, max_bytes, &bytes, out);
    if (out->next_offset < (*batch)->end_offset()) break;
  }
  return it->status();
}

uint64_t TopicLog::NextReadableBatch(uint64_t from, uint64_t end) const {
  if (from + 1 >= end) return end;
  const std::string lower = keys::Batch(id_, from + 1);
  const std::string upper = keys::Batch(id_, end);
  rocksdb::Slice lower_slice(lower), upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_lower_bound = &lower_slice;
  ro.iterate_upper_bound = &upper_slice;
  ro.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> it(engine_->db->NewIterator(ro, engine_->log));
  // Where a seek to `offset` lands: the base of the first batch at or after it (`end` if none),
  // or nothing if that takes RocksDB into an unreadable block.
  auto landing = [&](uint64_t offset) -> std::optional<uint64_t> {
    it->Seek(keys::Batch(id_, offset));
    if (it->Valid()) return keys::PairLow(it->key().ToStringView());
    if (it->status().ok()) return end;
    return std::nullopt;
  };
  if (auto base = landing(from + 1)) return *base;
  // Seeks into the damaged block fail and seeks past it succeed: find the first offset past it.
  uint64_t bad = from + 1, good = end;
  while (good - bad > 1) {
    const uint64_t mid = bad + (good - bad) / 2;
    (landing(mid) ? good : bad) = mid;
  }
  return landing(good).value_or(end);
}

void TopicLog::MarkUnreadable(uint64_t begin, uint64_t end, std::string reason,
                              ReadResult* out) const {
  bool first;
  {
    std::lock_guard lock(mu_);
    first = reported_unreadable_.insert(end).second;
  }
  if (first) {
    engine_->unreadable_ranges.fetch_add(1, std::memory_order_relaxed);
    spdlog::error("topic={} offsets {} to {} are unreadable and are skipped ({} messages): {}",
                  name_, begin, end - 1, end - begin, reason);
  }
  out->messages.clear();
  out->batches.clear();
  out->next_offset = end;
  out->unreadable = Unreadable{begin, end, std::move(reason)};
}

Result<uint64_t> TopicLog::OffsetForTime(int64_t ts_ns) const {
  uint64_t lo, hi;
  std::vector<std::shared_ptr<const DecodedBatch>> tail;
  {
    std::lock_guard lock(mu_);
    lo = std::max(committed_.start_offset, trimming_to_);
    hi = committed_.next_offset;
    if (lo >= hi || ts_ns <= committed_.first_ts) return std::min(lo, hi);
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
      // Retention trimmed past `mid` after `lo` was read (the iterator was made after it):
      // search again from the new start. Retention only moves forward, so this ends.
      if (TrimmedBelow() > mid) return OffsetForTime(ts_ns);
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

int64_t TopicLog::PublishTimeOf(uint64_t offset) const {
  uint64_t start;
  {
    std::lock_guard lock(mu_);
    start = std::max(committed_.start_offset, trimming_to_);
    if (offset < start || offset >= committed_.next_offset) return 0;
    if (!tail_.empty() && offset >= tail_.front()->base_offset()) {
      auto it = std::upper_bound(
          tail_.begin(), tail_.end(), offset,
          [](uint64_t off, const auto& batch) { return off < batch->end_offset(); });
      if (it != tail_.end()) {
        return (*it)->messages()[offset - (*it)->base_offset()].timestamp_ns;
      }
    }
  }
  engine_->rocksdb_reads.fetch_add(1, std::memory_order_relaxed);
  // Bounded to the live log, clear of retention's tombstones below it.
  const std::string lower = keys::Batch(id_, start);
  const std::string upper = keys::Batch(id_, offset + 1);
  rocksdb::Slice lower_slice(lower), upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_lower_bound = &lower_slice;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(engine_->db->NewIterator(ro, engine_->log));
  it->SeekForPrev(keys::Batch(id_, offset));
  if (!it->Valid()) return 0;
  auto h = ParseBatchHeader(it->value().ToStringView());
  return h && offset < h->base_offset + h->count ? h->first_ts : 0;
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

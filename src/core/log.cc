#include "src/core/log.h"

#include <algorithm>

namespace cairn {

void MemoryLog::Append(std::span<const storage::MessageIn> messages, AppendCallback done) {
  if (messages.empty()) {
    done(storage::Fail(storage::Errc::kInvalidArgument, "empty batch"));
    return;
  }
  storage::BatchBuilder builder(storage::Codec::kNone, messages);
  storage::AppendResult result;
  std::function<void(uint64_t)> listener;
  {
    std::lock_guard lock(mu_);
    const int64_t after = last_ts_ > 0 ? last_ts_ + 1 : 0;  // strictly after, as DurableLog
    const int64_t shift = std::max<int64_t>(0, after - builder.first_ts());
    builder.Seal(next_, shift);
    auto batch = builder.decoded();
    result = {next_, batch->header().count, batch->header().first_ts, batch->header().last_ts};
    last_ts_ = result.last_ts;
    next_ += result.count;
    batches_.push_back(std::move(batch));
    // Drop whole batches from the front while the rest still holds max_messages.
    while (batches_.size() > 1 && next_ - batches_[1]->base_offset() >= max_messages_) {
      batches_.pop_front();
      start_ = batches_.front()->base_offset();
    }
    listener = listener_;
  }
  done(result);
  if (listener) listener(result.base_offset + result.count);
}

storage::Result<storage::ReadResult> MemoryLog::Read(uint64_t from, size_t max_count,
                                                     size_t max_bytes) const {
  storage::ReadResult out;
  std::lock_guard lock(mu_);
  from = std::max(from, start_);
  out.next_offset = from;
  size_t bytes = 0;
  // Batches are contiguous: find the one holding `from`, then take until a budget runs out.
  auto it = std::upper_bound(batches_.begin(), batches_.end(), from,
                             [](uint64_t off, const auto& b) { return off < b->end_offset(); });
  for (; it != batches_.end() && out.messages.size() < max_count; ++it) {
    storage::TakeFromBatch(*it, from, next_, max_count, max_bytes, &bytes, &out);
    if (out.next_offset < (*it)->end_offset()) break;
  }
  return out;
}

uint64_t MemoryLog::start_offset() const {
  std::lock_guard lock(mu_);
  return start_;
}

uint64_t MemoryLog::next_offset() const {
  std::lock_guard lock(mu_);
  return next_;
}

storage::Result<uint64_t> MemoryLog::OffsetForTime(int64_t ts_ns) const {
  std::lock_guard lock(mu_);
  for (const auto& b : batches_) {
    if (b->header().last_ts < ts_ns) continue;
    for (const auto& m : b->messages()) {
      if (m.timestamp_ns >= ts_ns) return m.offset;
    }
  }
  return next_;
}

int64_t MemoryLog::PublishTimeOf(uint64_t offset) const {
  std::lock_guard lock(mu_);
  if (offset < start_ || offset >= next_) return 0;
  auto it = std::upper_bound(batches_.begin(), batches_.end(), offset,
                             [](uint64_t off, const auto& b) { return off < b->end_offset(); });
  if (it == batches_.end()) return 0;
  return (*it)->messages()[offset - (*it)->base_offset()].timestamp_ns;
}

void MemoryLog::SetAppendListener(std::function<void(uint64_t)> listener) {
  std::lock_guard lock(mu_);
  listener_ = std::move(listener);
}

}  // namespace cairn

#include "storage/cursor.h"

#include <algorithm>

#include <fmt/format.h>

#include "storage/cairn_storage.pb.h"

namespace cairn::storage {

uint64_t AckSet::finished_above_floor() const {
  uint64_t n = 0;
  for (const auto& [b, e] : ranges_) n += e - b;
  return n;
}

bool AckSet::Contains(uint64_t offset) const {
  if (offset < floor_) return true;
  auto it = ranges_.upper_bound(offset);
  if (it == ranges_.begin()) return false;
  --it;
  return offset < it->second;
}

void AckSet::AbsorbFloor() {
  auto it = ranges_.begin();
  if (it != ranges_.end() && it->first <= floor_) {
    floor_ = std::max(floor_, it->second);
    ranges_.erase(it);
  }
}

bool AckSet::Add(uint64_t offset) {
  if (offset < floor_) return false;
  if (offset == floor_) {
    ++floor_;
    AbsorbFloor();
    return true;
  }
  // One lookup: the range starting after `offset`, and the one before it. Consumers finish in
  // nearly increasing order, so the usual case extends the range just below in place.
  auto next = ranges_.upper_bound(offset);
  const bool joins_next = next != ranges_.end() && next->first == offset + 1;
  if (next != ranges_.begin()) {
    auto prev = std::prev(next);
    if (offset < prev->second) return false;  // already finished
    if (prev->second == offset) {
      prev->second = joins_next ? next->second : offset + 1;
      if (joins_next) ranges_.erase(next);
      return true;
    }
  }
  if (joins_next) {
    auto node = ranges_.extract(next);  // re-key without reallocating
    node.key() = offset;
    ranges_.insert(std::move(node));
    return true;
  }
  ranges_.emplace_hint(next, offset, offset + 1);
  return true;
}

uint64_t AckSet::AddRange(uint64_t begin, uint64_t end) {
  begin = std::max(begin, floor_);
  if (begin >= end) return 0;
  uint64_t added = end - begin;
  // Absorb every range that overlaps [begin, end) or touches it, so ranges stay disjoint and
  // apart.
  auto it = ranges_.upper_bound(begin);
  if (it != ranges_.begin() && std::prev(it)->second >= begin) --it;
  while (it != ranges_.end() && it->first <= end) {
    const uint64_t overlap_begin = std::max(it->first, begin);
    const uint64_t overlap_end = std::min(it->second, end);
    if (overlap_end > overlap_begin) added -= overlap_end - overlap_begin;
    begin = std::min(begin, it->first);
    end = std::max(end, it->second);
    it = ranges_.erase(it);
  }
  ranges_.emplace(begin, end);
  AbsorbFloor();
  return added;
}

uint64_t AckSet::NextUnfinished(uint64_t from) const {
  if (from < floor_) from = floor_;
  auto it = ranges_.upper_bound(from);
  if (it != ranges_.begin()) {
    --it;
    if (from < it->second) from = it->second;
  }
  return from;
}

uint64_t AckSet::SkipTo(uint64_t start) {
  if (start <= floor_) return 0;
  uint64_t lost = start - floor_;
  while (!ranges_.empty() && ranges_.begin()->first < start) {
    auto it = ranges_.begin();
    const uint64_t end = std::min(it->second, start);
    lost -= end - it->first;
    if (it->second > start) {
      const uint64_t keep_end = it->second;
      ranges_.erase(it);
      ranges_[start] = keep_end;
      break;
    }
    ranges_.erase(it);
  }
  floor_ = start;
  AbsorbFloor();
  return lost;
}

void AckSet::Reset(uint64_t offset) {
  floor_ = offset;
  ranges_.clear();
}

std::vector<uint64_t> AckSet::EncodeRanges() const {
  std::vector<uint64_t> out;
  out.reserve(ranges_.size() * 2);
  uint64_t prev = floor_;
  for (const auto& [b, e] : ranges_) {
    out.push_back(b - prev);
    out.push_back(e - b);
    prev = e;
  }
  return out;
}

Result<AckSet> AckSet::Decode(uint64_t floor, const std::vector<uint64_t>& ranges) {
  if (ranges.size() % 2 != 0) {
    return Fail(Errc::kCorruption, "cursor ranges have an odd number of values");
  }
  AckSet set(floor);
  uint64_t prev = floor;
  for (size_t i = 0; i < ranges.size(); i += 2) {
    const uint64_t b = prev + ranges[i];
    const uint64_t e = b + ranges[i + 1];
    if (ranges[i + 1] == 0 || e < b || (i > 0 && ranges[i] == 0) || b < prev) {
      return Fail(Errc::kCorruption, fmt::format("cursor range {} is malformed", i / 2));
    }
    set.ranges_[b] = e;
    prev = e;
  }
  set.AbsorbFloor();
  return set;
}

uint64_t ChannelCursor::floor() const {
  std::lock_guard lock(mu_);
  return acks_.floor();
}

bool ChannelCursor::IsFinished(uint64_t offset) const {
  std::lock_guard lock(mu_);
  return acks_.Contains(offset);
}

uint64_t ChannelCursor::NextUnfinished(uint64_t from) const {
  std::lock_guard lock(mu_);
  return acks_.NextUnfinished(from);
}

uint64_t ChannelCursor::skipped_by_retention() const {
  std::lock_guard lock(mu_);
  return skipped_;
}

AckSet ChannelCursor::acks() const {
  std::lock_guard lock(mu_);
  return acks_;
}

bool ChannelCursor::Finish(uint64_t offset) {
  std::lock_guard lock(mu_);
  if (!acks_.Add(offset)) return false;
  dirty_ = true;
  return true;
}

uint64_t ChannelCursor::FinishRange(uint64_t begin, uint64_t end) {
  std::lock_guard lock(mu_);
  const uint64_t added = acks_.AddRange(begin, end);
  if (added > 0) dirty_ = true;
  return added;
}

void ChannelCursor::Seek(uint64_t offset) {
  std::lock_guard lock(mu_);
  acks_.Reset(offset);
  dirty_ = true;
}

void ChannelCursor::SkipTo(uint64_t start) {
  std::lock_guard lock(mu_);
  if (start <= acks_.floor()) return;
  skipped_ += acks_.SkipTo(start);
  dirty_ = true;
}

void ChannelCursor::Snapshot(pb::CursorState* out) const {
  std::lock_guard lock(mu_);
  out->set_ack_floor(acks_.floor());
  out->clear_finished();
  for (uint64_t v : acks_.EncodeRanges()) out->add_finished(v);
  out->set_skipped_by_retention(skipped_);
}

bool ChannelCursor::TakeDirty(pb::CursorState* out) {
  {
    std::lock_guard lock(mu_);
    if (!dirty_) return false;
    dirty_ = false;
  }
  Snapshot(out);
  return true;
}

void ChannelCursor::MarkDirty() {
  std::lock_guard lock(mu_);
  dirty_ = true;
}

}  // namespace cairn::storage

#include "storage/record_batch.h"

#include <algorithm>
#include <limits>

#include <fmt/format.h>

#include "src/base/crc32c.h"
#include "storage/coding.h"

namespace cairn::storage {
namespace {

void WriteHeader(const BatchHeader& h, char* p) {
  p[4] = static_cast<char>(kBatchVersion);
  p[5] = static_cast<char>(h.codec);
  StoreLE<uint16_t>(p + 6, 0);
  StoreLE<uint64_t>(p + 8, h.base_offset);
  StoreLE<uint32_t>(p + 16, h.count);
  StoreLE<uint32_t>(p + 20, h.raw_len);
  StoreLE<int64_t>(p + 24, h.first_ts);
  StoreLE<int64_t>(p + 32, h.last_ts);
}

uint32_t BatchCrc(uint32_t payload_crc, std::string_view value) {
  return Crc32cExtend(payload_crc, value.substr(4, kBatchHeaderSize - 4));
}

}  // namespace

Status DecodedBatch::Parse() {
  messages_.clear();
  messages_.reserve(header_.count);  // at most raw_len / 3, checked with the header
  std::string_view in = payload_;
  int64_t prev_ts = header_.first_ts;
  // Times are added in unsigned arithmetic and checked against what an int64_t holds, so that no
  // value of a damaged payload can overflow them.
  auto u = [](int64_t v) { return static_cast<uint64_t>(v); };
  const uint64_t span = u(header_.last_ts) - u(header_.first_ts);
  for (uint32_t i = 0; i < header_.count; ++i) {
    uint64_t ts_delta, defer, len;
    if (!GetVarint64(&in, &ts_delta) || !GetVarint64(&in, &defer) || !GetVarint64(&in, &len) ||
        len > in.size()) {
      return Fail(Errc::kCorruption, fmt::format("batch at offset {}: message {} is truncated",
                                                 header_.base_offset, i));
    }
    StoredMessage m;
    m.offset = header_.base_offset + i;
    m.timestamp_ns = static_cast<int64_t>(u(header_.first_ts) + std::min(ts_delta, span));
    const bool defer_fits = defer <= u(std::numeric_limits<int64_t>::max()) - u(m.timestamp_ns);
    m.deliver_at_ns =
        defer == 0 || !defer_fits ? 0 : static_cast<int64_t>(u(m.timestamp_ns) + defer);
    m.body = in.substr(0, len);
    in.remove_prefix(len);
    if (ts_delta > span || m.timestamp_ns < prev_ts || !defer_fits) {
      return Fail(Errc::kCorruption, fmt::format("batch at offset {}: message {} is out of order",
                                                 header_.base_offset, i));
    }
    prev_ts = m.timestamp_ns;
    messages_.push_back(m);
  }
  if (!in.empty()) {
    return Fail(Errc::kCorruption,
                fmt::format("batch at offset {}: {} bytes after the last message",
                            header_.base_offset, in.size()));
  }
  return {};
}

void DecodedBatch::Rebase() {
  for (size_t i = 0; i < messages_.size(); ++i) messages_[i].offset = header_.base_offset + i;
}

BatchBuilder::BatchBuilder(Codec codec, std::span<const MessageIn> messages)
    : decoded_(std::make_shared<DecodedBatch>()) {
  BatchHeader& h = decoded_->header_;
  h.count = static_cast<uint32_t>(messages.size());
  h.first_ts = messages.empty() ? 0 : messages.front().timestamp_ns;

  std::string& payload = decoded_->payload_;
  size_t size = 0;
  for (const auto& m : messages) size += m.body.size() + 12;
  payload.reserve(size);
  // Publish times strictly increase (each message at least 1 ns after the one before), so that
  // a publish time names one message: a metric point stamped with it is the same point however
  // often it is written.
  int64_t ts = h.first_ts - 1;
  for (const auto& m : messages) {
    ts = std::max(ts + 1, m.timestamp_ns);
    PutVarint64(&payload, static_cast<uint64_t>(ts - h.first_ts));
    PutVarint64(&payload, m.deliver_at_ns > ts ? static_cast<uint64_t>(m.deliver_at_ns - ts) : 0);
    PutVarint64(&payload, m.body.size());
    payload.append(m.body);
  }
  h.last_ts = ts;
  h.raw_len = static_cast<uint32_t>(payload.size());
  within_bounds_ = payload.size() <= kMaxBatchRawLen && messages.size() <= kMaxBatchCount;
  decoded_->Parse();  // cannot fail on what we just wrote; fills the views

  value_.assign(kBatchHeaderSize, '\0');
  // A payload too small to gain from compression, or one that compression barely shrinks, is
  // stored as it is, as RocksDB stores a block whose compression saves less than an eighth: its
  // readers then decompress nothing either. One 100-byte log line grows under lz4 (0.99:1), two
  // shrink to 0.84; the check before compressing saves the work for the single-message PUBs.
  if (codec != Codec::kNone && payload.size() >= kMinCompressedPayload) {
    Compress(codec, payload, &value_);
    // Nothing at all comes back only if the codec failed (zstd out of memory): the raw payload
    // is stored then, never an empty one no reader could decompress.
    const size_t compressed = value_.size() - kBatchHeaderSize;
    if (compressed == 0 || compressed > payload.size() - payload.size() / 8) {
      value_.resize(kBatchHeaderSize);
      codec = Codec::kNone;
    }
  } else {
    codec = Codec::kNone;
  }
  if (codec == Codec::kNone) value_.append(payload);
  h.codec = codec;
  payload_crc_ = Crc32c(std::string_view(value_).substr(kBatchHeaderSize));
  decoded_->stored_bytes_ = value_.size();
}

const std::string& BatchBuilder::Seal(uint64_t base_offset, int64_t ts_shift) {
  BatchHeader& h = decoded_->header_;
  h.base_offset = base_offset;
  if (ts_shift != 0) {
    h.first_ts += ts_shift;
    h.last_ts += ts_shift;
    for (auto& m : decoded_->messages_) {
      m.timestamp_ns += ts_shift;
      if (m.deliver_at_ns != 0) m.deliver_at_ns += ts_shift;
    }
  }
  decoded_->Rebase();
  WriteHeader(h, value_.data());
  StoreLE<uint32_t>(value_.data(), BatchCrc(payload_crc_, value_));
  return value_;
}

Result<BatchHeader> ParseBatchHeader(std::string_view value) {
  if (value.size() < kBatchHeaderSize) {
    return Fail(Errc::kCorruption,
                fmt::format("batch of {} bytes is shorter than its header", value.size()));
  }
  const char* p = value.data();
  if (static_cast<uint8_t>(p[4]) != kBatchVersion) {
    return Fail(Errc::kCorruption,
                fmt::format("batch format version {} is unknown", static_cast<uint8_t>(p[4])));
  }
  if (!IsKnownCodec(static_cast<uint8_t>(p[5]))) {
    return Fail(Errc::kCorruption,
                fmt::format("batch codec {} is unknown", static_cast<uint8_t>(p[5])));
  }
  BatchHeader h;
  h.codec = static_cast<Codec>(p[5]);
  h.base_offset = LoadLE<uint64_t>(p + 8);
  h.count = LoadLE<uint32_t>(p + 16);
  h.raw_len = LoadLE<uint32_t>(p + 20);
  h.first_ts = LoadLE<int64_t>(p + 24);
  h.last_ts = LoadLE<int64_t>(p + 32);
  // Checked before anything is allocated for the payload (see the bounds in record_batch.h); an
  // end offset past 2^64 is no batch's either.
  if (h.count == 0 || h.last_ts < h.first_ts || h.raw_len > kMaxBatchRawLen ||
      h.count > kMaxBatchCount || h.count > h.raw_len / 3 ||
      h.base_offset + h.count < h.base_offset) {
    return Fail(Errc::kCorruption,
                fmt::format("batch at offset {} has an impossible header", h.base_offset));
  }
  return h;
}

Result<std::shared_ptr<const DecodedBatch>> DecodeBatch(std::string_view value,
                                                        uint64_t expected_base) {
  auto header = ParseBatchHeader(value);
  if (!header) return tl::unexpected(header.error());
  if (header->base_offset != expected_base) {
    return Fail(Errc::kCorruption, fmt::format("batch stored at offset {} says it starts at {}",
                                               expected_base, header->base_offset));
  }
  const std::string_view payload = value.substr(kBatchHeaderSize);
  const uint32_t crc = BatchCrc(Crc32c(payload), value);
  if (crc != LoadLE<uint32_t>(value.data())) {
    return Fail(Errc::kCorruption,
                fmt::format("batch at offset {} fails its CRC (stored {:08x}, computed {:08x})",
                            expected_base, LoadLE<uint32_t>(value.data()), crc));
  }
  auto batch = std::make_shared<DecodedBatch>();
  batch->header_ = *header;
  batch->stored_bytes_ = value.size();
  if (auto st = Decompress(header->codec, payload, header->raw_len, &batch->payload_); !st) {
    return Fail(Errc::kCorruption,
                fmt::format("batch at offset {}: {}", expected_base, st.error().message));
  }
  if (auto st = batch->Parse(); !st) return tl::unexpected(st.error());
  return std::shared_ptr<const DecodedBatch>(std::move(batch));
}

}  // namespace cairn::storage

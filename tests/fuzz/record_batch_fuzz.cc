// Harness: a record batch as read back from disk (storage/record_batch.h): storage::DecodeBatch and
// storage::ParseBatchHeader. A batch carries a CRC-32C, which raw bytes almost never match, so the
// first byte of the input picks how the rest becomes a stored value:
//
//   0  raw: the value as is (the header and CRC checks);
//   1  raw, CRC fixed: the value with the CRC the harness computes (BatchCrc: the payload, then
//      header bytes 4..40), so decompression and payload parsing see arbitrary bytes;
//   2  payload: header fields, then a payload the harness compresses with the header's codec and
//      checksums, so payload parsing sees arbitrary bytes behind valid lz4 and zstd;
//   3  written, then damaged: messages written with BatchBuilder and sealed as the store does,
//      which must decode to themselves; then bytes of the value flipped, with the CRC fixed or not.
//
// Checked besides crashes, sanitizer reports, time and memory (a corrupt header must not make the
// decoder allocate what its value cannot back):
// - a decoded batch has its header's count of messages, at consecutive offsets from the key's,
//   with publish times in order within [first_ts, last_ts], bodies within the payload, and its
//   header is what ParseBatchHeader reads;
// - a decoded batch written again with BatchBuilder decodes to the same messages.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "src/base/crc32c.h"
#include "storage/coding.h"
#include "storage/compression.h"
#include "storage/record_batch.h"
#include "tests/fuzz/fuzz_support.h"

namespace cairn::storage {
namespace {

using fuzz::Input;

// A publish time of this century, so that a batch the harness writes is one the broker could.
constexpr int64_t kEpoch = 1'700'000'000'000'000'000;

// The CRC record_batch.cc stores: the payload's, extended over header bytes 4..40.
void FixCrc(std::string& value) {
  if (value.size() < kBatchHeaderSize) return;
  const std::string_view v(value);
  const uint32_t crc =
      Crc32cExtend(Crc32c(v.substr(kBatchHeaderSize)), v.substr(4, kBatchHeaderSize - 4));
  StoreLE<uint32_t>(value.data(), crc);
}

bool SameHeader(const BatchHeader& a, const BatchHeader& b) {
  return a.base_offset == b.base_offset && a.count == b.count && a.codec == b.codec &&
         a.raw_len == b.raw_len && a.first_ts == b.first_ts && a.last_ts == b.last_ts;
}

void CheckDecoded(const DecodedBatch& batch, std::string_view value, uint64_t base) {
  const BatchHeader& h = batch.header();
  const auto parsed = ParseBatchHeader(value);
  FUZZ_CHECK(parsed && SameHeader(*parsed, h));
  FUZZ_CHECK(h.base_offset == base && batch.base_offset() == base);
  FUZZ_CHECK(h.count >= 1 && batch.messages().size() == h.count);
  FUZZ_CHECK(batch.end_offset() == base + h.count);
  FUZZ_CHECK(batch.stored_bytes() == value.size());
  FUZZ_CHECK(h.first_ts <= h.last_ts);
  uint64_t body_bytes = 0;
  int64_t prev = h.first_ts;
  for (size_t i = 0; i < batch.messages().size(); ++i) {
    const StoredMessage& m = batch.messages()[i];
    FUZZ_CHECK(m.offset == base + i);
    FUZZ_CHECK(m.timestamp_ns >= prev && m.timestamp_ns <= h.last_ts);
    FUZZ_CHECK(m.deliver_at_ns == 0 || m.deliver_at_ns > m.timestamp_ns);
    prev = m.timestamp_ns;
    body_bytes += m.body.size();
  }
  // Each message spends at least three bytes of payload on its varints.
  FUZZ_CHECK(body_bytes + 3 * uint64_t{h.count} <= h.raw_len);
  FUZZ_CHECK(batch.memory_bytes() >= h.raw_len);
}

// A decoded batch whose times are ones Cairn writes (publish times that strictly increase, from
// the wall clock, so positive and far from int64's ends; BatchBuilder assumes no other) is
// written again with BatchBuilder, and must decode to the same messages.
void CheckRewrite(const DecodedBatch& batch) {
  constexpr int64_t kLatest = int64_t{1} << 62;
  const auto messages = batch.messages();
  for (size_t i = 0; i < messages.size(); ++i) {
    const StoredMessage& m = messages[i];
    if (m.timestamp_ns < 0 || m.timestamp_ns > kLatest || m.deliver_at_ns > kLatest) return;
    if (i > 0 && m.timestamp_ns <= messages[i - 1].timestamp_ns) return;
  }
  std::vector<MessageIn> in;
  for (const StoredMessage& m : messages) in.push_back({m.body, m.timestamp_ns, m.deliver_at_ns});
  BatchBuilder builder(batch.header().codec, in);
  const std::string value = builder.Seal(batch.base_offset(), 0);
  const auto again = DecodeBatch(value, batch.base_offset());
  FUZZ_CHECK(again.has_value());
  const auto copy = (*again)->messages();
  FUZZ_CHECK(copy.size() == messages.size());
  for (size_t i = 0; i < copy.size(); ++i) {
    FUZZ_CHECK(copy[i].offset == messages[i].offset && copy[i].body == messages[i].body &&
               copy[i].timestamp_ns == messages[i].timestamp_ns &&
               copy[i].deliver_at_ns == messages[i].deliver_at_ns);
  }
}

// Decodes `value` as stored at offset `base`; whatever the outcome, nothing may crash.
void Decode(std::string_view value, uint64_t base) {
  const auto header = ParseBatchHeader(value);
  if (header) FUZZ_CHECK(header->count >= 1 && header->first_ts <= header->last_ts);
  const auto batch = DecodeBatch(value, base);
  if (!batch) {
    FUZZ_CHECK(!batch.error().message.empty());
    return;
  }
  FUZZ_CHECK(header.has_value());
  CheckDecoded(**batch, value, base);
  CheckRewrite(**batch);
}

// The key's offset: the header's own, so that the base check passes and decoding goes on.
uint64_t BaseOf(std::string_view value) {
  return value.size() >= 16 ? LoadLE<uint64_t>(value.data() + 8) : 0;
}

void Raw(Input& in, bool fix_crc) {
  std::string value(in.Rest());
  if (fix_crc) FixCrc(value);
  Decode(value, BaseOf(value));
}

void Payload(Input& in) {
  const auto codec = static_cast<Codec>(in.Byte() % 3);
  BatchHeader h;
  h.base_offset = in.Int<uint64_t>();
  h.count = in.Int<uint32_t>();
  h.first_ts = in.Int<int64_t>();
  h.last_ts = in.Int<int64_t>();
  const bool own_raw_len = in.Bool();
  const uint32_t raw_len = in.Int<uint32_t>();
  const std::string_view payload = in.Rest();
  std::string value(kBatchHeaderSize, '\0');
  Compress(codec, payload, &value);
  value[4] = static_cast<char>(kBatchVersion);
  value[5] = static_cast<char>(codec);
  StoreLE<uint64_t>(value.data() + 8, h.base_offset);
  StoreLE<uint32_t>(value.data() + 16, h.count);
  StoreLE<uint32_t>(value.data() + 20,
                    own_raw_len ? raw_len : static_cast<uint32_t>(payload.size()));
  StoreLE<int64_t>(value.data() + 24, h.first_ts);
  StoreLE<int64_t>(value.data() + 32, h.last_ts);
  FixCrc(value);
  Decode(value, h.base_offset);
}

void WrittenThenDamaged(Input& in) {
  const auto codec = static_cast<Codec>(in.Byte() % 3);
  const uint64_t base = in.Int<uint64_t>() >> 1;  // room for the batch's offsets after it
  const int64_t shift = in.Int<uint16_t>();
  const size_t n = 1 + in.Byte() % 16;
  std::vector<std::string> bodies;
  std::vector<MessageIn> messages;
  int64_t ts = kEpoch + in.Int<uint32_t>();
  for (size_t i = 0; i < n; ++i) {
    const uint8_t len = in.Byte();
    bodies.emplace_back(in.Bytes(len));
    ts += in.Int<uint16_t>() - 0x4000;  // publish times may go backwards; the builder orders them
    const uint16_t defer = in.Int<uint16_t>();
    messages.push_back({{}, ts, defer % 4 == 0 ? 0 : ts + defer});
  }
  for (size_t i = 0; i < n; ++i) messages[i].body = bodies[i];

  BatchBuilder builder(codec, messages);
  std::string value = builder.Seal(base, shift);
  const auto decoded = DecodeBatch(value, base);
  FUZZ_CHECK(decoded.has_value());
  CheckDecoded(**decoded, value, base);
  const auto written = builder.decoded()->messages();
  const auto read = (*decoded)->messages();
  FUZZ_CHECK(read.size() == n && written.size() == n);
  for (size_t i = 0; i < n; ++i) {
    FUZZ_CHECK(read[i].body == bodies[i] && read[i].offset == base + i);
    FUZZ_CHECK(read[i].timestamp_ns == written[i].timestamp_ns &&
               read[i].deliver_at_ns == written[i].deliver_at_ns);
    FUZZ_CHECK(i == 0 || read[i].timestamp_ns > read[i - 1].timestamp_ns);
  }

  // Damage: up to 8 bytes flipped anywhere in the value, then the CRC fixed or not.
  const size_t flips = in.Byte() % 9;
  for (size_t i = 0; i < flips && !value.empty(); ++i) {
    const size_t pos = in.Int<uint16_t>() % value.size();
    value[pos] = static_cast<char>(value[pos] ^ (in.Byte() | 1));
  }
  if (flips > 0) {
    if (in.Bool()) FixCrc(value);
    Decode(value, base);
  }
}

}  // namespace
}  // namespace cairn::storage

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  cairn::fuzz::Input in(data, size);
  switch (in.Byte() % 4) {
    case 0:
      cairn::storage::Raw(in, /*fix_crc=*/false);
      break;
    case 1:
      cairn::storage::Raw(in, /*fix_crc=*/true);
      break;
    case 2:
      cairn::storage::Payload(in);
      break;
    case 3:
      cairn::storage::WrittenThenDamaged(in);
      break;
  }
  return 0;
}

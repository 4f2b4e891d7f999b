// The record batch: the unit a topic's log is stored in. One RocksDB value per batch, keyed by
// (topic id, base offset); see keys.h for the key.
//
// Value layout. Integers in the header are little-endian; the header is 40 bytes.
//
//   offset  size  field
//        0     4  crc        CRC-32C (Castagnoli) of bytes [40, end) followed by bytes [4, 40):
//                            the payload first, then the rest of the header, so the payload's
//                            checksum can be computed before the batch has an offset.
//        4     1  version    batch format version, kBatchVersion (1)
//        5     1  codec      payload codec: 0 none, 1 lz4, 2 zstd (compression.h)
//        6     2  reserved   0
//        8     8  base       offset of the first message; the key's offset must equal it
//       16     4  count      number of messages, at least 1; offsets base .. base+count-1
//       20     4  raw_len    length of the payload once decompressed
//       24     8  first_ts   publish time of the first message, ns since the Unix epoch
//       32     8  last_ts    publish time of the last message; first_ts <= last_ts
//       40     -  payload    the messages, compressed with `codec`
//
// Decompressed payload: `count` messages back to back, each
//
//   varint  ts_delta     publish time minus first_ts, ns (publish times strictly increase in a
//                        topic as Cairn writes them; a reader accepts equal ones)
//   varint  defer        0, or the message's deliver-after time minus its publish time, ns
//   varint  body_len
//   bytes   body
//
// Varints are unsigned LEB128 (7 bits a byte, low bits first, high bit = more), as protobuf's.
//
// Bounds, so that a damaged or forged value never costs more memory to read than a real batch:
// raw_len is at most kMaxBatchRawLen (64 MiB) and count at most kMaxBatchCount (4 Mi) and
// raw_len / 3 (every message takes three varints). The payload must be able to hold raw_len
// bytes before they are allocated: exactly raw_len stored bytes with codec none, at least
// raw_len / 255 with lz4 (its largest ratio), and a zstd frame that declares raw_len as its size
// (zstd writes it). A batch over the bounds is never written: an append that would make one fails.
// cairnd's defaults stay well within them (a 5 MiB body makes at most about 18 MiB and 2.6 Mi
// messages, as an HTTP /mpub of one-byte lines); a --max-body-size over 8 MiB or a --max-msg-size
// of 64 MiB can make appends fail.
//
// A value that is too short, has an unknown version or codec, breaks a bound, fails its CRC, or
// whose payload does not parse to exactly `count` messages is corrupt: it is reported, never
// returned as data.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "storage/compression.h"
#include "storage/error.h"

namespace cairn::storage {

inline constexpr uint8_t kBatchVersion = 1;
inline constexpr size_t kBatchHeaderSize = 40;
inline constexpr uint32_t kMaxBatchRawLen = 64u << 20;
inline constexpr uint32_t kMaxBatchCount = 4u << 20;
// Payloads shorter than this are stored uncompressed whatever the topic's codec.
inline constexpr size_t kMinCompressedPayload = 128;

// One message handed to Append.
struct MessageIn {
  std::string_view body;
  int64_t timestamp_ns = 0;   // publish time
  int64_t deliver_at_ns = 0;  // 0: deliver at once; otherwise no earlier than this
};

// One message read back. `body` points into the DecodedBatch that holds it.
struct StoredMessage {
  uint64_t offset = 0;
  int64_t timestamp_ns = 0;
  int64_t deliver_at_ns = 0;
  std::string_view body;
};

struct BatchHeader {
  uint64_t base_offset = 0;
  uint32_t count = 0;
  Codec codec = Codec::kNone;
  uint32_t raw_len = 0;
  int64_t first_ts = 0;
  int64_t last_ts = 0;
};

// A batch decompressed and parsed, immutable once shared. Readers (the tail cache, channels)
// share it by shared_ptr; message bodies are views into `payload`.
class DecodedBatch {
 public:
  const BatchHeader& header() const { return header_; }
  uint64_t base_offset() const { return header_.base_offset; }
  uint64_t end_offset() const { return header_.base_offset + header_.count; }
  std::span<const StoredMessage> messages() const { return messages_; }
  // Memory this batch holds, for cache accounting.
  size_t memory_bytes() const {
    return payload_.size() + messages_.size() * sizeof(StoredMessage) + sizeof(*this);
  }
  // The stored (compressed) size of this batch's value.
  size_t stored_bytes() const { return stored_bytes_; }

 private:
  friend class BatchBuilder;
  friend Result<std::shared_ptr<const DecodedBatch>> DecodeBatch(std::string_view value,
                                                                 uint64_t expected_base);
  // Parses payload_ into messages_, offsets and times from header_.
  Status Parse();
  void Rebase();

  BatchHeader header_;
  std::string payload_;
  std::vector<StoredMessage> messages_;
  size_t stored_bytes_ = 0;
};

// Builds one batch in two steps, so the expensive part runs on the appender's thread:
//   1. the constructor encodes and compresses the messages (a payload that compression would
//      not shrink by an eighth is stored uncompressed) and checksums the payload;
//   2. Seal(), on the committer's thread, gives it its offset and final timestamps and finishes
//      the CRC over the header.
class BatchBuilder {
 public:
  BatchBuilder(Codec codec, std::span<const MessageIn> messages);

  uint32_t count() const { return decoded_->header_.count; }
  int64_t first_ts() const { return decoded_->header_.first_ts; }
  // False if the batch breaks the bounds above (kMaxBatchRawLen, kMaxBatchCount): it must not be
  // written, as no reader would accept it.
  bool within_bounds() const { return within_bounds_; }

  // Sets the base offset, and moves every publish time forward by `ts_shift` ns so that
  // publish times strictly increase within a topic. Returns the encoded value.
  const std::string& Seal(uint64_t base_offset, int64_t ts_shift);

  const std::string& value() const { return value_; }
  // The decoded form of the sealed batch, for the tail cache.
  std::shared_ptr<const DecodedBatch> decoded() const { return decoded_; }

 private:
  std::string value_;
  uint32_t payload_crc_ = 0;
  bool within_bounds_ = true;
  std::shared_ptr<DecodedBatch> decoded_;
};

// Reads the header without checking the CRC or touching the payload (for seeks by time).
Result<BatchHeader> ParseBatchHeader(std::string_view value);

// Verifies and decodes a stored value. `expected_base` is the offset in its key.
Result<std::shared_ptr<const DecodedBatch>> DecodeBatch(std::string_view value,
                                                        uint64_t expected_base);

}  // namespace cairn::storage

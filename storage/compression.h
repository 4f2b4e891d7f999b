// Batch payload codecs. A topic's codec can change over its life: every batch records the codec
// it was written with, so old batches stay readable.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "storage/error.h"

namespace cairn::storage {

// A batch's codec, stored in every batch header (record_batch.h). NOTE: the values are part of
// the persistent format: never change or reuse one, only add new ones.
enum class Codec : uint8_t { kNone = 0, kLz4 = 1, kZstd = 2 };

std::string_view CodecName(Codec codec);
Result<Codec> ParseCodec(std::string_view name);  // "none", "lz4" or "zstd"
bool IsKnownCodec(uint8_t value);

// Appends the compressed form of `in` to `out`.
void Compress(Codec codec, std::string_view in, std::string* out);

// Replaces `out` with the decompressed form of `in`, which must be exactly `raw_len` bytes.
// Allocates raw_len bytes only once `in` can plausibly hold them (record_batch.h, "Bounds").
Status Decompress(Codec codec, std::string_view in, size_t raw_len, std::string* out);

}  // namespace cairn::storage

#include "storage/compression.h"

#include <lz4.h>
#include <zstd.h>

#include <memory>

#include <fmt/format.h>

namespace cairn::storage {
namespace {

// zstd level 3 is its own default: within a few percent of level 9's ratio on log lines at a
// fraction of the CPU.
constexpr int kZstdLevel = 3;

struct ZstdCtxFree {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};

ZSTD_CCtx* ThreadCCtx() {
  thread_local std::unique_ptr<ZSTD_CCtx, ZstdCtxFree> ctx(ZSTD_createCCtx());
  return ctx.get();
}

struct Lz4StreamFree {
  void operator()(LZ4_stream_t* s) const { LZ4_freeStream(s); }
};

// LZ4_compress_default clears a 16 KiB hash table on every call, which dwarfs the work for a
// batch of a few small messages; a stream reset with LZ4_resetStream_fast costs almost nothing
// and still makes each block independent (no dictionary), so it decompresses on its own.
LZ4_stream_t* ThreadLz4Stream() {
  thread_local std::unique_ptr<LZ4_stream_t, Lz4StreamFree> stream(LZ4_createStream());
  return stream.get();
}

ZSTD_DCtx* ThreadDCtx() {
  thread_local std::unique_ptr<ZSTD_DCtx, ZstdCtxFree> ctx(ZSTD_createDCtx());
  return ctx.get();
}

}  // namespace

std::string_view CodecName(Codec codec) {
  switch (codec) {
    case Codec::kNone:
      return "none";
    case Codec::kLz4:
      return "lz4";
    case Codec::kZstd:
      return "zstd";
  }
  return "unknown";
}

Result<Codec> ParseCodec(std::string_view name) {
  if (name == "none") return Codec::kNone;
  if (name == "lz4") return Codec::kLz4;
  if (name == "zstd") return Codec::kZstd;
  return Fail(Errc::kInvalidArgument,
              fmt::format("unknown codec '{}' (expected none, lz4 or zstd)", name));
}

bool IsKnownCodec(uint8_t value) { return value <= static_cast<uint8_t>(Codec::kZstd); }

void Compress(Codec codec, std::string_view in, std::string* out) {
  const size_t start = out->size();
  switch (codec) {
    case Codec::kNone:
      out->append(in);
      return;
    case Codec::kLz4: {
      const int bound = LZ4_compressBound(static_cast<int>(in.size()));
      out->resize(start + bound);
      LZ4_stream_t* stream = ThreadLz4Stream();
      LZ4_resetStream_fast(stream);
      const int n = LZ4_compress_fast_continue(stream, in.data(), out->data() + start,
                                               static_cast<int>(in.size()), bound, 1);
      out->resize(start + n);
      return;
    }
    case Codec::kZstd: {
      const size_t bound = ZSTD_compressBound(in.size());
      out->resize(start + bound);
      const size_t n = ZSTD_compressCCtx(ThreadCCtx(), out->data() + start, bound, in.data(),
                                         in.size(), kZstdLevel);
      out->resize(start + (ZSTD_isError(n) ? 0 : n));
      return;
    }
  }
}

Status Decompress(Codec codec, std::string_view in, size_t raw_len, std::string* out) {
  // Each codec first checks that `in` can be raw_len bytes once decompressed, so that a damaged
  // length is refused before it is allocated.
  switch (codec) {
    case Codec::kNone:
      if (in.size() != raw_len) break;
      out->assign(in);
      return {};
    case Codec::kLz4: {
      // An lz4 block expands at most 255-fold: each byte of a match's length adds 255.
      if (in.size() > INT32_MAX || raw_len > INT32_MAX || raw_len / 255 > in.size()) break;
      out->resize(raw_len);
      const int n = LZ4_decompress_safe(in.data(), out->data(), static_cast<int>(in.size()),
                                        static_cast<int>(raw_len));
      if (n < 0 || static_cast<size_t>(n) != raw_len) break;
      return {};
    }
    case Codec::kZstd: {
      // A frame says how large it decompresses (Compress writes it); unknown counts as a lie.
      if (ZSTD_getFrameContentSize(in.data(), in.size()) != raw_len) break;
      out->resize(raw_len);
      const size_t n =
          ZSTD_decompressDCtx(ThreadDCtx(), out->data(), raw_len, in.data(), in.size());
      if (ZSTD_isError(n) || n != raw_len) break;
      return {};
    }
  }
  return Fail(Errc::kCorruption,
              fmt::format("{} payload does not decompress to {} bytes", CodecName(codec), raw_len));
}

}  // namespace cairn::storage

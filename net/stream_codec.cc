#include "net/stream_codec.h"

#include <zlib.h>

#include <algorithm>
#include <cstdint>

#include <fmt/format.h>
#include <snappy.h>
#include <boost/endian/conversion.hpp>

#include "src/base/crc32c.h"

namespace cairn::nsq {
namespace {

namespace endian = boost::endian;

const unsigned char* Bytes(const char* p) { return reinterpret_cast<const unsigned char*>(p); }

// ---- snappy's framing format ----

constexpr unsigned char kChunkCompressed = 0x00;
constexpr unsigned char kChunkStored = 0x01;
constexpr unsigned char kChunkPadding = 0xfe;
constexpr unsigned char kChunkStreamId = 0xff;
constexpr std::string_view kStreamId("\xff\x06\x00\x00sNaPpY", 10);
constexpr size_t kChunkHeader = 4;  // type, then a 24-bit little-endian length
constexpr size_t kChecksum = 4;

// The CRC of a chunk's data, masked as the format asks (a CRC of data holding CRCs is weak).
uint32_t MaskedCrc(std::string_view data) {
  const uint32_t crc = Crc32c(data);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

void StoreChunkHeader(char* p, unsigned char type, size_t length, uint32_t crc) {
  p[0] = static_cast<char>(type);
  endian::store_little_u24(reinterpret_cast<unsigned char*>(p + 1), static_cast<uint32_t>(length));
  endian::store_little_u32(reinterpret_cast<unsigned char*>(p + kChunkHeader), crc);
}

class SnappyEncoder final : public StreamEncoder {
 public:
  void Encode(std::string_view plain, std::string& wire) override {
    if (!started_) {
      wire.append(kStreamId);
      started_ = true;
    }
    while (!plain.empty()) {
      const std::string_view block = plain.substr(0, kSnappyMaxChunkData);
      plain.remove_prefix(block.size());
      // Compressed in place, behind a header written once its length is known.
      const size_t at = wire.size();
      wire.resize(at + kChunkHeader + kChecksum + snappy::MaxCompressedLength(block.size()));
      char* header = wire.data() + at;
      char* body = header + kChunkHeader + kChecksum;
      size_t size = 0;
      snappy::RawCompress(block.data(), block.size(), body, &size);
      // Stored when compressing saves less than an eighth, as golang/snappy's writer decides.
      unsigned char type = kChunkCompressed;
      if (size >= block.size() - block.size() / 8) {
        type = kChunkStored;
        size = block.size();
        std::copy(block.begin(), block.end(), body);
      }
      StoreChunkHeader(header, type, kChecksum + size, MaskedCrc(block));
      wire.resize(at + kChunkHeader + kChecksum + size);
    }
  }

 private:
  bool started_ = false;
};

class SnappyDecoder final : public StreamDecoder {
 public:
  Result<size_t> Decode(net::InputBuffer& plain, size_t max) override {
    size_t produced = 0;
    while (produced < max) {
      if (skip_ > 0) {  // the rest of a skippable chunk: dropped as it arrives, never held
        const size_t n = std::min(skip_, wire_.size());
        if (n == 0) break;
        wire_.Consume(n);
        skip_ -= n;
        continue;
      }
      const std::string_view in = wire_.data();
      if (in.size() < kChunkHeader) break;
      const auto type = static_cast<unsigned char>(in[0]);
      const size_t length = endian::load_little_u24(Bytes(in.data() + 1));
      if (!identified_ && type != kChunkStreamId) return Corrupt("no stream identifier");
      if (type == kChunkPadding || (type >= 0x80 && type < kChunkPadding)) {
        wire_.Consume(kChunkHeader);
        skip_ = length;
        continue;
      }
      if (type != kChunkStreamId && type != kChunkCompressed && type != kChunkStored) {
        return Corrupt(fmt::format("reserved unskippable chunk type {:#04x}", type));
      }
      auto checked = CheckLength(type, length);
      if (!checked) return tl::unexpected(checked.error());
      if (in.size() < kChunkHeader + length) break;
      const std::string_view chunk = in.substr(kChunkHeader, length);
      if (type == kChunkStreamId) {
        if (chunk != kStreamId.substr(kChunkHeader)) return Corrupt("bad stream identifier");
        identified_ = true;
      } else {
        auto n = Unpack(type, chunk, plain);
        if (!n) return n;
        produced += *n;
      }
      wire_.Consume(kChunkHeader + length);
    }
    return produced;
  }

 private:
  static tl::unexpected<Error> Corrupt(std::string why) {
    return Fail(Errc::kCorruption, "snappy: " + why);
  }

  static Status CheckLength(unsigned char type, size_t length) {
    const size_t most = type == kChunkStreamId     ? kStreamId.size() - kChunkHeader
                        : type == kChunkCompressed ? kChecksum + kMaxCompressed
                                                   : kChecksum + kSnappyMaxChunkData;
    const size_t least = type == kChunkStreamId ? most : kChecksum;
    if (length < least || length > most) {
      return Corrupt(fmt::format("chunk type {:#04x} of {} bytes", type, length));
    }
    return {};
  }

  // A data chunk: its data appended to `plain`, once its checksum matched.
  static Result<size_t> Unpack(unsigned char type, std::string_view chunk,
                               net::InputBuffer& plain) {
    const uint32_t crc = endian::load_little_u32(Bytes(chunk.data()));
    const std::string_view body = chunk.substr(kChecksum);
    size_t size = body.size();
    if (type == kChunkCompressed) {
      if (!snappy::GetUncompressedLength(body.data(), body.size(), &size) ||
          size > kSnappyMaxChunkData) {
        return Corrupt("bad compressed chunk");
      }
    }
    auto space = plain.Prepare(std::max<size_t>(size, 1));
    if (type == kChunkCompressed) {
      if (!snappy::RawUncompress(body.data(), body.size(), space.data())) {
        return Corrupt("bad compressed chunk");
      }
    } else {
      std::copy(body.begin(), body.end(), space.data());
    }
    if (MaskedCrc(std::string_view(space.data(), size)) != crc) return Corrupt("bad checksum");
    plain.Commit(size);
    return size;
  }

  static inline const size_t kMaxCompressed = snappy::MaxCompressedLength(kSnappyMaxChunkData);
  bool identified_ = false;
  size_t skip_ = 0;
};

// ---- raw DEFLATE ----

class DeflateEncoder final : public StreamEncoder {
 public:
  explicit DeflateEncoder(int level) {
    // -15: raw DEFLATE with a 32 KiB window, as Go's compress/flate writes it.
    ok_ =
        deflateInit2(&z_, std::clamp(level, 1, 9), Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK;
  }
  ~DeflateEncoder() override {
    if (ok_) deflateEnd(&z_);
  }
  void Encode(std::string_view plain, std::string& wire) override {
    z_.next_in = const_cast<Bytef*>(Bytes(plain.data()));
    z_.avail_in = static_cast<uInt>(plain.size());
    do {
      const size_t at = wire.size();
      const size_t room = deflateBound(&z_, z_.avail_in) + 16;
      wire.resize(at + room);
      z_.next_out = reinterpret_cast<Bytef*>(wire.data() + at);
      z_.avail_out = static_cast<uInt>(room);
      deflate(&z_, Z_SYNC_FLUSH);  // cannot fail on a valid stream with room to write
      wire.resize(at + room - z_.avail_out);
    } while (z_.avail_out == 0 || z_.avail_in > 0);
  }

 private:
  z_stream z_{};
  bool ok_ = false;
};

class DeflateDecoder final : public StreamDecoder {
 public:
  DeflateDecoder() { ok_ = inflateInit2(&z_, -15) == Z_OK; }
  ~DeflateDecoder() override {
    if (ok_) inflateEnd(&z_);
  }
  Result<size_t> Decode(net::InputBuffer& plain, size_t max) override {
    if (!ok_) return Fail(Errc::kIOError, "deflate: no memory for a decoder");
    size_t produced = 0;
    // Also with no input left: what inflate decoded beyond the room it had (the rest of a long
    // match) is still inside it, and comes out only when asked.
    while (produced < max) {
      const size_t want = std::min<size_t>(max - produced, 64 * 1024);
      auto space = plain.Prepare(want);
      const std::string_view in = wire_.data();
      z_.next_in = const_cast<Bytef*>(Bytes(in.data()));
      z_.avail_in = static_cast<uInt>(std::min<size_t>(in.size(), 1u << 30));
      z_.next_out = reinterpret_cast<Bytef*>(space.data());
      z_.avail_out = static_cast<uInt>(want);
      const int rc = inflate(&z_, Z_SYNC_FLUSH);
      const size_t used = in.size() - z_.avail_in;
      const size_t made = want - z_.avail_out;
      wire_.Consume(used);
      plain.Commit(made);
      produced += made;
      if (rc == Z_STREAM_END) return Fail(Errc::kCorruption, "deflate: the stream ended");
      if (rc == Z_DATA_ERROR) {
        return Fail(Errc::kCorruption,
                    fmt::format("deflate: {}", z_.msg != nullptr ? z_.msg : "bad data"));
      }
      if (rc == Z_MEM_ERROR) return Fail(Errc::kIOError, "deflate: out of memory");
      if (used == 0 && made == 0) break;  // Z_BUF_ERROR: a partial block, more input needed
    }
    return produced;
  }

 private:
  z_stream z_{};
  bool ok_ = false;
};

}  // namespace

std::unique_ptr<StreamEncoder> MakeSnappyEncoder() { return std::make_unique<SnappyEncoder>(); }
std::unique_ptr<StreamDecoder> MakeSnappyDecoder() { return std::make_unique<SnappyDecoder>(); }
std::unique_ptr<StreamEncoder> MakeDeflateEncoder(int level) {
  return std::make_unique<DeflateEncoder>(level);
}
std::unique_ptr<StreamDecoder> MakeDeflateDecoder() { return std::make_unique<DeflateDecoder>(); }

StreamCodec MakeStreamCodec(bool snappy, int deflate_level) {
  if (snappy) return {MakeSnappyEncoder(), MakeSnappyDecoder()};
  return {MakeDeflateEncoder(deflate_level), MakeDeflateDecoder()};
}

}  // namespace cairn::nsq

// The stream compressions (net/stream_codec.h): what one side encodes the other decodes, however
// the bytes arrive; a corrupt stream is refused; a small input that inflates hugely is read a
// bounded slice at a time. That they interoperate with go-nsq and nsqjs is shown against cairnd
// in tests/compat.
#include "net/stream_codec.h"

#include <zlib.h>

#include <random>

#include <gtest/gtest.h>

namespace cairn::nsq {
namespace {

std::string Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

std::string Text(size_t n) {
  std::string s;
  while (s.size() < n) s += "level=info app=web msg=\"GET /healthz 200\" duration=0.4ms\n";
  s.resize(n);
  return s;
}

// Feeds `wire` to the decoder `step` bytes at a time and returns everything decoded.
Result<std::string> DecodeAll(StreamDecoder& d, std::string_view wire, size_t step,
                              size_t max = 1 << 20) {
  net::InputBuffer plain;
  for (size_t pos = 0; pos < wire.size(); pos += step) {
    const std::string_view part = wire.substr(pos, step);
    auto space = d.wire().Prepare(part.size());
    std::copy(part.begin(), part.end(), space.data());
    d.wire().Commit(part.size());
    for (;;) {
      auto n = d.Decode(plain, max);
      if (!n) return tl::unexpected(n.error());
      if (*n == 0) break;
    }
  }
  return std::string(plain.data());
}

struct Codec {
  const char* name;
  std::unique_ptr<StreamEncoder> (*encoder)();
  std::unique_ptr<StreamDecoder> (*decoder)();
};

const Codec kCodecs[] = {
    {"snappy", &MakeSnappyEncoder, &MakeSnappyDecoder},
    {"deflate", [] { return MakeDeflateEncoder(6); }, &MakeDeflateDecoder},
};

TEST(StreamCodec, WhatIsEncodedInSeveralWritesDecodesTheSameHoweverItArrives) {
  const std::vector<std::string> writes = {
      Text(10), "", Random(200'000, 1), Text(300'000), std::string(1, 'x'), Random(65536, 2)};
  std::string want;
  for (const auto& w : writes) want += w;
  for (const Codec& codec : kCodecs) {
    auto enc = codec.encoder();
    std::string wire;
    for (const auto& w : writes) enc->Encode(w, wire);
    for (size_t step : {size_t{7}, size_t{4096}, wire.size()}) {
      auto dec = codec.decoder();
      auto got = DecodeAll(*dec, wire, step);
      ASSERT_TRUE(got) << codec.name << " step " << step << ": " << got.error().ToString();
      EXPECT_EQ(got->size(), want.size()) << codec.name << " step " << step;
      EXPECT_TRUE(*got == want) << codec.name << " step " << step;
    }
    // Byte by byte, over a small stream: every split of a chunk or a block is met.
    auto small = codec.encoder();
    std::string small_wire;
    small->Encode(Text(3000), small_wire);
    small->Encode(Random(100, 3), small_wire);
    auto dec = codec.decoder();
    auto got = DecodeAll(*dec, small_wire, 1);
    ASSERT_TRUE(got) << codec.name;
    EXPECT_EQ(*got, Text(3000) + Random(100, 3)) << codec.name;
    EXPECT_LT(wire.size(), want.size()) << codec.name << " compresses text";
  }
}

TEST(StreamCodec, EachWriteIsDecodableOnItsOwn) {
  // The peer must be able to read a response without waiting for the next one.
  for (const Codec& codec : kCodecs) {
    auto enc = codec.encoder();
    auto dec = codec.decoder();
    for (int i = 0; i < 5; ++i) {
      const std::string frame = "response " + std::to_string(i);
      std::string wire;
      enc->Encode(frame, wire);
      auto got = DecodeAll(*dec, wire, wire.size());
      ASSERT_TRUE(got) << codec.name;
      EXPECT_EQ(*got, frame) << codec.name;
    }
  }
}

TEST(StreamCodec, SnappyRefusesACorruptStream) {
  auto enc = MakeSnappyEncoder();
  std::string good;
  enc->Encode(Text(1000), good);
  auto refused = [](std::string wire) {
    auto dec = MakeSnappyDecoder();
    auto got = DecodeAll(*dec, wire, wire.size());
    return !got && got.error().code == Errc::kCorruption;
  };
  EXPECT_FALSE(refused(good));
  std::string flipped = good;
  flipped.back() ^= 0x01;  // the data no longer matches its CRC (or no longer decompresses)
  EXPECT_TRUE(refused(flipped));
  std::string bad_crc = good;
  bad_crc[10 + 4] ^= 0x01;  // the first chunk's checksum
  EXPECT_TRUE(refused(bad_crc));
  EXPECT_TRUE(refused(good.substr(10))) << "no stream identifier";
  EXPECT_TRUE(refused(good.substr(0, 10) + std::string("\x02\x01\x00\x00z", 5)))
      << "a reserved unskippable chunk";
  EXPECT_TRUE(refused(good.substr(0, 10) + std::string("\x00\xff\xff\xff", 4)))
      << "a chunk longer than any the format allows";
  EXPECT_TRUE(refused(std::string("\xff\x06\x00\x00sNaPpZ", 10)));
}

TEST(StreamCodec, SnappySkipsPaddingAndSkippableChunksWithoutHoldingThem) {
  auto enc = MakeSnappyEncoder();
  std::string head, tail;
  enc->Encode("before", head);
  enc->Encode("after", tail);
  // A 1 MiB skippable chunk (type 0x80) between them, delivered in pieces.
  std::string skippable("\x80\x00\x00\x10", 4);
  skippable += std::string(1 << 20, 's');
  std::string padding("\xfe\x03\x00\x00\x00\x00\x00", 7);
  auto dec = MakeSnappyDecoder();
  auto got = DecodeAll(*dec, head + skippable + padding + tail, 4096);
  ASSERT_TRUE(got) << got.error().ToString();
  EXPECT_EQ(*got, "beforeafter");
  EXPECT_EQ(dec->wire().size(), 0u);
}

TEST(StreamCodec, DeflateRefusesGarbageAndAnEndedStream) {
  auto dec = MakeDeflateDecoder();
  auto got = DecodeAll(*dec, std::string("\xff\xff\xff\xff garbage", 12), 12);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, Errc::kCorruption);
  // A final block (what Close() on Go's writer sends) ends the stream: the peer is gone.
  std::string wire(64, '\0');
  z_stream z{};
  ASSERT_EQ(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
  const std::string text = "bye";
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  z.avail_in = static_cast<uInt>(text.size());
  z.next_out = reinterpret_cast<Bytef*>(wire.data());
  z.avail_out = static_cast<uInt>(wire.size());
  ASSERT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  wire.resize(wire.size() - z.avail_out);
  deflateEnd(&z);
  auto ended = MakeDeflateDecoder();
  auto got2 = DecodeAll(*ended, wire, wire.size());
  ASSERT_FALSE(got2);
  EXPECT_EQ(got2.error().code, Errc::kCorruption);
}

TEST(StreamCodec, DeflateGivesEverythingWhenAskedInSmallSlicesAfterTheInputIsUsedUp) {
  // A long run is a short input. Without its flush marker (as it stands while the rest is still
  // on its way), the input is used up while inflate still holds the end of the run; read a
  // little at a time, that end must still come out, as it does when read all at once (it once
  // stayed inside zlib until the peer sent more, which a client awaiting its answer never does).
  auto enc = MakeDeflateEncoder(6);
  std::string wire;
  enc->Encode(std::string(100'000, 'a') + "end", wire);
  wire.resize(wire.size() - 5);  // the empty stored block of the sync flush
  auto decode = [&](size_t max) {
    auto dec = MakeDeflateDecoder();
    auto space = dec->wire().Prepare(wire.size());
    std::copy(wire.begin(), wire.end(), space.data());
    dec->wire().Commit(wire.size());
    net::InputBuffer plain;
    for (int i = 0; i < 200'000; ++i) {  // enough for a byte per call
      auto n = dec->Decode(plain, max);
      if (!n || *n == 0) break;
    }
    return std::string(plain.data());
  };
  const std::string all = decode(1 << 30);
  EXPECT_TRUE(all.ends_with("end")) << all.size();
  EXPECT_EQ(decode(1000).size(), all.size());
  EXPECT_TRUE(decode(1) == all);
}

TEST(StreamCodec, ADeflateBombIsReadASliceAtATime) {
  // 64 MiB of zeros compress to about 64 KiB; the reader asks for 64 KiB at a time and gets no
  // more.
  auto enc = MakeDeflateEncoder(6);
  std::string wire;
  const std::string zeros(1 << 20, '\0');
  for (int i = 0; i < 64; ++i) enc->Encode(zeros, wire);
  ASSERT_LT(wire.size(), 1u << 20);
  auto dec = MakeDeflateDecoder();
  auto space = dec->wire().Prepare(wire.size());
  std::copy(wire.begin(), wire.end(), space.data());
  dec->wire().Commit(wire.size());
  net::InputBuffer plain;
  auto n = dec->Decode(plain, 64 * 1024);
  ASSERT_TRUE(n);
  EXPECT_GT(*n, 0u);
  EXPECT_LE(plain.size(), 64u * 1024);
  EXPECT_GT(dec->wire().size(), 0u) << "the rest waits in the wire buffer, compressed";
}

}  // namespace
}  // namespace cairn::nsq

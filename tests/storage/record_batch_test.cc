#include "storage/record_batch.h"

#include <cstdint>
#include <initializer_list>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "src/base/crc32c.h"
#include "storage/coding.h"
#include "storage/keys.h"

namespace cairn::storage {
namespace {

TEST(Crc32c, MatchesTheStandardCheckValue) {
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32cExtend(Crc32c("12345"), "6789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(""), 0u);
}

TEST(Keys, AreBigEndianSoRocksDbOrdersThemNumerically) {
  EXPECT_EQ(keys::Batch(3, 256), std::string("\0\0\0\0\0\0\0\x03\0\0\0\0\0\0\x01\0", 16));
  EXPECT_LT(keys::Batch(1, 255), keys::Batch(1, 256));
  EXPECT_LT(keys::Batch(1, UINT64_MAX), keys::Batch(2, 0));
  EXPECT_EQ(keys::PairLow(keys::Batch(7, 123456789)), 123456789u);
}

// The messages point into `bodies`, which must outlive them.
std::vector<MessageIn> Messages(const std::vector<std::string>& bodies, int64_t ts0) {
  std::vector<MessageIn> out;
  for (size_t i = 0; i < bodies.size(); ++i) {
    out.push_back({bodies[i], ts0 + static_cast<int64_t>(i) * 10, 0});
  }
  return out;
}

// Bodies that every codec shrinks, so that a batch of them is stored with the codec it was built
// with (BatchBuilder stores what would not shrink uncompressed).
std::vector<std::string> Compressible(std::initializer_list<std::string_view> words) {
  std::vector<std::string> bodies;
  for (std::string_view w : words) {
    std::string body;
    while (body.size() < 100) body.append(w).push_back(' ');
    bodies.push_back(std::move(body));
  }
  return bodies;
}

class RecordBatchCodecTest : public ::testing::TestWithParam<Codec> {};

TEST_P(RecordBatchCodecTest, RoundTripsBodiesTimesAndDeferrals) {
  std::vector<std::string> bodies = {"hello", "", std::string(5000, 'x'), "binary\0zero"};
  bodies[3].push_back('\0');
  auto msgs = Messages(bodies, 1'000'000);
  msgs[1].deliver_at_ns = msgs[1].timestamp_ns + 5'000'000'000;
  BatchBuilder builder(GetParam(), msgs);
  const std::string value = builder.Seal(42, 0);

  auto decoded = DecodeBatch(value, 42);
  ASSERT_TRUE(decoded) << decoded.error().ToString();
  const auto& b = **decoded;
  EXPECT_EQ(b.header().codec, GetParam());
  ASSERT_EQ(b.messages().size(), bodies.size());
  for (size_t i = 0; i < bodies.size(); ++i) {
    EXPECT_EQ(b.messages()[i].offset, 42 + i);
    EXPECT_EQ(b.messages()[i].body, bodies[i]);
    EXPECT_EQ(b.messages()[i].timestamp_ns, msgs[i].timestamp_ns);
  }
  EXPECT_EQ(b.messages()[0].deliver_at_ns, 0);
  EXPECT_EQ(b.messages()[1].deliver_at_ns, msgs[1].deliver_at_ns);
  EXPECT_EQ(b.header().first_ts, 1'000'000);
  EXPECT_EQ(b.header().last_ts, 1'000'030);
}

TEST_P(RecordBatchCodecTest, AnyFlippedByteIsReportedAsCorruption) {
  const std::vector<std::string> bodies = Compressible({"alpha", "beta", "gamma"});
  auto msgs = Messages(bodies, 7);
  BatchBuilder builder(GetParam(), msgs);
  const std::string value = builder.Seal(0, 0);
  ASSERT_EQ(ParseBatchHeader(value)->codec, GetParam());
  for (size_t i = 0; i < value.size(); ++i) {
    std::string bad = value;
    bad[i] ^= 0x20;
    auto decoded = DecodeBatch(bad, 0);
    ASSERT_FALSE(decoded) << "flipping byte " << i << " went unnoticed";
    EXPECT_EQ(decoded.error().code, Errc::kCorruption);
  }
}

TEST_P(RecordBatchCodecTest, TornBatchesAreCorruptNotShort) {
  const std::vector<std::string> bodies = Compressible({"alpha", "beta", "gamma"});
  auto msgs = Messages(bodies, 7);
  BatchBuilder builder(GetParam(), msgs);
  const std::string value = builder.Seal(0, 0);
  ASSERT_EQ(ParseBatchHeader(value)->codec, GetParam());
  for (size_t n = 0; n < value.size(); ++n) {
    auto decoded = DecodeBatch(std::string_view(value).substr(0, n), 0);
    ASSERT_FALSE(decoded) << "a batch cut to " << n << " bytes was returned as data";
    EXPECT_EQ(decoded.error().code, Errc::kCorruption);
  }
}

INSTANTIATE_TEST_SUITE_P(AllCodecs, RecordBatchCodecTest,
                         ::testing::Values(Codec::kNone, Codec::kLz4, Codec::kZstd),
                         [](const auto& info) { return std::string(CodecName(info.param)); });

TEST(RecordBatch, HeaderLayoutIsAsDocumented) {
  const std::vector<std::string> bodies = {"ab"};
  auto msgs = Messages(bodies, 0x0102030405060708);
  BatchBuilder builder(Codec::kNone, msgs);
  const std::string v = builder.Seal(0x1122334455667788, 0);
  ASSERT_EQ(v.size(), kBatchHeaderSize + 5);  // varints 0, 0, 2 then "ab"
  EXPECT_EQ(v[4], 1);                         // version
  EXPECT_EQ(v[5], 0);                         // codec none
  EXPECT_EQ(LoadLE<uint64_t>(v.data() + 8), 0x1122334455667788u);
  EXPECT_EQ(LoadLE<uint32_t>(v.data() + 16), 1u);
  EXPECT_EQ(LoadLE<uint32_t>(v.data() + 20), 5u);
  EXPECT_EQ(LoadLE<int64_t>(v.data() + 24), 0x0102030405060708);
  EXPECT_EQ(LoadLE<int64_t>(v.data() + 32), 0x0102030405060708);
  EXPECT_EQ(v.substr(40), std::string("\0\0\x02"
                                      "ab",
                                      5));
  const std::string_view sv(v);
  EXPECT_EQ(LoadLE<uint32_t>(v.data()), Crc32cExtend(Crc32c(sv.substr(40)), sv.substr(4, 36)));
}

TEST(RecordBatch, StoredUnderTheWrongOffsetIsCorrupt) {
  const std::vector<std::string> bodies = {"x"};
  auto msgs = Messages(bodies, 1);
  BatchBuilder builder(Codec::kLz4, msgs);
  const std::string value = builder.Seal(100, 0);
  EXPECT_TRUE(DecodeBatch(value, 100));
  auto wrong = DecodeBatch(value, 101);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, Errc::kCorruption);
}

TEST(RecordBatch, SealShiftsTimesForwardAndKeepsThemOrdered) {
  const std::vector<std::string> bodies = {"a", "b"};
  auto msgs = Messages(bodies, 1000);
  msgs[1].timestamp_ns = 500;  // out of order on input: 1 ns after the previous one
  BatchBuilder builder(Codec::kLz4, msgs);
  auto value = builder.Seal(0, 250);
  auto decoded = DecodeBatch(value, 0);
  ASSERT_TRUE(decoded);
  EXPECT_EQ((*decoded)->messages()[0].timestamp_ns, 1250);
  EXPECT_EQ((*decoded)->messages()[1].timestamp_ns, 1251);
  EXPECT_EQ(builder.decoded()->messages()[1].timestamp_ns, 1251);
  EXPECT_EQ((*decoded)->header().last_ts, 1251);
}

// ---- Damaged or forged values: bounded work, never data ----

// A value with a CRC that matches: what a batch damaged and then checksummed again, or forged,
// looks like. Layout as record_batch.h documents it.
std::string ValueWithCrc(Codec codec, uint64_t base, uint32_t count, uint32_t raw_len,
                         int64_t first_ts, int64_t last_ts, std::string_view payload) {
  std::string v(kBatchHeaderSize, '\0');
  v[4] = static_cast<char>(kBatchVersion);
  v[5] = static_cast<char>(codec);
  StoreLE<uint64_t>(v.data() + 8, base);
  StoreLE<uint32_t>(v.data() + 16, count);
  StoreLE<uint32_t>(v.data() + 20, raw_len);
  StoreLE<int64_t>(v.data() + 24, first_ts);
  StoreLE<int64_t>(v.data() + 32, last_ts);
  v.append(payload);
  const std::string_view sv(v);
  StoreLE<uint32_t>(v.data(), Crc32cExtend(Crc32c(sv.substr(40)), sv.substr(4, 36)));
  return v;
}

std::string Payload(std::initializer_list<uint64_t> varints, std::string_view body = "") {
  std::string p;
  for (uint64_t v : varints) PutVarint64(&p, v);
  p.append(body);
  return p;
}

void ExpectCorrupt(std::string_view value, uint64_t base = 0) {
  auto decoded = DecodeBatch(value, base);
  ASSERT_FALSE(decoded) << "a bad batch was returned as data";
  EXPECT_EQ(decoded.error().code, Errc::kCorruption) << decoded.error().ToString();
}

// Found by tests/fuzz/record_batch: a count near 2^32 under a good CRC reserved 40 bytes a message
// (up to 160 GiB) before the payload was parsed; raw_len was likewise allocated (up to 4 GiB)
// before decompression. Both are now bounded by the header check, before anything is allocated.
TEST(RecordBatch, HeadersOverTheBoundsAreCorrupt) {
  const std::string one = Payload({0, 0, 2}, "ab");  // one message: 5 bytes
  ASSERT_TRUE(DecodeBatch(ValueWithCrc(Codec::kNone, 0, 1, 5, 9, 9, one), 0));
  for (uint32_t count : {2u, kMaxBatchCount + 1, UINT32_MAX}) {  // 2: more than raw_len / 3
    const std::string v = ValueWithCrc(Codec::kNone, 0, count, 5, 9, 9, one);
    EXPECT_FALSE(ParseBatchHeader(v)) << count;
    ExpectCorrupt(v);
  }
  for (uint32_t raw_len : {kMaxBatchRawLen + 1, UINT32_MAX}) {
    for (Codec codec : {Codec::kNone, Codec::kLz4, Codec::kZstd}) {
      const std::string v = ValueWithCrc(codec, 0, 1, raw_len, 9, 9, one);
      EXPECT_FALSE(ParseBatchHeader(v)) << raw_len;
      ExpectCorrupt(v);
    }
  }
  // Offsets past 2^64.
  ExpectCorrupt(ValueWithCrc(Codec::kNone, UINT64_MAX, 1, 5, 9, 9, one), UINT64_MAX);
}

// Within the bounds, raw_len must still be what the payload can decompress to before it is
// allocated: exact for none, at most 255 times the payload for lz4, the frame's own size for zstd.
TEST_P(RecordBatchCodecTest, ARawLenThePayloadCannotHoldIsCorrupt) {
  const std::vector<std::string> bodies = Compressible({"alpha", "beta"});
  BatchBuilder builder(GetParam(), Messages(bodies, 7));
  const std::string good = builder.Seal(0, 0);
  const auto h = ParseBatchHeader(good);
  ASSERT_TRUE(h);
  ASSERT_EQ(h->codec, GetParam());
  const std::string_view payload = std::string_view(good).substr(kBatchHeaderSize);
  for (uint32_t raw_len : {h->raw_len - 1, h->raw_len + 1, kMaxBatchRawLen}) {
    ExpectCorrupt(ValueWithCrc(GetParam(), 0, 1, raw_len, h->first_ts, h->last_ts, payload));
  }
}

// A batch that compression would not shrink by an eighth, a single short message or bytes with
// no repetition, is stored uncompressed, and reads back the same.
TEST(RecordBatch, WhatCompressionWouldNotShrinkIsStoredUncompressed) {
  std::mt19937_64 rng(7);
  std::string noise(4096, '\0');
  for (char& c : noise) c = static_cast<char>(rng());
  const std::string line =
      R"({"log":"GET /healthz 200 0.4ms","stream":"stdout","time":"2026-11-30T03:00:00Z"})";
  const std::vector<std::vector<std::string>> cases = {{line}, {noise}};
  for (Codec codec : {Codec::kLz4, Codec::kZstd}) {
    for (const auto& bodies : cases) {
      BatchBuilder builder(codec, Messages(bodies, 7));
      const std::string value = builder.Seal(0, 0);
      auto decoded = DecodeBatch(value, 0);
      ASSERT_TRUE(decoded) << decoded.error().ToString();
      EXPECT_EQ((*decoded)->header().codec, Codec::kNone)
          << CodecName(codec) << ", " << bodies[0].size() << " bytes";
      EXPECT_EQ(value.size(), kBatchHeaderSize + (*decoded)->header().raw_len);
      EXPECT_EQ((*decoded)->messages()[0].body, bodies[0]);
    }
    // Two such lines share enough to be worth compressing.
    BatchBuilder builder(codec, Messages({line, line}, 7));
    EXPECT_EQ(ParseBatchHeader(builder.Seal(0, 0))->codec, codec) << CodecName(codec);
  }
}

TEST(RecordBatch, Lz4ExpandsAtMost255Fold) {
  // Decompress refuses an lz4 raw_len over 255 times the payload: even the most compressible
  // payload, a batch's worth of zeros, stays under that.
  const std::string zeros(kMaxBatchRawLen, '\0');
  std::string compressed;
  Compress(Codec::kLz4, zeros, &compressed);
  EXPECT_LE(zeros.size() / 255, compressed.size());
  std::string back;
  ASSERT_TRUE(Decompress(Codec::kLz4, compressed, zeros.size(), &back));
  EXPECT_EQ(back, zeros);
}

// Found by tests/fuzz/record_batch (UBSan): a publish time delta or a deferral that takes a time
// past what an int64_t holds was a signed overflow; such a message is corrupt now, and the largest
// times that fit still decode.
TEST(RecordBatch, TimesPastInt64AreCorrupt) {
  constexpr int64_t kMax = INT64_MAX;
  auto one = [](int64_t first, int64_t last, uint64_t delta, uint64_t defer) {
    const std::string p = Payload({delta, defer, 1}, "x");
    return ValueWithCrc(Codec::kNone, 0, 1, static_cast<uint32_t>(p.size()), first, last, p);
  };
  ExpectCorrupt(one(kMax - 1, kMax, UINT64_MAX, 0));  // past last_ts, and past int64
  ExpectCorrupt(one(0, kMax, uint64_t{kMax} + 1, 0));
  ExpectCorrupt(one(kMax - 1, kMax - 1, 0, 2));  // deliver-at past int64
  ExpectCorrupt(one(INT64_MIN, 0, UINT64_MAX, 0));

  auto fits = DecodeBatch(one(INT64_MIN, kMax, UINT64_MAX, 0), 0);
  ASSERT_TRUE(fits) << fits.error().ToString();
  EXPECT_EQ((*fits)->messages()[0].timestamp_ns, kMax);
  fits = DecodeBatch(one(-10, -10, 0, uint64_t{kMax} + 10), 0);
  ASSERT_TRUE(fits) << fits.error().ToString();
  EXPECT_EQ((*fits)->messages()[0].deliver_at_ns, kMax);
}

TEST(RecordBatch, BuilderSaysWhenABatchIsOverTheBounds) {
  // One message: varints 0, 0 and its length (4 bytes from 2^21 on), then the body.
  std::string body(kMaxBatchRawLen - 6, 'x');
  std::vector<MessageIn> msgs = {{body, 1, 0}};
  EXPECT_TRUE(BatchBuilder(Codec::kNone, msgs).within_bounds());
  body.push_back('x');
  msgs[0].body = body;
  EXPECT_FALSE(BatchBuilder(Codec::kNone, msgs).within_bounds());
}

}  // namespace
}  // namespace cairn::storage

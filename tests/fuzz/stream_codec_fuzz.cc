// Harness: what a peer sends on a compressed NSQ connection (net/stream_codec.h), to the snappy
// and the deflate decoders. The first byte picks the decoder, the second how many bytes arrive
// per read, the third how much plain text the reader asks for per call; the rest is the stream.
//
// Checked besides crashes and sanitizer reports:
// - the outcome does not depend on how the bytes arrive: read all at once or a few at a time,
//   the same text is decoded and the same streams are refused;
// - a call never produces much more than it was asked for (a bomb is read a slice at a time);
// - the input itself, encoded by the matching encoder in two writes, decodes to itself.
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

#include "net/stream_codec.h"
#include "tests/fuzz/fuzz_support.h"

namespace cairn::nsq {
namespace {

// How much one decode reads: this many calls, or this much plain text. Past them a stream is
// only more of the same (a bomb, as deflate expands up to about 1,000 times, or a large input
// read a byte or a few bytes a call), and reading all of it cost each such run up to seconds.
constexpr size_t kMaxCalls = 4096;
constexpr size_t kMaxPlain = 256 * 1024;

struct Outcome {
  std::string plain;
  bool refused = false;
  bool capped = false;  // stopped at kMaxCalls or kMaxPlain
};

Outcome Decode(bool snappy, std::string_view wire, size_t step, size_t max) {
  auto dec = snappy ? MakeSnappyDecoder() : MakeDeflateDecoder();
  Outcome out;
  net::InputBuffer plain;
  size_t calls = 0;
  for (size_t pos = 0; pos < wire.size() && !out.refused; pos += step) {
    const std::string_view part = wire.substr(pos, step);
    auto space = dec->wire().Prepare(part.size());
    std::copy(part.begin(), part.end(), space.data());
    dec->wire().Commit(part.size());
    for (;;) {
      if (++calls > kMaxCalls) {
        out.capped = true;
        return out;
      }
      const size_t before = plain.size();
      auto n = dec->Decode(plain, max);
      if (!n) {
        FUZZ_CHECK(n.error().code == Errc::kCorruption);
        out.plain.append(plain.data());  // what came before the corruption in that call
        out.refused = true;
        break;
      }
      FUZZ_CHECK(*n == plain.size() - before);
      FUZZ_CHECK(*n <= max + kSnappyMaxChunkData);
      if (*n == 0) break;
      // The reader takes what it was given before asking again, as a session does.
      out.plain.append(plain.data());
      plain.Consume(plain.size());
      if (out.plain.size() >= kMaxPlain) {
        out.capped = true;
        return out;
      }
    }
  }
  return out;
}

void RoundTrip(bool snappy, std::string_view text) {
  auto enc = snappy ? MakeSnappyEncoder() : MakeDeflateEncoder(1 + text.size() % 9);
  std::string wire;
  enc->Encode(text.substr(0, text.size() / 2), wire);
  enc->Encode(text.substr(text.size() / 2), wire);
  const Outcome back = Decode(snappy, wire, wire.size() + 1, 1 << 16);
  FUZZ_CHECK(!back.refused && back.plain == text);
}

}  // namespace
}  // namespace cairn::nsq

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  cairn::fuzz::Input in(data, size);
  const bool snappy = in.Bool();
  const size_t step = 1 + in.Byte() % 64;
  const size_t max = 1 + size_t{in.Byte()} * 257;
  const std::string_view wire = in.Rest();
  const auto whole = cairn::nsq::Decode(snappy, wire, wire.size() + 1, max);
  const auto pieces = cairn::nsq::Decode(snappy, wire, step, max);
  if (whole.capped || pieces.capped) {
    // Both read the same text, up to where the first stopped.
    const size_t n = std::min(whole.plain.size(), pieces.plain.size());
    FUZZ_CHECK(whole.plain.compare(0, n, pieces.plain, 0, n) == 0);
  } else {
    FUZZ_CHECK(whole.refused == pieces.refused);
    FUZZ_CHECK(whole.plain == pieces.plain);
  }
  cairn::nsq::RoundTrip(snappy, wire);
  return 0;
}

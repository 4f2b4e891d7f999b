// The stream compressions an NSQ connection may switch to after IDENTIFY, as nsqd and its clients
// speak them:
// - snappy: the framing format of snappy's framing_format.txt (golang/snappy's Writer and
//   Reader, which go-nsq and nsqd use, and nsqjs's): a stream identifier, then chunks of at most
//   64 KiB of data, each compressed or stored, each with the masked CRC-32C of its data;
// - deflate: raw DEFLATE (RFC 1951, no zlib header), each write ended by a sync flush so that the
//   peer can read all of it at once.
// One encoder for what a side writes and one decoder for what it reads. The decoders are parsers
// of what the peer sends: they take time linear in their input, produce output in bounded steps
// (a deflate bomb is read a slice at a time, as the reader asks) and refuse a corrupt stream.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "net/input_buffer.h"
#include "src/base/error.h"

namespace cairn::nsq {

class StreamEncoder {
 public:
  virtual ~StreamEncoder() = default;
  // Appends `plain`, encoded, to `wire`; the peer can decode all of it from what was appended.
  virtual void Encode(std::string_view plain, std::string& wire) = 0;
};

class StreamDecoder {
 public:
  virtual ~StreamDecoder() = default;
  // Bytes read from the peer and not decoded yet: the reader appends to it (Prepare, Commit).
  net::InputBuffer& wire() { return wire_; }
  // Decodes from wire() into `plain` until `plain` grew by at least `max` bytes or wire() holds
  // nothing more that can be decoded. Returns the bytes appended to `plain` (0: more input is
  // needed), or kCorruption, with the reason, for a stream that is not valid; the connection
  // is then unusable.
  virtual Result<size_t> Decode(net::InputBuffer& plain, size_t max) = 0;
  // Moves what `read` holds, read before the switch to this compression, into wire().
  void Adopt(net::InputBuffer& read) {
    const std::string_view rest = read.data();
    auto space = wire_.Prepare(rest.size());
    std::copy(rest.begin(), rest.end(), space.data());
    wire_.Commit(rest.size());
    read.Consume(rest.size());
  }

 protected:
  net::InputBuffer wire_;
};

std::unique_ptr<StreamEncoder> MakeSnappyEncoder();
std::unique_ptr<StreamDecoder> MakeSnappyDecoder();
// `level`: 1 (fastest) to 9 (smallest), as negotiated.
std::unique_ptr<StreamEncoder> MakeDeflateEncoder(int level);
std::unique_ptr<StreamDecoder> MakeDeflateDecoder();

// Both directions of a negotiated compression: snappy, or else deflate at `deflate_level`.
struct StreamCodec {
  std::unique_ptr<StreamEncoder> encoder;
  std::unique_ptr<StreamDecoder> decoder;
};
StreamCodec MakeStreamCodec(bool snappy, int deflate_level);

// snappy's framing format: the most data one chunk holds.
inline constexpr size_t kSnappyMaxChunkData = 65536;

}  // namespace cairn::nsq

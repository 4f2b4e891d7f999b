// NSQ's TCP protocol, version 2: the wire codec, as pure functions over bytes. No sockets, no
// broker: cairnd's sessions (src/server/tcp_server.cc) and the client (client.h) both sit on top
// of it, and the unit tests and the fuzz harnesses (tests/fuzz/nsq_command_fuzz.cc,
// nsq_frame_fuzz.cc) drive it directly.
//
// A connection starts with the 4-byte magic "  V2". The client then sends commands, each a line
// ending in '\n' ("SUB logs archive\n"); IDENTIFY, PUB, MPUB, DPUB and AUTH follow their line
// with a body: a 4-byte big-endian size, then that many bytes (MPUB's body is a 4-byte message
// count followed by that many size-prefixed messages).
//
// The server answers with frames:
//
//   size   4  big-endian: bytes that follow (frame type + data)
//   type   4  big-endian: 0 response, 1 error, 2 message
//   data   -  response: text ("OK", "_heartbeat_", "CLOSE_WAIT") or JSON (IDENTIFY);
//             error: "E_CODE description";
//             message: timestamp (8 bytes, ns, big-endian), attempts (2 bytes, big-endian),
//             message ID (16 bytes), body.
//
// Cairn's message ID is the message's topic offset as 16 lowercase hex digits, so a FIN, REQ or
// TOUCH finds its message with one lookup.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <boost/container/small_vector.hpp>

#include "src/base/names.h"

namespace cairn::nsq {

inline constexpr std::string_view kMagicV2 = "  V2";
inline constexpr std::string_view kOk = "OK";
inline constexpr std::string_view kHeartbeat = "_heartbeat_";
inline constexpr std::string_view kCloseWait = "CLOSE_WAIT";
inline constexpr size_t kFrameHeaderSize = 8;
inline constexpr size_t kMessageHeaderSize = 26;  // timestamp + attempts + ID
inline constexpr size_t kMessageIdSize = 16;

enum class FrameType : int32_t { kResponse = 0, kError = 1, kMessage = 2 };

using MessageId = std::array<char, kMessageIdSize>;

MessageId EncodeMessageId(uint64_t offset);
// The offset a message ID names; nullopt if it is not 16 lowercase or uppercase hex digits.
std::optional<uint64_t> DecodeMessageId(std::string_view id);

// Topic and channel names (src/base/names.h), which the codec checks as nsqd does.
using cairn::IsEphemeral;
using cairn::IsValidChannelName;
using cairn::IsValidTopicName;

// Go's %q of a string, as nsqd quotes names in its errors (ASCII escapes; other bytes as is).
std::string GoQuote(std::string_view s);
// The 4-byte big-endian number at `p`: every size in NSQ's frames (and nsqlookupd's answers).
uint32_t LoadBe32(const char* p);

// A number as nsqd reads RDY counts and REQ/DPUB times: digits only, "" is 0, no sign. nullopt on
// any other character, and on a value past INT64_MAX (nsqd lets such a value wrap; Cairn refuses
// what it cannot represent).
std::optional<int64_t> ParseDecimal(std::string_view text);

// ---- Server side: parsing commands ----

enum class Verb {
  kIdentify,
  kSub,
  kPub,
  kMpub,
  kDpub,
  kRdy,
  kFin,
  kReq,
  kTouch,
  kCls,
  kNop,
  kAuth,
};
std::string_view VerbName(Verb verb);

// One parsed command. Views point into the buffer handed to ParseCommand.
struct Command {
  Verb verb;
  // The words after the verb; inline, so parsing a FIN or a PUB allocates nothing.
  boost::container::small_vector<std::string_view, 4> params;
  std::string_view body;                                       // IDENTIFY, PUB, DPUB, AUTH
  boost::container::small_vector<std::string_view, 4> bodies;  // MPUB
};

// A protocol error as nsqd reports it: "E_INVALID ...", "E_BAD_BODY ...". `fatal` errors close the
// connection after the error frame is written.
struct ProtocolError {
  std::string code;
  std::string text;
  bool fatal = true;
  bool silent = false;  // close without writing the error (as nsqd does on an overlong line)

  std::string Frame() const;  // "CODE text"
};

// Limits the parser enforces before it buffers a body.
struct ParseLimits {
  uint32_t max_msg_size = 1024 * 1024;       // PUB, DPUB, and each message of MPUB
  uint32_t max_body_size = 5 * 1024 * 1024;  // MPUB's whole body
  uint32_t max_identify_size = 1024 * 1024;  // IDENTIFY and AUTH bodies
  size_t max_line = 16 * 1024;               // a command line, '\n' included (nsqd's buffer)
};

// Needs more bytes: at least `bytes` more before anything changes.
struct NeedMore {
  size_t bytes = 1;
};
struct Parsed {
  Command command;
  size_t consumed = 0;  // bytes of the buffer this command took
};
using ParseOutcome = std::variant<NeedMore, Parsed, ProtocolError>;

// Parses the first command in `buf`. Pure: the same bytes always give the same answer.
ParseOutcome ParseCommand(std::string_view buf, const ParseLimits& limits);

// MPUB's body after its size: a 4-byte count, then that many size-prefixed messages. Shared by
// the TCP command and HTTP's /mpub?binary=true.
std::optional<ProtocolError> ParseMpubBody(
    std::string_view body, const ParseLimits& limits,
    boost::container::small_vector<std::string_view, 4>* bodies);

// ---- Server side: writing frames ----

void AppendFrame(std::string& out, FrameType type, std::string_view data);
void AppendResponse(std::string& out, std::string_view text);
void AppendError(std::string& out, const ProtocolError& error);
void AppendMessage(std::string& out, int64_t timestamp_ns, uint16_t attempts, const MessageId& id,
                   std::string_view body);

// ---- Client side: writing commands ----

void AppendCommand(std::string& out, std::string_view line);  // line without '\n'
void AppendCommandWithBody(std::string& out, std::string_view line, std::string_view body);
void AppendMpub(std::string& out, std::string_view topic, std::span<const std::string_view> bodies);
void AppendMpub(std::string& out, std::string_view topic, std::span<const std::string> bodies);

// ---- Client side: reading frames ----

struct Message {
  int64_t timestamp_ns = 0;
  uint16_t attempts = 0;
  std::string_view id;  // 16 bytes
  std::string_view body;
};
struct Frame {
  FrameType type;
  std::string_view data;  // the whole data part
};
struct FrameNeedMore {
  size_t bytes = 1;
};
struct FrameParsed {
  Frame frame;
  size_t consumed = 0;
};
struct FrameError {
  std::string text;
};
using FrameOutcome = std::variant<FrameNeedMore, FrameParsed, FrameError>;

// Parses the first frame of `buf`; frames over `max_frame` bytes are an error.
FrameOutcome ParseFrame(std::string_view buf, size_t max_frame);
// Splits a message frame's data; nullopt if it is shorter than the message header.
std::optional<Message> ParseMessage(std::string_view data);

// What the broker said in IDENTIFY's feature negotiation.
struct Negotiated {
  int64_t max_rdy_count = 2500;
  int64_t msg_timeout_ms = 60'000;
  std::string version;
  // What the connection switches to after the answer, and whether AUTH is needed.
  bool tls_v1 = false, snappy = false, deflate = false, auth_required = false;
  int deflate_level = 6;
};
// Reads the broker's answer to IDENTIFY with feature_negotiation (a JSON object); what it does
// not say, or says with the wrong type or out of range (a max_rdy_count under 1), keeps its
// default. Never throws.
Negotiated ParseNegotiated(std::string_view json);

}  // namespace cairn::nsq

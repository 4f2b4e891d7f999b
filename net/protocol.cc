#include "net/protocol.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace cairn::nsq {
namespace {

constexpr char kHex[] = "0123456789abcdef";

void AppendBe32(std::string& out, uint32_t v) {
  const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
  out.append(b, 4);
}

ProtocolError Fatal(std::string code, std::string text) {
  return ProtocolError{std::move(code), std::move(text), true};
}

void SplitParams(std::string_view line, Command* cmd, std::string_view* verb) {
  // nsqd splits on every single space, so "SUB  a b" has an empty topic name.
  bool first = true;
  auto push = [&](std::string_view word) {
    if (first) {
      *verb = word;
      first = false;
    } else {
      cmd->params.push_back(word);
    }
  };
  size_t pos = 0;
  for (;;) {
    const size_t sp = line.find(' ', pos);
    if (sp == std::string_view::npos) {
      push(line.substr(pos));
      return;
    }
    push(line.substr(pos, sp - pos));
    pos = sp + 1;
  }
}

// A 4-byte signed size as nsqd reads it.
int32_t SignedBe32(const char* p) { return static_cast<int32_t>(LoadBe32(p)); }

struct BodyCommand {
  std::string_view verb;
  uint32_t max;
  const char* size_code;  // error code for a bad size
  const char* too_big;    // "body too big" or "message too big"
  const char* invalid;    // "invalid body size" or "invalid message body size"
};

// A publish's topic parameter (the first of at least `need`), checked as nsqd checks it.
std::optional<ProtocolError> CheckTopic(std::string_view verb, const Command& cmd, size_t need) {
  if (cmd.params.size() < need) {
    return Fatal("E_INVALID", fmt::format("{} insufficient number of parameters", verb));
  }
  if (!IsValidTopicName(cmd.params[0])) {
    // nsqd repeats the code in MPUB's text; clients match on the first word either way.
    return Fatal("E_BAD_TOPIC",
                 fmt::format("{}{} topic name {} is not valid",
                             verb == "MPUB" ? "E_BAD_TOPIC " : "", verb, GoQuote(cmd.params[0])));
  }
  return std::nullopt;
}

// The 4-byte size and the body that follow the line, from buf[*consumed]: sets `out` and moves
// `consumed` past them, or says what is missing (NeedMore) or wrong.
std::optional<ParseOutcome> ReadBody(std::string_view buf, size_t* consumed, const BodyCommand& b,
                                     std::string_view* out) {
  if (buf.size() < *consumed + 4) return ParseOutcome{NeedMore{*consumed + 4 - buf.size()}};
  const int32_t size = SignedBe32(buf.data() + *consumed);
  if (size <= 0) {
    return ParseOutcome{Fatal(b.size_code, fmt::format("{} {} {}", b.verb, b.invalid, size))};
  }
  if (static_cast<uint32_t>(size) > b.max) {
    return ParseOutcome{
        Fatal(b.size_code, fmt::format("{} {} {} > {}", b.verb, b.too_big, size, b.max))};
  }
  const size_t end = *consumed + 4 + static_cast<size_t>(size);
  if (buf.size() < end) return ParseOutcome{NeedMore{end - buf.size()}};
  *out = buf.substr(*consumed + 4, static_cast<size_t>(size));
  *consumed = end;
  return std::nullopt;
}

}  // namespace

std::string GoQuote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\a':
        out += "\\a";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\v':
        out += "\\v";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += fmt::format("\\x{:02x}", c);
        } else {
          out.push_back(static_cast<char>(c));  // printable ASCII; UTF-8 passes through
        }
    }
  }
  out.push_back('"');
  return out;
}

uint32_t LoadBe32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) | (uint32_t{u[2]} << 8) | u[3];
}

std::optional<int64_t> ParseDecimal(std::string_view text) {
  int64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    const int digit = c - '0';
    if (v > (INT64_MAX - digit) / 10) return std::nullopt;  // past int64: refused, not wrapped
    v = v * 10 + digit;
  }
  return v;
}

MessageId EncodeMessageId(uint64_t offset) {
  MessageId id;
  for (int i = 15; i >= 0; --i) {
    id[static_cast<size_t>(i)] = kHex[offset & 0xf];
    offset >>= 4;
  }
  return id;
}

namespace {
// Hex digit values; 0xff for anything else.
constexpr std::array<uint8_t, 256> kHexValue = [] {
  std::array<uint8_t, 256> t{};
  t.fill(0xff);
  for (int c = 0; c < 10; ++c) t['0' + c] = static_cast<uint8_t>(c);
  for (int c = 0; c < 6; ++c) {
    t['a' + c] = static_cast<uint8_t>(10 + c);
    t['A' + c] = static_cast<uint8_t>(10 + c);
  }
  return t;
}();
}  // namespace

std::optional<uint64_t> DecodeMessageId(std::string_view id) {
  if (id.size() != kMessageIdSize) return std::nullopt;
  uint64_t v = 0;
  uint8_t bad = 0;
  for (char c : id) {
    const uint8_t d = kHexValue[static_cast<unsigned char>(c)];
    bad |= d;
    v = (v << 4) | (d & 0xf);
  }
  if (bad & 0xf0) return std::nullopt;
  return v;
}

std::string_view VerbName(Verb verb) {
  switch (verb) {
    case Verb::kIdentify:
      return "IDENTIFY";
    case Verb::kSub:
      return "SUB";
    case Verb::kPub:
      return "PUB";
    case Verb::kMpub:
      return "MPUB";
    case Verb::kDpub:
      return "DPUB";
    case Verb::kRdy:
      return "RDY";
    case Verb::kFin:
      return "FIN";
    case Verb::kReq:
      return "REQ";
    case Verb::kTouch:
      return "TOUCH";
    case Verb::kCls:
      return "CLS";
    case Verb::kNop:
      return "NOP";
    case Verb::kAuth:
      return "AUTH";
  }
  return "?";
}

std::string ProtocolError::Frame() const { return text.empty() ? code : code + " " + text; }

std::optional<ProtocolError> ParseMpubBody(
    std::string_view all, const ParseLimits& limits,
    boost::container::small_vector<std::string_view, 4>* bodies) {
  if (all.size() < 4) return Fatal("E_BAD_BODY", "MPUB failed to read message count");
  const int32_t n = SignedBe32(all.data());
  if (n <= 0 || static_cast<uint32_t>(n) > (limits.max_body_size - 4) / 5) {
    return Fatal("E_BAD_BODY", fmt::format("MPUB invalid message count {}", n));
  }
  size_t pos = 4;
  bodies->reserve(static_cast<size_t>(std::min<int32_t>(n, 1 << 16)));
  for (int32_t i = 0; i < n; ++i) {
    if (all.size() - pos < 4) {
      return Fatal("E_BAD_MESSAGE", fmt::format("MPUB failed to read message({}) body size", i));
    }
    const int32_t size = SignedBe32(all.data() + pos);
    pos += 4;
    if (size <= 0) {
      return Fatal("E_BAD_MESSAGE", fmt::format("MPUB invalid message({}) body size {}", i, size));
    }
    if (static_cast<uint32_t>(size) > limits.max_msg_size) {
      return Fatal("E_BAD_MESSAGE",
                   fmt::format("MPUB message too big {} > {}", size, limits.max_msg_size));
    }
    if (all.size() - pos < static_cast<size_t>(size)) {
      return Fatal("E_BAD_MESSAGE", "MPUB failed to read message body");
    }
    bodies->push_back(all.substr(pos, static_cast<size_t>(size)));
    pos += static_cast<size_t>(size);
  }
  // nsqd ignores bytes after the last message; so does Cairn.
  return std::nullopt;
}

ParseOutcome ParseCommand(std::string_view buf, const ParseLimits& limits) {
  // nsqd reads a line into a buffer of max_line bytes, '\n' included, and hangs up without a word
  // when the buffer fills first. Only those bytes are searched, so that a line too long is
  // refused whether its '\n' came in the same read or not.
  const size_t nl = buf.substr(0, limits.max_line).find('\n');
  if (nl == std::string_view::npos) {
    if (buf.size() >= limits.max_line) {
      ProtocolError e =
          Fatal("E_INVALID", fmt::format("command line over {} bytes", limits.max_line));
      e.silent = true;
      return e;
    }
    return NeedMore{1};
  }
  std::string_view line = buf.substr(0, nl);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  size_t consumed = nl + 1;

  Command cmd;
  std::string_view verb;
  SplitParams(line, &cmd, &verb);
  const size_t nparams = cmd.params.size();

  auto done = [&]() -> ParseOutcome { return Parsed{std::move(cmd), consumed}; };
  auto topic_check = [&](std::string_view v, size_t need) { return CheckTopic(v, cmd, need); };
  auto body = [&](const BodyCommand& b, std::string_view* out) {
    return ReadBody(buf, &consumed, b, out);
  };
  const BodyCommand message_body{verb, limits.max_msg_size, "E_BAD_MESSAGE", "message too big",
                                 "invalid message body size"};
  const BodyCommand whole_body{verb, limits.max_body_size, "E_BAD_BODY", "body too big",
                               "invalid body size"};

  if (verb == "PUB") {
    cmd.verb = Verb::kPub;
    if (auto e = topic_check(verb, 1)) return *e;
    if (auto r = body(message_body, &cmd.body)) return *r;
    return done();
  }
  if (verb == "DPUB") {
    cmd.verb = Verb::kDpub;
    if (auto e = topic_check(verb, 2)) return *e;
    // The defer time is checked against the broker's limit by the session.
    if (auto r = body(message_body, &cmd.body)) return *r;
    return done();
  }
  if (verb == "MPUB") {
    cmd.verb = Verb::kMpub;
    if (auto e = topic_check(verb, 1)) return *e;
    std::string_view all;
    if (auto r = body(whole_body, &all)) return *r;
    if (auto e = ParseMpubBody(all, limits, &cmd.bodies)) return *e;
    // nsqd ignores bytes after the last message; so does Cairn.
    return done();
  }
  if (verb == "IDENTIFY") {
    cmd.verb = Verb::kIdentify;
    const BodyCommand b{verb, limits.max_identify_size, "E_BAD_BODY", "body too big",
                        "invalid body size"};
    if (auto r = body(b, &cmd.body)) return *r;
    return done();
  }
  if (verb == "AUTH") {
    cmd.verb = Verb::kAuth;
    if (nparams != 0) return Fatal("E_INVALID", "AUTH invalid number of parameters");
    const BodyCommand b{verb, limits.max_identify_size, "E_BAD_BODY", "body too big",
                        "invalid body size"};
    if (auto r = body(b, &cmd.body)) return *r;
    return done();
  }
  if (verb == "SUB") {
    cmd.verb = Verb::kSub;
    if (nparams < 2) return Fatal("E_INVALID", "SUB insufficient number of parameters");
    if (!IsValidTopicName(cmd.params[0])) {
      return Fatal("E_BAD_TOPIC",
                   fmt::format("SUB topic name {} is not valid", GoQuote(cmd.params[0])));
    }
    if (!IsValidChannelName(cmd.params[1])) {
      return Fatal("E_BAD_CHANNEL",
                   fmt::format("SUB channel name {} is not valid", GoQuote(cmd.params[1])));
    }
    return done();
  }
  if (verb == "RDY") {
    cmd.verb = Verb::kRdy;
    return done();  // the count is checked by the session, against the broker's max
  }
  auto with_id = [&](Verb v, size_t need) -> ParseOutcome {
    cmd.verb = v;
    if (nparams < need) {
      return Fatal("E_INVALID", fmt::format("{} insufficient number of params", verb));
    }
    if (cmd.params[0].size() != kMessageIdSize) return Fatal("E_INVALID", "invalid message ID");
    return done();
  };
  if (verb == "FIN") return with_id(Verb::kFin, 1);
  if (verb == "REQ") return with_id(Verb::kReq, 2);
  if (verb == "TOUCH") return with_id(Verb::kTouch, 1);
  if (verb == "CLS") {
    cmd.verb = Verb::kCls;
    return done();
  }
  if (verb == "NOP") {
    cmd.verb = Verb::kNop;
    return done();
  }
  return Fatal("E_INVALID", fmt::format("invalid command {}", verb));
}

void AppendFrame(std::string& out, FrameType type, std::string_view data) {
  AppendBe32(out, static_cast<uint32_t>(data.size() + 4));
  AppendBe32(out, static_cast<uint32_t>(type));
  out.append(data);
}

void AppendResponse(std::string& out, std::string_view text) {
  AppendFrame(out, FrameType::kResponse, text);
}

void AppendError(std::string& out, const ProtocolError& error) {
  AppendFrame(out, FrameType::kError, error.Frame());
}

void AppendMessage(std::string& out, int64_t timestamp_ns, uint16_t attempts, const MessageId& id,
                   std::string_view body) {
  // One resize and straight stores: this runs once per message delivered.
  const size_t at = out.size();
  out.resize(at + 4 + 4 + kMessageHeaderSize + body.size());
  auto* p = reinterpret_cast<unsigned char*>(out.data() + at);
  const uint32_t size = static_cast<uint32_t>(4 + kMessageHeaderSize + body.size());
  const uint64_t ts = static_cast<uint64_t>(timestamp_ns);
  for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>(size >> (24 - 8 * i));
  p[4] = p[5] = p[6] = 0;
  p[7] = static_cast<unsigned char>(FrameType::kMessage);
  for (int i = 0; i < 8; ++i) p[8 + i] = static_cast<unsigned char>(ts >> (56 - 8 * i));
  p[16] = static_cast<unsigned char>(attempts >> 8);
  p[17] = static_cast<unsigned char>(attempts);
  std::memcpy(p + 18, id.data(), id.size());
  if (!body.empty()) std::memcpy(p + 34, body.data(), body.size());
}

void AppendCommand(std::string& out, std::string_view line) {
  out.append(line);
  out.push_back('\n');
}

void AppendCommandWithBody(std::string& out, std::string_view line, std::string_view body) {
  AppendCommand(out, line);
  AppendBe32(out, static_cast<uint32_t>(body.size()));
  out.append(body);
}

namespace {
template <class Bodies>
void AppendMpubImpl(std::string& out, std::string_view topic, const Bodies& bodies) {
  out.append("MPUB ");
  out.append(topic);
  out.push_back('\n');
  size_t size = 4;
  for (const auto& b : bodies) size += 4 + b.size();
  AppendBe32(out, static_cast<uint32_t>(size));
  AppendBe32(out, static_cast<uint32_t>(bodies.size()));
  for (const auto& b : bodies) {
    AppendBe32(out, static_cast<uint32_t>(b.size()));
    out.append(b);
  }
}
}  // namespace

void AppendMpub(std::string& out, std::string_view topic,
                std::span<const std::string_view> bodies) {
  AppendMpubImpl(out, topic, bodies);
}
void AppendMpub(std::string& out, std::string_view topic, std::span<const std::string> bodies) {
  AppendMpubImpl(out, topic, bodies);
}

FrameOutcome ParseFrame(std::string_view buf, size_t max_frame) {
  if (buf.size() < 4) return FrameNeedMore{4 - buf.size()};
  const uint32_t size = LoadBe32(buf.data());
  if (size < 4) return FrameError{fmt::format("frame size {} is too small", size)};
  if (size > max_frame) return FrameError{fmt::format("frame size {} > {}", size, max_frame)};
  if (buf.size() < 4 + size) return FrameNeedMore{4 + size - buf.size()};
  const uint32_t type = LoadBe32(buf.data() + 4);
  if (type > 2) return FrameError{fmt::format("unknown frame type {}", type)};
  return FrameParsed{Frame{static_cast<FrameType>(type), buf.substr(8, size - 4)}, 4 + size};
}

std::optional<Message> ParseMessage(std::string_view data) {
  if (data.size() < kMessageHeaderSize) return std::nullopt;
  Message m;
  uint64_t ts = (uint64_t{LoadBe32(data.data())} << 32) | LoadBe32(data.data() + 4);
  m.timestamp_ns = static_cast<int64_t>(ts);
  const auto* u = reinterpret_cast<const unsigned char*>(data.data());
  m.attempts = static_cast<uint16_t>((u[8] << 8) | u[9]);
  m.id = data.substr(10, kMessageIdSize);
  m.body = data.substr(kMessageHeaderSize);
  return m;
}

Negotiated ParseNegotiated(std::string_view json) {
  // The broker's answer is outside input: a field of another type or out of range keeps its
  // default (json::value() would throw on a type it cannot convert).
  Negotiated n;
  const auto j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return n;
  auto integer = [&j](const char* key, int64_t min, int64_t* out) {
    const auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer()) return;
    if (it->is_number_unsigned() && it->get<uint64_t>() > INT64_MAX) return;
    if (const int64_t v = it->get<int64_t>(); v >= min) *out = v;
  };
  integer("max_rdy_count", 1, &n.max_rdy_count);  // a consumer's RDY is at most this: 0 stalls it
  integer("msg_timeout", 0, &n.msg_timeout_ms);
  if (const auto it = j.find("version"); it != j.end() && it->is_string()) {
    n.version = it->get<std::string>();
  }
  auto flag = [&j](const char* key, bool* out) {
    const auto it = j.find(key);
    if (it != j.end() && it->is_boolean()) *out = it->get<bool>();
  };
  flag("tls_v1", &n.tls_v1);
  flag("snappy", &n.snappy);
  flag("deflate", &n.deflate);
  flag("auth_required", &n.auth_required);
  int64_t level = n.deflate_level;
  integer("deflate_level", 1, &level);
  n.deflate_level = static_cast<int>(std::min<int64_t>(level, 9));
  return n;
}

}  // namespace cairn::nsq

#include "src/server/identify.h"

#include <algorithm>
#include <cctype>
#include <limits>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace cairn::net {
namespace {

using Json = nlohmann::json;
using ms = std::chrono::milliseconds;

constexpr char kDecodeError[] = "failed to decode JSON body";

// The fields nsqd reads, with Go's decoding rules: keys match case-insensitively, null leaves a
// field alone, and a value of the wrong type (a string for a number, 1.5 for an integer, a number
// past the field's width) fails the whole IDENTIFY.
struct Fields {
  std::optional<int64_t> heartbeat_interval, output_buffer_size, output_buffer_timeout, msg_timeout,
      sample_rate, deflate_level;
  std::optional<bool> feature_negotiation, tls_v1, snappy, deflate;
  std::optional<std::string> client_id, hostname, user_agent;
};

// Go's encoding/json refuses input nested deeper than this; so does IDENTIFY here.
constexpr size_t kMaxDepth = 10'000;
// client_id, hostname and user_agent are kept (and copied into every /stats) up to this many
// bytes; longer ones are cut, at a UTF-8 character boundary. nsqd keeps them whole.
constexpr size_t kMaxNameBytes = 256;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string CutAtCharacter(std::string s) {
  if (s.size() <= kMaxNameBytes) return s;
  size_t n = kMaxNameBytes;
  // Back off continuation bytes (10xxxxxx) so that a character is never cut in half.
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  s.resize(n);
  return s;
}

// A SAX reader for the IDENTIFY body: it keeps the fields nsqd reads from the top-level object
// and nothing else, so that time is linear in the body and memory does not grow with it (a DOM of
// a 5 MiB body of "[[[[..." would cost tens of times its size).
class IdentifyReader final : public nlohmann::json_sax<Json> {
 public:
  Fields fields;
  bool failed = false;

  bool null() override {
    if (depth_ == 0) return true;  // a null body changes nothing, as in Go
    return Scalar([](const std::string&) { return true; });
  }
  bool boolean(bool v) override {
    return Scalar([&](const std::string& k) {
      std::optional<bool>* out = k == "feature_negotiation" ? &fields.feature_negotiation
                                 : k == "tls_v1"            ? &fields.tls_v1
                                 : k == "snappy"            ? &fields.snappy
                                 : k == "deflate"           ? &fields.deflate
                                                            : nullptr;
      if (out != nullptr) *out = v;
      return out != nullptr || !IsKnown(k);
    });
  }
  bool number_integer(number_integer_t v) override {
    return Integer(v < 0, v, v < 0 ? 0 : static_cast<uint64_t>(v));
  }
  bool number_unsigned(number_unsigned_t v) override { return Integer(false, 0, v); }
  bool number_float(number_float_t, const string_t&) override {
    return Scalar([&](const std::string& k) { return !IsKnown(k); });
  }
  bool string(string_t& v) override {
    return Scalar([&](const std::string& k) {
      std::optional<std::string>* out = k == "client_id"    ? &fields.client_id
                                        : k == "hostname"   ? &fields.hostname
                                        : k == "user_agent" ? &fields.user_agent
                                                            : nullptr;
      if (out != nullptr) *out = CutAtCharacter(std::move(v));
      return out != nullptr || !IsKnown(k);
    });
  }
  bool binary(binary_t&) override { return Fail(); }
  bool start_object(std::size_t) override { return Open(); }
  bool end_object() override { return Close(); }
  bool start_array(std::size_t) override {
    if (depth_ == 0) return Fail();  // the body must be an object (or null)
    return Open();
  }
  bool end_array() override { return Close(); }
  bool key(string_t& k) override {
    if (depth_ == 1) key_ = Lower(k);
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return Fail();
  }

 private:
  static bool IsKnown(const std::string& k) {
    return k == "heartbeat_interval" || k == "output_buffer_size" || k == "output_buffer_timeout" ||
           k == "msg_timeout" || k == "sample_rate" || k == "feature_negotiation" ||
           k == "tls_v1" || k == "snappy" || k == "deflate" || k == "deflate_level" ||
           k == "client_id" || k == "hostname" || k == "user_agent";
  }
  bool Fail() {
    failed = true;
    return false;
  }
  bool Open() {
    // A known field holding an object or array is the wrong type, as in Go.
    if (depth_ == 1 && IsKnown(key_)) return Fail();
    if (++depth_ > kMaxDepth) return Fail();
    return true;
  }
  bool Close() {
    --depth_;
    return true;
  }
  // A scalar at the top level is a body that is not an object; inside the object it is a
  // field's value, which `assign` takes (true) if it is a known field of that type. Values nested
  // deeper belong to fields nsqd does not read.
  template <class F>
  bool Scalar(F assign) {
    if (depth_ == 0) return Fail();
    if (depth_ > 1) return true;
    return assign(key_) || Fail();
  }
  bool Integer(bool negative, int64_t sv, uint64_t uv) {
    if (depth_ == 0) return Fail();
    if (depth_ > 1) return true;
    const std::string& k = key_;
    std::optional<int64_t>* out = k == "heartbeat_interval"      ? &fields.heartbeat_interval
                                  : k == "output_buffer_size"    ? &fields.output_buffer_size
                                  : k == "output_buffer_timeout" ? &fields.output_buffer_timeout
                                  : k == "msg_timeout"           ? &fields.msg_timeout
                                  : k == "sample_rate"           ? &fields.sample_rate
                                  : k == "deflate_level"         ? &fields.deflate_level
                                                                 : nullptr;
    if (out == nullptr) return IsKnown(k) ? Fail() : true;
    // Go decodes into the field's width: int64, or int32 for sample_rate.
    const int64_t min = out == &fields.sample_rate ? std::numeric_limits<int32_t>::min()
                                                   : std::numeric_limits<int64_t>::min();
    const int64_t max = out == &fields.sample_rate ? std::numeric_limits<int32_t>::max()
                                                   : std::numeric_limits<int64_t>::max();
    if (!negative && uv > static_cast<uint64_t>(max)) return Fail();
    const int64_t v = negative ? sv : static_cast<int64_t>(uv);
    if (v < min || v > max) return Fail();
    *out = v;
    return true;
  }

  size_t depth_ = 0;
  std::string key_;
};

std::optional<Fields> Decode(std::string_view body) {
  IdentifyReader reader;
  const bool ok = Json::sax_parse(body, &reader, nlohmann::json::input_format_t::json,
                                  /*strict=*/true, /*ignore_comments=*/false);
  if (!ok || reader.failed) return std::nullopt;
  return std::move(reader.fields);
}

}  // namespace

IdentifySettings IdentifySettings::Defaults(const SessionOptions& options) {
  IdentifySettings s;
  s.heartbeat_interval = options.heartbeat_interval;
  s.msg_timeout = options.msg_timeout;
  return s;
}

Result<bool> ApplyIdentify(std::string_view body, const SessionOptions& options,
                           const BrokerOptions& broker, IdentifySettings* s) {
  auto fields = Decode(body);
  if (!fields) return Fail(Errc::kInvalidArgument, std::string(kDecodeError));
  const Fields& f = *fields;
  if (f.client_id) s->client_id = *f.client_id;
  if (f.hostname) s->hostname = *f.hostname;
  if (f.user_agent) s->user_agent = *f.user_agent;

  // Checked in nsqd's order: heartbeat, output buffer (timeout, then size), sample rate,
  // msg timeout. -1 turns a feature off, 0 keeps the default.
  if (const int64_t v = f.heartbeat_interval.value_or(0); v == -1) {
    s->heartbeat_interval = ms(0);
  } else if (v != 0) {
    if (v < 1000 || v > options.max_heartbeat_interval.count()) {
      return Fail(Errc::kInvalidArgument, fmt::format("heartbeat interval ({}) is invalid", v));
    }
    s->heartbeat_interval = ms(v);
  }
  const int64_t size = f.output_buffer_size.value_or(0);
  if (const int64_t v = f.output_buffer_timeout.value_or(0); v == -1) {
    s->output_buffer_timeout = ms(0);
  } else if (v != 0) {
    if (v < options.min_output_buffer_timeout.count() ||
        v > options.max_output_buffer_timeout.count()) {
      return Fail(Errc::kInvalidArgument, fmt::format("output buffer timeout ({}) is invalid", v));
    }
    s->output_buffer_timeout = ms(v);
  }
  if (size == -1) {
    s->output_buffer_size = 1;
    s->output_buffer_timeout = ms(0);
  } else if (size != 0) {
    if (size < 64 || size > options.max_output_buffer_size) {
      return Fail(Errc::kInvalidArgument, fmt::format("output buffer size ({}) is invalid", size));
    }
    s->output_buffer_size = size;
  }
  if (const int64_t v = f.sample_rate.value_or(0); v < 0 || v > 99) {
    return Fail(Errc::kInvalidArgument, fmt::format("sample rate ({}) is invalid", v));
  } else {
    s->sample_rate = static_cast<int32_t>(v);
  }
  if (const int64_t v = f.msg_timeout.value_or(0); v != 0) {
    if (v < 1000 || v > broker.max_msg_timeout.count()) {
      return Fail(Errc::kInvalidArgument, fmt::format("msg timeout ({}) is invalid", v));
    }
    s->msg_timeout = ms(v);
  }
  s->feature_negotiation = f.feature_negotiation.value_or(false);
  if (s->feature_negotiation) {
    // What the client asked for and the broker offers; both compressions at once is refused by
    // the session (E_IDENTIFY_FAILED), after this answer's checks.
    s->tls_v1 = options.tls != nullptr && f.tls_v1.value_or(false);
    s->snappy = options.snappy && f.snappy.value_or(false);
    s->deflate = options.deflate && f.deflate.value_or(false);
    int64_t level = 6;
    if (s->deflate && f.deflate_level.value_or(0) > 0) level = *f.deflate_level;
    s->deflate_level = static_cast<int>(std::min<int64_t>(level, options.max_deflate_level));
  }
  return s->feature_negotiation;
}

std::string NegotiatedJson(const IdentifySettings& s, const SessionOptions& options,
                           const BrokerOptions& broker) {
  nlohmann::ordered_json j;
  j["max_rdy_count"] = options.max_rdy_count;
  j["version"] = kNsqdVersion;
  j["max_msg_timeout"] = broker.max_msg_timeout.count();
  j["msg_timeout"] = s.msg_timeout.count();
  j["tls_v1"] = s.tls_v1;
  j["deflate"] = s.deflate;
  j["deflate_level"] = s.deflate_level;
  j["max_deflate_level"] = options.max_deflate_level;
  j["snappy"] = s.snappy;
  j["sample_rate"] = s.sample_rate;
  j["auth_required"] = !options.auth_http_addresses.empty();
  j["output_buffer_size"] = s.output_buffer_size;
  j["output_buffer_timeout"] = s.output_buffer_timeout.count();
  j["topology_region"] = "";
  j["topology_zone"] = "";
  return j.dump();
}

}  // namespace cairn::net

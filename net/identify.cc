#include "net/identify.h"

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
      sample_rate;
  std::optional<bool> feature_negotiation, tls_v1, snappy, deflate;
  std::optional<std::string> client_id, hostname, user_agent;
};

bool ReadInt(const Json& v, int64_t min, int64_t max, std::optional<int64_t>* out) {
  if (v.is_null()) return true;
  if (v.is_number_integer()) {
    const int64_t x = v.get<int64_t>();
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(max)) return false;
    if (x < min || x > max) return false;
    *out = x;
    return true;
  }
  return false;
}

bool ReadBool(const Json& v, std::optional<bool>* out) {
  if (v.is_null()) return true;
  if (!v.is_boolean()) return false;
  *out = v.get<bool>();
  return true;
}

bool ReadString(const Json& v, std::optional<std::string>* out) {
  if (v.is_null()) return true;
  if (!v.is_string()) return false;
  *out = v.get<std::string>();
  return true;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::optional<Fields> Decode(std::string_view body) {
  Json doc = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return std::nullopt;
  Fields f;
  if (doc.is_null()) return f;
  if (!doc.is_object()) return std::nullopt;
  constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();
  constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();
  constexpr int64_t kI32Min = std::numeric_limits<int32_t>::min();
  constexpr int64_t kI32Max = std::numeric_limits<int32_t>::max();
  for (const auto& [key, v] : doc.items()) {
    const std::string k = Lower(key);
    bool ok = true;
    if (k == "heartbeat_interval")
      ok = ReadInt(v, kI64Min, kI64Max, &f.heartbeat_interval);
    else if (k == "output_buffer_size")
      ok = ReadInt(v, kI64Min, kI64Max, &f.output_buffer_size);
    else if (k == "output_buffer_timeout")
      ok = ReadInt(v, kI64Min, kI64Max, &f.output_buffer_timeout);
    else if (k == "msg_timeout")
      ok = ReadInt(v, kI64Min, kI64Max, &f.msg_timeout);
    else if (k == "sample_rate")
      ok = ReadInt(v, kI32Min, kI32Max, &f.sample_rate);
    else if (k == "feature_negotiation")
      ok = ReadBool(v, &f.feature_negotiation);
    else if (k == "tls_v1")
      ok = ReadBool(v, &f.tls_v1);
    else if (k == "snappy")
      ok = ReadBool(v, &f.snappy);
    else if (k == "deflate")
      ok = ReadBool(v, &f.deflate);
    else if (k == "client_id")
      ok = ReadString(v, &f.client_id);
    else if (k == "hostname")
      ok = ReadString(v, &f.hostname);
    else if (k == "user_agent")
      ok = ReadString(v, &f.user_agent);
    if (!ok) return std::nullopt;
  }
  return f;
}

}  // namespace

IdentifySettings IdentifySettings::Defaults(const BrokerOptions& options) {
  IdentifySettings s;
  s.heartbeat_interval = options.heartbeat_interval;
  s.msg_timeout = options.msg_timeout;
  return s;
}

tl::expected<bool, std::string> ApplyIdentify(std::string_view body, const BrokerOptions& options,
                                              IdentifySettings* s) {
  auto fields = Decode(body);
  if (!fields) return tl::unexpected(std::string(kDecodeError));
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
      return tl::unexpected(fmt::format("heartbeat interval ({}) is invalid", v));
    }
    s->heartbeat_interval = ms(v);
  }
  const int64_t size = f.output_buffer_size.value_or(0);
  if (const int64_t v = f.output_buffer_timeout.value_or(0); v == -1) {
    s->output_buffer_timeout = ms(0);
  } else if (v != 0) {
    if (v < options.min_output_buffer_timeout.count() ||
        v > options.max_output_buffer_timeout.count()) {
      return tl::unexpected(fmt::format("output buffer timeout ({}) is invalid", v));
    }
    s->output_buffer_timeout = ms(v);
  }
  if (size == -1) {
    s->output_buffer_size = 1;
    s->output_buffer_timeout = ms(0);
  } else if (size != 0) {
    if (size < 64 || size > options.max_output_buffer_size) {
      return tl::unexpected(fmt::format("output buffer size ({}) is invalid", size));
    }
    s->output_buffer_size = size;
  }
  if (const int64_t v = f.sample_rate.value_or(0); v < 0 || v > 99) {
    return tl::unexpected(fmt::format("sample rate ({}) is invalid", v));
  } else {
    s->sample_rate = static_cast<int32_t>(v);
  }
  if (const int64_t v = f.msg_timeout.value_or(0); v != 0) {
    if (v < 1000 || v > options.max_msg_timeout.count()) {
      return tl::unexpected(fmt::format("msg timeout ({}) is invalid", v));
    }
    s->msg_timeout = ms(v);
  }
  s->feature_negotiation = f.feature_negotiation.value_or(false);
  return s->feature_negotiation;
}

std::string NegotiatedJson(const IdentifySettings& s, const BrokerOptions& options) {
  nlohmann::ordered_json j;
  j["max_rdy_count"] = options.max_rdy_count;
  j["version"] = kNsqdVersion;
  j["max_msg_timeout"] = options.max_msg_timeout.count();
  j["msg_timeout"] = s.msg_timeout.count();
  j["tls_v1"] = false;
  j["deflate"] = false;
  j["deflate_level"] = 6;
  j["max_deflate_level"] = 6;
  j["snappy"] = false;
  j["sample_rate"] = s.sample_rate;
  j["auth_required"] = false;
  j["output_buffer_size"] = s.output_buffer_size;
  j["output_buffer_timeout"] = s.output_buffer_timeout.count();
  j["topology_region"] = "";
  j["topology_zone"] = "";
  return j.dump();
}

}  // namespace cairn::net

#include "net/lookupd_protocol.h"

#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace cairn::nsq {

void AppendLookupdIdentify(std::string& out, const LookupdIdentity& identity) {
  // nsqd 1.3.0's fields; the topology ones are sent empty, as by an nsqd without them set.
  const nlohmann::json body = {
      {"broadcast_address", identity.broadcast_address},
      {"tcp_port", identity.tcp_port},
      {"http_port", identity.http_port},
      {"hostname", identity.hostname},
      {"version", identity.version},
      {"topology_zone", ""},
      {"topology_region", ""},
  };
  AppendCommandWithBody(out, "IDENTIFY", body.dump());
}

void AppendLookupdRegistration(std::string& out, bool registered, const LookupdRegistration& r) {
  out += registered ? "REGISTER " : "UNREGISTER ";
  out += r.topic;
  if (!r.channel.empty()) {
    out += ' ';
    out += r.channel;
  }
  out += '\n';
}

FrameOutcome ParseLookupdAnswer(std::string_view buf, size_t max_response) {
  if (buf.size() < 4) return FrameNeedMore{4 - buf.size()};
  const uint32_t size = LoadBe32(buf.data());
  if (size > max_response) {
    return FrameError{fmt::format("answer size {} > {}", size, max_response)};
  }
  if (buf.size() - 4 < size) return FrameNeedMore{4 + size - buf.size()};
  const std::string_view data = buf.substr(4, size);
  return FrameParsed{Frame{data.starts_with("E_") ? FrameType::kError : FrameType::kResponse, data},
                     4 + size};
}

Result<std::vector<LookupdProducer>> ParseLookupProducers(std::string_view json) {
  const nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Fail(Errc::kInvalidArgument, "not a JSON object");
  const auto producers = j.find("producers");
  if (producers == j.end() || !producers->is_array()) {
    return Fail(Errc::kInvalidArgument, "no \"producers\" array");
  }
  // A port in range, or 0.
  auto port_of = [](const nlohmann::json& p, const char* key) -> int64_t {
    const auto port = p.find(key);
    if (port == p.end() || !port->is_number_integer()) return 0;
    const int64_t n = port->get<int64_t>();
    return n >= 1 && n <= 65535 ? n : 0;
  };
  std::vector<LookupdProducer> out;
  for (const nlohmann::json& p : *producers) {
    if (!p.is_object()) continue;
    const auto address = p.find("broadcast_address");
    if (address == p.end() || !address->is_string()) continue;
    const std::string& host = address->get_ref<const std::string&>();
    const int64_t tcp = port_of(p, "tcp_port"), http = port_of(p, "http_port");
    if (host.empty() || tcp == 0) continue;
    auto join = [&](int64_t port) {
      return host.find(':') != std::string::npos ? fmt::format("[{}]:{}", host, port)
                                                 : fmt::format("{}:{}", host, port);
    };
    LookupdProducer producer{join(tcp), http == 0 ? "" : join(http)};
    if (std::none_of(out.begin(), out.end(), [&](const LookupdProducer& o) {
          return o.tcp_address == producer.tcp_address;
        })) {
      out.push_back(std::move(producer));
    }
  }
  return out;
}

}  // namespace cairn::nsq

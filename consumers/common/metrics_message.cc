#include "consumers/common/metrics_message.h"

#include <nlohmann/json.hpp>

#include "consumers/common/line_protocol.h"

namespace cairn::consumers {

MetricsMessage PrepareMetricsMessage(std::string_view body, int64_t publish_time_ns) {
  MetricsMessage out;
  thread_local Point point;  // reused line after line
  ForEachLine(body, [&](std::string_view line) {
    if (auto ok = ParseLineInto(line, &point); !ok) {
      out.rejected.push_back({std::string(line), "parse: " + ok.error().message});
      return;
    }
    AppendForWrite(line, point, publish_time_ns, &out.lines);
    ++out.points;
  });
  return out;
}

std::string RejectedRecord(const RejectedLine& r, std::string_view topic, std::string_view channel,
                           std::string_view broker, std::string_view message_id,
                           int64_t publish_time_ns) {
  nlohmann::ordered_json j;
  j["reason"] = r.reason;
  j["line"] = r.line;
  j["topic"] = topic;
  j["channel"] = channel;
  j["nsqd_tcp_address"] = broker;
  j["message_id"] = message_id;
  j["publish_time_ns"] = publish_time_ns;
  // Invalid UTF-8 in a line is replaced rather than failing the record.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace cairn::consumers

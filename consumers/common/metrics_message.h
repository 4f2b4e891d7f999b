// One message of the `metrics` topic made ready for InfluxWriter: every line parsed and
// validated by the line-protocol parser; a line without a timestamp gets its message's publish
// time, so that writing the message again (redelivery, replay) writes the same points, not new
// ones; lines the parser refuses come back with the reason.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "consumers/common/influx_writer.h"

namespace cairn::consumers {

struct MetricsMessage {
  std::string lines;                   // for InfluxWriter::Add: each ended by '\n'
  size_t points = 0;                   // lines in `lines`
  std::vector<RejectedLine> rejected;  // reason prefixed "parse: "
};

MetricsMessage PrepareMetricsMessage(std::string_view body, int64_t publish_time_ns);

// The body published to the rejected topic for one refused line: a JSON object with the line,
// the reason, and where it came from (topic, channel, the broker's --nsqd-tcp-address, message
// id, publish time). A message id alone is ambiguous: every broker numbers from 0.
std::string RejectedRecord(const RejectedLine& r, std::string_view topic, std::string_view channel,
                           std::string_view broker, std::string_view message_id,
                           int64_t publish_time_ns);

}  // namespace cairn::consumers

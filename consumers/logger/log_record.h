// Filing one message of the `logs` topic: which app it belongs to and the line cairn-logger
// keeps for it. A message is one log record as the Deis fluentd output publishes it (JSON with
// `log`, `stream`, `time` and a `kubernetes` object), a Deis controller line, or anything else.
//
//  1. controller: JSON whose kubernetes.container_name contains "deis-controller" and whose `log`
//     matches ^(INFO|WARN|DEBUG|ERROR)\s+(\[(\S+)\])+:(.*) (Deis' own regex). App: group 3,
//     picked as Go picks it ("INFO [foo]: deployed" -> "foo"). Line: "<pod_name> -- <group 1>
//     <group 4 trimmed>". A controller line that does not match is filed as in 2.
//  2. app: other JSON with a non-empty string kubernetes.labels.app. App: that label. Line:
//     "<pod_name> -- <log>" with one trailing "\n" (and then one "\r") removed.
//  3. unfiled: anything else (not JSON, or JSON without an app). App: kUnfiledApp. Line: the
//     JSON's `log` if it is a string, else the whole body, trailing newline removed as in 2.
//
// Any tenant can publish a record naming the controller's container, so neither step may cost
// more than linear time and memory: the regex runs on RE2, the JSON is read by a SAX handler
// that keeps only these fields (log_record.cc).
//
// In every kind the "<pod_name> -- " prefix is there only when the record names a pod
// (a non-empty string kubernetes.pod_name); in 2 a record whose `log` is not a string keeps its
// whole body as its log. Newlines inside a log are kept: a record is one entry however many
// text lines it spans, as in the logger it replaces.
#pragma once

#include <string>
#include <string_view>

namespace cairn::consumers {

// No Kubernetes label value can be it (they start with an alphanumeric), so it cannot collide
// with an app's label.
inline constexpr std::string_view kUnfiledApp = "_unfiled";

struct FiledRecord {
  enum class Kind { kController, kApp, kUnfiled };
  Kind kind = Kind::kUnfiled;
  std::string app;
  std::string line;  // without a trailing newline
};

// Pure: the same body always files the same way.
FiledRecord FileRecord(std::string_view body);

std::string_view KindName(FiledRecord::Kind kind);

}  // namespace cairn::consumers

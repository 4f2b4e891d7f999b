// Harness: a `logs` message body as cairn-logger files it (consumers/logger/log_record.h):
// consumers::FileRecord on any bytes: JSON records of every shape, Deis controller lines, plain
// text.
//
// Checked besides crashes, sanitizer reports, time and memory:
// - FileRecord is pure (the same body files the same way twice);
// - an unfiled record is filed under kUnfiledApp, a controller line under a non-empty app without
//   whitespace;
// - for a controller record whose log is short, the app and line are what Deis' regex, run by
//   std::regex (a backtracking engine, as the ECMAScript grammar is), picks: the reference for
//   what the Go logger files. Only short logs: that engine takes exponential time on some. The
//   input's first bytes are also filed as the log of a controller record, so that the match sees
//   any bytes.
#include <cstdint>
#include <regex>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "consumers/logger/log_record.h"
#include "tests/fuzz/fuzz_support.h"

namespace cairn::consumers {
namespace {

using Json = nlohmann::json;

// Logs up to this long are checked against std::regex.
constexpr size_t kReferenceMaxLog = 40;

const std::string* StringAt(const Json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get_ptr<const std::string*>() : nullptr;
}

std::string_view TrimSpace(std::string_view s) {
  constexpr std::string_view kSpace = " \t\n\v\f\r";
  const size_t first = s.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(kSpace) - first + 1);
}

// The controller filing by the regex in log_record.h's comment, spelled with RE2's classes.
void CheckControllerAgainstRegex(std::string_view body, const FiledRecord& r) {
  const Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return;
  const auto k8s = j.find("kubernetes");
  if (k8s == j.end() || !k8s->is_object()) return;
  const std::string* container = StringAt(*k8s, "container_name");
  const std::string* log = StringAt(j, "log");
  if (container == nullptr || log == nullptr ||
      container->find("deis-controller") == std::string::npos || log->size() > kReferenceMaxLog) {
    return;
  }
  static const std::regex re(
      R"(^(INFO|WARN|DEBUG|ERROR)[\t\n\f\r ]+(\[([^\t\n\f\r ]+)\])+:([^\n]*))");
  std::smatch m;
  if (!std::regex_search(*log, m, re)) {
    FUZZ_CHECK(r.kind != FiledRecord::Kind::kController);
    return;
  }
  FUZZ_CHECK(r.kind == FiledRecord::Kind::kController);
  FUZZ_CHECK(r.app == m[3].str());
  const std::string* pod = StringAt(*k8s, "pod_name");
  std::string line = pod != nullptr && !pod->empty() ? *pod + " -- " : "";
  line += m[1].str() + " " + std::string(TrimSpace(m[4].str()));
  FUZZ_CHECK(r.line == line);
}

}  // namespace
}  // namespace cairn::consumers

namespace cairn::consumers {
namespace {

void CheckRecord(std::string_view body) {
  const FiledRecord r = FileRecord(body);
  const FiledRecord again = FileRecord(body);
  FUZZ_CHECK(r.kind == again.kind && r.app == again.app && r.line == again.line);
  switch (r.kind) {
    case FiledRecord::Kind::kUnfiled:
      FUZZ_CHECK(r.app == kUnfiledApp);
      break;
    case FiledRecord::Kind::kApp:
      FUZZ_CHECK(!r.app.empty());
      break;
    case FiledRecord::Kind::kController:
      FUZZ_CHECK(!r.app.empty() && r.app.find_first_of(" \t\n\f\r") == std::string::npos);
      break;
  }
  // The line is made of the body's parts (the pod, the log) and a few bytes of separators.
  FUZZ_CHECK(r.line.size() <= 2 * body.size() + 8);
  CheckControllerAgainstRegex(body, r);
}

}  // namespace
}  // namespace cairn::consumers

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cairn::consumers;
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  CheckRecord(body);
  // The input's first bytes as the log of a controller record too, so that the controller match
  // (and its reference) sees any bytes without the fuzzer having to build the JSON around them.
  const Json record = {
      {"log", std::string(body.substr(0, kReferenceMaxLog))},
      {"kubernetes", {{"container_name", "deis-controller"}, {"pod_name", "ctl"}}}};
  CheckRecord(record.dump(-1, ' ', false, Json::error_handler_t::replace));
  return 0;
}

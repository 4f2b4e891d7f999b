#include "consumers/logger/log_record.h"

#include <regex>

#include <nlohmann/json.hpp>

namespace cairn::consumers {

namespace {

using Json = nlohmann::json;

// The string at `key` of an object, or nullptr.
const std::string* StringAt(const Json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return nullptr;
  return it->get_ptr<const std::string*>();
}

const Json* ObjectAt(const Json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  if (it == object.end() || !it->is_object()) return nullptr;
  return &*it;
}

// One trailing "\n", then one trailing "\r", as the Go logger trims a line when it serves it.
std::string_view WithoutNewline(std::string_view s) {
  if (s.ends_with('\n')) s.remove_suffix(1);
  if (s.ends_with('\r')) s.remove_suffix(1);
  return s;
}

// strings.TrimSpace for ASCII whitespace.
std::string_view Trimmed(std::string_view s) {
  constexpr std::string_view kSpace = " \t\n\v\f\r";
  const size_t first = s.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(kSpace) - first + 1);
}

std::string Prefixed(const std::string* pod, std::string_view text) {
  std::string line;
  if (pod != nullptr && !pod->empty()) {
    line.reserve(pod->size() + 4 + text.size());
    line += *pod;
    line += " -- ";
  }
  line += text;
  return line;
}

// Deis' controller regex, ^(INFO|WARN|DEBUG|ERROR)\s+(\[(\S+)\])+:(.*), spelled with RE2's
// classes: its \s is [\t\n\f\r ] (no \v) and its '.' stops only at "\n" (ECMAScript's stops at
// "\r" too). Both engines pick the submatches a backtracking engine would, so group 3 is what
// the Go logger takes.
const std::regex& ControllerRegex() {
  static const std::regex re(
      R"(^(INFO|WARN|DEBUG|ERROR)[\t\n\f\r ]+(\[([^\t\n\f\r ]+)\])+:([^\n]*))");
  return re;
}

}  // namespace

FiledRecord FileRecord(std::string_view body) {
  FiledRecord r;
  Json j = Json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    r.line = std::string(WithoutNewline(body));
    r.app = kUnfiledApp;
    return r;
  }
  const Json* k8s = ObjectAt(j, "kubernetes");
  const std::string* pod = k8s != nullptr ? StringAt(*k8s, "pod_name") : nullptr;
  const std::string* log = StringAt(j, "log");
  const std::string* container = k8s != nullptr ? StringAt(*k8s, "container_name") : nullptr;

  if (container != nullptr && log != nullptr &&
      container->find("deis-controller") != std::string::npos) {
    std::smatch m;
    if (std::regex_search(*log, m, ControllerRegex())) {
      r.kind = FiledRecord::Kind::kController;
      r.app = m[3].str();
      const std::string level = m[1].str();
      const std::string rest = m[4].str();
      r.line = Prefixed(pod, level + " " + std::string(Trimmed(rest)));
      return r;
    }
  }
  const std::string_view text = WithoutNewline(log != nullptr ? std::string_view(*log) : body);
  const Json* labels = k8s != nullptr ? ObjectAt(*k8s, "labels") : nullptr;
  const std::string* app = labels != nullptr ? StringAt(*labels, "app") : nullptr;
  if (app != nullptr && !app->empty()) {
    r.kind = FiledRecord::Kind::kApp;
    r.app = *app;
  } else {
    r.kind = FiledRecord::Kind::kUnfiled;
    r.app = kUnfiledApp;
  }
  r.line = Prefixed(pod, text);
  return r;
}

std::string_view KindName(FiledRecord::Kind kind) {
  switch (kind) {
    case FiledRecord::Kind::kController:
      return "controller";
    case FiledRecord::Kind::kApp:
      return "app";
    case FiledRecord::Kind::kUnfiled:
      return "unfiled";
  }
  return "unfiled";
}

}  // namespace cairn::consumers

#include "consumers/logger/log_record.h"

#include <re2/re2.h>
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

// "<pod> -- " (when there is a pod), then the parts.
std::string Prefixed(const std::string* pod, std::string_view a, std::string_view b = {},
                     std::string_view c = {}) {
  const bool with_pod = pod != nullptr && !pod->empty();
  std::string line;
  line.reserve((with_pod ? pod->size() + 4 : 0) + a.size() + b.size() + c.size());
  if (with_pod) {
    line += *pod;
    line += " -- ";
  }
  line += a;
  line += b;
  line += c;
  return line;
}

// Deis' controller regex, ^(INFO|WARN|DEBUG|ERROR)\s+(\[(\S+)\])+:(.*), spelled with Go's classes:
// its \s is [\t\n\f\r ] (no \v) and its '.' stops only at "\n". RE2 runs it in time linear in the
// line, with no recursion that grows with it (a backtracking engine, libstdc++'s std::regex,
// took minutes on a few dozen "[a]" with no colon, and overflowed its stack on a line of 500 KB),
// and picks the submatches a backtracking engine would (leftmost-first, the last repetition of a
// group), as Go's regexp does, so group 3 is what the Go logger takes. Latin-1: the line is
// matched byte by byte, as before, so bytes that are not UTF-8 match the negated classes.
const re2::RE2& ControllerRegex() {
  static const re2::RE2 re(R"(^(INFO|WARN|DEBUG|ERROR)[\t\n\f\r ]+(\[([^\t\n\f\r ]+)\])+:([^\n]*))",
                           [] {
                             re2::RE2::Options o;
                             o.set_encoding(re2::RE2::Options::EncodingLatin1);
                             o.set_log_errors(false);
                             return o;
                           }());
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
    re2::StringPiece m[5];
    if (ControllerRegex().Match(*log, 0, log->size(), re2::RE2::ANCHOR_START, m, 5)) {
      r.kind = FiledRecord::Kind::kController;
      r.app = std::string(m[3].data(), m[3].size());
      const std::string_view level(m[1].data(), m[1].size());
      r.line = Prefixed(pod, level, " ", Trimmed(std::string_view(m[4].data(), m[4].size())));
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

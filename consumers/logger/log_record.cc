#include "consumers/logger/log_record.h"

#include <array>
#include <optional>

#include <re2/re2.h>
#include <nlohmann/json.hpp>

namespace cairn::consumers {

namespace {

using Json = nlohmann::json;

// The fields FileRecord reads, taken from the body in one pass of nlohmann's SAX parser instead
// of a DOM. The parser never recurses (it keeps one bit per open array or object) and its lexer
// keeps the token at hand and its raw text; this handler keeps the four strings below and which
// of the three objects that hold them it is in. So time and memory are linear in the body with
// a small constant, about 4 bytes of heap per byte at worst (tests/consumers/log_store_test.cc
// measures it): a 1 MiB body of "[[[[..." costs 4 MiB, where nlohmann::json::parse built a
// million nested arrays (60 MiB) before it found the body was not JSON. A key given twice counts
// as in that DOM: the last one wins, whatever its type.
class RecordFields final : public nlohmann::json_sax<Json> {
 public:
  bool is_object = false;  // the body is a JSON object (meaningful once the parse succeeded)
  std::optional<std::string> log, pod, container, app;

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool string(string_t& value) override {
    // The parser clears its token before the next one, so the string can be taken.
    if (std::optional<std::string>* field = Field()) *field = std::move(value);
    return true;
  }
  bool start_object(std::size_t) override { return Open(true); }
  bool start_array(std::size_t) override { return Open(false); }
  bool end_object() override { return Close(); }
  bool end_array() override { return Close(); }
  bool key(string_t& k) override {
    key_ = Key::kOther;
    switch (Here()) {
      case Object::kTop:
        if (k == "log") key_ = Key::kLog;
        if (k == "kubernetes") key_ = Key::kKubernetes;
        break;
      case Object::kKubernetes:
        if (k == "pod_name") key_ = Key::kPodName;
        if (k == "container_name") key_ = Key::kContainerName;
        if (k == "labels") key_ = Key::kLabels;
        break;
      case Object::kLabels:
        if (k == "app") key_ = Key::kApp;
        break;
      case Object::kOther:
        break;
    }
    // What an earlier value of this key gave goes; its new value sets it again if it is a string
    // (or, for kubernetes and labels, an object holding them).
    switch (key_) {
      case Key::kLog:
        log.reset();
        break;
      case Key::kKubernetes:
        pod.reset();
        container.reset();
        app.reset();
        break;
      case Key::kPodName:
        pod.reset();
        break;
      case Key::kContainerName:
        container.reset();
        break;
      case Key::kLabels:
      case Key::kApp:
        app.reset();
        break;
      case Key::kOther:
        break;
    }
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }

 private:
  // The objects that hold fields: the record (depth 1), its kubernetes (2) and their labels (3).
  enum class Object { kOther, kTop, kKubernetes, kLabels };
  enum class Key { kOther, kLog, kKubernetes, kPodName, kContainerName, kLabels, kApp };

  Object Here() const { return depth_ >= 1 && depth_ <= 3 ? objects_[depth_ - 1] : Object::kOther; }

  // The field the value at hand is, or nullptr.
  std::optional<std::string>* Field() {
    switch (Here()) {
      case Object::kTop:
        return key_ == Key::kLog ? &log : nullptr;
      case Object::kKubernetes:
        if (key_ == Key::kPodName) return &pod;
        return key_ == Key::kContainerName ? &container : nullptr;
      case Object::kLabels:
        return key_ == Key::kApp ? &app : nullptr;
      case Object::kOther:
        return nullptr;
    }
    return nullptr;
  }

  bool Open(bool object) {
    Object o = Object::kOther;
    if (object && depth_ == 0) {
      o = Object::kTop;
      is_object = true;
    } else if (object && Here() == Object::kTop && key_ == Key::kKubernetes) {
      o = Object::kKubernetes;
    } else if (object && Here() == Object::kKubernetes && key_ == Key::kLabels) {
      o = Object::kLabels;
    }
    ++depth_;
    if (depth_ <= objects_.size()) objects_[depth_ - 1] = o;
    key_ = Key::kOther;
    return true;
  }

  bool Close() {
    --depth_;
    // The container closed was the value of the key at hand; the next value comes with a key.
    key_ = Key::kOther;
    return true;
  }

  size_t depth_ = 0;                 // arrays and objects open
  std::array<Object, 3> objects_{};  // what is open at depths 1 to 3; deeper holds nothing
  Key key_ = Key::kOther;            // the key of the value at hand, in an object above
};

const std::string* Ptr(const std::optional<std::string>& s) { return s ? &*s : nullptr; }

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
  RecordFields f;
  if (!Json::sax_parse(body.begin(), body.end(), &f) || !f.is_object) {
    r.line = std::string(WithoutNewline(body));
    r.app = kUnfiledApp;
    return r;
  }
  const std::string* pod = Ptr(f.pod);
  const std::string* log = Ptr(f.log);
  const std::string* container = Ptr(f.container);

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
  const std::string* app = Ptr(f.app);
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

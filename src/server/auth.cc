#include "src/server/auth.h"

#include <fmt/format.h>
#include <re2/re2.h>
#include <nlohmann/json.hpp>

namespace cairn {
namespace {

using Json = nlohmann::json;

tl::unexpected<Error> Invalid(std::string why) {
  return Fail(Errc::kInvalidArgument, std::move(why));
}

// An expression as Go's regexp compiles it (RE2 syntax), bounded in memory.
Result<std::shared_ptr<const re2::RE2>> Compile(const std::string& pattern) {
  RE2::Options options;
  options.set_log_errors(false);
  options.set_max_mem(1 << 20);
  auto re = std::make_shared<const re2::RE2>(pattern, options);
  if (!re->ok()) return Invalid(fmt::format("unable to compile {:?} {}", pattern, re->error()));
  return re;
}

const std::string* String(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get_ptr<const std::string*>() : nullptr;
}

Result<Authorization> ParseAuthorization(const Json& a) {
  if (!a.is_object()) return Invalid("an authorization is not an object");
  Authorization out;
  const std::string* topic = String(a, "topic");
  auto topic_re = Compile(topic != nullptr ? *topic : "");
  if (!topic_re) return tl::unexpected(topic_re.error());
  out.topic = *topic_re;
  if (auto it = a.find("channels"); it != a.end() && !it->is_null()) {
    if (!it->is_array()) return Invalid("channels is not a list");
    for (const Json& c : *it) {
      if (!c.is_string()) return Invalid("a channel is not a string");
      auto re = Compile(c.get<std::string>());
      if (!re) return tl::unexpected(re.error());
      out.channels.push_back(*re);
    }
  }
  if (auto it = a.find("permissions"); it != a.end() && !it->is_null()) {
    if (!it->is_array()) return Invalid("permissions is not a list");
    for (const Json& p : *it) {
      const std::string name = p.is_string() ? p.get<std::string>() : p.dump();
      if (name == "publish") {
        out.publish = true;
      } else if (name == "subscribe") {
        out.subscribe = true;
      } else {
        return Invalid(fmt::format("unknown permission {}", name));
      }
    }
  }
  return out;
}

}  // namespace

bool AuthState::IsAllowed(std::string_view topic, std::string_view channel) const {
  for (const Authorization& a : authorizations) {
    if (!(channel.empty() ? a.publish : a.subscribe)) continue;
    if (!RE2::PartialMatch(topic, *a.topic)) continue;
    for (const auto& c : a.channels) {
      if (RE2::PartialMatch(channel, *c)) return true;
    }
  }
  return false;
}

Result<AuthState> ParseAuthAnswer(std::string_view json,
                                  std::chrono::steady_clock::time_point now) {
  const Json j = Json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Invalid("the answer is not a JSON object");
  AuthState state;
  if (const std::string* s = String(j, "identity")) state.identity = *s;
  if (const std::string* s = String(j, "identity_url")) state.identity_url = *s;
  int64_t ttl = 0;
  if (auto it = j.find("ttl"); it != j.end() && it->is_number_integer()) ttl = it->get<int64_t>();
  if (auto it = j.find("authorizations"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) return Invalid("authorizations is not a list");
    for (const Json& a : *it) {
      auto parsed = ParseAuthorization(a);
      if (!parsed) return tl::unexpected(parsed.error());
      state.authorizations.push_back(std::move(*parsed));
    }
  }
  // A year at most: past that the expiry would not fit the clock.
  if (ttl <= 0 || ttl > 365LL * 24 * 3600) {
    return Invalid(fmt::format("invalid TTL {} (must be >0)", ttl));
  }
  state.expires = now + std::chrono::seconds(ttl);
  return state;
}

}  // namespace cairn

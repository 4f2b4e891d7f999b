// Harness: IDENTIFY's body (src/server/identify.h): net::ApplyIdentify with cairnd's default
// options on a session's default settings, then net::NegotiatedJson on what it left, as the TCP
// session does.
//
// Checked besides crashes, sanitizer reports, time and memory:
// - the same body always gives the same answer and the same settings (ApplyIdentify is pure);
// - accepted settings are within the options' bounds, each either its default, nsqd's "off"
//   value or a value the client may ask for;
// - a refusal says why (the text of nsqd's E_BAD_BODY);
// - the negotiation answer is a JSON object that reports the settings.
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "src/server/identify.h"
#include "tests/fuzz/fuzz_support.h"

namespace cairn::net {
namespace {

using ms = std::chrono::milliseconds;

bool SameSettings(const IdentifySettings& a, const IdentifySettings& b) {
  return a.heartbeat_interval == b.heartbeat_interval &&
         a.output_buffer_size == b.output_buffer_size &&
         a.output_buffer_timeout == b.output_buffer_timeout && a.msg_timeout == b.msg_timeout &&
         a.sample_rate == b.sample_rate && a.client_id == b.client_id && a.hostname == b.hostname &&
         a.user_agent == b.user_agent && a.feature_negotiation == b.feature_negotiation;
}

void CheckAccepted(const IdentifySettings& s, const IdentifySettings& defaults,
                   const SessionOptions& o, const BrokerOptions& broker) {
  auto within = [](auto v, auto lo, auto hi) { return v >= lo && v <= hi; };
  FUZZ_CHECK(s.heartbeat_interval == defaults.heartbeat_interval || s.heartbeat_interval == ms(0) ||
             within(s.heartbeat_interval, ms(1000), o.max_heartbeat_interval));
  FUZZ_CHECK(s.output_buffer_size == defaults.output_buffer_size || s.output_buffer_size == 1 ||
             within(s.output_buffer_size, int64_t{64}, o.max_output_buffer_size));
  FUZZ_CHECK(
      s.output_buffer_timeout == defaults.output_buffer_timeout ||
      s.output_buffer_timeout == ms(0) ||
      within(s.output_buffer_timeout, o.min_output_buffer_timeout, o.max_output_buffer_timeout));
  FUZZ_CHECK(within(s.sample_rate, 0, 99));
  FUZZ_CHECK(s.msg_timeout == defaults.msg_timeout ||
             within(s.msg_timeout, ms(1000), broker.max_msg_timeout));

  const std::string answer = NegotiatedJson(s, o, broker);
  const auto j = nlohmann::json::parse(answer, nullptr, /*allow_exceptions=*/false);
  FUZZ_CHECK(j.is_object());
  FUZZ_CHECK(j.value("msg_timeout", int64_t{-1}) == s.msg_timeout.count());
  FUZZ_CHECK(j.value("sample_rate", int64_t{-1}) == s.sample_rate);
  FUZZ_CHECK(j.value("output_buffer_size", int64_t{-1}) == s.output_buffer_size);
  FUZZ_CHECK(j.value("output_buffer_timeout", int64_t{-1}) == s.output_buffer_timeout.count());
}

}  // namespace
}  // namespace cairn::net

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cairn::net;
  static const cairn::SessionOptions kOptions;
  static const cairn::BrokerOptions kBroker;
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  const IdentifySettings defaults = IdentifySettings::Defaults(kOptions);

  IdentifySettings s = defaults;
  const auto r = ApplyIdentify(body, kOptions, kBroker, &s);
  IdentifySettings again = defaults;
  const auto r2 = ApplyIdentify(body, kOptions, kBroker, &again);
  FUZZ_CHECK(r.has_value() == r2.has_value() && SameSettings(s, again));
  if (!r) {
    FUZZ_CHECK(!r.error().message.empty() && r.error().message == r2.error().message);
    return 0;
  }
  FUZZ_CHECK(*r == *r2 && *r == s.feature_negotiation);
  CheckAccepted(s, defaults, kOptions, kBroker);
  return 0;
}

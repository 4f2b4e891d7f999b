// Harness: an auth server's answer to cairnd's AUTH query (ParseAuthAnswer, src/server/auth.h),
// and the checks a client's PUB and SUB then run against it. The first byte splits the input: a
// topic and a channel to check, then the answer.
//
// Checked besides crashes and sanitizer reports:
// - an answer is accepted only with a ttl > 0, and then expires after it was received;
// - a publish is allowed only by an authorization with the publish permission, a subscription
//   only by one with subscribe, and neither by one without channels.
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "src/server/auth.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  cairn::fuzz::Input in(data, size);
  const size_t cut = in.Byte() % 32;
  const std::string topic(in.Bytes(cut));
  const std::string channel(in.Bytes(cut / 2));
  const std::string_view answer = in.Rest();
  const auto now = std::chrono::steady_clock::now();
  auto state = cairn::ParseAuthAnswer(answer, now);
  if (!state) {
    FUZZ_CHECK(!state.error().message.empty());
    return 0;
  }
  FUZZ_CHECK(!state->Expired(now) && state->Expired(now + std::chrono::hours(24 * 366)));
  bool may_publish = false, may_subscribe = false;
  for (const auto& a : state->authorizations) {
    FUZZ_CHECK(a.topic != nullptr);
    may_publish |= a.publish && !a.channels.empty();
    may_subscribe |= a.subscribe && !a.channels.empty();
  }
  if (state->IsAllowed(topic, "")) FUZZ_CHECK(may_publish);
  if (!channel.empty() && state->IsAllowed(topic, channel)) FUZZ_CHECK(may_subscribe);
  return 0;
}

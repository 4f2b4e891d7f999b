// Topic and channel names, as nsqd accepts them: the one place their rules are written, for the
// NSQ codec, the broker core, the HTTP API and the workers alike.
#pragma once

#include <string_view>

namespace cairn {

inline constexpr std::string_view kEphemeralSuffix = "#ephemeral";

// 1 to 64 characters of [.a-zA-Z0-9_-], optionally ending in "#ephemeral" (within the 64).
bool IsValidTopicName(std::string_view name);
bool IsValidChannelName(std::string_view name);
// A name ending in "#ephemeral": such a topic or channel lives in memory only and goes away
// with its last consumer, as in nsqd.
inline bool IsEphemeral(std::string_view name) { return name.ends_with(kEphemeralSuffix); }

}  // namespace cairn

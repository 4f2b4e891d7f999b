#include "src/base/names.h"

namespace cairn {
namespace {

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

bool IsValidName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  if (IsEphemeral(name)) name.remove_suffix(kEphemeralSuffix.size());
  if (name.empty()) return false;
  for (char c : name) {
    if (!IsNameChar(c)) return false;
  }
  return true;
}

}  // namespace

bool IsValidTopicName(std::string_view name) { return IsValidName(name); }
bool IsValidChannelName(std::string_view name) { return IsValidName(name); }

}  // namespace cairn

#include "src/base/error.h"

#include <ostream>

#include <fmt/format.h>

namespace cairn {

std::string_view ErrcName(Errc code) {
  switch (code) {
    case Errc::kNotFound:
      return "not found";
    case Errc::kAlreadyExists:
      return "already exists";
    case Errc::kInvalidArgument:
      return "invalid argument";
    case Errc::kCorruption:
      return "corruption";
    case Errc::kIOError:
      return "I/O error";
    case Errc::kNoSpace:
      return "no space left on device";
    case Errc::kUnsupportedFormat:
      return "unsupported format";
    case Errc::kClosed:
      return "closed";
    case Errc::kUnavailable:
      return "unavailable";
    case Errc::kRejected:
      return "rejected";
  }
  return "unknown";
}

std::string Error::ToString() const { return fmt::format("{}: {}", ErrcName(code), message); }

std::ostream& operator<<(std::ostream& os, const Error& error) { return os << error.ToString(); }

}  // namespace cairn

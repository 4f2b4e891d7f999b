#include "storage/error.h"

#include <fmt/format.h>
#include <rocksdb/status.h>

namespace cairn::storage {

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
  }
  return "unknown";
}

std::string Error::ToString() const { return fmt::format("{}: {}", ErrcName(code), message); }

Error FromRocks(const rocksdb::Status& status, std::string_view context) {
  Errc code = Errc::kIOError;
  if (status.IsNotFound()) {
    code = Errc::kNotFound;
  } else if (status.IsCorruption()) {
    code = Errc::kCorruption;
  } else if (status.IsNoSpace() || status.subcode() == rocksdb::Status::kNoSpace ||
             status.ToString().find("No space left") != std::string::npos) {
    code = Errc::kNoSpace;
  } else if (status.IsInvalidArgument()) {
    code = Errc::kInvalidArgument;
  }
  return Error{code, fmt::format("{}: {}", context, status.ToString())};
}

}  // namespace cairn::storage

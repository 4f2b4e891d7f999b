#include "storage/error.h"

#include <fmt/format.h>
#include <rocksdb/status.h>

namespace cairn::storage {

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

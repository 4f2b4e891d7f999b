// Errors are values at the storage boundary: every fallible call returns Result<T> (or Status),
// never throws across the module edge. The types are Cairn's one convention (src/base/error.h);
// what storage adds is the mapping from RocksDB's statuses.
#pragma once

#include <string_view>

#include "src/base/error.h"

namespace rocksdb {
class Status;
}

namespace cairn::storage {

using cairn::Errc;
using cairn::ErrcName;
using cairn::Error;
using cairn::Fail;
using cairn::Result;
using cairn::Status;

// Maps a RocksDB status to our error space; `context` says what we were doing.
Error FromRocks(const rocksdb::Status& status, std::string_view context);

}  // namespace cairn::storage

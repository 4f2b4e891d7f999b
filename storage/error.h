// Errors are values at the storage boundary: every fallible call returns Result<T> (or Status),
// never throws across the module edge.
#pragma once

#include <string>
#include <string_view>

#include <tl/expected.hpp>

namespace rocksdb {
class Status;
}

namespace cairn::storage {

enum class Errc {
  kNotFound,           // no such topic, channel or offset
  kAlreadyExists,      // create of something that exists with other settings
  kInvalidArgument,    // bad name, bad option, empty batch
  kCorruption,         // a batch failed its CRC or does not parse; never returned as data
  kIOError,            // the file system failed; the store stays usable once the cause is gone
  kNoSpace,            // the disk is full; the append failed and nothing of it is visible
  kUnsupportedFormat,  // the data directory was written by an unknown or newer format
  kClosed,             // the store is shutting down
};

std::string_view ErrcName(Errc code);

struct Error {
  Errc code;
  std::string message;

  std::string ToString() const;
};

template <class T>
using Result = tl::expected<T, Error>;
using Status = tl::expected<void, Error>;

inline tl::unexpected<Error> Fail(Errc code, std::string message) {
  return tl::unexpected<Error>(Error{code, std::move(message)});
}

// Maps a RocksDB status to our error space; `context` says what we were doing.
Error FromRocks(const rocksdb::Status& status, std::string_view context);

}  // namespace cairn::storage

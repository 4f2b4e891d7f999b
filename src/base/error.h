// How errors cross a module boundary in Cairn. One convention, everywhere above the wire:
//
// - A call that can fail returns Result<T> (or Status when there is nothing to return). The
//   Error it carries has a code, for the caller to decide with, and a one-line message, for a
//   person: what failed and why, without repeating the code's name (ToString() adds it).
// - Nothing throws across a boundary. A constructor that could fail is a static factory, or an
//   object that is built first and then asked to do the fallible part (Listener::Listen).
// - std::optional never stands for success, and an empty string never stands for "no error".
// - An exchange with a peer completes with a Status or Result too: kUnavailable when the peer
//   could not be reached or gave no answer, kRejected when it answered with an error.
//
// Two shapes are not errors in this sense and keep their own types: an incremental wire parser
// returns "need more bytes", a parsed unit, or the protocol error to send to the peer
// (net/protocol.h), and an HTTP exchange that was answered yields the answer whatever its status
// (net/http_client.h), because callers treat 4xx and 5xx differently. What a client of cairnd is
// told for an Error is decided in one place, src/server/errors.h.
#pragma once

#include <iosfwd>
#include <string>
#include <string_view>
#include <utility>

#include <tl/expected.hpp>

namespace cairn {

enum class Errc {
  kNotFound,           // no such topic, channel or offset
  kAlreadyExists,      // create of something that exists with other settings
  kInvalidArgument,    // bad name, bad option, bad input; a parse failure
  kCorruption,         // a batch failed its CRC or does not parse; never returned as data
  kIOError,            // the file system failed; the store stays usable once the cause is gone
  kNoSpace,            // the disk is full; the append failed and nothing of it is visible
  kUnsupportedFormat,  // the data directory was written by an unknown or newer format
  kClosed,             // the store or the connection is shutting down
  kUnavailable,        // a peer could not be reached, dropped the connection or did not answer
  kRejected,           // a peer answered with an error; the message carries its answer
};

std::string_view ErrcName(Errc code);

struct Error {
  Errc code;
  std::string message;

  std::string ToString() const;  // "<code name>: <message>"
};
std::ostream& operator<<(std::ostream& os, const Error& error);  // ToString(), for tests' output

template <class T>
using Result = tl::expected<T, Error>;
using Status = tl::expected<void, Error>;

inline tl::unexpected<Error> Fail(Errc code, std::string message) {
  return tl::unexpected<Error>(Error{code, std::move(message)});
}

// The same error with `context` in front of its message ("--tcp-address: ...").
inline tl::unexpected<Error> Fail(std::string_view context, Error error) {
  error.message = std::string(context) + ": " + error.message;
  return tl::unexpected<Error>(std::move(error));
}

}  // namespace cairn

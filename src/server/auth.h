// nsqd's AUTH: a client sends a secret, cairnd asks an auth server what it may do, and every
// PUB, MPUB, DPUB and SUB is checked against the answer until its ttl runs out, when the server
// is asked again. The exchange is nsqd 1.3.0's (internal/auth): GET (or POST, as a form)
// /auth?remote_ip=&tls=&secret=&common_name= on each --auth-http-address in turn, from a random
// one, the first answer that parses winning; the answer is JSON with ttl (seconds, > 0),
// identity, identity_url and authorizations, each a topic regular expression, channel regular
// expressions and "publish"/"subscribe" permissions. Expressions match anywhere in the name, as
// Go's MatchString, and run in RE2 (linear time).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/any_io_executor.hpp>

#include "src/base/error.h"

namespace re2 {
class RE2;
}
namespace boost::asio::ssl {
class context;
}

namespace cairn {

struct Authorization {
  std::shared_ptr<const re2::RE2> topic;
  std::vector<std::shared_ptr<const re2::RE2>> channels;
  bool publish = false, subscribe = false;
};

struct AuthState {
  std::string identity, identity_url;
  std::vector<Authorization> authorizations;
  std::chrono::steady_clock::time_point expires;

  // A publish names no channel (""), a subscription its channel, as nsqd checks them.
  bool IsAllowed(std::string_view topic, std::string_view channel) const;
  bool Expired(std::chrono::steady_clock::time_point now) const { return now >= expires; }
};

// An auth server's answer, received at `now`. kInvalidArgument saying what is wrong: not JSON,
// an unknown permission, an expression that does not compile, a ttl that is not > 0.
Result<AuthState> ParseAuthAnswer(std::string_view json, std::chrono::steady_clock::time_point now);

struct AuthQuery {
  std::string remote_ip;
  bool tls = false;
  std::string secret, common_name;
};

// Asks the auth servers (`addresses`: "host:port" or an http:// URL; `method`: "get" or "post")
// and calls `done` on `ex` with the first valid answer, or kUnavailable listing why each failed.
// Each request has its own connection and a 5 s deadline, so one slow server delays only the
// clients it answers.
// An https:// address is asked over TLS, checked with `tls`.
void QueryAuthServers(boost::asio::any_io_executor ex, const std::vector<std::string>& addresses,
                      const std::string& method, std::shared_ptr<boost::asio::ssl::context> tls,
                      const AuthQuery& query, std::function<void(Result<AuthState>)> done);

}  // namespace cairn

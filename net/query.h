// A request target's path and query parameters, as the HTTP APIs (cairnd's, the workers') read
// them. Its own file, apart from the server, so that the parser builds alone (tests/fuzz).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>

namespace cairn::net {

// A request target's path and query, first value of each key (as Go's url.Values.Get).
struct Query {
  std::string path;
  std::map<std::string, std::string, std::less<>> params;
  bool valid = true;  // false: the target did not parse; `path` is then what precedes '?'

  const std::string* Get(std::string_view key) const {
    auto it = params.find(key);
    return it == params.end() ? nullptr : &it->second;
  }
};
// Parses an origin-form target ("/path?query") with Boost.URL: the path and the parameters'
// keys and values percent-decoded.
Query ParseTarget(std::string_view target);

}  // namespace cairn::net

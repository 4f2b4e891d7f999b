// What a test needs without a broker: shell commands run to their end, and the tests'
// certificates. tests/server/test_support.h includes it; tests of the bare transports
// (tests/net/http_transport_test.cc) include it alone.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "tests/storage/test_util.h"

namespace cairn::testing {

// Runs a shell command to its end: its exit status and what it printed (stdout, and stderr if
// the command sends it there).
inline std::pair<int, std::string> RunCommand(const std::string& command) {
  std::string output;
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return {-1, "popen failed"};
  char buf[4096];
  while (fgets(buf, sizeof buf, p) != nullptr) output += buf;
  return {WEXITSTATUS(pclose(p)), output};
}

// A CA, a server certificate for 127.0.0.1 and localhost, a client certificate from the same CA
// (CN=client-a), and a second CA with a client certificate of its own (CN=client-b): the files
// tests/server/make_test_certs.sh names.
class Certificates {
 public:
  Certificates() {
    const std::string make =
        fmt::format("bash {}/tests/server/make_test_certs.sh {}", CAIRN_SOURCE_DIR, dir_.path());
    auto [status, output] = RunCommand(make + " 2>&1");
    ok_ = status == 0;
    if (!ok_) ADD_FAILURE() << "openssl: " << output;
  }
  bool ok() const { return ok_; }
  std::string operator[](const std::string& file) const { return dir_.path() + "/" + file; }
  // cairnd's flags for its certificate.
  std::vector<std::string> ServerFlags() const {
    return {"--tls-cert=" + (*this)["server.pem"], "--tls-key=" + (*this)["server.key"]};
  }

 private:
  storage::testing::TempDir dir_;
  bool ok_ = false;
};

}  // namespace cairn::testing

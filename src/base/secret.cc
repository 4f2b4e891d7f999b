#include "src/base/secret.h"

#include <cctype>
#include <fstream>
#include <iterator>

#include <fmt/format.h>

namespace cairn {

Result<std::string> ReadSecretFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Fail(Errc::kInvalidArgument, fmt::format("cannot read {}", path));
  std::string secret((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!secret.empty() && std::isspace(static_cast<unsigned char>(secret.back()))) {
    secret.pop_back();
  }
  if (secret.empty()) return Fail(Errc::kInvalidArgument, fmt::format("{} is empty", path));
  return secret;
}

}  // namespace cairn

// A credential kept in a file (a Kubernetes Secret mounted as one): cairnd's --admin-secret-file
// and the workers' flag of the same name read it the same way.
#pragma once

#include <string>

#include "src/base/error.h"

namespace cairn {

// The file's content without trailing whitespace (a final newline). kInvalidArgument naming the
// file when it cannot be read or holds nothing.
Result<std::string> ReadSecretFile(const std::string& path);

}  // namespace cairn

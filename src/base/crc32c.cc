#include "src/base/crc32c.h"

#include <isa-l/crc.h>

namespace cairn {

uint32_t Crc32cExtend(uint32_t crc, std::string_view data) {
  // ISA-L's crc32_iscsi works on the raw register: no initial or final inversion of its own.
  auto* bytes = reinterpret_cast<unsigned char*>(const_cast<char*>(data.data()));
  return ~crc32_iscsi(bytes, static_cast<int>(data.size()), ~crc);
}

uint32_t Crc32c(std::string_view data) { return Crc32cExtend(0, data); }

}  // namespace cairn

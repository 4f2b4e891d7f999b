// CRC-32C (Castagnoli): the checksum of every record batch, and of every chunk of a snappy stream.
// Computed by Intel ISA-L, which picks the SSE4.2/PCLMUL kernel at run time.
#pragma once

#include <cstdint>
#include <string_view>

namespace cairn {

// The standard CRC-32C of `data` ("123456789" -> 0xE3069283).
uint32_t Crc32c(std::string_view data);

// The CRC-32C of A followed by `data`, given crc = Crc32c(A).
uint32_t Crc32cExtend(uint32_t crc, std::string_view data);

}  // namespace cairn

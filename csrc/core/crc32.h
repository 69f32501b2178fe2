// crc32.h: zlib-compatible CRC-32 (FORMAT.md's per-stream checksum), PCLMULQDQ folding when
// cpu_has_clmul() (common.h), a byte table otherwise.
#pragma once

#include <cstddef>
#include <cstdint>

namespace golfpack {

// The same value as zlib.crc32(data, crc): chained calls continue a running checksum.
uint32_t crc32(uint32_t crc, const uint8_t* p, size_t n);

}  // namespace golfpack

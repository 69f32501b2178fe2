// bitpack.h: dense LSB-first bit-packing of signed b-bit symbols (b = 2..8).
//
// Stream layout (byte-exact, shared by the fast and the reference paths):
//   symbol i is stored as (s & (2^b - 1)) -- two's complement truncated to b bits --
//   in stream bits [i*b, (i+1)*b), least significant bit first; stream bit k is
//   bit (k % 8) of byte k / 8. The stream is ceil(n*b / 8) bytes; the unused high
//   bits of the last byte are written as zero. Unpacking ignores them (a reader
//   that wants to reject them can check the last byte itself).
#pragma once

#include <cstddef>
#include <cstdint>

#include "common.h"

namespace golfpack {
namespace bitpack {

// Widths: golfpack::kMinBits..kMaxBits (common.h).
// Largest symbol count accepted by the Python API; keeps n*b far from size_t overflow.
constexpr uint64_t kMaxCount = uint64_t(1) << 56;

inline size_t packed_size(size_t n, int bits) { return (n * size_t(bits) + 7) / 8; }

// Index of the first symbol outside [-2^(b-1), 2^(b-1)-1], or n when all fit.
size_t first_out_of_range(const int8_t* symbols, size_t n, int bits);

// Fast paths (4: 2 symbols/byte, 5: 8 symbols <-> 5 bytes, 6: 4 symbols <-> 3 bytes,
// 8: memcpy) and a 64-bit accumulator for 2, 3, 7. `out` must hold packed_size(n, bits)
// bytes; symbols must be in range (pack masks them, it does not check).
void pack(const int8_t* symbols, size_t n, int bits, uint8_t* out);
// `in` must hold packed_size(count, bits) bytes. Output is sign-extended.
void unpack(const uint8_t* in, size_t count, int bits, int8_t* out);

// Bit-by-bit references of the same layout, for tests.
void pack_ref(const int8_t* symbols, size_t n, int bits, uint8_t* out);
void unpack_ref(const uint8_t* in, size_t count, int bits, int8_t* out);

}  // namespace bitpack
}  // namespace golfpack

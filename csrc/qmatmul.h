// Packed-weight layout for dequant-matmul (the in-memory inference layout;
// the on-disk artifact entropy-codes symbols and never stores this).
//
// A linear weight W is [N, K] (out_features N, in_features K). Each weight is a
// b-bit symbol q[n,k] in [-2^(b-1), 2^(b-1)-1], b in 2..8, with one fp32 scale
// per row: W_hat[n,k] = q[n,k] * s[n].
//
//   packed  : uint8 [N, stride], row-major, rows independent
//   row n   : a dense little-endian LSB-first bitstream. Symbol k occupies bits
//             [k*b, (k+1)*b) of the row, bit i of the row being bit (i % 8) of
//             byte (i / 8); the value is two's complement truncated to b bits.
//             (Same bit convention as golfpack._C.pack_bits.)
//   stride  : packed_row_stride(K, b) = ceil(K*b / 8) rounded up to 16 bytes.
//             16-byte rows keep every row start aligned for vector loads (CPU
//             SIMD, CUDA 16-byte loads). Padding bytes are written as zero by
//             the packer, but the kernels never use the symbols past K, so a
//             producer's padding content does not change any result.
//   scales  : fp32 [N] (stored as fp16 on disk; widened when loaded).
//
// Kernels may read a few bytes past the end of a row's data (still inside the
// row's stride, or guarded by explicit bounds checks at the end of the buffer):
// they never read outside packed[0 .. N*stride).
//
// GP_HD marks helpers shared verbatim by the CPU code and the CUDA kernels, so
// the CPU reference kernel exercises the exact decode the GPU runs.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define GP_HD __host__ __device__ __forceinline__
#else
#define GP_HD inline
#endif

namespace golfpack {
namespace qlayout {

constexpr int kMinBits = 2;
constexpr int kMaxBits = 8;
constexpr int64_t kRowAlign = 16;  // bytes; row stride is a multiple of this

static_assert((kRowAlign & (kRowAlign - 1)) == 0, "row alignment must be a power of two");
static_assert(kMaxBits <= 8, "symbols must fit int8 and span at most 2 bytes");

// Bytes that hold the K symbols of one row.
GP_HD int64_t row_data_bytes(int64_t K, int bits) { return (K * bits + 7) / 8; }

// Row stride of the packed matrix: data bytes rounded up to kRowAlign.
GP_HD int64_t packed_row_stride(int64_t K, int bits) {
  return (row_data_bytes(K, bits) + kRowAlign - 1) / kRowAlign * kRowAlign;
}

// Symbol k of a packed row, sign-extended. A symbol spans at most two bytes
// (shift <= 7, bits <= 8 -> at most 15 bits); the second byte is read only when
// the symbol actually crosses into it, so reads stay inside row_data_bytes.
GP_HD int32_t decode_symbol(const uint8_t* row, int64_t k, int bits) {
  const int64_t bit = k * bits;
  const int64_t byte = bit >> 3;
  const int shift = static_cast<int>(bit & 7);
  uint32_t v = static_cast<uint32_t>(row[byte]) >> shift;
  if (shift + bits > 8) v |= static_cast<uint32_t>(row[byte + 1]) << (8 - shift);
  const uint32_t mask = (1u << bits) - 1u;
  const uint32_t half = 1u << (bits - 1);
  v &= mask;
  return static_cast<int32_t>(v ^ half) - static_cast<int32_t>(half);
}

}  // namespace qlayout
}  // namespace golfpack

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

#include "common.h"

#if defined(__CUDACC__)
#define GP_HD __host__ __device__ __forceinline__
#else
#define GP_HD inline
#endif

namespace golfpack {
namespace qlayout {

using golfpack::kMaxBits;
using golfpack::kMinBits;
constexpr int64_t kRowAlign = 16;  // bytes; row stride is a multiple of this
// Most symbols per row the bindings accept: K * kMaxBits + 7 + kRowAlign stays far below 2^63.
constexpr int64_t kMaxRowSymbols = int64_t(1) << 56;

static_assert((kRowAlign & (kRowAlign - 1)) == 0, "row alignment must be a power of two");
static_assert(kMaxRowSymbols <= (INT64_MAX - 7 - kRowAlign) / kMaxBits, "row sizes cannot overflow int64");

// Bytes that hold the K symbols of one row.
GP_HD constexpr int64_t row_data_bytes(int64_t K, int bits) { return (K * bits + 7) / 8; }

// Row stride of the packed matrix: data bytes rounded up to kRowAlign.
GP_HD constexpr int64_t packed_row_stride(int64_t K, int bits) {
  return (row_data_bytes(K, bits) + kRowAlign - 1) / kRowAlign * kRowAlign;
}

// The packed row of B-bit symbols as a type: every fact about the layout that a kernel relies
// on is a constexpr here and a static_assert below, for every B in kMinBits..kMaxBits.
template <int B>
struct RowLayout {
  static constexpr int kBits = B;
  static constexpr uint32_t kMask = (1u << B) - 1u;  // a field's bits
  static constexpr uint32_t kHalf = 1u << (B - 1);   // its sign bit: value = (field ^ half) - half
  // First bit of symbol k within its first byte, and the byte it starts in.
  static constexpr int shift(int64_t k) { return int((k * B) & 7); }
  static constexpr int64_t byte(int64_t k) { return (k * B) >> 3; }
  // Bytes a symbol touches from its first byte (decode_symbol reads at most 2).
  static constexpr int span(int64_t k) { return (shift(k) + B + 7) / 8; }
  // 8 symbols starting at a multiple of 8 are exactly B bytes (decode8 of qmatmul_small.h);
  // 16 at a multiple of 16 are exactly 2B bytes (decode16 of qmatmul.cpp).
  static constexpr int kGroup8Bytes = B;
  static constexpr int kGroup16Bytes = 2 * B;
  // Worst bit end, counted from the group's first byte, of 4 symbols starting at a multiple of
  // 4 (decode_panel_fwd reads them from one 32-bit word, starting at byte(k)).
  static constexpr int quad_bits(int g) { return shift(4 * g) + 4 * B; }
};

namespace detail {
template <int B>
constexpr bool row_layout_holds() {
  using L = RowLayout<B>;
  for (int k = 0; k < 64; ++k) {
    if (L::span(k) > 2) return false;                      // decode_symbol: <= 2 bytes per symbol
    if (L::shift(k) + B > 32) return false;                // decode16: one u32 load per lane
    if (L::byte(k % 16) + 4 > 2 * B + 4) return false;     // decode16: its 2B + 4 byte buffer
    if (L::byte(k % 8) + L::span(k % 8) > L::kGroup8Bytes) return false;  // decode8: inside the group
  }
  for (int g = 0; g < 2; ++g)
    if (L::quad_bits(g) > 32) return false;                // decode_panel_fwd: 4 symbols per u32 word
  return L::byte(8) == L::kGroup8Bytes && L::byte(16) == L::kGroup16Bytes &&
         L::shift(8) == 0 && L::shift(16) == 0;            // groups start byte-aligned
}
}  // namespace detail

static_assert(detail::row_layout_holds<2>(), "packed-row layout assumption broken for 2 bits");
static_assert(detail::row_layout_holds<3>(), "packed-row layout assumption broken for 3 bits");
static_assert(detail::row_layout_holds<4>(), "packed-row layout assumption broken for 4 bits");
static_assert(detail::row_layout_holds<5>(), "packed-row layout assumption broken for 5 bits");
static_assert(detail::row_layout_holds<6>(), "packed-row layout assumption broken for 6 bits");
static_assert(detail::row_layout_holds<7>(), "packed-row layout assumption broken for 7 bits");
static_assert(detail::row_layout_holds<8>(), "packed-row layout assumption broken for 8 bits");
static_assert(kMinBits == 2 && kMaxBits == 8, "the static_asserts above cover exactly kMinBits..kMaxBits");

// Symbol k of a packed row, sign-extended. A symbol spans at most two bytes
// (RowLayout::span); the second byte is read only when the symbol actually crosses into it,
// so reads stay inside row_data_bytes.
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

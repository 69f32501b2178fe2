// Small-M packed products (AVX2+FMA only), included by qmatmul.cpp.
//
// At M <= kSmallM the panel kernels of qmatmul.cpp spend most of their time
// writing and re-reading the dequantized panel (a 16 KiB scratch per 16
// columns) for a handful of rows. Here each 8-symbol group of a packed row is
// decoded straight into a register and consumed at once by M FMAs, so no
// dequantized weight ever touches memory:
//
//   forward    y[m, n]  = s[n] * sum_k x[m, k] q[n, k]          (row dot products)
//   transposed gx[m, k] = sum_n (gy[m, n] s[n]) q[n, k]        (k-blocks of 8 in
//              registers, rows n streamed; the gy*s coefficients are staged once)
//
// decode8<B>: 8 consecutive symbols starting at a multiple of 8 (so at byte
// k0*B/8 exactly, spanning B bytes) as 8 fp32 lanes: one 8-byte load, then
//   B = 8      : vpmovsxbd
//   B = 4, 2   : broadcast + per-lane variable shift
//   otherwise  : broadcast + vpshufb (the <= 2 bytes of lane l into its low
//                half) + per-lane variable shift,
// and sign extension by shift-left / arithmetic-shift-right.
#pragma once

#ifdef GP_X86
#include <immintrin.h>

#include <vector>

namespace golfpack {
namespace {

using namespace qlayout;

constexpr int64_t kSmallM = 4;  // rows of the left operand handled by the fused path

template <int B>
struct Decode8Consts {
  // Byte shuffle (per 128-bit half; the 8 source bytes sit in both halves) and bit shift per lane.
  static constexpr int8_t byte(int l, int i) {
    return i < 2 && ((l * B) >> 3) + i < 8 ? static_cast<int8_t>(((l * B) >> 3) + i) : static_cast<int8_t>(-128);
  }
  static constexpr int shift(int l) { return (l * B) & 7; }
};

template <int B>
GP_TARGET_AVX2 GP_ALWAYS_INLINE __m256 decode8(const uint8_t* src, int64_t avail) {
  uint64_t v = 0;
  if (avail >= 8) {  // two constant-size copies: each compiles to one load
    std::memcpy(&v, src, 8);
  } else {
    std::memcpy(&v, src, B);  // the group's B bytes always exist
  }
  __m256i t;
  if (B == 8) {
    t = _mm256_cvtepi8_epi32(_mm_cvtsi64_si128(static_cast<long long>(v)));
  } else {
    if (B == 4 || B == 2) {
      t = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(v)));
      t = _mm256_srlv_epi32(t, _mm256_setr_epi32(0, B, 2 * B, 3 * B, 4 * B, 5 * B, 6 * B, 7 * B));
    } else {
      using C = Decode8Consts<B>;
      const __m256i bytes = _mm256_broadcastsi128_si256(_mm_cvtsi64_si128(static_cast<long long>(v)));
      const __m256i ctrl = _mm256_setr_epi8(
          C::byte(0, 0), C::byte(0, 1), -128, -128, C::byte(1, 0), C::byte(1, 1), -128, -128,
          C::byte(2, 0), C::byte(2, 1), -128, -128, C::byte(3, 0), C::byte(3, 1), -128, -128,
          C::byte(4, 0), C::byte(4, 1), -128, -128, C::byte(5, 0), C::byte(5, 1), -128, -128,
          C::byte(6, 0), C::byte(6, 1), -128, -128, C::byte(7, 0), C::byte(7, 1), -128, -128);
      t = _mm256_shuffle_epi8(bytes, ctrl);
      t = _mm256_srlv_epi32(t, _mm256_setr_epi32(C::shift(0), C::shift(1), C::shift(2), C::shift(3),
                                                 C::shift(4), C::shift(5), C::shift(6), C::shift(7)));
    }
    t = _mm256_srai_epi32(_mm256_slli_epi32(t, 32 - B), 32 - B);
  }
  return _mm256_cvtepi32_ps(t);
}

GP_TARGET_AVX2 GP_ALWAYS_INLINE float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Forward, rows m0..m0+MM of x, output columns n in [n0, n1).
template <int B, int MM>
GP_TARGET_AVX2 void fwd_small(const float* x, int64_t K, const uint8_t* packed, int64_t stride,
                              const float* scales, float* y, int64_t N, int64_t n0, int64_t n1) {
  const int64_t K8 = K & ~int64_t{7};
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = packed + n * stride;
    __m256 a0[MM], a1[MM];  // two accumulator sets: the FMA chains overlap
    for (int m = 0; m < MM; ++m) a0[m] = a1[m] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= K8; k += 16) {
      const int64_t b0 = k * B / 8;
      const __m256 w0 = decode8<B>(row + b0, stride - b0);
      const __m256 w1 = decode8<B>(row + b0 + B, stride - b0 - B);
      for (int m = 0; m < MM; ++m) {
        a0[m] = _mm256_fmadd_ps(_mm256_loadu_ps(x + m * K + k), w0, a0[m]);
        a1[m] = _mm256_fmadd_ps(_mm256_loadu_ps(x + m * K + k + 8), w1, a1[m]);
      }
    }
    for (; k < K8; k += 8) {
      const int64_t b0 = k * B / 8;
      const __m256 w0 = decode8<B>(row + b0, stride - b0);
      for (int m = 0; m < MM; ++m) a0[m] = _mm256_fmadd_ps(_mm256_loadu_ps(x + m * K + k), w0, a0[m]);
    }
    for (int m = 0; m < MM; ++m) {
      float acc = hsum8(_mm256_add_ps(a0[m], a1[m]));
      for (int64_t kk = K8; kk < K; ++kk) acc += x[m * K + kk] * static_cast<float>(decode_symbol(row, kk, B));
      y[m * N + n] = acc * scales[n];
    }
  }
}

// Transposed, rows m0..m0+MM: gx[m, k] for k in [k0, k1) (k0, k1 multiples of 8, or k1 = K).
// coef[m * N + n] = gy[m, n] * s[n] is staged by the caller.
template <int B, int MM>
GP_TARGET_AVX2 void bwd_small(const float* coef, int64_t N, const uint8_t* packed, int64_t stride, float* gx,
                              int64_t K, int64_t k0, int64_t k1) {
  const int64_t K8 = K & ~int64_t{7};
  int64_t k = k0;
  for (; k + 16 <= std::min(k1, K8); k += 16) {  // two k-blocks per pass over the rows
    const int64_t b0 = k * B / 8;
    __m256 a0[MM], a1[MM];
    for (int m = 0; m < MM; ++m) a0[m] = a1[m] = _mm256_setzero_ps();
    const uint8_t* src = packed + b0;
    for (int64_t n = 0; n < N; ++n, src += stride) {
      const __m256 w0 = decode8<B>(src, stride - b0);
      const __m256 w1 = decode8<B>(src + B, stride - b0 - B);
      for (int m = 0; m < MM; ++m) {
        const __m256 c = _mm256_broadcast_ss(coef + m * N + n);
        a0[m] = _mm256_fmadd_ps(c, w0, a0[m]);
        a1[m] = _mm256_fmadd_ps(c, w1, a1[m]);
      }
    }
    for (int m = 0; m < MM; ++m) {
      _mm256_storeu_ps(gx + m * K + k, a0[m]);
      _mm256_storeu_ps(gx + m * K + k + 8, a1[m]);
    }
  }
  for (; k + 8 <= std::min(k1, K8); k += 8) {
    const int64_t b0 = k * B / 8;
    __m256 a0[MM];
    for (int m = 0; m < MM; ++m) a0[m] = _mm256_setzero_ps();
    const uint8_t* src = packed + b0;
    for (int64_t n = 0; n < N; ++n, src += stride) {
      const __m256 w0 = decode8<B>(src, stride - b0);
      for (int m = 0; m < MM; ++m) a0[m] = _mm256_fmadd_ps(_mm256_broadcast_ss(coef + m * N + n), w0, a0[m]);
    }
    for (int m = 0; m < MM; ++m) _mm256_storeu_ps(gx + m * K + k, a0[m]);
  }
  for (; k < k1; ++k) {  // K % 8 tail, scalar
    for (int m = 0; m < MM; ++m) {
      float acc = 0.0f;
      for (int64_t n = 0; n < N; ++n) acc += coef[m * N + n] * static_cast<float>(decode_symbol(packed + n * stride, k, B));
      gx[m * K + k] = acc;
    }
  }
}

// Dispatch on the row count (1..kSmallM) for one bit width.
template <int B>
GP_TARGET_AVX2 void fwd_small_rows(int mm, const float* x, int64_t K, const uint8_t* packed, int64_t stride,
                                   const float* scales, float* y, int64_t N, int64_t n0, int64_t n1) {
  switch (mm) {
    case 1: fwd_small<B, 1>(x, K, packed, stride, scales, y, N, n0, n1); break;
    case 2: fwd_small<B, 2>(x, K, packed, stride, scales, y, N, n0, n1); break;
    case 3: fwd_small<B, 3>(x, K, packed, stride, scales, y, N, n0, n1); break;
    default: fwd_small<B, 4>(x, K, packed, stride, scales, y, N, n0, n1); break;
  }
}

template <int B>
GP_TARGET_AVX2 void bwd_small_rows(int mm, const float* coef, int64_t N, const uint8_t* packed, int64_t stride,
                                   float* gx, int64_t K, int64_t k0, int64_t k1) {
  switch (mm) {
    case 1: bwd_small<B, 1>(coef, N, packed, stride, gx, K, k0, k1); break;
    case 2: bwd_small<B, 2>(coef, N, packed, stride, gx, K, k0, k1); break;
    case 3: bwd_small<B, 3>(coef, N, packed, stride, gx, K, k0, k1); break;
    default: bwd_small<B, 4>(coef, N, packed, stride, gx, K, k0, k1); break;
  }
}

using FwdSmallFn = void (*)(int, const float*, int64_t, const uint8_t*, int64_t, const float*, float*, int64_t,
                            int64_t, int64_t);
using BwdSmallFn = void (*)(int, const float*, int64_t, const uint8_t*, int64_t, float*, int64_t, int64_t, int64_t);

template <class F>
F pick_small(int bits, F b2, F b3, F b4, F b5, F b6, F b7, F b8) {
  const F t[] = {b2, b3, b4, b5, b6, b7, b8};
  return t[bits - 2];
}

FwdSmallFn pick_fwd_small(int bits) {
  return pick_small<FwdSmallFn>(bits, &fwd_small_rows<2>, &fwd_small_rows<3>, &fwd_small_rows<4>,
                                &fwd_small_rows<5>, &fwd_small_rows<6>, &fwd_small_rows<7>, &fwd_small_rows<8>);
}

BwdSmallFn pick_bwd_small(int bits) {
  return pick_small<BwdSmallFn>(bits, &bwd_small_rows<2>, &bwd_small_rows<3>, &bwd_small_rows<4>,
                                &bwd_small_rows<5>, &bwd_small_rows<6>, &bwd_small_rows<7>, &bwd_small_rows<8>);
}

// run(b) for b in [0, blocks): on `threads` OpenMP threads when there are more than one (and
// OpenMP is built in), else in order on this thread.
template <class Run>
void for_blocks(int64_t blocks, int threads, const Run& run) {
#ifdef GOLFPACK_OPENMP
  if (threads > 1) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < blocks; ++b) run(b);
    return;
  }
#else
  (void)threads;
#endif
  for (int64_t b = 0; b < blocks; ++b) run(b);
}

// Whole products; the output is split across threads in 64-wide blocks (columns for the
// forward, k for the transposed product) when the work is worth a parallel region.
void small_forward(const float* x, int64_t M, int64_t K, const uint8_t* packed, int64_t stride,
                   const float* scales, float* y, int64_t N, int bits, int threads) {
  const FwdSmallFn f = pick_fwd_small(bits);
  const int64_t blocks = (N + 63) / 64;
  for_blocks(blocks, threads,
             [&](int64_t b) { f(static_cast<int>(M), x, K, packed, stride, scales, y, N, b * 64, std::min(N, b * 64 + 64)); });
}

void small_transposed(const float* gy, int64_t M, int64_t N, const uint8_t* packed, int64_t stride,
                      const float* scales, float* gx, int64_t K, int bits, int threads) {
  std::vector<float> coef(static_cast<size_t>(M * N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) coef[m * N + n] = gy[m * N + n] * scales[n];
  const BwdSmallFn f = pick_bwd_small(bits);
  const int64_t blocks = (K + 63) / 64;
  for_blocks(blocks, threads,
             [&](int64_t b) { f(static_cast<int>(M), coef.data(), N, packed, stride, gx, K, b * 64, std::min(K, b * 64 + 64)); });
}

}  // namespace
}  // namespace golfpack
#endif  // GP_X86

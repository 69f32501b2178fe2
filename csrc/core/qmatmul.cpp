// Dequant-matmul on bit-packed weights (CPU). API: qgemm.h; bindings: csrc/py/qmatmul_py.cpp.
//
//   qgemm_f32    y[M,N]  = x[M,K] . W_hat^T      (forward)
//   qgemm_t_f32  gx[M,K] = gy[M,N] . W_hat       (backward w.r.t. the input)
//   dequant_rows W_hat[r0:r1, :] as fp32         (tile dequant for the large-M path)
//
// Layout: see qmatmul.h. Both products share one register-blocked micro-kernel
// C[MR,16] (+)= A[MR,L] . P[L,16], where P is a "panel" of dequantized weights
// unpacked into a small L1-resident scratch:
//   forward    : P[k][j] = W_hat[n0+j, k0+k]   (16 output columns, a K chunk)
//   transposed : P[n][j] = W_hat[n0+n, k0+j]   (16 input columns, an N chunk)
// The row scale is folded into the panel, so the micro-kernel is a plain GEMM.
// Panels are decoded with 16-lane vector code (GCC vector extensions), and the
// per-item work is compiled twice: portable baseline and AVX2+FMA, picked at run
// time, so a portable wheel still runs the wide path on modern x86.
//
// Work is split into items (16-column tile x 256-row block of the left
// operand) scheduled with OpenMP; the GIL is released for the whole call.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "common.h"
#include "qgemm.h"
#include "qmatmul.h"
#ifdef GOLFPACK_OPENMP
#include <omp.h>
#endif

#if !defined(__GNUC__)
#error "qmatmul.cpp uses GCC/Clang vector extensions"
#endif
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the packed layout is little-endian; the word loads below assume a little-endian host"
#endif

#define GP_ALWAYS_INLINE inline __attribute__((always_inline))
// Vector-typed helpers are always inlined, so the vector-ABI note is moot.
#pragma GCC diagnostic ignored "-Wpsabi"
#if defined(__x86_64__) || defined(__i386__)
#define GP_X86 1
#define GP_TARGET_AVX2 __attribute__((target("avx2,fma")))
#endif
#include "qmatmul_small.h"  // fused decode+FMA kernels for M <= kSmallM (AVX2)

namespace golfpack {
namespace {

using namespace qlayout;

// Native-width vectors: W floats per vector (4 = SSE2 baseline, 8 = AVX2). A
// panel row of 16 floats is kLanes/W vectors. (Vectors wider than the target's
// registers are lowered through memory by GCC, so every loop works on W.)
template <int W>
struct Vec {
  typedef float f __attribute__((vector_size(4 * W)));
  typedef int32_t i __attribute__((vector_size(4 * W)));
  typedef uint32_t u __attribute__((vector_size(4 * W)));
};

constexpr int kLanes = 16;     // panel width (columns of C per micro-kernel call)
constexpr int kKC = 256;       // forward: K chunk per panel (16 KiB of fp32, stays in L1)
constexpr int kNC = 256;       // transposed: N chunk per panel
constexpr int64_t kMB = 256;   // left-operand rows per work item (x block stays in L2)
static_assert(kKC % 8 == 0, "K chunks must start on a byte boundary for every bit width");

// Rows of the left operand per micro-kernel call: MR * (16/W) accumulators
// plus 16/W panel vectors and one broadcast must fit the 16 vector registers.
template <int W>
constexpr int kMR = W >= 8 ? 6 : 3;

GP_ALWAYS_INLINE uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Little-endian word from at most `avail` (>= 1) readable bytes; the rest read as 0.
GP_ALWAYS_INLINE uint32_t load_u32_bounded(const uint8_t* p, int64_t avail) {
  uint32_t v = 0;
  std::memcpy(&v, p, static_cast<size_t>(std::min<int64_t>(avail, 4)));
  return v;
}

// Low B bits of each lane as a sign-extended symbol, converted to float.
template <int B, int W>
GP_ALWAYS_INLINE typename Vec<W>::f symbols_to_float(typename Vec<W>::u t) {
  constexpr uint32_t kMask = (1u << B) - 1u;
  constexpr uint32_t kHalf = 1u << (B - 1);
  t &= kMask;
  const typename Vec<W>::i s = reinterpret_cast<typename Vec<W>::i>(t ^ kHalf) - static_cast<int32_t>(kHalf);
  return __builtin_convertvector(s, typename Vec<W>::f);
}

// Forward panel: P[k][j] = q[n0+j, k0+k] * s[n0+j] for k < kc (rounded up to a
// multiple of 4; P must hold that many rows). Lanes j >= nrows get scale 0.
// Four consecutive symbols start at bit (k0+4g)*B; k0 is a multiple of 8, so the
// bit offset within the byte is 0 or 4 and 4 symbols fit one 32-bit word
// (4 + 4*7 = 32 bits for odd B; 4*B <= 32 with offset 0 for even B).
template <int B, int W>
GP_ALWAYS_INLINE void decode_panel_fwd(const uint8_t* packed, int64_t stride, const float* scales,
                                       int64_t n0, int nrows, int64_t k0, int kc, float* __restrict P) {
  typedef typename Vec<W>::f vf;
  typedef typename Vec<W>::u vu;
  constexpr int kV = kLanes / W;
  const uint8_t* rp[kLanes];
  vf sv[kV] = {};
  for (int r = 0; r < kLanes; ++r) {
    const bool valid = r < nrows;
    rp[r] = packed + (n0 + (valid ? r : 0)) * stride;
    sv[r / W][r % W] = valid ? scales[n0 + r] : 0.0f;
  }
  const int groups = (kc + 3) / 4;
  for (int g = 0; g < groups; ++g) {
    const int64_t bit = (k0 + 4 * g) * static_cast<int64_t>(B);
    const int64_t off = bit >> 3;
    const unsigned sh = static_cast<unsigned>(bit & 7);
    vu w[kV] = {};
    if (off + 4 <= stride) {
#pragma GCC unroll 16
      for (int r = 0; r < kLanes; ++r) w[r / W][r % W] = load_u32(rp[r] + off);
    } else {  // last word of a row whose data ends flush with its stride
      for (int r = 0; r < kLanes; ++r) w[r / W][r % W] = load_u32_bounded(rp[r] + off, stride - off);
    }
#pragma GCC unroll 4
    for (int s = 0; s < 4; ++s) {
      float* dst = P + static_cast<int64_t>(4 * g + s) * kLanes;
#pragma GCC unroll 4
      for (int v = 0; v < kV; ++v) {
        const vf f = symbols_to_float<B, W>(w[v] >> (sh + static_cast<unsigned>(s * B))) * sv[v];
        std::memcpy(dst + v * W, &f, sizeof f);
      }
    }
  }
}

// 16 consecutive symbols of one row starting at k0 (a multiple of 16, hence at
// byte k0*B/8, spanning exactly 2B bytes), times `scale`, into dst[0..16).
// Symbols past K decode padding and are ignored by the callers.
template <int B, int W>
GP_ALWAYS_INLINE void decode16(const uint8_t* row, int64_t stride, int64_t k0, float scale, float* dst) {
  typedef typename Vec<W>::f vf;
  typedef typename Vec<W>::u vu;
  const int64_t byte0 = k0 * B / 8;
  const uint8_t* src = row + byte0;
  uint8_t buf[2 * B + 4];
  if (stride - byte0 < 2 * B + 4) {  // near the end of the row: copy what exists, zero the rest
    std::memset(buf, 0, sizeof buf);
    std::memcpy(buf, src, static_cast<size_t>(std::min<int64_t>(stride - byte0, 2 * B)));
    src = buf;
  }
#pragma GCC unroll 4
  for (int v = 0; v < kLanes / W; ++v) {
    vu w, sh;
#pragma GCC unroll 16
    for (int l = 0; l < W; ++l) {
      const int j = v * W + l;
      w[l] = load_u32(src + ((j * B) >> 3));
      sh[l] = static_cast<uint32_t>((j * B) & 7);
    }
    const vf f = symbols_to_float<B, W>(w >> sh) * scale;
    std::memcpy(dst + v * W, &f, sizeof f);
  }
}

// C[MR, ncols] (+)= A[MR, L] . P[L, 16]; A row-major with leading dim lda.
template <int MR, int W>
GP_ALWAYS_INLINE void micro(const float* __restrict A, int64_t lda, const float* __restrict P, int L,
                            float* __restrict C, int64_t ldc, int ncols, bool accumulate) {
  typedef typename Vec<W>::f vf;
  constexpr int kV = kLanes / W;
  vf c[MR][kV];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < kV; ++v) c[i][v] = vf{};
  for (int l = 0; l < L; ++l) {
    vf p[kV];
#pragma GCC unroll 4
    for (int v = 0; v < kV; ++v) std::memcpy(&p[v], P + static_cast<int64_t>(l) * kLanes + v * W, sizeof(vf));
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const float a = A[i * lda + l];
#pragma GCC unroll 4
      for (int v = 0; v < kV; ++v) c[i][v] += a * p[v];
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    float* ci = C + i * ldc;
    if (ncols == kLanes) {
#pragma GCC unroll 4
      for (int v = 0; v < kV; ++v) {
        vf o = c[i][v];
        if (accumulate) {
          vf prev;
          std::memcpy(&prev, ci + v * W, sizeof prev);
          o += prev;
        }
        std::memcpy(ci + v * W, &o, sizeof o);
      }
    } else {
      for (int j = 0; j < ncols; ++j) ci[j] = (accumulate ? ci[j] : 0.0f) + c[i][j / W][j % W];
    }
  }
}

// Rows [m0, m1) of C (+)= A . P, MR rows at a time, remainder by a smaller kernel.
template <int W>
GP_ALWAYS_INLINE void run_rows(const float* A, int64_t lda, int64_t m0, int64_t m1, const float* P, int L,
                               float* C, int64_t ldc, int ncols, bool accumulate) {
  constexpr int MR = kMR<W>;
  int64_t m = m0;
  for (; m + MR <= m1; m += MR) micro<MR, W>(A + m * lda, lda, P, L, C + m * ldc, ldc, ncols, accumulate);
  const float* a = A + m * lda;
  float* c = C + m * ldc;
  switch (m1 - m) {  // cases >= MR are unreachable for the smaller MR
    case 5: micro<5, W>(a, lda, P, L, c, ldc, ncols, accumulate); break;
    case 4: micro<4, W>(a, lda, P, L, c, ldc, ncols, accumulate); break;
    case 3: micro<3, W>(a, lda, P, L, c, ldc, ncols, accumulate); break;
    case 2: micro<2, W>(a, lda, P, L, c, ldc, ncols, accumulate); break;
    case 1: micro<1, W>(a, lda, P, L, c, ldc, ncols, accumulate); break;
    default: break;
  }
}

// One call's operands. For the forward product `lhs` is x [M,K] and `out` is
// y [M,N]; for the transposed product `lhs` is gy [M,N] and `out` is gx [M,K].
struct Problem {
  const float* lhs;
  float* out;
  const uint8_t* packed;
  const float* scales;
  int64_t M, N, K, stride;
  int64_t row_begin;  // dequant_rows only: first row of the block
};

// Panel scratch: enough for a forward K chunk (rounded up to whole 4-symbol
// groups) or a transposed N chunk.
constexpr int kPanelFloats = (std::max(kKC, kNC) + 4) * kLanes;

template <int B, int W>
GP_ALWAYS_INLINE void fwd_item_body(const Problem& p, int64_t item, float* P) {
  const int64_t ntiles = (p.N + kLanes - 1) / kLanes;
  const int64_t n0 = (item % ntiles) * kLanes;
  const int64_t m0 = (item / ntiles) * kMB;
  const int64_t m1 = std::min(p.M, m0 + kMB);
  const int nrows = static_cast<int>(std::min<int64_t>(kLanes, p.N - n0));
  for (int64_t k0 = 0; k0 < p.K; k0 += kKC) {
    const int kc = static_cast<int>(std::min<int64_t>(kKC, p.K - k0));
    decode_panel_fwd<B, W>(p.packed, p.stride, p.scales, n0, nrows, k0, kc, P);
    run_rows<W>(p.lhs + k0, p.K, m0, m1, P, kc, p.out + n0, p.N, nrows, k0 > 0);
  }
}

template <int B, int W>
GP_ALWAYS_INLINE void bwd_item_body(const Problem& p, int64_t item, float* P) {
  const int64_t ktiles = (p.K + kLanes - 1) / kLanes;
  const int64_t k0 = (item % ktiles) * kLanes;
  const int64_t m0 = (item / ktiles) * kMB;
  const int64_t m1 = std::min(p.M, m0 + kMB);
  const int ncols = static_cast<int>(std::min<int64_t>(kLanes, p.K - k0));
  for (int64_t n0 = 0; n0 < p.N; n0 += kNC) {
    const int nc = static_cast<int>(std::min<int64_t>(kNC, p.N - n0));
    for (int r = 0; r < nc; ++r)
      decode16<B, W>(p.packed + (n0 + r) * p.stride, p.stride, k0, p.scales[n0 + r], P + r * kLanes);
    run_rows<W>(p.lhs + n0, p.N, m0, m1, P, nc, p.out + k0, p.K, ncols, n0 > 0);
  }
}

// dequant_rows: `item` is a row index; out row = W_hat[item, :].
template <int B, int W>
GP_ALWAYS_INLINE void deq_item_body(const Problem& p, int64_t item, float* /*scratch*/) {
  const uint8_t* row = p.packed + item * p.stride;
  const float s = p.scales[item];
  float* dst = p.out + (item - p.row_begin) * p.K;
  int64_t k0 = 0;
  for (; k0 + kLanes <= p.K; k0 += kLanes) decode16<B, W>(row, p.stride, k0, s, dst + k0);
  if (k0 < p.K) {
    float tail[kLanes];
    decode16<B, W>(row, p.stride, k0, s, tail);
    std::memcpy(dst + k0, tail, static_cast<size_t>(p.K - k0) * sizeof(float));
  }
}

using ItemFn = void (*)(const Problem&, int64_t, float*);

// Each item function is compiled for the portable baseline (W = 4) and, on
// x86, for AVX2+FMA (W = 8); the body is always_inline so it takes the ISA of
// the wrapper it is inlined into.
#define GP_DEFINE_ITEM_FNS(NAME)                                                          \
  template <int B>                                                                        \
  void NAME##_generic(const Problem& p, int64_t item, float* P) {                         \
    NAME##_body<B, 4>(p, item, P);                                                        \
  }                                                                                       \
  GP_DEFINE_ITEM_FNS_AVX2(NAME)

#ifdef GP_X86
#define GP_DEFINE_ITEM_FNS_AVX2(NAME)                                                     \
  template <int B>                                                                        \
  GP_TARGET_AVX2 void NAME##_avx2(const Problem& p, int64_t item, float* P) {             \
    NAME##_body<B, 8>(p, item, P);                                                        \
  }
#else
#define GP_DEFINE_ITEM_FNS_AVX2(NAME)
#endif

GP_DEFINE_ITEM_FNS(fwd_item)
GP_DEFINE_ITEM_FNS(bwd_item)
GP_DEFINE_ITEM_FNS(deq_item)


enum class Op { kForward, kTransposed, kDequant };

template <int B>
ItemFn pick_for_bits(Op op) {
#ifdef GP_X86
  if (cpu_has_avx2_fma()) {
    switch (op) {
      case Op::kForward: return &fwd_item_avx2<B>;
      case Op::kTransposed: return &bwd_item_avx2<B>;
      case Op::kDequant: return &deq_item_avx2<B>;
    }
  }
#endif
  switch (op) {
    case Op::kForward: return &fwd_item_generic<B>;
    case Op::kTransposed: return &bwd_item_generic<B>;
    case Op::kDequant: return &deq_item_generic<B>;
  }
  return nullptr;
}

ItemFn pick(Op op, int bits) {
  switch (bits) {
    case 2: return pick_for_bits<2>(op);
    case 3: return pick_for_bits<3>(op);
    case 4: return pick_for_bits<4>(op);
    case 5: return pick_for_bits<5>(op);
    case 6: return pick_for_bits<6>(op);
    case 7: return pick_for_bits<7>(op);
    case 8: return pick_for_bits<8>(op);
    default: throw std::invalid_argument("bits must be in 2..8, got " + std::to_string(bits));
  }
}

int resolve_threads(int threads, int64_t items, double flops) {
#ifdef GOLFPACK_OPENMP
  // A parallel region costs a few microseconds; not worth it for tiny products.
  if (flops < 2.0e5) return 1;
  // Clamped to the machine: OpenMP exits the process when it cannot create the threads asked.
  return clamp_threads(threads, items, omp_get_max_threads());
#else
  (void)threads; (void)items; (void)flops;
  return 1;
#endif
}

void run_items(ItemFn fn, const Problem& p, int64_t item_begin, int64_t item_end, int threads) {
  if (threads <= 1) {
    alignas(64) float P[kPanelFloats];
    for (int64_t it = item_begin; it < item_end; ++it) fn(p, it, P);
    return;
  }
#ifdef GOLFPACK_OPENMP
#pragma omp parallel num_threads(threads)
  {
    alignas(64) float P[kPanelFloats];
#pragma omp for schedule(static)
    for (int64_t it = item_begin; it < item_end; ++it) fn(p, it, P);
  }
#endif
}

// ---------------------------------------------------------------- references

double qgemm_ref_entry(const Problem& p, int bits, int64_t m, int64_t n) {
  const uint8_t* row = p.packed + n * p.stride;
  double acc = 0.0;
  for (int64_t k = 0; k < p.K; ++k)
    acc += static_cast<double>(p.lhs[m * p.K + k]) * static_cast<double>(decode_symbol(row, k, bits));
  return acc * static_cast<double>(p.scales[n]);
}

double qgemm_t_ref_entry(const Problem& p, int bits, int64_t m, int64_t k) {
  double acc = 0.0;
  for (int64_t n = 0; n < p.N; ++n) {
    const double w = static_cast<double>(decode_symbol(p.packed + n * p.stride, k, bits)) *
                     static_cast<double>(p.scales[n]);
    acc += static_cast<double>(p.lhs[m * p.N + n]) * w;
  }
  return acc;
}

}  // namespace

namespace qgemm {

void forward(const float* x, int64_t M, int64_t K, const uint8_t* packed, int64_t stride, const float* scales,
             int64_t N, int bits, float* y, int threads) {
  check_bits(bits);
  if (M == 0 || N == 0) return;
  if (K == 0) {
    std::fill(y, y + M * N, 0.0f);
    return;
  }
  Problem p{x, y, packed, scales, M, N, K, stride, 0};
#ifdef GP_X86
  if (M <= kSmallM && K >= 8 && cpu_has_avx2_fma()) {
    const int64_t blocks = (N + 63) / 64;
    small_forward(x, M, K, packed, stride, scales, y, N, bits, resolve_threads(threads, blocks, 2.0 * M * N * K));
    return;
  }
#endif
  const int64_t items = ((N + kLanes - 1) / kLanes) * ((M + kMB - 1) / kMB);
  run_items(pick(Op::kForward, bits), p, 0, items, resolve_threads(threads, items, 2.0 * M * N * K));
}

void transposed(const float* gy, int64_t M, int64_t N, const uint8_t* packed, int64_t stride, const float* scales,
                int64_t K, int bits, float* gx, int threads) {
  check_bits(bits);
  if (M == 0 || K == 0) return;
  if (N == 0) {
    std::fill(gx, gx + M * K, 0.0f);
    return;
  }
  Problem p{gy, gx, packed, scales, M, N, K, stride, 0};
#ifdef GP_X86
  if (M <= kSmallM && K >= 8 && cpu_has_avx2_fma()) {
    const int64_t blocks = (K + 63) / 64;
    small_transposed(gy, M, N, packed, stride, scales, gx, K, bits, resolve_threads(threads, blocks, 2.0 * M * N * K));
    return;
  }
#endif
  const int64_t items = ((K + kLanes - 1) / kLanes) * ((M + kMB - 1) / kMB);
  run_items(pick(Op::kTransposed, bits), p, 0, items, resolve_threads(threads, items, 2.0 * M * N * K));
}

void dequant_rows(const uint8_t* packed, int64_t stride, const float* scales, int64_t N, int64_t K, int bits,
                  int64_t row_begin, int64_t row_end, float* out, int threads) {
  check_bits(bits);
  if (row_begin < 0 || row_end < row_begin || row_end > N)
    throw std::invalid_argument("row range [" + std::to_string(row_begin) + ", " + std::to_string(row_end) +
                                ") is not inside [0, " + std::to_string(N) + ")");
  if (K == 0 || row_end == row_begin) return;
  Problem p{nullptr, out, packed, scales, 0, N, K, stride, row_begin};
  const int64_t rows = row_end - row_begin;
  run_items(pick(Op::kDequant, bits), p, row_begin, row_end, resolve_threads(threads, rows, 8.0 * rows * K));
}

void forward_ref(const float* x, int64_t M, int64_t K, const uint8_t* packed, int64_t stride, const float* scales,
                 int64_t N, int bits, float* y) {
  check_bits(bits);
  Problem p{x, y, packed, scales, M, N, K, stride, 0};
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) y[m * N + n] = static_cast<float>(qgemm_ref_entry(p, bits, m, n));
}

void transposed_ref(const float* gy, int64_t M, int64_t N, const uint8_t* packed, int64_t stride,
                    const float* scales, int64_t K, int bits, float* gx) {
  check_bits(bits);
  Problem p{gy, gx, packed, scales, M, N, K, stride, 0};
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) gx[m * K + k] = static_cast<float>(qgemm_t_ref_entry(p, bits, m, k));
}

void check_symbols(const int8_t* q, int64_t N, int64_t K, int bits) {
  check_bits(bits);
  const int lo = symbol_min(bits), hi = symbol_max(bits);
  for (int64_t i = 0; i < N * K; ++i) {
    if (q[i] < lo || q[i] > hi)
      throw std::invalid_argument("symbol " + std::to_string(q[i]) + " at row " + std::to_string(i / K) +
                                  ", column " + std::to_string(i % K) + " is outside [" + std::to_string(lo) + ", " +
                                  std::to_string(hi) + "] for " + std::to_string(bits) + "-bit packing");
  }
}

void pack_rows(const int8_t* q, int64_t N, int64_t K, int bits, uint8_t* dst) {
  check_bits(bits);
  const int64_t stride = packed_row_stride(K, bits);
  if (N * stride > 0) std::memset(dst, 0, static_cast<size_t>(N * stride));  // dst may be null when empty
  const uint32_t mask = (1u << bits) - 1u;
  for (int64_t n = 0; n < N; ++n) {
    uint8_t* row = dst + n * stride;
    uint64_t acc = 0;
    int nbits = 0;
    int64_t pos = 0;
    for (int64_t k = 0; k < K; ++k) {
      acc |= static_cast<uint64_t>(static_cast<uint32_t>(q[n * K + k]) & mask) << nbits;
      nbits += bits;
      while (nbits >= 8) {
        row[pos++] = static_cast<uint8_t>(acc);
        acc >>= 8;
        nbits -= 8;
      }
    }
    if (nbits > 0) row[pos] = static_cast<uint8_t>(acc);
  }
}

void unpack_rows(const uint8_t* src, int64_t N, int64_t K, int bits, int8_t* q) {
  check_bits(bits);
  const int64_t stride = packed_row_stride(K, bits);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) q[n * K + k] = static_cast<int8_t>(decode_symbol(src + n * stride, k, bits));
}

const char* cpu_isa() { return cpu_has_avx2_fma() ? "avx2+fma" : "baseline"; }

}  // namespace qgemm
}  // namespace golfpack

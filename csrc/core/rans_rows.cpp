// rans_rows.cpp: rANS symbol streams decoded straight into the packed inference layout
// (issue 8). Python: golfpack._C.rans_decode_rows(jobs, threads=1) (csrc/py/rans_rows_py.cpp).
//
// A job is one int stream of a [rows, cols] tensor stored as rANS symbols u = s + 128
// (codec/coders.py, RANS_SYMBOL_OFFSET) with b-bit symbols s. Its output is the layout
// PackedLinear takes (qmatmul.h): rows of packed_row_stride(cols, b) bytes, LSB-first b-bit
// fields, zero padding. The int8 symbol array of the whole tensor never exists: each stream is
// decoded in pieces of kPiece symbols into a small buffer that stays in L1, hashed for the
// integrity tag and packed row by row while it is hot.
//
// Throughput: one stream is a chain of dependent rounds, so each worker keeps up to 8 jobs in
// flight and decodes one piece of each per step with the interleaved loop (Decoder::run_group;
// the piece consumer and worker loop are rows_slot.h's, shared with rans_x32_rows.cpp).
// `threads` workers share the job list.
//
// Validation is the same as rans_decode followed by coders._check_symbol_range: every
// stream-level check of RANS.md (the symbols must also fit b bits; that error is reported after
// the stream's own checks, as the two-step path reported it). A failing job yields an error
// string in its result slot; the other jobs still decode.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bitpack.h"
#include "qmatmul.h"
#include "rans.h"
#include "rans_rows.h"
#include "rows_slot.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace golfpack {
namespace rans_rows {
namespace {

using rows::kSymbolOffset;
constexpr int kInFlight = rans::kMaxInterleave;  // jobs interleaved per worker (Decoder::run_group)


#if defined(__x86_64__) || defined(__i386__)
// 6-bit fields, 32 symbols -> 24 bytes per step: pairs of 6-bit values merge into 12-bit
// values (maddubs by 1, 64), pairs of those into 24-bit values (madd by 1, 4096), and a byte
// shuffle keeps the 3 low bytes of each 32-bit lane. Each half writes 16 bytes of which 12 are
// data, so it runs only while those writes stay inside the row's stride (the caller zeroes the
// padding afterwards). Returns the symbols packed (a multiple of 32; the rest is scalar).
__attribute__((target("avx2"))) uint64_t pack6_avx2(const uint8_t* u, uint64_t cols, uint8_t* dst,
                                                    int64_t stride) {
  const __m256i m6 = _mm256_set1_epi8(0x3F);
  const __m256i mul1 = _mm256_set1_epi16(0x4001);  // bytes (1, 64)
  const __m256i mul2 = _mm256_set1_epi32(0x10000001);  // int16 (1, 4096)
  const __m256i take3 = _mm256_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1,
                                         0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1);
  uint64_t k = 0;
  for (; k + 32 <= cols && int64_t(k / 32 * 24 + 28) <= stride; k += 32) {
    const __m256i v = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(u + k)), m6);
    const __m256i w = _mm256_shuffle_epi8(_mm256_madd_epi16(_mm256_maddubs_epi16(v, mul1), mul2), take3);
    uint8_t* o = dst + k / 32 * 24;
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o), _mm256_castsi256_si128(w));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 12), _mm256_extracti128_si256(w, 1));
  }
  return k;
}
#endif

#if defined(__x86_64__) || defined(__i386__)
// b-bit fields (b = 2..7; used for 2, 3 and 7), 8 symbols -> b bytes per step: one PEXT of 8 symbol bytes with the
// low b bits of every byte set in the mask gives the 8b bits in the LSB-first order of
// csrc/bitpack.h (x86 is little-endian). Each step stores 8 bytes of which b are data (the next
// step overwrites the rest), so it runs only while that store stays inside the row's stride; the
// rest of the row goes through bitpack::pack from a byte boundary (k % 8 == 0). Returns the
// symbols packed. Only where cpu_has_fast_pext() (BMI2, and not the microcoded PEXT of
// AMD Zen 1/2).
__attribute__((target("bmi2"))) uint64_t pack_pext(const uint8_t* u, uint64_t cols, int bits, uint8_t* dst,
                                                   int64_t stride) {
  const uint64_t mask = 0x0101010101010101ull * ((1u << bits) - 1);
  uint64_t k = 0;
  for (; k + 8 <= cols && int64_t(k / 8 * bits + 8) <= stride; k += 8) {
    uint64_t w;
    std::memcpy(&w, u + k, 8);
    const uint64_t p = _pext_u64(w, mask);
    std::memcpy(dst + k / 8 * bits, &p, 8);
  }
  return k;
}
#endif

#if defined(__x86_64__) || defined(__i386__)
// b-bit fields (b = 2..7; used for 2, 3, 5 and 7), 64 symbols -> 8b bytes per step (issue 19, where
// the rans_x32 decoder made packing the int5/int7 bottleneck): within each 64-bit lane the 8
// masked symbol bytes merge pairwise into 2b-, 4b- and then one 8b-bit value (a shift-or per
// 16-bit lane, a madd per 32-bit lane, a shift-or per 64-bit lane), vpermb (AVX-512 VBMI) packs the
// b low bytes of the 8 lanes together, and a masked store writes exactly the 8b bytes, so it never
// touches the padding. Same LSB-first layout as bitpack::pack. Returns the symbols packed (a
// multiple of 64; the rest goes through the other packers from that byte boundary).
// vpermb indices per width: output byte k = byte k % b of 64-bit lane k / b (built once: computing
// them per row cost more than packing the row).
struct VbmiIndex {
  alignas(64) uint8_t idx[kMaxBits + 1][64] = {};
  VbmiIndex() {
    for (int b = 1; b <= kMaxBits; ++b)
      for (int k = 0; k < 8 * b; ++k) idx[b][k] = uint8_t(k / b * 8 + k % b);
  }
};
const VbmiIndex kVbmiIndex;

__attribute__((target("avx512f,avx512bw,avx512vbmi"))) uint64_t pack_vbmi(const uint8_t* u, uint64_t cols, int bits,
                                                                         uint8_t* dst) {
  const __m512i perm = _mm512_load_si512(kVbmiIndex.idx[bits]);
  const __m512i mb = _mm512_set1_epi8(char((1 << bits) - 1));
  const __m512i lo8 = _mm512_set1_epi16(0x00FF);
  const __m512i mul2 = _mm512_set1_epi32(1 | (1 << (16 + 2 * bits)));  // int16 pairs (1, 2^2b)
  const __m512i lo32 = _mm512_set1_epi64(0xFFFFFFFFll);
  const __mmask64 keep = bits == 8 ? ~__mmask64(0) : (__mmask64(1) << (8 * bits)) - 1;
  uint64_t k = 0;
  for (; k + 64 <= cols; k += 64) {
    const __m512i v = _mm512_and_si512(_mm512_loadu_si512(u + k), mb);
    const __m512i t16 = _mm512_or_si512(_mm512_and_si512(v, lo8), _mm512_slli_epi16(_mm512_srli_epi16(v, 8), bits));
    const __m512i t32 = _mm512_madd_epi16(t16, mul2);
    const __m512i t64 = _mm512_or_si512(_mm512_and_si512(t32, lo32),
                                        _mm512_slli_epi64(_mm512_srli_epi64(t32, 32), 4 * bits));
    _mm512_mask_storeu_epi8(dst + k / 8 * bits, keep, _mm512_permutexvar_epi8(perm, t64));
  }
  return k;
}

// The same merges with AVX2 (used for 5 bits where VBMI is not in use): 32 symbols -> 4b bytes per
// step; vpshufb packs the b low bytes of the two 64-bit lanes of each 128-bit half, and each half is
// stored with a 16-byte store of which 2b bytes are data, so the loop runs only while those stores
// stay inside the row's stride (the next step or the caller's tail packer overwrites the rest, the
// caller zeroes the padding). Returns the symbols packed (a multiple of 32).
__attribute__((target("avx2"))) uint64_t pack_merge_avx2(const uint8_t* u, uint64_t cols, int bits, uint8_t* dst,
                                                         int64_t stride) {
  alignas(32) int8_t idx[32];
  for (int half = 0; half < 2; ++half)
    for (int k = 0; k < 16; ++k) idx[16 * half + k] = int8_t(k < 2 * bits ? k / bits * 8 + k % bits : -1);
  const __m256i take = _mm256_load_si256(reinterpret_cast<const __m256i*>(idx));
  const __m256i mb = _mm256_set1_epi8(char((1 << bits) - 1));
  const __m256i lo8 = _mm256_set1_epi16(0x00FF);
  const __m256i mul2 = _mm256_set1_epi32(1 | (1 << (16 + 2 * bits)));
  const __m256i lo32 = _mm256_set1_epi64x(0xFFFFFFFFll);
  const __m128i sh = _mm_cvtsi32_si128(bits), sh4 = _mm_cvtsi32_si128(4 * bits);
  uint64_t k = 0;
  for (; k + 32 <= cols && int64_t(k / 32 * 4 * bits + 2 * bits + 16) <= stride; k += 32) {
    const __m256i v = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(u + k)), mb);
    const __m256i t16 = _mm256_or_si256(_mm256_and_si256(v, lo8), _mm256_sll_epi16(_mm256_srli_epi16(v, 8), sh));
    const __m256i t32 = _mm256_madd_epi16(t16, mul2);
    const __m256i t64 = _mm256_or_si256(_mm256_and_si256(t32, lo32), _mm256_sll_epi64(_mm256_srli_epi64(t32, 32), sh4));
    const __m256i w = _mm256_shuffle_epi8(t64, take);
    uint8_t* o = dst + k / 32 * 4 * bits;
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o), _mm256_castsi256_si128(w));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 2 * bits), _mm256_extracti128_si256(w, 1));
  }
  return k;
}

bool cpu_has_vbmi() {
  static const bool has = __builtin_cpu_supports("avx512vbmi") && cpu_has_avx512();
  return has;
}
#endif

// Pack one row of u-coded symbols (u = s + 128) into b-bit fields and zero the padding.
// For b <= 7, 128 is a multiple of 2^b, so (u - 128) & mask == u & mask: the packer's masking
// of u gives the two's-complement field of s directly. For b = 8 the field is u ^ 0x80.
void pack_row(const uint8_t* u, uint64_t cols, int bits, uint8_t* dst, int64_t stride, bool avx2) {
  size_t used;
  if (bits == 8) {
    for (uint64_t k = 0; k < cols; ++k) dst[k] = uint8_t(u[k] ^ 0x80);
    used = size_t(cols);
  } else {
    uint64_t k = 0;
#if defined(__x86_64__) || defined(__i386__)
    // VBMI packers (every width 2..7) with the AVX-512 loops, and under `auto` on every VBMI CPU:
    // on the Zen 5 of issue 19 auto runs the AVX2 round loops (faster there) but VBMI packs at
    // 0.023-0.028 ns/symbol against 0.036 (int4 bitpack), 0.040 (pack6_avx2), 0.050 (int5 merges)
    // and 0.095 (int7 PEXT) (benchmarks/x32_breakdown.cpp). A forced "avx2" keeps the AVX2-only
    // packers (the tests run those too).
    const bool vbmi = avx2 && cpu_has_vbmi() &&
                      (rans::resolved_isa() == rans::Isa::kAvx512 || rans::get_isa() == rans::Isa::kAuto);
    if (vbmi) k = pack_vbmi(u, cols, bits, dst);  // k % 64 == 0: byte-aligned; the rest below from there
    // AVX2 merges for int5 (0.21 -> 0.10 ns/symbol in benchmarks/x32_breakdown.cpp; PEXT
    // measured faster for 7: 0.116 vs 0.138, and 2/3 keep PEXT too)
    else if (avx2 && bits == 5) k = pack_merge_avx2(u, cols, bits, dst, stride);  // k % 32 == 0: byte-aligned
    else if (avx2 && bits == 6) k = pack6_avx2(u, cols, dst, stride);  // k % 32 == 0: byte-aligned
    // 2, 3, 7: the widths bitpack::pack has no specialised packer for (its 64-bit accumulator
    // loop made int7 rows decode at half the int6 rate, benchmarks/RESULTS.md issue 19); after
    // VBMI, the row's last cols % 64 symbols
    if (avx2 && (bits <= 3 || bits == 7) && cpu_has_fast_pext())
      k += pack_pext(u + k, cols - k, bits, dst + k / 8 * bits, stride - int64_t(k / 8 * bits));
#endif
    bitpack::pack(reinterpret_cast<const int8_t*>(u + k), size_t(cols - k), bits, dst + k * bits / 8);
    used = bitpack::packed_size(size_t(cols), bits);
  }
  std::memset(dst + used, 0, size_t(stride) - used);
}

}  // namespace

void prepare_job(Job& j) {
  j.stride = qlayout::packed_row_stride(int64_t(j.cols), j.bits);
  try {
    j.plan = rans::prepare(j.data, j.size, j.rows * j.cols);
    const rans::Table& t = j.plan.table;
    const int half = 1 << (j.bits - 1);
    j.check_range = t.precision && (t.lo < kSymbolOffset - half || t.hi > kSymbolOffset + half - 1);
  } catch (const rans::Error& e) {
    j.error = e.what();
  }
}

void decode(std::vector<Job>& jobs, int threads) {
  std::atomic<size_t> next{0};
  rans::run_workers(threads, jobs.size(), [&] { rows::worker<kInFlight, Job, rans::Decoder>(jobs, next, "rans"); });
}

}  // namespace rans_rows

// Also used by rans_ctx.cpp's packed-rows decoder.
void pack_u_row(const uint8_t* u, uint64_t cols, int bits, uint8_t* dst, int64_t stride, bool avx2) {
  rans_rows::pack_row(u, cols, bits, dst, stride, avx2);
}

}  // namespace golfpack

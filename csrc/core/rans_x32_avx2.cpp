// rans_x32_avx2.cpp: the AVX2 round loop of the rans_x32 decoder (format csrc/RANS.md §7; caller
// rans_x32::Decoder, only after cpu_has_avx2()). The 32 lanes of a stream are four __m256i of 8
// u32 states. Per vector of 8 symbols: a gather of the 32-bit entries at x & 0xFFF, the 32-bit
// multiply-add x = (e >> 20) * (x >> 12) + (e & 0xFFF), the lanes with x < 2^16 as an 8-bit
// mask, and the next popcount(mask) u16 words (8 loaded, zero-extended) moved into those lanes
// in lane order by a permutation from a 256-entry table; the pointer advances by the popcount.
// The four vectors' word offsets are prefix sums of their popcounts, so their loads do not wait
// on each other. A round reads at most 64 bytes: the loop runs only while 64 remain.
#include <cstdint>

#include "rans_x32.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define GP_X32_X86 1
#define GP_TARGET_AVX2 __attribute__((target("avx2,popcnt")))
#endif

namespace golfpack {
namespace rans_x32 {

#ifdef GP_X32_X86
namespace {

// perm[m][j] = the number of lanes below j that read under mask m: lane j's word.
struct PermTable {
  alignas(32) int32_t perm[256][8];
  PermTable() {
    for (int m = 0; m < 256; ++m)
      for (int j = 0, c = 0; j < 8; ++j) {
        perm[m][j] = (m >> j) & 1 ? c : 0;
        c += (m >> j) & 1;
      }
  }
};
const PermTable kPerm;

template <int S, bool kHash>
GP_TARGET_AVX2 uint64_t rounds_multi(Stream* st, uint64_t rounds) {
  const __m256i mask_p = _mm256_set1_epi32((1 << kPrecision) - 1);
  const __m256i byte = _mm256_set1_epi32(0xFF);
  const __m256i zero = _mm256_setzero_si256();
  const __m256i fix = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  __m256i x[S][4];
  const uint8_t* wp[S];
  for (int k = 0; k < S; ++k) {
    for (int q = 0; q < 4; ++q) x[k][q] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(st[k].x + 8 * q));
    wp[k] = st[k].wp;
  }
  uint64_t ha[S][4] = {};
  if (kHash)
    for (int k = 0; k < S; ++k)
      if (st[k].hacc)
        for (int a = 0; a < 4; ++a) ha[k][a] = st[k].hacc[a];
  uint64_t r = 0;
  for (; r < rounds; ++r) {
    bool room = true;
    for (int k = 0; k < S; ++k) room &= st[k].we - wp[k] >= 2 * kLanes;
    if (!room) break;
    for (int k = 0; k < S; ++k) {
      __m256i sym[4], need[4];
      int m[4];
      for (int q = 0; q < 4; ++q) {
        const __m256i e = _mm256_i32gather_epi32(reinterpret_cast<const int*>(st[k].ent),
                                                 _mm256_and_si256(x[k][q], mask_p), 4);
        const __m256i v = _mm256_add_epi32(
            _mm256_mullo_epi32(_mm256_srli_epi32(e, Entry::kFreqShift), _mm256_srli_epi32(x[k][q], kPrecision)),
            _mm256_and_si256(e, mask_p));
        need[q] = _mm256_cmpeq_epi32(_mm256_srli_epi32(v, kWordBits), zero);
        m[q] = _mm256_movemask_ps(_mm256_castsi256_ps(need[q]));
        sym[q] = _mm256_and_si256(_mm256_srli_epi32(e, Entry::kSymShift), byte);
        x[k][q] = v;
      }
      const uint8_t* p = wp[k];
      for (int q = 0; q < 4; ++q) {
        const __m256i w = _mm256_permutevar8x32_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
            _mm256_load_si256(reinterpret_cast<const __m256i*>(kPerm.perm[m[q]])));
        x[k][q] = _mm256_blendv_epi8(x[k][q], _mm256_or_si256(_mm256_slli_epi32(x[k][q], kWordBits), w), need[q]);
        p += 2 * _mm_popcnt_u32(unsigned(m[q]));
      }
      wp[k] = p;
      const __m256i b = _mm256_packus_epi16(_mm256_packus_epi32(sym[0], sym[1]), _mm256_packus_epi32(sym[2], sym[3]));
      const __m256i o = _mm256_permutevar8x32_epi32(b, fix);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(st[k].out + kLanes * r), o);
      if (kHash && st[k].hacc) {  // the round's 32 bytes, one word per accumulator, from the register
        // (reloading them from the store measured 0.58 vs 0.43 ns/symbol: a wide store does not
        // forward into 8-byte loads without a stall on the Zen 5 of issue 19)
        const __m128i lo = _mm256_castsi256_si128(o), hi = _mm256_extracti128_si256(o, 1);
        ha[k][0] = hash::round(ha[k][0], uint64_t(_mm_cvtsi128_si64(lo)));
        ha[k][1] = hash::round(ha[k][1], uint64_t(_mm_extract_epi64(lo, 1)));
        ha[k][2] = hash::round(ha[k][2], uint64_t(_mm_cvtsi128_si64(hi)));
        ha[k][3] = hash::round(ha[k][3], uint64_t(_mm_extract_epi64(hi, 1)));
      }
    }
  }
  if (kHash)
    for (int k = 0; k < S; ++k)
      if (st[k].hacc)
        for (int a = 0; a < 4; ++a) st[k].hacc[a] = ha[k][a];
  for (int k = 0; k < S; ++k) {
    for (int q = 0; q < 4; ++q) _mm256_storeu_si256(reinterpret_cast<__m256i*>(st[k].x + 8 * q), x[k][q]);
    st[k].wp = wp[k];
  }
  return r;
}

}  // namespace

uint64_t rounds_avx2(Stream* streams, int n, uint64_t rounds) {
  static_assert(kMaxStreams == 4, "one case per stream count");
  bool h = false;
  for (int k = 0; k < n; ++k) h |= streams[k].hacc != nullptr;
  switch (n * 2 + h) {
    case 2: return rounds_multi<1, false>(streams, rounds);
    case 3: return rounds_multi<1, true>(streams, rounds);
    case 4: return rounds_multi<2, false>(streams, rounds);
    case 5: return rounds_multi<2, true>(streams, rounds);
    case 6: return rounds_multi<3, false>(streams, rounds);
    case 7: return rounds_multi<3, true>(streams, rounds);
    case 8: return rounds_multi<4, false>(streams, rounds);
    case 9: return rounds_multi<4, true>(streams, rounds);
    default: return 0;
  }
}

#else

uint64_t rounds_avx2(Stream*, int, uint64_t) { return 0; }

#endif

}  // namespace rans_x32
}  // namespace golfpack

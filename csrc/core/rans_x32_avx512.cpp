// rans_x32_avx512.cpp: the AVX-512 round loop of the rans_x32 decoder (format csrc/RANS.md §7;
// caller rans_x32::Decoder, only after cpu_has_avx512()). The 32 lanes of a stream are two
// __m512i of 16 u32 states each. Per half-round of 16 symbols:
//
//   e    = gather of the 32-bit entry at slot = x & 0xFFF    (bias | sym << 12 | freq << 20)
//   x    = (e >> 20) * (x >> 12) + (e & 0xFFF)                 (one 32-bit multiply-add, exact)
//   need = x < 2^16                                             (mask of the lanes that read)
//   x    = need ? x << 16 | w : x, w = the next popcount(need) u16 words expanded into those
//          lanes in lane order (vpexpandd of 16 zero-extended words), pointer += 2 * popcount
//
// The symbols are the low bytes of e >> 12 (vpmovdb). A round reads at most 32 words = 64 bytes
// (two unconditional 32-byte loads), so the loop runs only while 64 bytes remain; the caller
// finishes with its bounds-checked scalar steps. Up to kMaxStreams streams share the loop: one
// stream's round is a dependency chain (gather, multiply, compare, expand), several fill the core.
#include <cstdint>

#include "rans_x32.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define GP_X32_X86 1
#define GP_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw")))
#endif

namespace golfpack {
namespace rans_x32 {

#ifdef GP_X32_X86
namespace {

template <int S>
GP_TARGET_AVX512 uint64_t rounds_multi(Stream* st, uint64_t rounds) {
  const __m512i mask_p = _mm512_set1_epi32((1 << kPrecision) - 1);
  const __m512i low = _mm512_set1_epi32(int(kStateLow));
  __m512i x[S][2];
  const uint8_t* wp[S];
  for (int k = 0; k < S; ++k) {
    x[k][0] = _mm512_loadu_si512(st[k].x);
    x[k][1] = _mm512_loadu_si512(st[k].x + 16);
    wp[k] = st[k].wp;
  }
  uint64_t r = 0;
  for (; r < rounds; ++r) {
    bool room = true;
    for (int k = 0; k < S; ++k) room &= st[k].we - wp[k] >= 2 * kLanes;
    if (!room) break;
    __mmask16 need[S][2];
    for (int k = 0; k < S; ++k)
      for (int h = 0; h < 2; ++h) {
        const __m512i e = _mm512_i32gather_epi32(_mm512_and_si512(x[k][h], mask_p), st[k].ent, 4);
        const __m512i v = _mm512_add_epi32(
            _mm512_mullo_epi32(_mm512_srli_epi32(e, Entry::kFreqShift), _mm512_srli_epi32(x[k][h], kPrecision)),
            _mm512_and_si512(e, mask_p));
        need[k][h] = _mm512_cmplt_epu32_mask(v, low);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(st[k].out + kLanes * r + 16 * h),
                         _mm512_cvtepi32_epi8(_mm512_srli_epi32(e, Entry::kSymShift)));
        x[k][h] = v;
      }
    for (int k = 0; k < S; ++k)
      for (int h = 0; h < 2; ++h) {
        const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp[k])));
        x[k][h] = _mm512_mask_or_epi32(x[k][h], need[k][h], _mm512_slli_epi32(x[k][h], kWordBits),
                                       _mm512_maskz_expand_epi32(need[k][h], w));
        wp[k] += 2 * __builtin_popcount(unsigned(need[k][h]));
      }
  }
  for (int k = 0; k < S; ++k) {
    _mm512_storeu_si512(st[k].x, x[k][0]);
    _mm512_storeu_si512(st[k].x + 16, x[k][1]);
    st[k].wp = wp[k];
  }
  return r;
}

}  // namespace

uint64_t rounds_avx512(Stream* streams, int n, uint64_t rounds) {
  static_assert(kMaxStreams == 4, "one case per stream count");
  // No fused symbol hash here: measured slower than hashing each piece afterwards on the Zen 5 of
  // issue 19 (0.58-0.67 vs 0.57 ns/symbol at 4 streams); hacc = nullptr tells the caller to hash.
  for (int k = 0; k < n; ++k) streams[k].hacc = nullptr;
  switch (n) {
    case 1: return rounds_multi<1>(streams, rounds);
    case 2: return rounds_multi<2>(streams, rounds);
    case 3: return rounds_multi<3>(streams, rounds);
    case 4: return rounds_multi<4>(streams, rounds);
    default: return 0;
  }
}

#else  // not x86: never called (cpu_has_avx512() is false), defined so the build links

uint64_t rounds_avx512(Stream*, int, uint64_t) { return 0; }

#endif

}  // namespace rans_x32
}  // namespace golfpack

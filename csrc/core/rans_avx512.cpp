// rans_avx512.cpp: the AVX-512 round loops of the rANS decoders (format: csrc/RANS.md; no format
// change). Callers: rans::Decoder (rans.cpp) and the rans_rc decoders (rans_ctx.cpp), only after
// cpu_has_avx512(); the scalar loops of those files are the reference the tests compare against.
//
// The 8 lanes of a stream are one __m512i of 64-bit states, so a round is one vector step where
// the AVX2 loop (rans_avx2.cpp) needs two:
//
//   slot = x & (2^P - 1)
//   e    = entry of slot             v1: a gather of 64-bit freq | sym << 32 | (slot - cum) << 48
//                                    rans_rc: a gather of 32-bit (freq - 1) | (slot - cum) << 12 |
//                                    sym << 24 at tid[i + j] << P | slot, widened
//   x    = freq * (x >> P) + (slot - cum)      (two 32x32->64 multiplies, exact: < 2^63)
//   lanes with x < 2^31 read the next words, in lane order
//
// Renormalization is one masked expand-load: the compare gives the mask of the lanes that read,
// _mm256_maskz_expandloadu_epi32 places the next popcount(mask) words into those lanes in lane
// order (the read order of RANS.md 2), and the pointer advances by the popcount. It touches only
// the words it places, but the loops still run only while a round's 8 words are inside the
// payload, as the AVX2 loops do; the caller finishes with its bounds-checked scalar steps.
#include <cstdint>
#include <cstring>

#include "rans.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define GP_RANS_X86 1
#define GP_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw")))
#endif

namespace golfpack {
namespace rans {

#ifdef GP_RANS_X86
namespace {

struct Consts {
  __m512i mask_p, low;
  __m128i shift_p;
};

GP_TARGET_AVX512 inline Consts make_consts(int P) {
  Consts c;
  c.mask_p = _mm512_set1_epi64((1ll << P) - 1);
  c.low = _mm512_set1_epi64(int64_t(kStateLow));
  c.shift_p = _mm_cvtsi32_si128(P);
  return c;
}

// freq * (x >> P) + bias for 8 lanes; freq in the low 32 bits of f.
GP_TARGET_AVX512 inline __m512i advance(__m512i x, __m512i f, __m512i bias, const Consts& c) {
  const __m512i q = _mm512_srl_epi64(x, c.shift_p);
  const __m512i lo = _mm512_mul_epu32(q, f);
  const __m512i hi = _mm512_mul_epu32(_mm512_srli_epi64(q, 32), f);
  return _mm512_add_epi64(_mm512_add_epi64(lo, _mm512_slli_epi64(hi, 32)), bias);
}

GP_TARGET_AVX512 inline __m512i renorm(__m512i x, const uint8_t*& wp, const Consts& c) {
  const __mmask8 need = _mm512_cmplt_epu64_mask(x, c.low);
  const __m512i w = _mm512_cvtepu32_epi64(_mm256_maskz_expandloadu_epi32(need, wp));
  wp += 4 * __builtin_popcount(unsigned(need));
  return _mm512_mask_or_epi64(x, need, _mm512_slli_epi64(x, 32), w);
}

struct V1Lookup {  // one table of 64-bit entries: freq | sym << 32 | (slot - cum) << 48
  static GP_TARGET_AVX512 inline __m512i step(const AvxStream& s, uint64_t, __m512i x, const Consts& c,
                                              __m128i& sym) {
    // A gather here: on the Xeon this was written on, 8 scalar loads through memory (the AVX2
    // loop's way) made this loop slower than the AVX2 one (609 vs 651 MB/s in one run), the
    // gather faster (913 vs 819 MB/s in another; benchmarks/RESULTS.md, issue 19).
    const __m512i e = _mm512_i64gather_epi64(_mm512_and_si512(x, c.mask_p), s.entries, 8);
    sym = _mm512_cvtepi64_epi8(_mm512_srli_epi64(e, SlotEntry64::kSymShift));
    return advance(x, e, _mm512_srli_epi64(e, SlotEntry64::kBiasShift), c);
  }
};

struct CtxLookup {  // a table per position: 32-bit (freq - 1) | (slot - cum) << 12 | sym << 24
  static GP_TARGET_AVX512 inline __m512i step(const CtxAvxStream& s, uint64_t r, __m512i x, const Consts& c,
                                              __m128i& sym) {
    const __m512i t = _mm512_cvtepu8_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(s.tid + 8 * r)));
    const __m512i idx = _mm512_or_si512(_mm512_sll_epi64(t, c.shift_p), _mm512_and_si512(x, c.mask_p));
    const __m512i e = _mm512_cvtepu32_epi64(_mm512_i64gather_epi32(idx, s.ent, 4));
    const __m512i m12 = _mm512_set1_epi64(SlotEntry32::kFieldMask);
    sym = _mm512_cvtepi64_epi8(_mm512_srli_epi64(e, SlotEntry32::kSymShift));
    return advance(x, _mm512_add_epi64(_mm512_and_si512(e, m12), _mm512_set1_epi64(1)),
                   _mm512_and_si512(_mm512_srli_epi64(e, SlotEntry32::kBiasShift), m12), c);
  }
};

// S = 1..8 independent 8-lane streams in one loop (one stream's round is a dependency chain:
// gather, multiply, compare, expand-load; interleaving streams fills the core).
template <int S, class Lookup, class Stream>
GP_TARGET_AVX512 uint64_t rounds_multi(Stream* st, uint64_t rounds) {
  Consts c[S];
  __m512i x[S];
  const uint8_t* wp[S];
  for (int k = 0; k < S; ++k) {
    c[k] = make_consts(st[k].P);
    x[k] = _mm512_loadu_si512(st[k].x);
    wp[k] = st[k].wp;
  }
  uint64_t r = 0;
  for (; r < rounds; ++r) {
    bool room = true;
    for (int k = 0; k < S; ++k) room &= st[k].we - wp[k] >= 32;
    if (!room) break;
    __m128i sym[S];
    for (int k = 0; k < S; ++k) x[k] = Lookup::step(st[k], r, x[k], c[k], sym[k]);
    for (int k = 0; k < S; ++k) {
      x[k] = renorm(x[k], wp[k], c[k]);
      _mm_storel_epi64(reinterpret_cast<__m128i*>(st[k].out + 8 * r), sym[k]);
    }
  }
  for (int k = 0; k < S; ++k) {
    _mm512_storeu_si512(st[k].x, x[k]);
    st[k].wp = wp[k];
  }
  return r;
}

template <class Lookup, class Stream>
uint64_t rounds_multi_n(Stream* streams, int n, uint64_t rounds) {
  switch (n) {
    case 1: return rounds_multi<1, Lookup>(streams, rounds);
    case 2: return rounds_multi<2, Lookup>(streams, rounds);
    case 3: return rounds_multi<3, Lookup>(streams, rounds);
    case 4: return rounds_multi<4, Lookup>(streams, rounds);
    case 5: return rounds_multi<5, Lookup>(streams, rounds);
    case 6: return rounds_multi<6, Lookup>(streams, rounds);
    case 7: return rounds_multi<7, Lookup>(streams, rounds);
    case 8: return rounds_multi<8, Lookup>(streams, rounds);
    default: return 0;
  }
}

}  // namespace

uint64_t decode_rounds_avx512_multi(AvxStream* streams, int n, uint64_t rounds) {
  return rounds_multi_n<V1Lookup>(streams, n, rounds);
}

uint64_t decode_ctx_rounds_avx512_multi(CtxAvxStream* streams, int n, uint64_t rounds) {
  return rounds_multi_n<CtxLookup>(streams, n, rounds);
}

#else  // not x86: never called (cpu_has_avx512() is false), defined so the build links

uint64_t decode_rounds_avx512_multi(AvxStream*, int, uint64_t) { return 0; }
uint64_t decode_ctx_rounds_avx512_multi(CtxAvxStream*, int, uint64_t) { return 0; }

#endif

}  // namespace rans
}  // namespace golfpack

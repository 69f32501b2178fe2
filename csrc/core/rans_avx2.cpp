// rans_avx2.cpp: the AVX2 inner loops of the rANS decoders (format: csrc/RANS.md; callers:
// rans::Decoder in rans.cpp, and rans_ctx::decode in rans_ctx.cpp for rans_rc streams, which run
// them only after cpu_has_avx2()).
//
// The states of 4 lanes sit in one __m256i as 64-bit integers (8 lanes: two vectors, lanes 0-3
// and 4-7). One round decodes one symbol per lane, exactly as the scalar loop would:
//
//   slot = x & (2^P - 1)
//   e    = entries[slot]                 freq | sym << 32 | (slot - cum) << 48
//   x    = freq * (x >> P) + (slot - cum)
//   lanes with x < 2^31 read the next words, in lane order
//
// x >> P has up to 51 bits, so freq * (x >> P) is two 32x32->64 multiplies (_mm256_mul_epu32
// reads the low 32 bits of each lane, which is why freq is the low half of the entry):
// lo(q)*f + (hi(q)*f << 32), exact because the product is < 2^63.
//
// Renormalization keeps the spec's read order. Within a round the lanes read from one word
// stream in order j = 0, 1, ...: lane j's word is the k-th word after the pointer, k = the
// number of lower lanes that also read. movemask of the "x < L" compare gives a 4-bit mask; a
// 16-entry table turns it into a permutation that moves word k into lane j (the high 32 bits of
// each 64-bit lane come from a zero word), and the pointer advances by popcount(mask) words.
// The loop reads 16 bytes per vector unconditionally, so it runs only while a round's 8 (or 4)
// words are inside the payload; the caller finishes with the bounds-checked scalar path.
#include <cstdint>
#include <cstring>

#include "rans.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define GP_RANS_X86 1
#define GP_TARGET_AVX2 __attribute__((target("avx2")))
#endif

namespace golfpack {
namespace rans {

#ifdef GP_RANS_X86
namespace {

struct alignas(32) PermTable {
  int32_t idx[16][8];  // mask -> permutevar8x32 indices (word k -> low half of lane j)
  uint32_t words[16];  // mask -> popcount(mask) * 4 bytes
};

constexpr PermTable make_perm() {
  PermTable t{};
  for (int m = 0; m < 16; ++m) {
    int k = 0;
    for (int j = 0; j < 4; ++j) {
      if (m & (1 << j)) {
        t.idx[m][2 * j] = k++;  // word k of the 16-byte load
      } else {
        t.idx[m][2 * j] = 4;  // a zero (discarded by the blend anyway)
      }
      t.idx[m][2 * j + 1] = 4;  // high half: dwords 4..7 of the source are zero
    }
    t.words[m] = uint32_t(4 * k);
  }
  return t;
}

constexpr PermTable kPerm = make_perm();

struct Consts {
  __m256i mask_p, low;
  __m128i shift_p;
};

GP_TARGET_AVX2 inline Consts make_consts(int P) {
  Consts c;
  c.mask_p = _mm256_set1_epi64x((1ll << P) - 1);
  c.low = _mm256_set1_epi64x(int64_t(kStateLow));
  c.shift_p = _mm_cvtsi32_si128(P);
  return c;
}

// The 8 symbols of a round: byte B of each 64-bit lane of the two groups' entries (bytes B and
// B + 8 of each 128-bit half; B = 4 for v1 entries, 3 for rans_rc's). Group 0's lanes 0,1 | 2,3
// go to output bytes 0,1 | 2,3, group 1's to bytes 4,5 | 6,7; the two halves are then ORed.
template <int B>
GP_TARGET_AVX2 inline __m128i round_symbols(__m256i e0, __m256i e1) {
  const __m256i sel0 = _mm256_setr_epi8(B, B + 8, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                        -1, -1, B, B + 8, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  const __m256i sel1 = _mm256_setr_epi8(-1, -1, -1, -1, B, B + 8, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                        -1, -1, -1, -1, -1, -1, B, B + 8, -1, -1, -1, -1, -1, -1, -1, -1);
  const __m256i sym = _mm256_or_si256(_mm256_shuffle_epi8(e0, sel0), _mm256_shuffle_epi8(e1, sel1));
  return _mm_or_si128(_mm256_castsi256_si128(sym), _mm256_extracti128_si256(sym, 1));
}

// One lane group (4 lanes) of one round, up to the renormalization. Returns the new states
// before renormalization; `e` receives the looked-up entries (symbols in byte 4 of each lane).
GP_TARGET_AVX2 inline __m256i step(__m256i x, const long long* entries, const Consts& c, __m256i& e) {
  // The lookup goes through memory: store the 4 slots, 4 scalar table loads, 4 scalar
  // stores, one vector load. Not _mm256_i64gather_epi64: on the EPYC (Zen 4) VM this was
  // written on, a 4-element gather took 5.5-7.6 ns even with 4 independent chains
  // (benchmarks/gather_probe.cpp) and the loop with gathers was slower than the scalar loop
  // (benchmarks/RESULTS.md, "Fast decode"). Extract/insert sequences cost more ALU uops than
  // this path, which runs on the load/store ports (the failed store-to-load forward adds
  // latency, which the interleaved streams hide).
  alignas(32) uint64_t sl[4], ev[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(sl), _mm256_and_si256(x, c.mask_p));
  ev[0] = uint64_t(entries[sl[0]]);
  ev[1] = uint64_t(entries[sl[1]]);
  ev[2] = uint64_t(entries[sl[2]]);
  ev[3] = uint64_t(entries[sl[3]]);
  e = _mm256_load_si256(reinterpret_cast<const __m256i*>(ev));
  const __m256i q = _mm256_srl_epi64(x, c.shift_p);
  const __m256i lo = _mm256_mul_epu32(q, e);
  const __m256i hi = _mm256_mul_epu32(_mm256_srli_epi64(q, 32), e);
  const __m256i bias = _mm256_srli_epi64(e, SlotEntry64::kBiasShift);  // slot - cum: the top field, no mask needed
  return _mm256_add_epi64(_mm256_add_epi64(lo, _mm256_slli_epi64(hi, 32)), bias);
}

// Renormalize the lanes below L with the next words at wp (16 readable bytes guaranteed).
GP_TARGET_AVX2 inline __m256i renorm(__m256i x, const uint8_t*& wp, const Consts& c) {
  const __m256i need = _mm256_cmpgt_epi64(c.low, x);  // x < 2^63, so the signed compare is exact
  const int m = _mm256_movemask_pd(_mm256_castsi256_pd(need));
  const __m256i words = _mm256_inserti128_si256(
      _mm256_setzero_si256(), _mm_loadu_si128(reinterpret_cast<const __m128i*>(wp)), 0);
  const __m256i placed = _mm256_permutevar8x32_epi32(
      words, _mm256_load_si256(reinterpret_cast<const __m256i*>(kPerm.idx[m])));
  wp += kPerm.words[m];
  return _mm256_blendv_epi8(x, _mm256_or_si256(_mm256_slli_epi64(x, 32), placed), need);
}

template <int V>  // lane groups: 1 (4 lanes) or 2 (8 lanes)
GP_TARGET_AVX2 uint64_t rounds_avx2(int P, uint64_t* xs, const uint8_t*& wp_ref, const uint8_t* we,
                                    const uint64_t* table, uint8_t* out, uint64_t rounds) {
  const long long* entries = reinterpret_cast<const long long*>(table);
  const Consts c = make_consts(P);
  __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs));
  __m256i x1 = V == 2 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs + 4)) : x0;
  const uint8_t* wp = wp_ref;
  uint64_t r = 0;
  for (; r < rounds && we - wp >= 16 * V; ++r) {
    __m256i e0, e1 = _mm256_setzero_si256();  // with 4 lanes only bytes 0..3 are stored
    x0 = step(x0, entries, c, e0);
    if (V == 2) x1 = step(x1, entries, c, e1);
    x0 = renorm(x0, wp, c);
    if (V == 2) x1 = renorm(x1, wp, c);
    const __m128i s = round_symbols<4>(e0, e1);
    if (V == 2) {
      _mm_storel_epi64(reinterpret_cast<__m128i*>(out + 8 * r), s);
    } else {
      const uint32_t v = uint32_t(_mm_cvtsi128_si32(s));
      std::memcpy(out + 4 * r, &v, 4);
    }
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(xs), x0);
  if (V == 2) _mm256_storeu_si256(reinterpret_cast<__m256i*>(xs + 4), x1);
  wp_ref = wp;
  return r;
}

// rans_rc (rans_ctx.cpp): 8 lanes whose table changes with the position. Same round as
// rounds_avx2<2>, but the entry of lane j is ent[tid[i + j] << P | slot], a 32-bit
// (freq - 1) | (slot - cum) << 12 | sym << 24 (P <= 12), widened to 64-bit lanes before the
// multiply. The lookups again go through memory (4 scalar loads per group, see step()).
GP_TARGET_AVX2 inline __m256i ctx_step(__m256i x, const uint32_t* ent, int P, const uint8_t* tid, const Consts& c,
                                       __m256i& e) {
  alignas(32) uint64_t sl[4];
  alignas(16) uint32_t ev[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(sl), _mm256_and_si256(x, c.mask_p));
  ev[0] = ent[(size_t(tid[0]) << P) + sl[0]];
  ev[1] = ent[(size_t(tid[1]) << P) + sl[1]];
  ev[2] = ent[(size_t(tid[2]) << P) + sl[2]];
  ev[3] = ent[(size_t(tid[3]) << P) + sl[3]];
  e = _mm256_cvtepu32_epi64(_mm_load_si128(reinterpret_cast<const __m128i*>(ev)));
  const __m256i m12 = _mm256_set1_epi64x(SlotEntry32::kFieldMask);
  const __m256i f = _mm256_add_epi64(_mm256_and_si256(e, m12), _mm256_set1_epi64x(1));
  const __m256i bias = _mm256_and_si256(_mm256_srli_epi64(e, SlotEntry32::kBiasShift), m12);
  const __m256i q = _mm256_srl_epi64(x, c.shift_p);
  const __m256i lo = _mm256_mul_epu32(q, f);
  const __m256i hi = _mm256_mul_epu32(_mm256_srli_epi64(q, 32), f);
  return _mm256_add_epi64(_mm256_add_epi64(lo, _mm256_slli_epi64(hi, 32)), bias);
}

// S independent 8-lane streams in one loop. One stream's rounds form a dependency chain of
// ~40 cycles (lookup, multiplies, compare, movemask, permutation); a single stream leaves the
// core mostly idle, so decoding several streams (tensors) together multiplies the throughput
// of one core until it runs out of issue slots, without any change to the format.
//
// v1 and rans_rc streams share the loop. They differ only in how a lane group's entries are
// looked up (Lookup::group: step() on v1's one table, ctx_step() on rans_rc's table per
// position) and in the entry byte holding the symbol (Lookup::kSymbolByte).
struct V1Lookup {
  static constexpr int kSymbolByte = SlotEntry64::kSymShift / 8;
  static GP_TARGET_AVX2 inline __m256i group(const AvxStream& s, uint64_t, int, __m256i x, const Consts& c,
                                             __m256i& e) {
    return step(x, reinterpret_cast<const long long*>(s.entries), c, e);
  }
};
struct CtxLookup {
  static constexpr int kSymbolByte = SlotEntry32::kSymShift / 8;
  static GP_TARGET_AVX2 inline __m256i group(const CtxAvxStream& s, uint64_t r, int g, __m256i x,
                                             const Consts& c, __m256i& e) {
    return ctx_step(x, s.ent, s.P, s.tid + 8 * r + 4 * g, c, e);
  }
};

template <int S, class Lookup, class Stream>
GP_TARGET_AVX2 uint64_t rounds_multi(Stream* st, uint64_t rounds) {
  Consts c[S];
  __m256i x0[S], x1[S];
  const uint8_t* wp[S];
  for (int k = 0; k < S; ++k) {
    c[k] = make_consts(st[k].P);
    x0[k] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(st[k].x));
    x1[k] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(st[k].x + 4));
    wp[k] = st[k].wp;
  }
  uint64_t r = 0;
  for (; r < rounds; ++r) {
    bool room = true;
    for (int k = 0; k < S; ++k) room &= st[k].we - wp[k] >= 32;
    if (!room) break;
    __m256i e0[S], e1[S];
    for (int k = 0; k < S; ++k) {
      x0[k] = Lookup::group(st[k], r, 0, x0[k], c[k], e0[k]);
      x1[k] = Lookup::group(st[k], r, 1, x1[k], c[k], e1[k]);
    }
    for (int k = 0; k < S; ++k) {
      x0[k] = renorm(x0[k], wp[k], c[k]);
      x1[k] = renorm(x1[k], wp[k], c[k]);
      _mm_storel_epi64(reinterpret_cast<__m128i*>(st[k].out + 8 * r),
                       round_symbols<Lookup::kSymbolByte>(e0[k], e1[k]));
    }
  }
  for (int k = 0; k < S; ++k) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(st[k].x), x0[k]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(st[k].x + 4), x1[k]);
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
    default: return 0;
  }
}

}  // namespace

uint64_t decode_rounds_avx2(int lanes, int P, uint64_t* x, const uint8_t*& wp, const uint8_t* we,
                            const uint64_t* entries, uint8_t* out, uint64_t rounds) {
  if (lanes == 8) return rounds_avx2<2>(P, x, wp, we, entries, out, rounds);
  if (lanes == 4) return rounds_avx2<1>(P, x, wp, we, entries, out, rounds);
  return 0;  // other lane counts: the caller's scalar loops
}

uint64_t decode_ctx_rounds_avx2(const uint32_t* ent, int P, const uint8_t* tid, uint8_t* out, uint64_t n,
                               uint64_t* xs, const uint8_t*& wp, const uint8_t* we) {
  CtxAvxStream st{xs, wp, we, ent, P, tid, out};
  const uint64_t r = rounds_multi<1, CtxLookup>(&st, n / 8);
  wp = st.wp;
  return 8 * r;
}

uint64_t decode_ctx_rounds_avx2_multi(CtxAvxStream* streams, int n, uint64_t rounds) {
  return rounds_multi_n<CtxLookup>(streams, n, rounds);
}

uint64_t decode_rounds_avx2_multi(AvxStream* streams, int n, uint64_t rounds) {
  return rounds_multi_n<V1Lookup>(streams, n, rounds);
}

#else  // not x86: never called (cpu_has_avx2() is false), defined so the build links

uint64_t decode_rounds_avx2(int, int, uint64_t*, const uint8_t*&, const uint8_t*, const uint64_t*,
                            uint8_t*, uint64_t) {
  return 0;
}
uint64_t decode_rounds_avx2_multi(AvxStream*, int, uint64_t) { return 0; }
uint64_t decode_ctx_rounds_avx2(const uint32_t*, int, const uint8_t*, uint8_t*, uint64_t, uint64_t*,
                               const uint8_t*&, const uint8_t*) {
  return 0;
}
uint64_t decode_ctx_rounds_avx2_multi(CtxAvxStream*, int, uint64_t) { return 0; }

#endif

}  // namespace rans
}  // namespace golfpack

// common.h: the helpers every kernel of the core shares, defined once.
//
// - symbol bit widths (kMinBits..kMaxBits) and check_bits;
// - little-endian loads and stores (the formats are little-endian; FORMAT.md, RANS.md);
// - CPU-feature checks, each named for exactly what it tests (cpu_has_avx2 is AVX2 alone,
//   cpu_has_avx2_fma is AVX2 and FMA: the dequant-matmul kernels need both);
// - the symbol-hash round and its constants (RANS.md "Integrity"), used by symbol_hash and the
//   piecewise SymbolHasher, which must agree bit for bit;
// - thread counts: clamp_threads bounds any requested count by the machine (issue 20).
//
// No Python headers: the core builds into plain C++ tests, fuzzers and the sanitizer job.
// Errors are C++ exceptions; the bindings (csrc/py/) turn std::invalid_argument into ValueError.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>

namespace golfpack {

// ---------------------------------------------------------------- symbol widths
constexpr int kMinBits = 2;  // narrowest symbol any kernel packs or decodes
constexpr int kMaxBits = 8;  // widest: a symbol fits int8 and spans at most 2 bytes of a row
static_assert(kMinBits >= 1 && kMinBits <= kMaxBits, "bit-width range");
static_assert(kMaxBits <= 8, "symbols are int8: at most 8 bits");

inline bool valid_bits(int bits) { return bits >= kMinBits && bits <= kMaxBits; }
inline void check_bits(int bits) {
  if (!valid_bits(bits)) throw std::invalid_argument("bits must be in 2..8, got " + std::to_string(bits));
}
// Smallest and largest b-bit two's complement symbol.
constexpr int symbol_min(int bits) { return -(1 << (bits - 1)); }
constexpr int symbol_max(int bits) { return (1 << (bits - 1)) - 1; }

// ---------------------------------------------------------------- little-endian loads
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#define GOLFPACK_BIG_ENDIAN_HOST 1
#endif

inline uint32_t load_le32(const uint8_t* p) {
#ifndef GOLFPACK_BIG_ENDIAN_HOST
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
#else
  return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
#endif
}
inline uint64_t load_le64(const uint8_t* p) { return load_le32(p) | (uint64_t(load_le32(p + 4)) << 32); }
inline void store_le64(uint8_t* p, uint64_t v) {
#ifndef GOLFPACK_BIG_ENDIAN_HOST
  std::memcpy(p, &v, 8);
#else
  for (int i = 0; i < 8; ++i) p[i] = uint8_t(v >> (8 * i));
#endif
}

// ---------------------------------------------------------------- CPU features
// Each probe runs once (a function-local static); false off x86.
bool cpu_has_avx2();         // AVX2 (the rANS round loops, row packing)
bool cpu_has_avx2_fma();     // AVX2 and FMA (dequant-matmul kernels, compiled for avx2,fma)
bool cpu_has_avx512();       // AVX-512 F, VL, DQ and BW (the 8-lane rANS loops)
bool cpu_has_avx512_fast();  // the above on a CPU where it was measured faster than AVX2 (Intel)
bool cpu_has_fast_pext();    // BMI2 with a PEXT that is not microcoded (not AMD Zen 1/2)
bool cpu_has_clmul();        // PCLMULQDQ and SSE4.1 (CRC-32 folding)

// ---------------------------------------------------------------- symbol hash (RANS.md)
// Four multiply-rotate accumulators over 8-byte little-endian words, folded with the count,
// then the MurmurHash3 finalizer. Constants: the 64-bit golden ratio and xxHash64's primes.
namespace hash {
constexpr uint64_t kPrime1 = 0x9E3779B97F4A7C15ull;  // 2^64 / golden ratio (also the lane-tag step)
constexpr uint64_t kPrime2 = 0xC2B2AE3D27D4EB4Full;  // xxHash64 PRIME64_2
constexpr uint64_t kPrime3 = 0x165667B19E3779F9ull;  // xxHash64 PRIME64_3
constexpr int kRoundRotate = 31;                     // rotation of one accumulator round
constexpr int kFoldRotate = 27;                      // rotation of the final fold
// Initial accumulators 0..3.
constexpr uint64_t kSeed[4] = {kPrime1, kPrime2, kPrime3, ~kPrime1};

constexpr uint64_t rotl(uint64_t v, int r) { return (v << r) | (v >> (64 - r)); }
// One accumulator absorbs one 8-byte word.
constexpr uint64_t round(uint64_t acc, uint64_t word) { return rotl(acc + word * kPrime2, kRoundRotate) * kPrime1; }
// MurmurHash3 finalizer: full avalanche.
constexpr uint64_t fmix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xFF51AFD7ED558CCDull;
  h ^= h >> 33;
  h *= 0xC4CEB9FE1A85EC53ull;
  h ^= h >> 33;
  return h;
}
// The four accumulators and the byte count -> the hash.
inline uint64_t fold(const uint64_t acc[4], uint64_t nbytes) {
  uint64_t h = nbytes * kPrime3;
  for (int a = 0; a < 4; ++a) h = rotl((h ^ acc[a]) * kPrime1, kFoldRotate);
  return fmix64(h);
}
// Bytes 8*words.. of p (fewer than 8) as one zero-padded little-endian word.
inline uint64_t tail_word(const uint8_t* p, size_t n) {
  uint64_t w = 0;
  for (size_t b = 0; b < n; ++b) w |= uint64_t(p[b]) << (8 * b);
  return w;
}
}  // namespace hash

// ---------------------------------------------------------------- thread counts
// Most threads any call starts: the machine's hardware threads (a request above it is clamped,
// never an error: threads=10^6 would otherwise fail to create threads, issue 20).
inline int hardware_threads() {
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : int(hw > 1024 ? 1024 : hw);
}
// requested <= 0: `fallback` (the caller's default); then at most the hardware threads and at
// most `jobs` (no idle threads), at least 1.
inline int clamp_threads(int64_t requested, int64_t jobs, int fallback = 1) {
  int64_t t = requested > 0 ? requested : fallback;
  if (t > hardware_threads()) t = hardware_threads();
  if (t > jobs) t = jobs;
  return t < 1 ? 1 : int(t);
}

// ---------------------------------------------------------------- overflow-checked sizes
// a * b, or throws std::overflow_error naming `what` when it does not fit int64 (sizes, strides).
inline int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r))
    throw std::invalid_argument(std::string(what) + " overflows 64 bits");
  return r;
}
inline int64_t checked_add(int64_t a, int64_t b, const char* what) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) throw std::invalid_argument(std::string(what) + " overflows 64 bits");
  return r;
}

}  // namespace golfpack

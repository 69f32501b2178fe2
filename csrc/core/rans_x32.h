// rans_x32.h: the fast-decode rANS stream (coder `rans_x32`, format csrc/RANS.md §7):
// the v1 table of §1 at P = 12, then 32 interleaved 32-bit states in [2^16, 2^32) renormalized
// with 16-bit words. Narrow lanes are what lets one SIMD instruction advance 16 (AVX-512) or 8
// (AVX2) states, with a 2^12-entry table of 32-bit entries that sits in L1.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "rans.h"

namespace golfpack {
namespace rans_x32 {

constexpr int kLanes = 32;                          // interleaved states (min(32, count) used)
constexpr int kPrecision = 12;                      // the only P: the table entry's fields are 12 bits
constexpr uint32_t kStateLow = uint32_t(1) << 16;  // L: states live in [2^16, 2^32)
constexpr int kWordBits = 16;                       // renormalization unit (u16 words)
// Streams one round loop decodes together: AVX-512 (32 zmm) fills the core with 3-4, AVX2 (16 ymm)
// with 2 (3 and 4 spill states; 0.39 vs 0.47 ns/symbol measured on the issue-19 Xeon).
constexpr int kMaxStreams = 4;
constexpr int kMaxStreamsAvx2 = 2;
// count <= kRunFactor * 2^P * (payload_bytes/2 + kLanes) for tables with >= 2 symbols (RANS.md §7.4).
constexpr uint64_t kRunFactor = 12;

// Lane tag of §7.5: the 16 low bits of v1's fmix64(h + (j+1) * K1).
inline uint32_t lane_tag(uint64_t h, int lane) {
  return uint32_t(hash::fmix64(h + uint64_t(lane + 1) * hash::kPrime1) & (kStateLow - 1));
}

// slot -> bias | sym << 12 | freq << 20, bias = slot - cum < 2^12. A table with >= 2 symbols has
// every freq < 2^12, so freq is the top 12 bits (one shift), bias the low 12 (one AND), and the
// symbol the low byte of e >> 12 (the SIMD loops' byte truncation drops freq).
struct Entry {
  static constexpr int kSymShift = 12;
  static constexpr int kFreqShift = 20;
  static constexpr uint32_t kBiasMask = (1u << kSymShift) - 1;
  static constexpr uint32_t pack(uint32_t freq, uint32_t sym, uint32_t bias) {
    return bias | (sym << kSymShift) | (freq << kFreqShift);
  }
  static constexpr uint32_t freq(uint32_t e) { return e >> kFreqShift; }
  static constexpr uint32_t bias(uint32_t e) { return e & kBiasMask; }
  static constexpr uint8_t sym(uint32_t e) { return uint8_t(e >> kSymShift); }
};
static_assert(kPrecision <= Entry::kSymShift, "slot - cum < 2^P must fit the bias field");
static_assert(Entry::kFreqShift - Entry::kSymShift == 8, "the symbol is one byte");
static_assert(kPrecision <= 32 - Entry::kFreqShift, "freq < 2^P must fit the top field");
static_assert(Entry::freq(Entry::pack((1u << kPrecision) - 1, 255, (1u << kPrecision) - 1)) == (1u << kPrecision) - 1 &&
              Entry::sym(Entry::pack((1u << kPrecision) - 1, 255, (1u << kPrecision) - 1)) == 255 &&
              Entry::bias(Entry::pack((1u << kPrecision) - 1, 255, (1u << kPrecision) - 1)) == (1u << kPrecision) - 1,
              "Entry round trip at the extremes");

// symbols -> a complete §7 stream (table + payload); throws rans::Error(nullptr, ..) past 2^40.
std::vector<uint8_t> encode(const uint8_t* symbols, size_t count);

// Everything decode needs, validated up front (table, count, payload shape, initial states).
struct Plan {
  rans::Table table;
  uint64_t count = 0;
  int lanes = 0;
  const uint8_t* states = nullptr;  // lanes little-endian u32
  const uint8_t* words = nullptr;   // little-endian u16 words
  const uint8_t* words_end = nullptr;
};
Plan prepare(const uint8_t* data, size_t size, uint64_t count);  // throws rans::Error (rules R1-R3, X1-X4)

// The normative loop of §7.3, one symbol at a time (tests, and the reference the others match).
void decode_ref(const Plan& plan, uint8_t* out);
// Decoder(plan).run(out, count) + finish(symbol_hash(out)).
void decode_fast(const Plan& plan, uint8_t* out);

// One SIMD round loop's view of a stream (rans_x32_avx2.cpp, rans_x32_avx512.cpp): whole rounds
// of 32 symbols, lane j of round r being symbol 32r + j, while a round's worst-case 32 words
// (64 bytes) are inside [wp, we). Updates x and wp.
struct Stream {
  uint32_t* x;  // 32 states
  const uint8_t* wp;
  const uint8_t* we;
  const uint32_t* ent;  // 2^12 Entry
  uint8_t* out;
  // Non-null: the 4 symbol-hash accumulators (rans::SymbolHasher::block_acc): each round's 32
  // output bytes are absorbed in the loop, 8-byte word a into accumulator a (the hash is a
  // latency chain; next to the throughput-bound round it is nearly free, issue 19).
  uint64_t* hacc = nullptr;
};
// S = 1..kMaxStreams streams in one loop; stops when any stream lacks a round's words; returns
// the rounds decoded (each stream's out receives 32 * rounds symbols).
uint64_t rounds_avx2(Stream* streams, int n, uint64_t rounds);
uint64_t rounds_avx512(Stream* streams, int n, uint64_t rounds);

// Decodes a validated plan in consecutive pieces (as rans::Decoder for v1). The inner loop is
// the process-wide rans::resolved_isa(): scalar, AVX2 or AVX-512 (rans_set_isa forces it).
class Decoder {
 public:
  explicit Decoder(const Plan& plan, rans::Isa isa = rans::Isa::kAuto);
  void run(uint8_t* out, uint64_t n);  // throws rans::Error on truncation (X5)
  void finish(uint64_t hash) const;    // throws rans::Error (X6 unread words, X7 tags)
  // From the first run() on, the decoder hashes everything it decodes (the SIMD round loops
  // while each round is in registers); finish() then checks against that hash.
  void hash_output() { hashing_ = true; }
  void finish() const { finish(hasher_.finish()); }
  // ds[k]->run(out[k], n[k]) for every k, up to kMaxStreams SIMD streams per loop. With
  // `errors`, decoder k's stream error goes to errors[k] and the others continue.
  static void run_group(Decoder* const* ds, uint8_t* const* out, const uint64_t* n, int count,
                        std::string* errors = nullptr);

 private:
  void checked(uint8_t* out, uint64_t n);  // one symbol at a time, bounds-checked reads
  uint64_t rounds(uint8_t* out, uint64_t rounds);  // the unchecked loop of this decoder's ISA
  const Plan& plan_;
  rans::Isa isa_ = rans::Isa::kScalar;  // kScalar, kAvx2 or kAvx512
  uint32_t x_[kLanes] = {};
  const uint8_t* wp_ = nullptr;
  uint64_t done_ = 0;
  std::vector<uint32_t> ent_;  // slot -> Entry
  bool hashing_ = false;
  rans::SymbolHasher hasher_;
  uint64_t* block_acc() { return hashing_ ? hasher_.block_acc() : nullptr; }
  // After a round loop wrote `rounds` rounds at out with st.hacc = acc: record or hash them.
  void hashed_rounds(const uint8_t* out, uint64_t rounds, const uint64_t* acc);
};

// ---- decode straight into packed rows (rans_x32_rows.cpp; as rans_rows for v1) ----
struct RowsJob {
  const uint8_t* data = nullptr;
  size_t size = 0;
  uint64_t rows = 0, cols = 0;  // rows * cols <= 2^40 (checked by the caller)
  int bits = 0;                 // 2..8 (checked by the caller)
  uint8_t* out = nullptr;       // rows * stride bytes, set after prepare_rows_job succeeded
  int64_t stride = 0;
  Plan plan;
  bool check_range = false;  // the table lists a symbol u outside the b-bit range
  std::string error;         // non-empty: this stream failed (message names the rule)
};
void prepare_rows_job(RowsJob& j);
void decode_rows(std::vector<RowsJob>& jobs, int threads);

}  // namespace rans_x32
}  // namespace golfpack

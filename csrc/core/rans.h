// rans.h: static rANS over bytes, up to 8 interleaved states (format: csrc/RANS.md).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "common.h"

namespace golfpack {
namespace rans {

constexpr int kMaxInterleave = 8;  // most streams one SIMD round loop decodes together (AVX-512; AVX2: 4)
constexpr int kLanes = 8;  // most interleaved states (header lane code; fewer when count < 8)
constexpr uint64_t kStateLow = uint64_t(1) << 31;  // L: states live in [2^31, 2^63)
constexpr uint64_t kStateHigh = uint64_t(1) << 63;
constexpr int kWordBits = 32;                      // renormalization I/O unit (u32 words)
constexpr int kMinPrecision = 12;             // probability bits (sum of freqs = 2^P)
constexpr int kMaxPrecision = 15;
constexpr uint64_t kMaxCount = uint64_t(1) << 40;  // hard cap on symbols per stream
// Bound on symbols per (word read + initial state) for a table with >= 2 symbols:
// count <= kRunFactor * 2^P * (payload_bytes/4 + kLanes). Derivation in RANS.md.
constexpr uint64_t kRunFactor = 24;

// Integrity tag (RANS.md "Integrity"): the encoder starts lane j at L + lane_tag(h, j),
// h = symbol_hash(all symbols), instead of at L; the decoder recomputes h from its output
// and requires final state j == L + lane_tag(h, j). Costs < 1 bit per lane.
uint64_t symbol_hash(const uint8_t* symbols, uint64_t count);
inline uint64_t lane_tag(uint64_t h, int lane) {
  return hash::fmix64(h + uint64_t(lane + 1) * hash::kPrime1) & (kStateLow - 1);
}

// ---- Table entry layouts: what the decode loops look up, as types ---------------------------
// Decode of one symbol: slot = x mod 2^P, s = the symbol owning slot,
//   x' = freq(s) * (x >> P) + (slot - cum(s)).
// Each layout below packs those fields into one word; the static_asserts are every assumption
// the scalar and SIMD loops make about them, for every precision the format allows.

// symbol -> freq | cum << 16 (scalar v1 loops; rans_rc tables with P > 12).
struct FreqCumEntry {
  static constexpr int kCumShift = 16;
  static constexpr uint32_t kFreqMask = (1u << kCumShift) - 1;
  static constexpr uint32_t pack(uint32_t freq, uint32_t cum) { return freq | (cum << kCumShift); }
  static constexpr uint32_t freq(uint32_t e) { return e & kFreqMask; }
  static constexpr uint32_t cum(uint32_t e) { return e >> kCumShift; }
};
// freq <= 2^P (a one-symbol table) and cum < 2^P must each fit 16 bits.
static_assert((uint64_t(1) << kMaxPrecision) <= FreqCumEntry::kFreqMask, "freq must fit the low 16 bits");
static_assert(kMaxPrecision <= 32 - FreqCumEntry::kCumShift, "cum must fit the high 16 bits");
static_assert(FreqCumEntry::freq(FreqCumEntry::pack(1u << kMaxPrecision, (1u << kMaxPrecision) - 1)) ==
                  (1u << kMaxPrecision) &&
              FreqCumEntry::cum(FreqCumEntry::pack(1u << kMaxPrecision, (1u << kMaxPrecision) - 1)) ==
                  (1u << kMaxPrecision) - 1, "FreqCumEntry round trip at the extremes");

// slot -> freq | sym << 32 | (slot - cum) << 48 (v1 AVX2 / AVX-512 gathers, one per slot).
struct SlotEntry64 {
  static constexpr int kSymShift = 32;
  static constexpr int kBiasShift = 48;
  static constexpr uint64_t pack(uint32_t freq, uint32_t sym, uint32_t bias) {
    return uint64_t(freq) | (uint64_t(sym) << kSymShift) | (uint64_t(bias) << kBiasShift);
  }
  static constexpr uint32_t freq(uint64_t e) { return uint32_t(e); }
  static constexpr uint8_t sym(uint64_t e) { return uint8_t(e >> kSymShift); }
  static constexpr uint32_t bias(uint64_t e) { return uint32_t(e >> kBiasShift); }
};
// The SIMD loops multiply by the low 32 bits of an entry (mul_epu32: freq alone there), take the
// symbol as the byte at bit 32 and the bias as the top field with no mask.
static_assert(SlotEntry64::kSymShift == 32, "freq must be exactly the low 32 bits (mul_epu32)");
static_assert(SlotEntry64::kBiasShift - SlotEntry64::kSymShift >= 8, "the symbol byte must not overlap the bias");
static_assert(kMaxPrecision <= 64 - SlotEntry64::kBiasShift, "slot - cum < 2^P must fit the top 16 bits");
static_assert(SlotEntry64::bias(SlotEntry64::pack(1u << kMaxPrecision, 255, (1u << kMaxPrecision) - 1)) ==
                  (1u << kMaxPrecision) - 1 &&
              SlotEntry64::sym(SlotEntry64::pack(1u << kMaxPrecision, 255, (1u << kMaxPrecision) - 1)) == 255,
              "SlotEntry64 round trip at the extremes");

// slot -> (freq - 1) | (slot - cum) << 12 | sym << 24 (rans_rc tables with P <= kMaxP32).
struct SlotEntry32 {
  static constexpr int kMaxP32 = 12;  // freq - 1 < 2^12 and slot - cum < 2^12
  static constexpr int kBiasShift = 12;
  static constexpr int kSymShift = 24;
  static constexpr uint32_t kFieldMask = (1u << kBiasShift) - 1;
  static constexpr uint32_t pack(uint32_t freq, uint32_t bias, uint32_t sym) {
    return (freq - 1) | (bias << kBiasShift) | (sym << kSymShift);
  }
  static constexpr uint32_t freq(uint32_t e) { return (e & kFieldMask) + 1; }
  static constexpr uint32_t bias(uint32_t e) { return (e >> kBiasShift) & kFieldMask; }
  static constexpr uint8_t sym(uint32_t e) { return uint8_t(e >> kSymShift); }
};
static_assert(SlotEntry32::kMaxP32 <= SlotEntry32::kBiasShift, "freq - 1 must fit below the bias field");
static_assert(SlotEntry32::kMaxP32 <= SlotEntry32::kSymShift - SlotEntry32::kBiasShift, "bias must fit 12 bits");
static_assert(SlotEntry32::kSymShift + 8 == 32, "the symbol is the top byte");
static_assert(SlotEntry32::freq(SlotEntry32::pack(1u << SlotEntry32::kMaxP32, (1u << SlotEntry32::kMaxP32) - 1, 255)) ==
                  (1u << SlotEntry32::kMaxP32) &&
              SlotEntry32::bias(SlotEntry32::pack(1u << SlotEntry32::kMaxP32, (1u << SlotEntry32::kMaxP32) - 1, 255)) ==
                  (1u << SlotEntry32::kMaxP32) - 1 &&
              SlotEntry32::sym(SlotEntry32::pack(1u << SlotEntry32::kMaxP32, (1u << SlotEntry32::kMaxP32) - 1, 255)) ==
                  255, "SlotEntry32 round trip at the extremes");

// Every malformed-stream condition; bindings turn it into ValueError.
// `rule` is the numbered rule of csrc/RANS.md (R1.., C1..) or FORMAT.md (S9) that the stream
// breaks, appended as " [R3]" so every refusal names its rule; nullptr for errors that refuse no
// input (encoder arguments, an ISA this CPU lacks, internal invariants).
class Error : public std::runtime_error {
 public:
  Error(const char* rule, const std::string& what)
      : std::runtime_error("rANS stream: " + what + (rule ? std::string(" [") + rule + "]" : std::string())) {}
};

// Header byte (RANS.md 1): bits 0-3 precision, bits 4-5 lane code k (up to 2^k lanes),
// bit 6 sparse (presence bitmap) table, bit 7 reserved (0). 0x00 = empty table.
constexpr int kSparseFlag = 0x40;

struct Table {
  int precision = 0;  // 0: the empty table (count must be 0)
  int lane_code = 0;  // the stream uses min(2^lane_code, count) lanes
  bool sparse = false;
  int lo = 0, hi = -1;
  int present = 0;     // symbols with freq > 0
  uint32_t freq[256] = {};
  uint32_t cum[257] = {};
  size_t table_bytes = 0;  // serialized size, including the precision byte
};

// Frequencies summing to exactly 2^precision: 0 for absent symbols, >= 1 for present
// ones, minimizing the coded size sum_s hist[s] * log2(2^P / f[s]) (exactly, by greedy
// fix-up plus improving swaps; the objective is separable and convex).
void normalize(const uint64_t hist[256], int precision, uint32_t freq[256]);

// Shared with the rans_x32 coder (rans_x32.cpp), which stores the same §1 table:
// hist = byte counts of s[0..n); serialize_table = the §1 bytes of a normalized table (dense or
// sparse, whichever is smaller; lane code in bits 4-5 of the head byte).
void histogram(const uint8_t* s, size_t n, uint64_t hist[256]);
std::vector<uint8_t> serialize_table(const uint32_t freq[256], int precision, int lane_code);

// Precision chosen by encode() when asked for 0 (auto): the P in 12..15 minimizing
// serialized table + estimated payload bytes; ties go to the smaller P (faster decode).
int choose_precision(const uint64_t hist[256], uint64_t count);

// lanes: 1, 2, 4 or 8, or 0 = auto: the most lanes (decode speed) whose 8-byte state
// flush each stays within 0.1% of the estimated payload (small streams get fewer; RANS.md).
std::vector<uint8_t> encode(const uint8_t* symbols, size_t count, int precision, int lanes);
int choose_lanes(double payload_bytes);

// Parses and fully validates the table; throws Error.
Table parse_table(const uint8_t* data, size_t size);

// Everything decode needs, validated up front (table, count, payload shape); throws Error.
struct Plan {
  Table table;
  uint64_t count = 0;
  int lanes = 0;
  const uint8_t* states = nullptr;  // lanes little-endian u64
  const uint8_t* words = nullptr;   // little-endian u32 words
  const uint8_t* words_end = nullptr;
};
Plan prepare(const uint8_t* data, size_t size, uint64_t count);

// Both write plan.count symbols to `out` and throw Error on any inconsistency
// (truncated payload, trailing bytes, final state j != L + lane_tag(symbol_hash(out), j)).
void decode_fast(const Plan& plan, uint8_t* out);
void decode_ref(const Plan& plan, uint8_t* out);

// ---- Fast decode, piece by piece (issue 8) ------------------------------------------

// Which inner loop decode_fast / Decoder run: kAuto picks AVX2 when the CPU has it (runtime
// check) and the scalar unrolled loop otherwise. The choice is process-wide (tests and the
// benchmark force kScalar to compare both paths; $GOLFPACK_RANS_ISA=scalar|avx2|auto sets it at
// import). Asking for kAvx2 on a CPU without AVX2 is an error (set_isa throws).
// kAvx512 (F, VL, DQ, BW) runs the AVX-512 round loops of rans_avx512.cpp for 8-lane streams
// and the AVX2 loops everywhere else (4-lane streams, packing); kAuto picks AVX-512 on Intel CPUs
// that have it (where it was measured faster), else AVX2, else scalar.
enum class Isa { kAuto = 0, kScalar = 1, kAvx2 = 2, kAvx512 = 3 };
// The CPU-feature probes are golfpack::cpu_has_avx2 / cpu_has_avx512 / cpu_has_fast_pext (common.h).
inline bool uses_avx2(Isa isa) { return isa == Isa::kAvx2 || isa == Isa::kAvx512; }
void set_isa(Isa isa);
Isa get_isa();
Isa resolved_isa();  // kScalar, kAvx2 or kAvx512: what kAuto means on this CPU (see Isa)

// symbol_hash computed over pieces fed in order: same value as symbol_hash(all pieces).
class SymbolHasher {
 public:
  void update(const uint8_t* p, uint64_t n);
  uint64_t finish() const;
  // For loops that hash whole 32-byte blocks themselves (the rans_x32 round loops: one round of
  // 32 symbols is one word for each accumulator): the four accumulators when the next byte starts
  // accumulator 0 with nothing pending, else nullptr; absorbed_blocks(n) then records the n blocks
  // of 32 bytes the loop absorbed with hash::round, word a of a block into accumulator a.
  uint64_t* block_acc() { return npending_ == 0 && (words_ & 3) == 0 ? acc_ : nullptr; }
  void absorbed_blocks(uint64_t n) { words_ += 4 * n; }

 private:
  void word(uint64_t w) {
    acc_[words_ & 3] = hash::round(acc_[words_ & 3], w);
    ++words_;
  }
  uint64_t acc_[4] = {hash::kSeed[0], hash::kSeed[1], hash::kSeed[2], hash::kSeed[3]};
  uint64_t words_ = 0;  // full 8-byte words absorbed
  uint8_t pending_[8] = {};
  int npending_ = 0;
};

// Decodes a validated plan in consecutive pieces of any length: run(out, n) writes the next n
// symbols, finish(h) then checks exact consumption and the lane tags against h = the
// symbol_hash of everything run() wrote. decode_fast is Decoder(plan).run(out, count) +
// finish(symbol_hash(out)); the fused decoders (decode straight into packed rows) call run()
// per cache-sized piece and hash each piece while it is still in L1.
class Decoder {
 public:
  explicit Decoder(const Plan& plan, Isa isa = Isa::kAuto);
  void run(uint8_t* out, uint64_t n);  // throws Error on truncation or n past plan.count
  void finish(uint64_t hash) const;    // throws Error (trailing bytes, tag mismatch)
  bool simd() const { return avx2_; }
  // Decode the next n[k] symbols of each of `count` decoders into out[k], interleaving the
  // 8-lane AVX2 streams among them 4 at a time (the others, and what is left over, go
  // through run()). Same result as ds[k]->run(out[k], n[k]) for every k. With `errors`, a
  // stream error of decoder k is stored in errors[k] (that decoder is then unusable) and the
  // others continue; without, it is thrown.
  static void run_group(Decoder* const* ds, uint8_t* const* out, const uint64_t* n, int count,
                        std::string* errors = nullptr);

 private:
  void checked(uint8_t* out, uint64_t n);  // one symbol at a time, bounds-checked reads
  const Plan& plan_;
  uint64_t x_[kLanes] = {};
  const uint8_t* wp_ = nullptr;
  uint64_t done_ = 0;  // symbols decoded so far
  bool avx2_ = false;    // the SIMD entry table is built; AVX2 (or AVX-512) rounds
  bool avx512_ = false;  // 8 lanes: the AVX-512 rounds
  std::vector<uint8_t> lut_;       // slot -> symbol (scalar loops)
  uint32_t info_[256] = {};        // symbol -> FreqCumEntry (scalar loops)
  std::vector<uint64_t> entries_;  // slot -> SlotEntry64 (AVX2, AVX-512)
};

// The AVX2 inner loop (rans_avx2.cpp; compiled with a target attribute, called only after
// cpu_has_avx2()). Decodes whole rounds of `lanes` (4 or 8) symbols, lane j of a round being
// symbol r*lanes + j, while a round's worst-case reads (one word per lane) stay inside
// [wp, we). Updates x and wp; returns the rounds decoded. `entries` has 2^P slots. The table
// lookup is a gather at index slot: a per-position table (context models) is the same gather
// at index table_base(position) + slot.
uint64_t decode_rounds_avx2(int lanes, int P, uint64_t* x, const uint8_t*& wp, const uint8_t* we,
                            const uint64_t* entries, uint8_t* out, uint64_t rounds);

// S = 1..4 independent 8-lane streams decoded in one loop (AVX-512: 1..8) (the same rounds for each): one
// stream's round is a ~40-cycle dependency chain, so interleaving streams is what fills the
// core. Stops when any stream lacks a round's words; returns the rounds decoded (each stream's
// x and wp are updated, out[k] receives 8 * rounds symbols).
struct AvxStream {
  uint64_t* x;  // 8 states
  const uint8_t* wp;
  const uint8_t* we;
  const uint64_t* entries;
  int P;
  uint8_t* out;
};
uint64_t decode_rounds_avx2_multi(AvxStream* streams, int n, uint64_t rounds);
// The same with the AVX-512 loop (rans_avx512.cpp; 8-lane streams only; called only after
// cpu_has_avx512()): one vector per stream's 8 states, renormalization by a masked expand-load.
uint64_t decode_rounds_avx512_multi(AvxStream* streams, int n, uint64_t rounds);

// rans_rc payloads (rans_ctx.cpp, RANS.md 6): 8 lanes, the entry of symbol i being
// ent[tid[i] << P | slot] with 32-bit entries (freq - 1) | (slot - cum) << 12 | sym << 24, P <= 12.
// Decodes whole rounds (8 symbols) of the n while a round's 8 words are inside [wp, we);
// returns the symbols decoded (a multiple of 8), updating xs and wp. Same output as the scalar
// rounds of rans_ctx.cpp.
uint64_t decode_ctx_rounds_avx2(const uint32_t* ent, int P, const uint8_t* tid, uint8_t* out, uint64_t n,
                               uint64_t* xs, const uint8_t*& wp, const uint8_t* we);

// S = 1..4 rans_rc streams in one loop (as decode_rounds_avx2_multi for v1): `rounds` rounds of
// 8 symbols each, from tid[0] / out[0], stopping early when any stream lacks a round's words.
// Returns the rounds decoded; x and wp of each stream are updated.
struct CtxAvxStream {
  uint64_t* x;  // 8 states
  const uint8_t* wp;
  const uint8_t* we;
  const uint32_t* ent;
  int P;
  const uint8_t* tid;
  uint8_t* out;
};
uint64_t decode_ctx_rounds_avx2_multi(CtxAvxStream* streams, int n, uint64_t rounds);
uint64_t decode_ctx_rounds_avx512_multi(CtxAvxStream* streams, int n, uint64_t rounds);  // rans_avx512.cpp

// The batch decoders' thread pool (rans_decode_rows, rans_ctx_decode_rows): `worker` runs on
// clamp_threads(threads, jobs) threads (at most the machine's, common.h), the caller's one
// included, and takes jobs from a shared counter. When a thread cannot be created (the system
// is out of threads), the ones already started finish the shared list, are joined, and then a
// ThreadError is thrown (Python: RuntimeError), never std::terminate from a joinable thread.
class ThreadError : public std::runtime_error {
 public:
  explicit ThreadError(const std::string& what) : std::runtime_error(what) {}
};
template <class Worker>
void run_workers(int threads, size_t jobs, Worker&& worker) {
  const int n = clamp_threads(threads, int64_t(std::min<size_t>(jobs, size_t(1) << 30)));
  std::vector<std::thread> pool;
  pool.reserve(size_t(n));
  std::string failed;
  for (int t = 1; t < n; ++t) {
    try {
      pool.emplace_back(worker);
    } catch (const std::system_error& e) {
      failed = "could not start decode thread " + std::to_string(t + 1) + " of " + std::to_string(n) + ": " +
               e.what();
      break;
    }
  }
  if (failed.empty()) worker();
  for (auto& th : pool) th.join();
  if (!failed.empty()) throw ThreadError(failed);
}

}  // namespace rans
}  // namespace golfpack

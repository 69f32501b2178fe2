// rans.h: static rANS over bytes, up to 8 interleaved states (format: csrc/RANS.md).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

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
inline uint64_t fmix64(uint64_t h) {  // MurmurHash3 finalizer: full avalanche
  h ^= h >> 33;
  h *= 0xFF51AFD7ED558CCDull;
  h ^= h >> 33;
  h *= 0xC4CEB9FE1A85EC53ull;
  h ^= h >> 33;
  return h;
}
inline uint64_t lane_tag(uint64_t h, int lane) {
  return fmix64(h + uint64_t(lane + 1) * 0x9E3779B97F4A7C15ull) & (kStateLow - 1);
}

// Every malformed-stream condition; bindings turn it into ValueError.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error("rANS stream: " + what) {}
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

// Precision chosen by encode() when asked for 0 (auto): the P in 12..15 minimizing
// serialized table + estimated payload bytes; ties go to the smaller P (faster decode).
int choose_precision(const uint64_t hist[256], uint64_t count);

// lanes: 1, 2, 4 or 8, or 0 = auto: the most lanes (decode speed) whose 8-byte state
// flush each stays within 1% of the estimated payload (small streams get fewer).
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
// (truncated payload, trailing bytes, final states != L).
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
bool cpu_has_avx2();
bool cpu_has_avx512();
bool cpu_has_fast_pext();  // BMI2 with a PEXT that is not microcoded (not AMD Zen 1/2): row packing
inline bool uses_avx2(Isa isa) { return isa == Isa::kAvx2 || isa == Isa::kAvx512; }
void set_isa(Isa isa);
Isa get_isa();
Isa resolved_isa();  // kScalar, kAvx2 or kAvx512: what kAuto means on this CPU (see Isa)

// symbol_hash computed over pieces fed in order: same value as symbol_hash(all pieces).
class SymbolHasher {
 public:
  void update(const uint8_t* p, uint64_t n);
  uint64_t finish() const;

 private:
  void word(uint64_t w) {
    uint64_t& a = acc_[words_ & 3];
    a += w * 0xC2B2AE3D27D4EB4Full;
    a = (a << 31) | (a >> 33);
    a *= 0x9E3779B97F4A7C15ull;
    ++words_;
  }
  uint64_t acc_[4] = {0x9E3779B97F4A7C15ull, 0xC2B2AE3D27D4EB4Full, 0x165667B19E3779F9ull,
                      ~0x9E3779B97F4A7C15ull};
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
  uint32_t info_[256] = {};        // symbol -> freq | cum << 16 (scalar loops)
  std::vector<uint64_t> entries_;  // slot -> freq | sym << 32 | (slot - cum) << 48 (AVX2)
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
// min(threads, jobs) threads, the caller's one included, and takes jobs from a shared counter.
template <class Worker>
void run_workers(int threads, size_t jobs, Worker&& worker) {
  const int n = int(std::min<size_t>(size_t(threads), std::max<size_t>(jobs, 1)));
  std::vector<std::thread> pool;
  for (int t = 1; t < n; ++t) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
}

}  // namespace rans
}  // namespace golfpack

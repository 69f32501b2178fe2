// rans.h: static rANS over bytes, up to 8 interleaved states (format: csrc/RANS.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace golfpack {
namespace rans {

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

}  // namespace rans
}  // namespace golfpack

// rans.cpp: static rANS, up to 8 interleaved 64-bit states, 32-bit renormalization.
//
// ===================================== READ ME FIRST =====================================
// Byte-exact format: csrc/RANS.md. The surprises, in the order they bite:
//
// 1. The encoder runs BACKWARDS (symbol count-1 down to 0) and the decoder forwards.
//    rANS is a stack: the last symbol encoded is the first decoded. Renormalization
//    words are therefore produced in reverse and stored reversed, so the decoder reads
//    the payload strictly front to back.
// 2. Symbol i belongs to lane i % lanes, lanes = min(2^k, count), k from the header byte
//    (the encoder uses 8 except for tiny payloads). All lanes share ONE word
//    stream; word order is the order in which the decoder (visiting symbols 0,1,2,...)
//    asks for them. The decoder cannot know a lane's next read position in advance --
//    that is why the fast decoder bumps one pointer lane after lane (branch-free).
// 3. Constants. State x lives in [L, 2^63) with L = 2^31 (ryg_rans64 style); I/O is
//    32-bit words, so a renormalization is always exactly one word (never a loop):
//      encode s: if x >= f_s << (63 - P), emit x & 0xFFFFFFFF and x >>= 32  (at most once)
//                x = (x / f_s) << P | (x % f_s) + cum_s
//      decode:   slot = x & (2^P - 1); s = symbol owning slot;
//                x = f_s * (x >> P) + slot - cum_s; if x < L: x = x << 32 | next word
//    No intermediate reaches 2^63 (f_s * (x >> P) + f_s - 1 < 2^63). Why not 32-bit
//    states with L = 2^16: x >> P is then as small as 2 at P = 15 and the truncation
//    in x / f_s cost +0.04% over H0 on int6 (measured), more than P = 15 gains.
// 4. Integrity. The decoder's initial states are the encoder's final states (stored right
//    after the table) and its final states are the encoder's initial states. Those are
//    NOT plain L: lane j starts at L + tag_j, tag_j = 31 bits of a hash of all symbols.
//    The decoder must consume the payload exactly and end with x_j == L + tag_j(hash of
//    what it decoded). Why the hash: rANS is (nearly) a bijection, so some byte changes
//    (e.g. the low byte of a state, between two equal-frequency symbols whose cum differ
//    by < 256) yield another VALID stream that differs in one symbol with every later
//    state unchanged; a plain "final == L" check misses those. The tag costs < 1 bit/lane.
// 5. One-symbol tables (f = 2^P) make every encode step the identity, so the format
//    stores NO payload at all for them: the decoder just fills `count` copies.
// 6. The symbol count is not in the stream (the container knows it). Hostile counts are
//    bounded before any allocation: count <= 2^40, and for >= 2-symbol tables count <=
//    24 * 2^P * (payload_bytes/4 + 8), because every decode step shrinks x - 2^P by a
//    factor <= 1 - 2^-P, so one state can absorb at most 24*2^P symbols between reads.
// 7. Absent symbols get frequency 0 (no escape symbol): forcing all symbols >= 1 costs
//    ~0.5% on int6. Normalization is exact KL-optimal (convex, separable: greedy + swaps).
// ========================================================================================
#include "rans.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <climits>
#include <cmath>
#include <cstring>

#include "common.h"

namespace golfpack {
namespace rans {
namespace {

void histogram_impl(const uint8_t* s, size_t n, uint64_t hist[256]) {
  // Four sub-histograms so runs of equal bytes do not serialize on one counter.
  std::vector<uint32_t> h(4 * 256, 0);
  size_t i = 0;
  std::fill(hist, hist + 256, 0);
  while (i < n) {
    // Flush before 32-bit counters could overflow.
    const size_t end = std::min(n, i + (size_t(1) << 30));
    for (; i + 4 <= end; i += 4) {
      ++h[s[i]];
      ++h[256 + s[i + 1]];
      ++h[512 + s[i + 2]];
      ++h[768 + s[i + 3]];
    }
    for (; i < end; ++i) ++h[s[i]];
    for (int k = 0; k < 256; ++k) {
      hist[k] += uint64_t(h[k]) + h[256 + k] + h[512 + k] + h[768 + k];
      h[k] = h[256 + k] = h[512 + k] = h[768 + k] = 0;
    }
  }
}

size_t varint_size(uint32_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

void put_varint(std::vector<uint8_t>& out, uint32_t v) {
  while (v >= 0x80) {
    out.push_back(uint8_t(v | 0x80));
    v >>= 7;
  }
  out.push_back(uint8_t(v));
}

struct Layout {
  int lo = 256, hi = -1;
  size_t dense = 1, sparse = 1;  // serialized sizes of the two table modes
};

Layout layout(const uint32_t freq[256]) {
  Layout l;
  l.lo = 0;
  while (l.lo < 256 && freq[l.lo] == 0) ++l.lo;
  if (l.lo == 256) return l;
  l.hi = 255;
  while (freq[l.hi] == 0) --l.hi;
  l.dense = 3;
  l.sparse = 3 + size_t(l.hi - l.lo + 1 + 7) / 8;
  for (int s = l.lo; s <= l.hi; ++s) {
    l.dense += varint_size(freq[s]);
    if (freq[s]) l.sparse += varint_size(freq[s]);
  }
  return l;
}

size_t table_size(const uint32_t freq[256]) {
  const Layout l = layout(freq);
  return std::min(l.dense, l.sparse);
}

std::vector<uint8_t> serialize_table_impl(const uint32_t freq[256], int precision, int lane_code) {
  const Layout l = layout(freq);
  if (l.hi < 0) return {0};
  const bool sparse = l.sparse < l.dense;
  std::vector<uint8_t> out;
  out.push_back(uint8_t(precision | (lane_code << 4) | (sparse ? kSparseFlag : 0)));
  out.push_back(uint8_t(l.lo));
  out.push_back(uint8_t(l.hi));
  if (sparse) {
    const size_t base = out.size();
    out.resize(base + size_t(l.hi - l.lo + 1 + 7) / 8, 0);
    for (int s = l.lo; s <= l.hi; ++s)
      if (freq[s]) out[base + size_t(s - l.lo) / 8] |= uint8_t(1u << ((s - l.lo) % 8));
  }
  for (int s = l.lo; s <= l.hi; ++s)
    if (freq[s] || !sparse) put_varint(out, freq[s]);
  return out;
}

// Bits the payload spends on this histogram with these frequencies.
double coded_bits(const uint64_t hist[256], const uint32_t freq[256], int precision) {
  double bits = 0;
  for (int s = 0; s < 256; ++s)
    if (hist[s]) bits += double(hist[s]) * (precision - std::log2(double(freq[s])));
  return bits;
}

}  // namespace

void histogram(const uint8_t* s, size_t n, uint64_t hist[256]) { histogram_impl(s, n, hist); }
std::vector<uint8_t> serialize_table(const uint32_t freq[256], int precision, int lane_code) {
  return serialize_table_impl(freq, precision, lane_code);
}

uint64_t symbol_hash(const uint8_t* p, uint64_t n) {
  // Four independent accumulators over 8-byte little-endian words (so the post-decode pass
  // runs at several GB/s), then a fold with the count and fmix64 (common.h, RANS.md).
  uint64_t a0 = hash::kSeed[0], a1 = hash::kSeed[1], a2 = hash::kSeed[2], a3 = hash::kSeed[3];
  const uint64_t words = n / 8;
  uint64_t k = 0;
  for (; k + 4 <= words; k += 4) {
    a0 = hash::round(a0, load_le64(p + 8 * k));
    a1 = hash::round(a1, load_le64(p + 8 * k + 8));
    a2 = hash::round(a2, load_le64(p + 8 * k + 16));
    a3 = hash::round(a3, load_le64(p + 8 * k + 24));
  }
  uint64_t acc[4] = {a0, a1, a2, a3};
  for (; k < words; ++k) acc[k & 3] = hash::round(acc[k & 3], load_le64(p + 8 * k));
  if (n % 8) acc[words & 3] = hash::round(acc[words & 3], hash::tail_word(p + 8 * words, n % 8));
  return hash::fold(acc, n);
}

void normalize(const uint64_t hist[256], int precision, uint32_t freq[256]) {
  const int64_t M = int64_t(1) << precision;
  uint64_t total = 0;
  int present = 0;
  for (int s = 0; s < 256; ++s) {
    total += hist[s];
    present += hist[s] != 0;
  }
  std::fill(freq, freq + 256, 0u);
  if (present == 0) return;
  // Start from scaled rounding, present symbols >= 1.
  int64_t sum = 0;
  for (int s = 0; s < 256; ++s) {
    if (!hist[s]) continue;
    const double ideal = double(hist[s]) * double(M) / double(total);
    int64_t f = std::llround(ideal);
    f = std::max<int64_t>(1, std::min<int64_t>(f, M));
    freq[s] = uint32_t(f);
    sum += f;
  }
  // Marginal costs: raising f_s by one saves c*log2((f+1)/f) bits; lowering costs
  // c*log2(f/(f-1)). The objective is convex in each f_s, so greedy single steps reach the
  // best sum-constrained point, and a state with no improving (+1,-1) swap is optimal.
  auto gain_up = [&](int s) { return double(hist[s]) * std::log2((freq[s] + 1.0) / freq[s]); };
  auto cost_down = [&](int s) {
    return freq[s] > 1 ? double(hist[s]) * std::log2(double(freq[s]) / (freq[s] - 1.0))
                       : HUGE_VAL;
  };
  auto best_up = [&](int exclude) {
    int b = -1;
    double g = -1;
    for (int s = 0; s < 256; ++s)
      if (hist[s] && s != exclude && freq[s] < uint32_t(M)) {
        const double v = gain_up(s);
        if (v > g) g = v, b = s;
      }
    return b;
  };
  auto best_down = [&](int exclude) {
    int b = -1;
    double c = HUGE_VAL;
    for (int s = 0; s < 256; ++s)
      if (hist[s] && s != exclude && freq[s] > 1) {
        const double v = cost_down(s);
        if (v < c) c = v, b = s;
      }
    return b;
  };
  while (sum < M) {
    ++freq[best_up(-1)];
    ++sum;
  }
  while (sum > M) {  // possible only when sum > M >= present, so some f > 1 exists
    --freq[best_down(-1)];
    --sum;
  }
  // Improving swaps; each strictly lowers the cost, the relative margin keeps float noise
  // from cycling. Bounded for safety (in practice a handful of iterations).
  for (int iter = 0; iter < 1 << 20 && present > 1; ++iter) {
    const int up = best_up(-1);
    if (up < 0) break;
    const int down = best_down(up);
    if (down < 0) break;
    const double g = gain_up(up), c = cost_down(down);
    if (!(g > c * (1 + 1e-12) + 1e-9)) break;
    ++freq[up];
    --freq[down];
  }
}

int choose_precision(const uint64_t hist[256], uint64_t count) {
  int best_p = kMinPrecision;
  double best = HUGE_VAL;
  uint32_t freq[256];
  for (int p = kMinPrecision; p <= kMaxPrecision; ++p) {
    normalize(hist, p, freq);
    const double bytes = double(table_size(freq)) + coded_bits(hist, freq, p) / 8.0;
    if (bytes < best - 1e-9) best = bytes, best_p = p;
  }
  return best_p;
}

int choose_lanes(double payload_bytes) {
  int lanes = kLanes;
  while (lanes > 1 && 8.0 * lanes > payload_bytes / 1000.0) lanes /= 2;
  return lanes;
}

std::vector<uint8_t> encode(const uint8_t* sym, size_t count, int precision, int max_lanes) {
  if (uint64_t(count) > kMaxCount) throw Error(nullptr, "more than 2^40 symbols");
  if (count == 0) return {0};  // the empty table, no payload
  uint64_t hist[256];
  histogram_impl(sym, count, hist);
  if (precision == 0) precision = choose_precision(hist, count);
  if (precision < kMinPrecision || precision > kMaxPrecision)
    throw Error(nullptr, "precision must be 0 (auto) or 12..15");
  if (max_lanes != 0 && max_lanes != 1 && max_lanes != 2 && max_lanes != 4 && max_lanes != 8)
    throw Error(nullptr, "lanes must be 0 (auto), 1, 2, 4 or 8");
  uint32_t freq[256], cum[257];
  normalize(hist, precision, freq);
  cum[0] = 0;
  int present = 0;
  for (int s = 0; s < 256; ++s) {
    cum[s + 1] = cum[s] + freq[s];
    present += freq[s] != 0;
  }
  if (present == 1) return serialize_table_impl(freq, precision, 0);  // no payload (READ ME, 5)
  if (max_lanes == 0) max_lanes = choose_lanes(coded_bits(hist, freq, precision) / 8.0);
  int lane_code = 0;
  while ((1 << lane_code) < max_lanes) ++lane_code;
  std::vector<uint8_t> out = serialize_table_impl(freq, precision, lane_code);
  const int lanes = int(std::min<size_t>(size_t(max_lanes), count));
  // Encode step for symbol s: x' = (x / f) << P | (x % f) + cum; renormalize first when
  // x >= f << (63 - P) (encoding would leave [L, 2^63)). Precompute the bound per symbol.
  uint64_t xmax[256];
  for (int s = 0; s < 256; ++s) xmax[s] = uint64_t(freq[s]) << (63 - precision);
  uint64_t x[kLanes];
  const uint64_t h = symbol_hash(sym, count);
  for (int j = 0; j < kLanes; ++j) x[j] = kStateLow + lane_tag(h, j);
  // At most one word per symbol; written from the back so the decoder reads forward.
  std::vector<uint32_t> words(count);
  size_t w = count;
  for (size_t i = count; i-- > 0;) {
    const int j = int(i % size_t(lanes));
    const uint32_t s = sym[i];
    uint64_t xj = x[j];
    if (xj >= xmax[s]) {
      words[--w] = uint32_t(xj);
      xj >>= kWordBits;
    }
    const uint32_t f = freq[s];
    // x < 2^63 and f < 2^15 here: a 64-by-32 division would do, but the compiler emits
    // div r64 either way; the encoder is not the hot path.
    x[j] = ((xj / f) << precision) + (xj % f) + cum[s];
  }
  const size_t nwords = count - w;
  const size_t table_bytes = out.size();
  out.resize(table_bytes + 8 * size_t(lanes) + 4 * nwords);
  uint8_t* p = out.data() + table_bytes;
  for (int j = 0; j < lanes; ++j, p += 8)
    for (int b = 0; b < 8; ++b) p[b] = uint8_t(x[j] >> (8 * b));
  for (size_t k = w; k < count; ++k, p += 4)
    for (int b = 0; b < 4; ++b) p[b] = uint8_t(words[k] >> (8 * b));
  return out;
}

Table parse_table(const uint8_t* data, size_t size) {
  Table t;
  if (size < 1) throw Error("R1", "empty buffer (no table)");
  const int head = data[0];
  if (head == 0) {
    t.table_bytes = 1;
    return t;
  }
  if (head & 0x80) throw Error("R1", "reserved bit 7 of the header byte is set");
  const int p = head & 0x0F;
  if (p < kMinPrecision || p > kMaxPrecision)
    throw Error("R1", "precision " + std::to_string(p) + " not in 12..15");
  if (size < 3) throw Error("R2", "truncated table header");
  t.precision = p;
  t.lane_code = (head >> 4) & 3;
  t.sparse = (head & kSparseFlag) != 0;
  t.lo = data[1];
  t.hi = data[2];
  if (t.lo > t.hi)
    throw Error("R2", "table range lo=" + std::to_string(t.lo) + " > hi=" + std::to_string(t.hi));
  size_t pos = 3;
  bool listed[256] = {};  // symbols whose frequency varint follows
  if (t.sparse) {
    const int nbits = t.hi - t.lo + 1;
    const size_t nbytes = size_t(nbits + 7) / 8;
    if (size - pos < nbytes) throw Error("R2", "truncated presence bitmap");
    for (int i = 0; i < int(8 * nbytes); ++i) {
      const bool bit = (data[pos + size_t(i) / 8] >> (i % 8)) & 1;
      if (i >= nbits && bit) throw Error("R2", "nonzero padding bits in the presence bitmap");
      if (i < nbits) listed[t.lo + i] = bit;
    }
    if (!listed[t.lo] || !listed[t.hi])
      throw Error("R2", "table range endpoints must be present in the bitmap");
    pos += nbytes;
  } else {
    for (int s = t.lo; s <= t.hi; ++s) listed[s] = true;
  }
  uint64_t sum = 0;
  const uint32_t M = 1u << p;
  for (int s = t.lo; s <= t.hi; ++s) {
    if (!listed[s]) continue;
    uint32_t v = 0;
    int shift = 0;
    for (;;) {
      if (pos >= size) throw Error("R3", "truncated frequency table");
      const uint8_t b = data[pos++];
      if (shift == 14 && b > 2)  // a third byte can only complete a value <= 2^15
        throw Error("R3", "frequency varint too long or too large for symbol " + std::to_string(s));
      v |= uint32_t(b & 0x7F) << shift;
      if (!(b & 0x80)) {
        if (b == 0 && shift > 0)
          throw Error("R3", "non-minimal frequency varint for symbol " + std::to_string(s));
        break;
      }
      shift += 7;
    }
    if (v > M)
      throw Error("R3", "frequency " + std::to_string(v) + " of symbol " + std::to_string(s) +
                  " exceeds 2^" + std::to_string(p));
    if (t.sparse && v == 0)
      throw Error("R3", "zero frequency for symbol " + std::to_string(s) + " marked present");
    t.freq[s] = v;
    sum += v;
    t.present += v != 0;
  }
  if (t.freq[t.lo] == 0 || t.freq[t.hi] == 0)
    throw Error("R3", "table range endpoints must have nonzero frequency");
  if (sum != M)
    throw Error("R3", "frequencies sum to " + std::to_string(sum) + ", expected 2^" +
                std::to_string(p) + " = " + std::to_string(M));
  if (t.present == 1 && t.lane_code != 0)
    throw Error("R3", "one-symbol table with a nonzero lane code");
  t.cum[0] = 0;
  for (int s = 0; s < 256; ++s) t.cum[s + 1] = t.cum[s] + t.freq[s];
  t.table_bytes = pos;
  return t;
}

Plan prepare(const uint8_t* data, size_t size, uint64_t count) {
  Plan plan;
  plan.table = parse_table(data, size);
  plan.count = count;
  const Table& t = plan.table;
  const size_t payload = size - t.table_bytes;
  if (count > kMaxCount)
    throw Error("R4", "count " + std::to_string(count) + " exceeds the 2^40 cap");
  if (t.precision == 0) {
    if (count != 0)
      throw Error("R4", "empty table cannot produce " + std::to_string(count) + " symbols");
    if (payload != 0) throw Error("R5", std::to_string(payload) + " trailing bytes after empty table");
    return plan;
  }
  if (count == 0) throw Error("R4", "non-empty table but count is 0 (empty input encodes as one 0 byte)");
  if (t.present == 1) {
    if (payload != 0)
      throw Error("R5", std::to_string(payload) + " payload bytes after a one-symbol table (expected 0)");
    return plan;
  }
  plan.lanes = int(std::min<uint64_t>(uint64_t(1) << t.lane_code, count));
  const size_t state_bytes = 8 * size_t(plan.lanes);
  if (payload < state_bytes)
    throw Error("R5", "truncated: " + std::to_string(payload) + " payload bytes, need " +
                std::to_string(state_bytes) + " for the initial states");
  if ((payload - state_bytes) % 4)
    throw Error("R5", "payload word bytes are not a multiple of 4");
  const uint64_t bound =
      kRunFactor * (uint64_t(1) << t.precision) * (uint64_t(payload / 4) + kLanes);
  if (count > bound)
    throw Error("R4", "count " + std::to_string(count) + " is more than a " + std::to_string(payload) +
                "-byte payload can hold at precision " + std::to_string(t.precision) +
                " (max " + std::to_string(bound) + ")");
  plan.states = data + t.table_bytes;
  plan.words = plan.states + state_bytes;
  plan.words_end = data + size;
  for (int j = 0; j < plan.lanes; ++j) {
    const uint64_t x = load_le64(plan.states + 8 * j);
    if (x < kStateLow || x >= kStateHigh)
      throw Error("R6", "initial state of lane " + std::to_string(j) + " is outside [2^31, 2^63)");
  }
  return plan;
}

namespace {

void check_end(const Plan& plan, const uint64_t* x, const uint8_t* wp, const uint8_t* out) {
  if (wp != plan.words_end)
    throw Error("R8", std::to_string(plan.words_end - wp) + " unread payload bytes after decoding");
  const uint64_t h = symbol_hash(out, plan.count);
  for (int j = 0; j < plan.lanes; ++j)
    if (x[j] != kStateLow + lane_tag(h, j))
      throw Error("R9", "final state of lane " + std::to_string(j) +
                  " does not match the integrity tag (corrupt stream or wrong count)");
}

}  // namespace

void decode_ref(const Plan& plan, uint8_t* out) {
  const Table& t = plan.table;
  if (plan.count == 0) return;
  if (t.present == 1) {
    std::memset(out, t.lo, plan.count);
    return;
  }
  const int P = t.precision;
  const uint32_t mask = (1u << P) - 1;
  uint64_t x[kLanes];
  for (int j = 0; j < plan.lanes; ++j) x[j] = load_le64(plan.states + 8 * j);
  const uint8_t* wp = plan.words;
  for (uint64_t i = 0; i < plan.count; ++i) {
    const int j = int(i % uint64_t(plan.lanes));
    const uint32_t slot = uint32_t(x[j] & mask);
    int s = t.lo;
    while (!(t.cum[s] <= slot && slot < t.cum[s] + t.freq[s])) ++s;  // slot < 2^P: found
    out[i] = uint8_t(s);
    x[j] = t.freq[s] * (x[j] >> P) + slot - t.cum[s];
    if (x[j] < kStateLow) {
      if (plan.words_end - wp < 4) throw Error("R7", "truncated payload (needs more words)");
      x[j] = (x[j] << kWordBits) | load_le32(wp);
      wp += 4;
    }
  }
  check_end(plan, x, wp, out);
}

namespace {

// The unchecked inner loop: whole rounds of 8 symbols while at least 8 words (the most a
// round can read) remain. P is a template argument so the shifts are immediates, which
// frees the register the variable shift would pin and keeps the 8 states in registers.
// The renorm is branch-free: the next word is always loaded, kept only when needed (mask
// m), and the shared pointer advances by 0 or 4. It is written with masks, not
// `need ? a : b`, because GCC compiles the ternary to a branch, and renorms are
// unpredictable. Returns the number of rounds decoded.
template <int P, int N>
__attribute__((noinline)) uint64_t decode_rounds(uint64_t* xs, const uint8_t*& wp_ref, const uint8_t* we,
                       const uint8_t* __restrict lut, const uint32_t* __restrict info,
                       uint8_t* __restrict out, uint64_t rounds) {
  // N independent lanes per round; N is a compile-time constant so the lane loop unrolls
  // and the states live in registers (N dependency chains overlap in the pipeline).
  constexpr uint64_t mask = (uint64_t(1) << P) - 1;
  uint64_t x[N];
#pragma GCC unroll 8
  for (int j = 0; j < N; ++j) x[j] = xs[j];
  const uint8_t* wp = wp_ref;
  uint64_t r = 0;
  // Branch-free renormalization: always load the next word, keep it only when the state
  // fell below L. The loop condition guarantees 4*N readable bytes per round.
  for (; r < rounds && we - wp >= 4 * N; ++r) {
    uint8_t* o = out + r * N;
#pragma GCC unroll 8
    for (int j = 0; j < N; ++j) {
      uint64_t X = x[j];
      const uint64_t slot = X & mask;
      const uint32_t s = lut[slot];
      const uint64_t e = info[s];
      o[j] = uint8_t(s);
      X = FreqCumEntry::freq(uint32_t(e)) * (X >> P) + slot - FreqCumEntry::cum(uint32_t(e));
      const uint64_t w = load_le32(wp);
      const uint64_t m = uint64_t(0) - uint64_t(X < kStateLow);
      x[j] = (((X << kWordBits) | w) & m) | (X & ~m);
      wp += m & 4;
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < N; ++j) xs[j] = x[j];
  wp_ref = wp;
  return r;
}

template <int N>
uint64_t decode_rounds_p(int P, uint64_t* xs, const uint8_t*& wp, const uint8_t* we, const uint8_t* lut,
                         const uint32_t* info, uint8_t* out, uint64_t rounds) {
  switch (P) {
    case 12: return decode_rounds<12, N>(xs, wp, we, lut, info, out, rounds);
    case 13: return decode_rounds<13, N>(xs, wp, we, lut, info, out, rounds);
    case 14: return decode_rounds<14, N>(xs, wp, we, lut, info, out, rounds);
    case 15: return decode_rounds<15, N>(xs, wp, we, lut, info, out, rounds);
    default: throw Error(nullptr, "internal: unvalidated precision");
  }
}

}  // namespace

namespace {

Isa initial_isa() {
  const char* env = std::getenv("GOLFPACK_RANS_ISA");
  if (!env) return Isa::kAuto;
  const std::string v(env);
  if (v == "scalar") return Isa::kScalar;
  if (v == "avx2" && cpu_has_avx2()) return Isa::kAvx2;
  if (v == "avx512" && cpu_has_avx512()) return Isa::kAvx512;
  return Isa::kAuto;  // unknown or unavailable: the safe default
}

std::atomic<int> g_isa{-1};  // -1: not read from the environment yet

}  // namespace

void set_isa(Isa isa) {
  if (isa == Isa::kAvx2 && !cpu_has_avx2()) throw Error(nullptr, "this CPU has no AVX2");
  if (isa == Isa::kAvx512 && !cpu_has_avx512()) throw Error(nullptr, "this CPU has no AVX-512 (F, VL, DQ, BW)");
  g_isa.store(int(isa));
}

Isa get_isa() {
  int v = g_isa.load();
  if (v < 0) {
    v = int(initial_isa());
    g_isa.store(v);
  }
  return Isa(v);
}

Isa resolved_isa() {
  const Isa isa = get_isa();
  if (isa == Isa::kAuto)
    return cpu_has_avx512_fast() ? Isa::kAvx512 : cpu_has_avx2() ? Isa::kAvx2 : Isa::kScalar;
  return isa;
}

void SymbolHasher::update(const uint8_t* p, uint64_t n) {
  if (npending_) {  // complete the partial word left by the previous piece
    while (n && npending_ < 8) pending_[npending_++] = *p++, --n;
    if (npending_ < 8) return;
    word(load_le64(pending_));
    npending_ = 0;
  }
  uint64_t k = 0;
  const uint64_t full = n / 8;
  for (; k < full && (words_ & 3); ++k) word(load_le64(p + 8 * k));
  // Aligned to accumulator 0: four independent chains, as in symbol_hash.
  for (; k + 4 <= full; k += 4) {
    for (int a = 0; a < 4; ++a) acc_[a] = hash::round(acc_[a], load_le64(p + 8 * (k + a)));
    words_ += 4;
  }
  for (; k < full; ++k) word(load_le64(p + 8 * k));
  for (uint64_t b = 8 * full; b < n; ++b) pending_[npending_++] = p[b];
}

uint64_t SymbolHasher::finish() const {
  uint64_t acc[4] = {acc_[0], acc_[1], acc_[2], acc_[3]};
  if (npending_) acc[words_ & 3] = hash::round(acc[words_ & 3], hash::tail_word(pending_, npending_));
  return hash::fold(acc, 8 * words_ + uint64_t(npending_));
}

Decoder::Decoder(const Plan& plan, Isa isa) : plan_(plan) {
  const Table& t = plan.table;
  if (plan.count == 0 || t.present == 1) return;  // nothing to set up: run() fills or does nothing
  if (isa == Isa::kAuto) isa = resolved_isa();
  if (isa == Isa::kAvx2 && !cpu_has_avx2()) throw Error(nullptr, "this CPU has no AVX2");
  if (isa == Isa::kAvx512 && !cpu_has_avx512()) throw Error(nullptr, "this CPU has no AVX-512");
  avx2_ = uses_avx2(isa) && (plan.lanes == 4 || plan.lanes == 8);
  avx512_ = isa == Isa::kAvx512 && plan.lanes == 8;
  const int P = t.precision;
  // Only the tables the chosen loops read are built (the AVX2 table is 8 bytes per slot).
  lut_.resize(size_t(1) << P);
  if (avx2_) entries_.resize(size_t(1) << P);
  for (int s = t.lo; s <= t.hi; ++s) {
    if (!t.freq[s]) continue;
    std::memset(lut_.data() + t.cum[s], s, t.freq[s]);
    info_[s] = FreqCumEntry::pack(t.freq[s], t.cum[s]);
    if (avx2_)
      for (uint32_t k = 0; k < t.freq[s]; ++k)
        entries_[t.cum[s] + k] = SlotEntry64::pack(t.freq[s], uint32_t(s), k);
  }
  for (int j = 0; j < plan.lanes; ++j) x_[j] = load_le64(plan.states + 8 * j);
  wp_ = plan.words;
}

void Decoder::checked(uint8_t* out, uint64_t n) {
  const int P = plan_.table.precision;
  const uint64_t mask = (uint64_t(1) << P) - 1;
  const uint64_t lanes = uint64_t(plan_.lanes);
  const uint8_t* const we = plan_.words_end;
  for (uint64_t k = 0; k < n; ++k) {
    const int j = int((done_ + k) % lanes);
    const uint64_t slot = x_[j] & mask;
    const uint32_t s = lut_[slot];
    const uint64_t e = info_[s];
    out[k] = uint8_t(s);
    uint64_t v = FreqCumEntry::freq(uint32_t(e)) * (x_[j] >> P) + slot - FreqCumEntry::cum(uint32_t(e));
    if (v < kStateLow) {
      if (we - wp_ < 4) throw Error("R7", "truncated payload (needs more words)");
      v = (v << kWordBits) | load_le32(wp_);
      wp_ += 4;
    }
    x_[j] = v;
  }
  done_ += n;
}

void Decoder::run(uint8_t* out, uint64_t n) {
  if (n > plan_.count - done_) throw Error(nullptr, "internal: decoding past the symbol count");
  if (n == 0) return;
  if (plan_.table.present == 1) {
    std::memset(out, plan_.table.lo, n);
    done_ += n;
    return;
  }
  const uint64_t lanes = uint64_t(plan_.lanes);
  // Checked steps up to a round boundary (a piece may end mid-round), then whole rounds in the
  // unchecked loop while the payload has a round's worth of words, then checked steps again:
  // the last rounds near the end of the payload, the tail, and lane counts not in 1/2/4/8.
  const uint64_t head = std::min(n, (lanes - done_ % lanes) % lanes);
  checked(out, head);
  uint64_t k = head;
  const uint64_t rounds = (n - k) / lanes;
  uint64_t got = 0;
  if (rounds) {
    const int P = plan_.table.precision;
    const uint8_t* we = plan_.words_end;
    if (avx512_) {
      AvxStream st{x_, wp_, we, entries_.data(), P, out + k};
      got = decode_rounds_avx512_multi(&st, 1, rounds);
      wp_ = st.wp;
    } else if (avx2_) {
      got = decode_rounds_avx2(int(lanes), P, x_, wp_, we, entries_.data(), out + k, rounds);
    } else {
      switch (lanes) {
        case 1: got = decode_rounds_p<1>(P, x_, wp_, we, lut_.data(), info_, out + k, rounds); break;
        case 2: got = decode_rounds_p<2>(P, x_, wp_, we, lut_.data(), info_, out + k, rounds); break;
        case 4: got = decode_rounds_p<4>(P, x_, wp_, we, lut_.data(), info_, out + k, rounds); break;
        case 8: got = decode_rounds_p<8>(P, x_, wp_, we, lut_.data(), info_, out + k, rounds); break;
        default: break;  // lanes = count < 8, not a power of two: all checked
      }
    }
  }
  k += got * lanes;
  done_ += got * lanes;
  checked(out + k, n - k);
}

void Decoder::run_group(Decoder* const* ds, uint8_t* const* out, const uint64_t* n, int count,
                        std::string* errors) {
  constexpr int kGroup = kMaxInterleave;
  // A decoder whose stream is broken stops there: its error goes to errors[k] (or is thrown
  // when errors is null) and the others carry on.
  auto guarded = [&](int k, auto&& fn) {
    if (!errors) return fn(), true;
    try {
      fn();
      return true;
    } catch (const Error& e) {
      errors[k] = e.what();
      return false;
    }
  };
  int k = 0;
  while (k < count) {
    // The next (up to 4) decoders that can share the AVX2 loop; the others run alone.
    Decoder* g[kGroup];
    uint8_t* go[kGroup];
    uint64_t gn[kGroup], head[kGroup];
    int gi[kGroup];
    int m = 0;
    // AVX2 interleaves up to 4 streams, AVX-512 (32 vector registers) up to 8
    const int limit = ds[k]->avx512_ ? kGroup : 4;
    for (; k < count && m < limit; ++k) {
      Decoder& d = *ds[k];
      if (n[k] > d.plan_.count - d.done_) throw Error(nullptr, "internal: decoding past the symbol count");
      if (!d.avx2_ || d.plan_.lanes != 8 || n[k] < 8 || (m && d.avx512_ != g[0]->avx512_)) {
        guarded(k, [&] { d.run(out[k], n[k]); });
        continue;
      }
      head[m] = std::min(n[k], (8 - d.done_ % 8) % 8);
      if (!guarded(k, [&] { d.checked(out[k], head[m]); })) continue;
      g[m] = &d, go[m] = out[k], gn[m] = n[k], gi[m] = k, ++m;
    }
    uint64_t rounds = UINT64_MAX;
    for (int i = 0; i < m; ++i) rounds = std::min(rounds, (gn[i] - head[i]) / 8);
    uint64_t got = 0;
    if (m > 1 && rounds) {
      AvxStream st[kGroup];
      for (int i = 0; i < m; ++i)
        st[i] = AvxStream{g[i]->x_, g[i]->wp_, g[i]->plan_.words_end, g[i]->entries_.data(),
                          g[i]->plan_.table.precision, go[i] + head[i]};
      got = g[0]->avx512_ ? decode_rounds_avx512_multi(st, m, rounds) : decode_rounds_avx2_multi(st, m, rounds);
      for (int i = 0; i < m; ++i) {
        g[i]->wp_ = st[i].wp;
        g[i]->done_ += 8 * got;
      }
    }
    for (int i = 0; i < m; ++i) {  // the rest of each piece alone (kernel, then checked steps)
      const uint64_t off = head[i] + 8 * got;
      guarded(gi[i], [&] { g[i]->run(go[i] + off, gn[i] - off); });
    }
  }
}

void Decoder::finish(uint64_t hash) const {
  if (plan_.count == 0 || plan_.table.present == 1) return;  // no payload, nothing to check
  if (done_ != plan_.count) throw Error(nullptr, "internal: finish before every symbol was decoded");
  if (wp_ != plan_.words_end)
    throw Error("R8", std::to_string(plan_.words_end - wp_) + " unread payload bytes after decoding");
  for (int j = 0; j < plan_.lanes; ++j)
    if (x_[j] != kStateLow + lane_tag(hash, j))
      throw Error("R9", "final state of lane " + std::to_string(j) +
                  " does not match the integrity tag (corrupt stream or wrong count)");
}

void decode_fast(const Plan& plan, uint8_t* out) {
  Decoder d(plan);
  d.run(out, plan.count);
  if (plan.count && plan.table.present != 1) d.finish(symbol_hash(out, plan.count));
}

}  // namespace rans
}  // namespace golfpack

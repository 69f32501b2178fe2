// rans_x32.cpp: the rans_x32 stream (csrc/RANS.md §7): encoder, validation, reference decoder
// and the piecewise Decoder that dispatches to the scalar / AVX2 / AVX-512 round loops.
//
// What differs from v1 (rans.cpp), in the order it bites:
// 1. Always P = 12 and min(32, count) lanes; the head byte's lane code must be 0 (X1).
// 2. States are u32 in [2^16, 2^32), words u16. Encode: if x >= f << 20, emit x & 0xFFFF and
//    x >>= 16 (at most once); x = (x / f) << 12 | (x % f) + cum. Decode: slot = x & 0xFFF;
//    x = f * (x >> 12) + slot - cum; if x < 2^16: x = x << 16 | next word (at most once:
//    f * (x >> 12) >= 16 before the read, so one word brings x to >= 2^20).
// 3. The lane tag is 16 bits (L + tag < 2^17 is a valid encoder start); h is v1's symbol_hash.
// 4. Hostile counts: a run of steps between two reads of one lane is < 12 * 2^12 symbols
//    (x - 2^12 shrinks by >= 1 - 2^-12 per step from below 2^32 to no less than 2^16 - 2^12).
#include "rans_x32.h"

#include <algorithm>
#include <cstring>

#include "common.h"

namespace golfpack {
namespace rans_x32 {

using rans::Error;

std::vector<uint8_t> encode(const uint8_t* sym, size_t count) {
  if (uint64_t(count) > rans::kMaxCount) throw Error(nullptr, "more than 2^40 symbols");
  if (count == 0) return {0};
  uint64_t hist[256];
  rans::histogram(sym, count, hist);
  uint32_t freq[256], cum[257];
  rans::normalize(hist, kPrecision, freq);
  cum[0] = 0;
  int present = 0;
  for (int s = 0; s < 256; ++s) {
    cum[s + 1] = cum[s] + freq[s];
    present += freq[s] != 0;
  }
  std::vector<uint8_t> out = rans::serialize_table(freq, kPrecision, 0);
  if (present == 1) return out;  // f = 2^P: every step is the identity, no payload
  const int lanes = int(std::min<size_t>(kLanes, count));
  const uint64_t h = rans::symbol_hash(sym, count);
  uint32_t x[kLanes];
  for (int j = 0; j < kLanes; ++j) x[j] = kStateLow + lane_tag(h, j);
  std::vector<uint16_t> words(count);  // at most one per symbol, filled from the back
  size_t w = count;
  for (size_t i = count; i-- > 0;) {
    const int j = int(i % size_t(lanes));
    const uint32_t s = sym[i], f = freq[s];
    uint32_t xj = x[j];
    if (xj >= (f << (32 - kPrecision))) {  // f < 2^12: no overflow
      words[--w] = uint16_t(xj);
      xj >>= kWordBits;
    }
    x[j] = ((xj / f) << kPrecision) + (xj % f) + cum[s];
  }
  const size_t table_bytes = out.size();
  out.resize(table_bytes + 4 * size_t(lanes) + 2 * (count - w));
  uint8_t* p = out.data() + table_bytes;
  for (int j = 0; j < lanes; ++j, p += 4)
    for (int b = 0; b < 4; ++b) p[b] = uint8_t(x[j] >> (8 * b));
  for (size_t k = w; k < count; ++k, p += 2) {
    p[0] = uint8_t(words[k]);
    p[1] = uint8_t(words[k] >> 8);
  }
  return out;
}

Plan prepare(const uint8_t* data, size_t size, uint64_t count) {
  Plan plan;
  plan.table = rans::parse_table(data, size);  // R1-R3
  plan.count = count;
  const rans::Table& t = plan.table;
  if (t.precision != 0 && t.precision != kPrecision)
    throw Error("X1", "precision " + std::to_string(t.precision) + " (rans_x32 streams use 12)");
  if (t.lane_code != 0) throw Error("X1", "nonzero lane code (rans_x32 streams always use 32 lanes)");
  const size_t payload = size - t.table_bytes;
  if (count > rans::kMaxCount) throw Error("X2", "count " + std::to_string(count) + " exceeds the 2^40 cap");
  if (t.precision == 0) {
    if (count != 0) throw Error("X2", "empty table cannot produce " + std::to_string(count) + " symbols");
    if (payload != 0) throw Error("X3", std::to_string(payload) + " trailing bytes after the empty table");
    return plan;
  }
  if (count == 0) throw Error("X2", "non-empty table but count is 0 (empty input encodes as one 0 byte)");
  if (t.present == 1) {
    if (payload != 0)
      throw Error("X3", std::to_string(payload) + " payload bytes after a one-symbol table (expected 0)");
    return plan;
  }
  plan.lanes = int(std::min<uint64_t>(kLanes, count));
  const size_t state_bytes = 4 * size_t(plan.lanes);
  if (payload < state_bytes)
    throw Error("X3", "truncated: " + std::to_string(payload) + " payload bytes, need " +
                std::to_string(state_bytes) + " for the initial states");
  if ((payload - state_bytes) % 2) throw Error("X3", "payload word bytes are not a multiple of 2");
  const uint64_t bound = kRunFactor * (uint64_t(1) << kPrecision) * (uint64_t(payload / 2) + kLanes);
  if (count > bound)
    throw Error("X2", "count " + std::to_string(count) + " is more than a " + std::to_string(payload) +
                "-byte payload can hold (max " + std::to_string(bound) + ")");
  plan.states = data + t.table_bytes;
  plan.words = plan.states + state_bytes;
  plan.words_end = data + size;
  for (int j = 0; j < plan.lanes; ++j)
    if (load_le32(plan.states + 4 * j) < kStateLow)
      throw Error("X4", "initial state of lane " + std::to_string(j) + " is below 2^16");
  return plan;
}

namespace {

void check_end(const Plan& plan, const uint32_t* x, const uint8_t* wp, uint64_t h) {
  if (wp != plan.words_end)
    throw Error("X6", std::to_string(plan.words_end - wp) + " unread payload bytes after decoding");
  for (int j = 0; j < plan.lanes; ++j)
    if (x[j] != kStateLow + lane_tag(h, j))
      throw Error("X7", "final state of lane " + std::to_string(j) +
                  " does not match the integrity tag (corrupt stream or wrong count)");
}

inline uint32_t load_le16(const uint8_t* p) { return uint32_t(p[0]) | (uint32_t(p[1]) << 8); }

// The unchecked scalar loop: whole rounds of 32 symbols while a round's 32 words fit. The
// renormalization is branch-free (always load, keep under a mask), as in v1's scalar rounds.
uint64_t rounds_scalar(uint32_t* xs, const uint8_t*& wp_ref, const uint8_t* we, const uint32_t* __restrict ent,
                       uint8_t* __restrict out, uint64_t rounds) {
  uint32_t x[kLanes];
  std::memcpy(x, xs, sizeof x);
  const uint8_t* wp = wp_ref;
  uint64_t r = 0;
  for (; r < rounds && we - wp >= 2 * kLanes; ++r) {
    uint8_t* o = out + r * kLanes;
#pragma GCC unroll 32
    for (int j = 0; j < kLanes; ++j) {
      const uint32_t e = ent[x[j] & ((1u << kPrecision) - 1)];
      o[j] = Entry::sym(e);
      const uint32_t v = Entry::freq(e) * (x[j] >> kPrecision) + Entry::bias(e);
      const uint32_t m = 0u - uint32_t(v < kStateLow);
      x[j] = (((v << kWordBits) | load_le16(wp)) & m) | (v & ~m);
      wp += m & 2;
    }
  }
  std::memcpy(xs, x, sizeof x);
  wp_ref = wp;
  return r;
}

}  // namespace

void decode_ref(const Plan& plan, uint8_t* out) {
  const rans::Table& t = plan.table;
  if (plan.count == 0) return;
  if (t.present == 1) {
    std::memset(out, t.lo, plan.count);
    return;
  }
  uint32_t x[kLanes];
  for (int j = 0; j < plan.lanes; ++j) x[j] = load_le32(plan.states + 4 * j);
  const uint8_t* wp = plan.words;
  const uint32_t mask = (1u << kPrecision) - 1;
  for (uint64_t i = 0; i < plan.count; ++i) {
    const int j = int(i % uint64_t(plan.lanes));
    const uint32_t slot = x[j] & mask;
    int s = t.lo;
    while (!(t.cum[s] <= slot && slot < t.cum[s] + t.freq[s])) ++s;
    out[i] = uint8_t(s);
    x[j] = t.freq[s] * (x[j] >> kPrecision) + slot - t.cum[s];
    if (x[j] < kStateLow) {
      if (plan.words_end - wp < 2) throw Error("X5", "truncated payload (needs more words)");
      x[j] = (x[j] << kWordBits) | load_le16(wp);
      wp += 2;
    }
  }
  check_end(plan, x, wp, rans::symbol_hash(out, plan.count));
}

Decoder::Decoder(const Plan& plan, rans::Isa isa) : plan_(plan) {
  const rans::Table& t = plan.table;
  if (plan.count == 0 || t.present == 1) return;
  if (isa == rans::Isa::kAuto) isa = rans::resolved_isa();
  if (isa == rans::Isa::kAvx2 && !cpu_has_avx2()) throw Error(nullptr, "this CPU has no AVX2");
  if (isa == rans::Isa::kAvx512 && !cpu_has_avx512()) throw Error(nullptr, "this CPU has no AVX-512");
  isa_ = isa;
  ent_.resize(size_t(1) << kPrecision);
  for (int s = t.lo; s <= t.hi; ++s)
    for (uint32_t k = 0; k < t.freq[s]; ++k) ent_[t.cum[s] + k] = Entry::pack(t.freq[s], uint32_t(s), k);
  for (int j = 0; j < plan.lanes; ++j) x_[j] = load_le32(plan.states + 4 * j);
  wp_ = plan.words;
}

void Decoder::checked(uint8_t* out, uint64_t n) {
  const uint64_t lanes = uint64_t(plan_.lanes);
  const uint8_t* const we = plan_.words_end;
  for (uint64_t k = 0; k < n; ++k) {
    const int j = int((done_ + k) % lanes);
    const uint32_t e = ent_[x_[j] & ((1u << kPrecision) - 1)];
    out[k] = Entry::sym(e);
    uint32_t v = Entry::freq(e) * (x_[j] >> kPrecision) + Entry::bias(e);
    if (v < kStateLow) {
      if (we - wp_ < 2) throw Error("X5", "truncated payload (needs more words)");
      v = (v << kWordBits) | load_le16(wp_);
      wp_ += 2;
    }
    x_[j] = v;
  }
  done_ += n;
  if (hashing_) hasher_.update(out, n);
}

void Decoder::hashed_rounds(const uint8_t* out, uint64_t rounds, const uint64_t* acc) {
  if (!hashing_) return;
  if (acc) hasher_.absorbed_blocks(rounds);
  else hasher_.update(out, rounds * kLanes);
}

uint64_t Decoder::rounds(uint8_t* out, uint64_t n) {
  if (isa_ == rans::Isa::kScalar) {
    const uint64_t got = rounds_scalar(x_, wp_, plan_.words_end, ent_.data(), out, n);
    hashed_rounds(out, got, nullptr);
    return got;
  }
  Stream st{x_, wp_, plan_.words_end, ent_.data(), out, block_acc()};
  const uint64_t got = isa_ == rans::Isa::kAvx512 ? rounds_avx512(&st, 1, n) : rounds_avx2(&st, 1, n);
  wp_ = st.wp;
  hashed_rounds(out, got, st.hacc);
  return got;
}

void Decoder::run(uint8_t* out, uint64_t n) {
  if (n > plan_.count - done_) throw Error(nullptr, "internal: decoding past the symbol count");
  if (n == 0) return;
  if (plan_.table.present == 1) {
    std::memset(out, plan_.table.lo, n);
    done_ += n;
    if (hashing_) hasher_.update(out, n);  // (finish checks nothing for one symbol; kept exact)
    return;
  }
  // Checked steps to a round boundary, whole rounds while a round's words fit, checked steps
  // for the rest (the end of the payload, the tail, and streams of fewer than 32 lanes).
  uint64_t k = 0;
  if (plan_.lanes == kLanes) {
    k = std::min<uint64_t>(n, (kLanes - done_ % kLanes) % kLanes);
    checked(out, k);
    const uint64_t got = rounds(out + k, (n - k) / kLanes);
    k += got * kLanes;
    done_ += got * kLanes;
  }
  checked(out + k, n - k);
}

void Decoder::run_group(Decoder* const* ds, uint8_t* const* out, const uint64_t* n, int count,
                        std::string* errors) {
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
    Decoder* g[kMaxStreams];
    uint8_t* go[kMaxStreams];
    uint64_t gn[kMaxStreams], head[kMaxStreams];
    int gi[kMaxStreams];
    int m = 0;
    const int limit = ds[k]->isa_ == rans::Isa::kAvx512 ? kMaxStreams : kMaxStreamsAvx2;
    for (; k < count && m < limit; ++k) {
      Decoder& d = *ds[k];
      if (n[k] > d.plan_.count - d.done_) throw Error(nullptr, "internal: decoding past the symbol count");
      const bool simd = d.isa_ != rans::Isa::kScalar && d.plan_.lanes == kLanes && d.plan_.table.present > 1;
      if (!simd || n[k] < uint64_t(kLanes) || (m && d.isa_ != g[0]->isa_)) {
        guarded(k, [&] { d.run(out[k], n[k]); });
        continue;
      }
      head[m] = std::min<uint64_t>(n[k], (kLanes - d.done_ % kLanes) % kLanes);
      if (!guarded(k, [&] { d.checked(out[k], head[m]); })) continue;
      g[m] = &d, go[m] = out[k], gn[m] = n[k], gi[m] = k, ++m;
    }
    uint64_t rounds = UINT64_MAX;
    for (int i = 0; i < m; ++i) rounds = std::min(rounds, (gn[i] - head[i]) / kLanes);
    uint64_t got = 0;
    if (m > 1 && rounds) {
      Stream st[kMaxStreams];
      for (int i = 0; i < m; ++i)
        st[i] = Stream{g[i]->x_, g[i]->wp_, g[i]->plan_.words_end, g[i]->ent_.data(), go[i] + head[i],
                       g[i]->block_acc()};
      got = g[0]->isa_ == rans::Isa::kAvx512 ? rounds_avx512(st, m, rounds) : rounds_avx2(st, m, rounds);
      for (int i = 0; i < m; ++i) {
        g[i]->wp_ = st[i].wp;
        g[i]->done_ += kLanes * got;
        g[i]->hashed_rounds(go[i] + head[i], got, st[i].hacc);
      }
    }
    for (int i = 0; i < m; ++i) {
      const uint64_t off = head[i] + kLanes * got;
      guarded(gi[i], [&] { g[i]->run(go[i] + off, gn[i] - off); });
    }
  }
}

void Decoder::finish(uint64_t hash) const {
  if (plan_.count == 0 || plan_.table.present == 1) return;
  if (done_ != plan_.count) throw Error(nullptr, "internal: finish before every symbol was decoded");
  check_end(plan_, x_, wp_, hash);
}

void decode_fast(const Plan& plan, uint8_t* out) {
  Decoder d(plan);
  d.hash_output();
  d.run(out, plan.count);
  d.finish();
}

}  // namespace rans_x32
}  // namespace golfpack

// rans_ctx.cpp: rANS with one static table per (row class, column class) cell -- the payload
// of golfpack's `rans_rc` stream coder (format: csrc/RANS.md section 6; model fitting and the
// stream header: codec/rans_rc.py).
//
// ===================================== READ ME FIRST =====================================
// The stream codes a rows x cols matrix of byte symbols in row-major order. Symbol (r, c)
// is coded with table  map[row_class[r] * C + col_class[c]]:  the table a symbol uses is a
// function of its POSITION only, never of earlier symbols, so decoding needs no model
// updates and the lanes stay independent (the same speed class as order-0 rANS).
// Everything else is the v1 stream of rans.cpp: up to 8 interleaved 64-bit states in
// [2^31, 2^63), 32-bit renormalization words stored in decoder order, and lane j's final
// state equal to L + lane_tag(symbol_hash(all symbols), j).
//
// 1. Tables are stored as QUANTIZED CODE LENGTHS, not frequencies: code v in 0..4P means
//    p ~ 2^(-v/4); 255 means absent. Quarter-bit steps cost ~0.002 bits/symbol in KL (a few
//    hundredths of a percent) and make a table ~6x cheaper to store than varint frequencies,
//    which is what lets a tensor afford dozens of tables.
// 2. The code-length -> frequency map (build_table) is INTEGER ONLY and part of the format:
//    the decoder rebuilds the exact frequencies the encoder used. No log2/exp2 from libm, whose
//    last-ulp results differ between platforms: the 2^(-k/4) constants are written out.
// 3. Frequencies sum to exactly 2^P. A present symbol gets >= 1, an absent one 0; a symbol
//    the encoder meets in a cell whose table lacks it is an encoder error (the fitter gives
//    every symbol seen in a cell a code in that cell's table).
// 4. A table with one present symbol has f = 2^P: coding is the identity on the state and
//    reads no words, exactly as in v1 (a whole stream of such symbols is states only).
// 5. Decoding speed: 8-lane streams with P <= 12 (what the encoder writes) run the AVX2 round
//    loop of rans_avx2.cpp (decode_ctx_rounds_avx2) when rans_set_isa / GOLFPACK_RANS_ISA
//    allow it, else the scalar rounds below; both read 32-bit packed entries, one per slot of
//    each table, so a stream's tables cost T * 2^P * 4 bytes of cache (T = 57 at P = 12 is
//    ~0.9 MB, which is what makes many-table streams slower per symbol than v1).
// ========================================================================================
#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "common.h"
#include "qmatmul.h"
#include "rans.h"
#include "rans_ctx.h"
#include "rans_rows.h"

namespace golfpack {

namespace rans_ctx {

using rans::Error;
using rans::kStateHigh;
using rans::kStateLow;
using rans::kWordBits;



// codes: T rows of W bytes for symbols lo .. lo+W-1 (README 1); writes T*256 frequencies.
void build_tables(const uint8_t* codes, int T, int lo, int W, int P, uint32_t* freq_out) {
  if (P < kMinP || P > kMaxP) throw Error("C1", "precision must be 10..15, got " + std::to_string(P));
  if (W < 1 || lo < 0 || lo + W > 256) throw Error("C2", "table alphabet out of range");
  const uint64_t M = uint64_t(1) << P;
  std::vector<int> order;
  for (int t = 0; t < T; ++t) {
    const uint8_t* c = codes + size_t(t) * W;
    uint32_t* f = freq_out + size_t(t) * 256;
    std::fill(f, f + 256, 0u);
    uint64_t sum = 0;
    order.clear();
    for (int i = 0; i < W; ++i) {
      const uint8_t v = c[i];
      if (v == kAbsent) continue;
      if (v > 4 * P)
        throw Error("C2", "table " + std::to_string(t) + ": code " + std::to_string(v) +
                    " exceeds 4*P = " + std::to_string(4 * P));
      const uint64_t w = std::max<uint64_t>(1, (uint64_t(kQuarterPow[v & 3]) << P) >> (16 + (v >> 2)));
      f[lo + i] = uint32_t(w);
      sum += w;
      order.push_back(lo + i);
    }
    if (order.empty()) throw Error("C2", "table " + std::to_string(t) + " has no present symbol");
    if (sum != M) {  // rescale, floor, present symbols >= 1
      uint64_t s2 = 0;
      for (int s : order) {
        const uint64_t w = std::max<uint64_t>(1, uint64_t(f[s]) * M / sum);
        f[s] = uint32_t(w);
        s2 += w;
      }
      sum = s2;
    }
    // Fix the remainder one unit at a time, largest frequency first (ties: lower symbol).
    // |M - sum| <= present <= 256 <= M / 4, so the loop is short and never empties a symbol.
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return f[a] > f[b]; });
    size_t k = 0;
    while (sum < M) {
      ++f[order[k++ % order.size()]];
      ++sum;
    }
    while (sum > M) {
      const int s = order[k++ % order.size()];
      if (f[s] > 1) {
        --f[s];
        --sum;
      }
    }
  }
}

CtxTables make_tables(const uint32_t* freq, int T, int P) {
  CtxTables t;
  t.P = P;
  t.T = T;
  t.freq.assign(freq, freq + size_t(T) * 256);
  t.info.resize(size_t(T) * 256);
  // Decoding reads either the packed entries (P <= 12, what the encoder writes) or lut + info,
  // never both, so only one of the two slot tables is built: a load rebuilds every table of
  // every rans_rc stream, T * 2^P slots each.
  const bool packed = P <= kPackedMaxP;
  if (packed) t.entry.resize(size_t(T) << P);
  else t.lut.resize(size_t(T) << P);
  for (int k = 0; k < T; ++k) {
    uint32_t cum = 0;
    const uint32_t* f = freq + size_t(k) * 256;
    for (int s = 0; s < 256; ++s) {
      if (cum + uint64_t(f[s]) > (1u << P)) throw Error("C2", "table " + std::to_string(k) + " sums past 2^P");
      t.info[size_t(k) * 256 + s] = rans::FreqCumEntry::pack(f[s], cum);
      if (packed) {  // slot cum + b: SlotEntry32 (freq, bias b, symbol s)
        uint32_t* e = t.entry.data() + (size_t(k) << P) + cum;
        for (uint32_t b = 0; b < f[s]; ++b) e[b] = rans::SlotEntry32::pack(f[s], b, uint32_t(s));
      } else {
        std::memset(t.lut.data() + (size_t(k) << P) + cum, s, f[s]);
      }
      cum += f[s];
    }
    if (cum != (1u << P)) throw Error("C2", "table " + std::to_string(k) + " does not sum to 2^P");
  }
  return t;
}


// Whole rounds of L symbols (symbol i + j in lane j) while a round's L words are in [wp, we):
// no bounds checks inside. The states live in locals and the pointers are restrict, so the
// byte stores to `out` cannot force reloads (a uint8_t store may alias anything otherwise).
// Returns the symbols decoded; updates x and wp.
template <int L>
uint64_t rounds_packed(const uint32_t* __restrict ent, int P, const uint8_t* __restrict tid,
                       uint8_t* __restrict out, uint64_t n, uint64_t* __restrict xs, const uint8_t*& wp_ref,
                       const uint8_t* we) {
  uint64_t x[L];
  for (int j = 0; j < L; ++j) x[j] = xs[j];
  const uint8_t* wp = wp_ref;
  const uint32_t mask = (1u << P) - 1;
  uint64_t i = 0;
  for (; i + L <= n && we - wp >= 4 * L; i += L) {
    for (int j = 0; j < L; ++j) {
      const uint32_t slot = uint32_t(x[j]) & mask;
      const uint32_t e = ent[(size_t(tid[i + j]) << P) + slot];
      out[i + j] = rans::SlotEntry32::sym(e);
      x[j] = uint64_t(rans::SlotEntry32::freq(e)) * (x[j] >> P) + rans::SlotEntry32::bias(e);
    }
    // Branch-free renormalization: whether a lane reads a word is data-dependent (about one
    // symbol in ten for int6 weights), so a branch mispredicts often enough to cost more than
    // the unconditional load and select. The round's L words are inside [wp, we) (loop guard).
    for (int j = 0; j < L; ++j) {
      const bool need = x[j] < kStateLow;
      const uint64_t w = load_le32(wp);
      x[j] = need ? (x[j] << kWordBits) | w : x[j];
      wp += need ? 4 : 0;
    }
  }
  for (int j = 0; j < L; ++j) xs[j] = x[j];
  wp_ref = wp;
  return i;
}

std::vector<uint8_t> encode(const uint8_t* sym, uint64_t count, const Contexts& ctx,
                            const CtxTables& tb, int lanes) {
  std::vector<uint8_t> tid(count);
  ctx.fill(0, count, tid.data());
  for (uint64_t i = 0; i < count; ++i)
    if (tb.freq[size_t(tid[i]) * 256 + sym[i]] == 0)
      throw Error(nullptr, "symbol " + std::to_string(sym[i]) + " at position " + std::to_string(i) +
                  " is absent from its table " + std::to_string(tid[i]));
  lanes = int(std::min<uint64_t>(uint64_t(lanes), std::max<uint64_t>(count, 1)));
  const int P = tb.P;
  uint64_t x[rans::kLanes];
  const uint64_t h = rans::symbol_hash(sym, count);
  for (int j = 0; j < rans::kLanes; ++j) x[j] = kStateLow + rans::lane_tag(h, j);
  std::vector<uint32_t> words(count);
  size_t w = count;
  for (uint64_t i = count; i-- > 0;) {
    const int j = int(i % uint64_t(lanes));
    const uint32_t inf = tb.info[size_t(tid[i]) * 256 + sym[i]];
    const uint64_t f = rans::FreqCumEntry::freq(inf), cum = rans::FreqCumEntry::cum(inf);
    uint64_t xj = x[j];
    if (xj >= (f << (63 - P))) {
      words[--w] = uint32_t(xj);
      xj >>= kWordBits;
    }
    x[j] = ((xj / f) << P) + (xj % f) + cum;
  }
  const size_t nwords = count - w;
  std::vector<uint8_t> out(8 * size_t(lanes) + 4 * nwords);
  uint8_t* p = out.data();
  for (int j = 0; j < lanes; ++j, p += 8)
    for (int b = 0; b < 8; ++b) p[b] = uint8_t(x[j] >> (8 * b));
  for (size_t k = w; k < count; ++k, p += 4)
    for (int b = 0; b < 4; ++b) p[b] = uint8_t(words[k] >> (8 * b));
  return out;
}

// Where decoded symbols go: sink.piece(i0, n) gives the buffer for symbols [i0, i0 + n),
// sink.done(i0, n, buf) is called once they are in it (in order, pieces of kChunk).
struct ToArray {
  uint8_t* out;
  uint8_t* piece(uint64_t i0, uint64_t) { return out + i0; }
  void done(uint64_t, uint64_t, const uint8_t*) {}
};

constexpr uint64_t kChunk = 4096;  // symbols per piece; a multiple of every lane count

// One payload being decoded, piece by piece, so that several can advance together
// (decode_rows). The constructor checks the initial states; next_piece() fills the table ids
// of the next piece; rounds() runs the unchecked round loop from a round boundary; rest()
// finishes the piece with bounds-checked steps and hashes it; finish() checks the end.
// Every throw is an Error whose text names the problem.
class CtxStream {
 public:
  CtxStream(const uint8_t* data, size_t size, uint64_t count, const Contexts& ctx, const CtxTables& tb, int lanes)
      : ctx_(ctx), tb_(tb), count_(count) {
    if (count == 0) {
      if (size) throw Error("C3", std::to_string(size) + " bytes in a stream of 0 symbols");
      return;
    }
    lanes_ = int(std::min<uint64_t>(uint64_t(lanes), count));
    if (size < 8 * size_t(lanes_))
      throw Error("C3", "truncated: " + std::to_string(size) + " payload bytes, need " + std::to_string(8 * lanes_) +
                  " for the initial states");
    if ((size - 8 * size_t(lanes_)) % 4) throw Error("C3", "payload word bytes are not a multiple of 4");
    for (int j = 0; j < lanes_; ++j) {
      x_[j] = load_le64(data + 8 * j);
      if (x_[j] < kStateLow || x_[j] >= kStateHigh)
        throw Error("C3", "initial state of lane " + std::to_string(j) + " is outside [2^31, 2^63)");
    }
    wp_ = data + 8 * size_t(lanes_);
    we_ = data + size;
    ent_ = tb.entry.empty() ? nullptr : tb.entry.data();  // P <= 12
    // The AVX2 round loop (rans_avx2.cpp) for 8 lanes, as rans_set_isa / GOLFPACK_RANS_ISA say.
    const rans::Isa isa = rans::resolved_isa();
    avx2_ = ent_ && lanes_ == 8 && rans::uses_avx2(isa);
    avx512_ = avx2_ && isa == rans::Isa::kAvx512;
  }
  uint64_t done() const { return done_; }
  uint64_t remaining() const { return count_ - done_; }
  bool avx2() const { return avx2_; }  // the 8-lane SIMD rounds (AVX2, or AVX-512 when avx512())
  bool avx512() const { return avx512_; }
  uint64_t next_piece() {
    n_ = std::min(kChunk, count_ - done_);
    ctx_.fill(done_, n_, tid_);
    return n_;
  }
  // For the multi-stream AVX2 loop: this stream's registers, ids and bounds.
  rans::CtxAvxStream avx(uint8_t* o) { return rans::CtxAvxStream{x_, wp_, we_, ent_, tb_.P, tid_, o}; }
  void set_wp(const uint8_t* wp) { wp_ = wp; }
  // Unchecked rounds over [i, n) of the piece (i a multiple of the lane count); returns where they stopped.
  uint64_t rounds(uint8_t* o, uint64_t i) {
    if (!ent_) return i;
    const int P = tb_.P;
    const uint64_t n = n_ - i;
    uint64_t k = 0;
    if (avx512_) {
      rans::CtxAvxStream st{x_, wp_, we_, ent_, P, tid_ + i, o + i};
      k = 8 * rans::decode_ctx_rounds_avx512_multi(&st, 1, n / 8);
      wp_ = st.wp;
    } else if (avx2_) {
      k = rans::decode_ctx_rounds_avx2(ent_, P, tid_ + i, o + i, n, x_, wp_, we_);
    }
    else if (lanes_ == 8) k = rounds_packed<8>(ent_, P, tid_ + i, o + i, n, x_, wp_, we_);
    else if (lanes_ == 4) k = rounds_packed<4>(ent_, P, tid_ + i, o + i, n, x_, wp_, we_);
    else if (lanes_ == 2) k = rounds_packed<2>(ent_, P, tid_ + i, o + i, n, x_, wp_, we_);
    else if (lanes_ == 1) k = rounds_packed<1>(ent_, P, tid_ + i, o + i, n, x_, wp_, we_);
    return i + k;
  }
  // The checked loop takes the rest of the piece, and all of it for P > 12 (valid, never
  // written by the encoder) and for streams of < 8 symbols with 3, 5, 6 or 7 lanes.
  void rest(uint8_t* o, uint64_t i) {
    const int P = tb_.P;
    const uint32_t mask = (1u << P) - 1;
    for (; i < n_; ++i) {
      const int j = int((done_ + i) % uint64_t(lanes_));
      const uint32_t slot = uint32_t(x_[j]) & mask;
      const size_t t = tid_[i];
      if (ent_) {
        const uint32_t e = ent_[(t << P) + slot];
        o[i] = rans::SlotEntry32::sym(e);
        x_[j] = uint64_t(rans::SlotEntry32::freq(e)) * (x_[j] >> P) + rans::SlotEntry32::bias(e);
      } else {
        const uint8_t s = tb_.lut[(t << P) + slot];
        const uint32_t inf = tb_.info[t * 256 + s];
        o[i] = s;
        x_[j] = uint64_t(rans::FreqCumEntry::freq(inf)) * (x_[j] >> P) + slot - rans::FreqCumEntry::cum(inf);
      }
      if (x_[j] < kStateLow) {
        if (we_ - wp_ < 4) throw Error("C4", "truncated payload (needs more words)");
        x_[j] = (x_[j] << kWordBits) | load_le32(wp_);
        wp_ += 4;
      }
    }
    hasher_.update(o, n_);
    done_ += n_;
  }
  void finish() const {
    if (count_ == 0) return;
    if (wp_ != we_) throw Error("C4", std::to_string(we_ - wp_) + " unread payload bytes after decoding");
    const uint64_t h = hasher_.finish();
    for (int j = 0; j < lanes_; ++j)
      if (x_[j] != kStateLow + rans::lane_tag(h, j))
        throw Error("C4", "final state of lane " + std::to_string(j) +
                    " does not match the integrity tag (corrupt stream or wrong count)");
  }

 private:
  const Contexts& ctx_;
  const CtxTables& tb_;
  uint64_t count_ = 0, done_ = 0, n_ = 0;
  int lanes_ = 1;
  bool avx2_ = false, avx512_ = false;
  uint64_t x_[rans::kLanes] = {};
  const uint8_t* wp_ = nullptr;
  const uint8_t* we_ = nullptr;
  const uint32_t* ent_ = nullptr;
  uint8_t tid_[kChunk];
  rans::SymbolHasher hasher_;
};

// Decodes `count` symbols; throws Error on truncation, trailing bytes or a tag mismatch.
template <typename Sink>
void decode(const uint8_t* data, size_t size, uint64_t count, const Contexts& ctx,
            const CtxTables& tb, int lanes, Sink& sink) {
  CtxStream st(data, size, count, ctx, tb, lanes);
  while (st.remaining()) {
    const uint64_t i0 = st.done(), n = st.next_piece();
    uint8_t* o = sink.piece(i0, n);
    st.rest(o, st.rounds(o, 0));
    sink.done(i0, n, o);
  }
  st.finish();
}

// A decoded symbol always has a nonzero frequency in its table, so if no table gives a symbol
// outside b bits a frequency, the per-symbol range check of ToPackedRows cannot fail.
bool tables_allow_outside(const CtxTables& tb, int bits) {
  const int lo = 128 - (1 << (bits - 1)), hi = 128 + (1 << (bits - 1)) - 1;
  for (size_t k = 0; k < tb.freq.size(); ++k)
    if (tb.freq[k] && (int(k % 256) < lo || int(k % 256) > hi)) return true;
  return false;
}

// Packs whole rows into PackedLinear's layout as they complete (pack_u_row, rans_rows.cpp), and
// checks that every symbol fits b bits. A row may span pieces: its first part waits in `row`.
struct ToPackedRows {
  uint64_t cols;
  int bits;
  uint8_t* dst;  // rows * stride bytes
  int64_t stride;
  bool avx2;
  std::vector<uint8_t> buf, row;
  uint64_t filled = 0, next_row = 0;
  bool check_range;  // false when no table gives a symbol outside b bits a frequency
  ToPackedRows(uint64_t cols_, int bits_, uint8_t* dst_, int64_t stride_, bool avx2_, const CtxTables& tb)
      : cols(cols_), bits(bits_), dst(dst_), stride(stride_), avx2(avx2_),
        check_range(tables_allow_outside(tb, bits_)) {}
  uint8_t* piece(uint64_t, uint64_t n) {
    buf.resize(n);
    return buf.data();
  }
  void done(uint64_t, uint64_t n, const uint8_t* p) {
    const int lo = 128 - (1 << (bits - 1)), hi = 128 + (1 << (bits - 1)) - 1;
    if (check_range)
      for (uint64_t k = 0; k < n; ++k)
        if (p[k] < lo || p[k] > hi) throw Error("S9", "symbols outside the " + std::to_string(bits) + "-bit range");
    while (n) {
      if (filled == 0 && n >= cols) {  // a whole row straight from the piece
        pack_u_row(p, cols, bits, dst + next_row++ * stride, stride, avx2);
        p += cols;
        n -= cols;
        continue;
      }
      const uint64_t take = std::min<uint64_t>(n, cols - filled);
      row.resize(cols);
      std::memcpy(row.data() + filled, p, take);
      filled += take;
      p += take;
      n -= take;
      if (filled == cols) {
        pack_u_row(row.data(), cols, bits, dst + next_row++ * stride, stride, avx2);
        filled = 0;
      }
    }
  }
};

namespace {

// ------------------------------------------------------------------ several streams at once
// rans_ctx_decode_rows: each worker keeps up to kInFlight streams decoding together, one piece
// of each per step. One stream's round is a chain of dependent steps (table lookups,
// multiplies, renormalization) that leaves the core mostly idle; the AVX2 loop over 2-4
// streams fills it (decode_ctx_rounds_avx2_multi). Streams that cannot use it (fewer lanes,
// P > 12, scalar ISA) decode their pieces alone in the same rotation.
constexpr int kInFlight = 4;

void rows_worker(std::vector<RowsJob>& jobs, std::atomic<size_t>& next) {
  const bool avx2 = rans::uses_avx2(rans::resolved_isa());  // the row packing's loops
  struct Slot {
    RowsJob* job = nullptr;
    std::unique_ptr<CtxStream> st;
    std::unique_ptr<ToPackedRows> sink;
  };
  Slot slots[kInFlight];
  auto fail = [](Slot& s, const std::exception& e) {
    s.job->error = e.what();
    s.job = nullptr;
  };
  for (;;) {
    for (Slot& s : slots) {
      while (!s.job) {
        const size_t k = next.fetch_add(1);
        if (k >= jobs.size()) break;
        RowsJob& j = jobs[k];
        if (!j.error.empty()) continue;
        s.job = &j;
        try {
          s.st.reset(new CtxStream(j.data, j.size, j.count, j.md.ctx, j.md.tables, j.lanes));
          s.sink.reset(new ToPackedRows(j.cols, j.bits, j.out, j.stride, avx2, j.md.tables));
          if (!s.st->remaining()) {
            s.st->finish();
            s.job = nullptr;
          }
        } catch (const std::exception& e) {
          fail(s, e);
        }
      }
    }
    Slot* act[kInFlight];
    uint8_t* o[kInFlight];
    uint64_t i0[kInFlight], n[kInFlight], from[kInFlight] = {};
    int m = 0;
    for (Slot& s : slots)
      if (s.job) act[m++] = &s;
    if (m == 0) return;
    for (int i = 0; i < m; ++i) {
      i0[i] = act[i]->st->done();
      n[i] = act[i]->st->next_piece();
      o[i] = act[i]->sink->piece(i0[i], n[i]);
    }
    int g[kInFlight], mg = 0;
    uint64_t rounds = UINT64_MAX;
    for (int i = 0; i < m; ++i)
      if (act[i]->st->avx2() && (mg == 0 || act[i]->st->avx512() == act[g[0]]->st->avx512())) {
        g[mg++] = i;
        rounds = std::min(rounds, n[i] / 8);
      }
    if (mg > 1 && rounds) {
      rans::CtxAvxStream cs[kInFlight];
      for (int t = 0; t < mg; ++t) cs[t] = act[g[t]]->st->avx(o[g[t]]);
      const uint64_t got = act[g[0]]->st->avx512() ? rans::decode_ctx_rounds_avx512_multi(cs, mg, rounds)
                                                   : rans::decode_ctx_rounds_avx2_multi(cs, mg, rounds);
      for (int t = 0; t < mg; ++t) {
        act[g[t]]->st->set_wp(cs[t].wp);
        from[g[t]] = 8 * got;
      }
    }
    for (int i = 0; i < m; ++i) {  // the rest of each piece alone (round loop, then checked steps)
      Slot& s = *act[i];
      try {
        s.st->rest(o[i], s.st->rounds(o[i], from[i]));
        s.sink->done(i0[i], n[i], o[i]);
        if (!s.st->remaining()) {
          s.st->finish();
          s.job = nullptr;
        }
      } catch (const std::exception& e) {
        fail(s, e);
      }
    }
  }
}

}  // namespace

void validate_model(Model& m, uint64_t count, uint64_t cols, size_t n_row_class, size_t n_col_class, size_t n_map,
                    const uint32_t* freqs, size_t n_freqs, int P) {
  if (cols == 0 || count % cols) throw std::invalid_argument("rANS rc stream: count is not a multiple of cols [C1]");
  const uint64_t rows = count / cols;
  if (uint64_t(n_row_class) != rows || uint64_t(n_col_class) != cols)
    throw std::invalid_argument("rANS rc stream: class arrays do not match rows x cols [C2]");
  if (m.ctx.C < 1 || n_map % size_t(m.ctx.C)) throw std::invalid_argument("rANS rc stream: table_map is not R x C [C2]");
  const int R = int(n_map / size_t(m.ctx.C));
  if (P < kMinP || P > kMaxP) throw std::invalid_argument("rANS rc stream: precision must be 10..15 [C1]");
  if (n_freqs % 256 || n_freqs == 0) throw std::invalid_argument("rANS rc stream: freqs is not T x 256 [C2]");
  const int T = int(n_freqs / 256);
  auto all_below = [](const uint8_t* p, size_t n, int lim) {
    return std::all_of(p, p + n, [&](uint8_t v) { return int(v) < lim; });
  };
  if (!all_below(m.ctx.row_class, n_row_class, R) || !all_below(m.ctx.col_class, n_col_class, m.ctx.C) ||
      !all_below(m.ctx.map, n_map, T))
    throw std::invalid_argument("rANS rc stream: a class or table index is out of range [C2]");
  try {
    m.tables = make_tables(freqs, T, P);
  } catch (const rans::Error& e) {
    throw std::invalid_argument(e.what());
  }
  m.ctx.cols = cols;
  m.ctx.prepare(R);
}

void decode_to_array(const uint8_t* data, size_t size, uint64_t count, const Model& m, int lanes, uint8_t* out) {
  ToArray sink{out};
  decode(data, size, count, m.ctx, m.tables, lanes, sink);
}

void decode_to_packed(const uint8_t* data, size_t size, uint64_t count, const Model& m, int lanes, int bits,
                      uint8_t* out, int64_t stride) {
  ToPackedRows sink(m.ctx.cols, bits, out, stride, rans::uses_avx2(rans::resolved_isa()), m.tables);
  decode(data, size, count, m.ctx, m.tables, lanes, sink);
}

void decode_rows(std::vector<RowsJob>& jobs, int threads) {
  std::atomic<size_t> next{0};
  rans::run_workers(threads, jobs.size(), [&] { rows_worker(jobs, next); });
}

}  // namespace rans_ctx
}  // namespace golfpack

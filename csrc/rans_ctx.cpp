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
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "byteview.h"
#include "qmatmul.h"
#include "rans.h"

namespace py = pybind11;

namespace golfpack {

// rans_rows.cpp: one row of u = s + 128 symbols into b-bit packed fields, padding zeroed.
void pack_u_row(const uint8_t* u, uint64_t cols, int bits, uint8_t* dst, int64_t stride, bool avx2);

namespace rans_ctx {

using rans::Error;
using rans::kStateHigh;
using rans::kStateLow;
using rans::kWordBits;

constexpr int kMinP = 10, kMaxP = 15;
constexpr uint8_t kAbsent = 255;
// round(2^16 * 2^(-k/4)), k = 0..3 (README 2).
constexpr uint32_t kQuarterPow[4] = {65536, 55109, 46341, 38968};

// One table: freq/cum over 256 symbols (absent: 0) and the slot -> symbol map.
struct CtxTables {
  int P = 0;
  int T = 0;
  std::vector<uint32_t> freq;  // T * 256
  std::vector<uint32_t> info;  // T * 256: freq | cum << 16
  std::vector<uint8_t> lut;    // T * 2^P: slot -> symbol (only for P > 12)
  // P <= 12 (what the encoder writes): one lookup per symbol instead of two,
  // slot -> (freq - 1) | (slot - cum) << 12 | symbol << 24 (each field fits: freq <= 2^12).
  std::vector<uint32_t> entry;  // T * 2^P, empty when P > 12
};
constexpr int kPackedMaxP = 12;

// codes: T rows of W bytes for symbols lo .. lo+W-1 (README 1); writes T*256 frequencies.
void build_tables(const uint8_t* codes, int T, int lo, int W, int P, uint32_t* freq_out) {
  if (P < kMinP || P > kMaxP) throw Error("precision must be 10..15, got " + std::to_string(P));
  if (W < 1 || lo < 0 || lo + W > 256) throw Error("table alphabet out of range");
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
        throw Error("table " + std::to_string(t) + ": code " + std::to_string(v) +
                    " exceeds 4*P = " + std::to_string(4 * P));
      const uint64_t w = std::max<uint64_t>(1, (uint64_t(kQuarterPow[v & 3]) << P) >> (16 + (v >> 2)));
      f[lo + i] = uint32_t(w);
      sum += w;
      order.push_back(lo + i);
    }
    if (order.empty()) throw Error("table " + std::to_string(t) + " has no present symbol");
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
      if (cum + uint64_t(f[s]) > (1u << P)) throw Error("table " + std::to_string(k) + " sums past 2^P");
      t.info[size_t(k) * 256 + s] = f[s] | (cum << 16);
      if (packed) {  // slot cum + b: (freq - 1) | b << 12 | s << 24
        uint32_t* e = t.entry.data() + (size_t(k) << P) + cum;
        const uint32_t base = (f[s] - 1) | (uint32_t(s) << 24);
        for (uint32_t b = 0; b < f[s]; ++b) e[b] = base | (b << 12);
      } else {
        std::memset(t.lut.data() + (size_t(k) << P) + cum, s, f[s]);
      }
      cum += f[s];
    }
    if (cum != (1u << P)) throw Error("table " + std::to_string(k) + " does not sum to 2^P");
  }
  return t;
}

// Position -> table id, row-major (README): filled chunk by chunk. Each row class's row of table
// ids is built once (R x cols bytes, at most rows x cols = the output's size), so filling a chunk
// is memcpy of row pieces.
struct Contexts {
  uint64_t cols = 0;
  const uint8_t* row_class = nullptr;
  const uint8_t* col_class = nullptr;
  const uint8_t* map = nullptr;
  int C = 0;
  std::vector<uint8_t> by_class;  // [R][cols]: map[r * C + col_class[c]]
  void prepare(int R) {
    by_class.resize(size_t(R) * cols);
    for (int r = 0; r < R; ++r)
      for (uint64_t c = 0; c < cols; ++c) by_class[size_t(r) * cols + c] = map[size_t(r) * C + col_class[c]];
  }
  void fill(uint64_t i0, uint64_t n, uint8_t* out) const {
    uint64_t r = i0 / cols, c = i0 % cols;
    while (n) {
      const uint64_t take = std::min<uint64_t>(n, cols - c);
      std::memcpy(out, by_class.data() + size_t(row_class[r]) * cols + c, take);
      out += take;
      n -= take;
      c = 0;
      ++r;
    }
  }
};

inline uint64_t load_le32(const uint8_t* p) {
  return uint64_t(p[0]) | uint64_t(p[1]) << 8 | uint64_t(p[2]) << 16 | uint64_t(p[3]) << 24;
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
      out[i + j] = uint8_t(e >> 24);
      x[j] = uint64_t((e & 0xFFF) + 1) * (x[j] >> P) + ((e >> 12) & 0xFFF);
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
      throw Error("symbol " + std::to_string(sym[i]) + " at position " + std::to_string(i) +
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
    const uint64_t f = inf & 0xFFFF, cum = inf >> 16;
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
      if (size) throw Error(std::to_string(size) + " bytes in a stream of 0 symbols");
      return;
    }
    lanes_ = int(std::min<uint64_t>(uint64_t(lanes), count));
    if (size < 8 * size_t(lanes_))
      throw Error("truncated: " + std::to_string(size) + " payload bytes, need " + std::to_string(8 * lanes_) +
                  " for the initial states");
    if ((size - 8 * size_t(lanes_)) % 4) throw Error("payload word bytes are not a multiple of 4");
    for (int j = 0; j < lanes_; ++j) {
      x_[j] = load_le32(data + 8 * j) | load_le32(data + 8 * j + 4) << 32;
      if (x_[j] < kStateLow || x_[j] >= kStateHigh)
        throw Error("initial state of lane " + std::to_string(j) + " is outside [2^31, 2^63)");
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
        o[i] = uint8_t(e >> 24);
        x_[j] = uint64_t((e & 0xFFF) + 1) * (x_[j] >> P) + ((e >> 12) & 0xFFF);
      } else {
        const uint8_t s = tb_.lut[(t << P) + slot];
        const uint32_t inf = tb_.info[t * 256 + s];
        o[i] = s;
        x_[j] = (inf & 0xFFFF) * (x_[j] >> P) + slot - (inf >> 16);
      }
      if (x_[j] < kStateLow) {
        if (we_ - wp_ < 4) throw Error("truncated payload (needs more words)");
        x_[j] = (x_[j] << kWordBits) | load_le32(wp_);
        wp_ += 4;
      }
    }
    hasher_.update(o, n_);
    done_ += n_;
  }
  void finish() const {
    if (count_ == 0) return;
    if (wp_ != we_) throw Error(std::to_string(we_ - wp_) + " unread payload bytes after decoding");
    const uint64_t h = hasher_.finish();
    for (int j = 0; j < lanes_; ++j)
      if (x_[j] != kStateLow + rans::lane_tag(h, j))
        throw Error("final state of lane " + std::to_string(j) +
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
        if (p[k] < lo || p[k] > hi) throw Error("symbols outside the " + std::to_string(bits) + "-bit range");
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

}  // namespace rans_ctx

namespace {

template <typename T>
py::array_t<T, py::array::c_style> flat_array(const py::object& obj, const char* what) {
  if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(what) + ": expected a numpy array");
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<T>()))
    throw py::type_error(std::string(what) + ": expected dtype " + std::string(py::str(py::dtype::of<T>())) +
                         ", got " + std::string(py::str(a.dtype())));
  return py::array_t<T, py::array::c_style>::ensure(a);
}

struct Model {
  py::array_t<uint8_t, py::array::c_style> row_class, col_class, map;
  rans_ctx::Contexts ctx;
  rans_ctx::CtxTables tables;
};

// Validates every model array against rows x cols, R x C cells and T tables.
Model make_model(uint64_t count, uint64_t cols, const py::object& row_class, const py::object& col_class,
                 const py::object& map, int C, const py::object& freqs, int P) {
  Model m;
  m.row_class = flat_array<uint8_t>(row_class, "row_class");
  m.col_class = flat_array<uint8_t>(col_class, "col_class");
  m.map = flat_array<uint8_t>(map, "table_map");
  auto f = flat_array<uint32_t>(freqs, "freqs");
  if (cols == 0 || count % cols) throw py::value_error("rANS rc stream: count is not a multiple of cols");
  const uint64_t rows = count / cols;
  if (uint64_t(m.row_class.size()) != rows || uint64_t(m.col_class.size()) != cols)
    throw py::value_error("rANS rc stream: class arrays do not match rows x cols");
  if (C < 1 || m.map.size() % C) throw py::value_error("rANS rc stream: table_map is not R x C");
  const int R = int(m.map.size() / C);
  if (P < rans_ctx::kMinP || P > rans_ctx::kMaxP) throw py::value_error("rANS rc stream: precision must be 10..15");
  if (f.size() % 256 || f.size() == 0) throw py::value_error("rANS rc stream: freqs is not T x 256");
  const int T = int(f.size() / 256);
  auto all_below = [](const py::array_t<uint8_t, py::array::c_style>& a, int lim) {
    const uint8_t* p = a.data();
    return std::all_of(p, p + a.size(), [&](uint8_t v) { return int(v) < lim; });
  };
  if (!all_below(m.row_class, R) || !all_below(m.col_class, C) || !all_below(m.map, T))
    throw py::value_error("rANS rc stream: a class or table index is out of range");
  try {
    m.tables = rans_ctx::make_tables(f.data(), T, P);
  } catch (const rans::Error& e) {
    throw py::value_error(e.what());
  }
  m.ctx.cols = cols;
  m.ctx.row_class = m.row_class.data();
  m.ctx.col_class = m.col_class.data();
  m.ctx.map = m.map.data();
  m.ctx.C = C;
  m.ctx.prepare(R);
  return m;
}

int check_lanes(int lanes) {
  if (lanes != 1 && lanes != 2 && lanes != 4 && lanes != 8)
    throw py::value_error("lanes must be 1, 2, 4 or 8, got " + std::to_string(lanes));
  return lanes;
}

// ------------------------------------------------------------------ several streams at once
// rans_ctx_decode_rows: each worker keeps up to kInFlight streams decoding together, one piece
// of each per step. One stream's round is a chain of dependent steps (table lookups,
// multiplies, renormalization) that leaves the core mostly idle; the AVX2 loop over 2-4
// streams fills it (decode_ctx_rounds_avx2_multi). Streams that cannot use it (fewer lanes,
// P > 12, scalar ISA) decode their pieces alone in the same rotation.
constexpr int kInFlight = 4;

struct RowsJob {
  std::unique_ptr<ByteView> in;
  Model md;
  uint64_t count = 0, cols = 0;
  int bits = 0, lanes = 0;
  int64_t stride = 0;
  uint8_t* out = nullptr;
  std::string error;
};

void rows_worker(std::vector<RowsJob>& jobs, std::atomic<size_t>& next) {
  const bool avx2 = rans::uses_avx2(rans::resolved_isa());  // the row packing's loops
  struct Slot {
    RowsJob* job = nullptr;
    std::unique_ptr<rans_ctx::CtxStream> st;
    std::unique_ptr<rans_ctx::ToPackedRows> sink;
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
          s.st.reset(new rans_ctx::CtxStream(j.in->data(), j.in->size(), j.count, j.md.ctx, j.md.tables, j.lanes));
          s.sink.reset(new rans_ctx::ToPackedRows(j.cols, j.bits, j.out, j.stride, avx2, j.md.tables));
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

py::list decode_rows_py(const py::sequence& specs, int threads) {
  if (threads < 1) throw py::value_error("threads must be >= 1, got " + std::to_string(threads));
  std::vector<RowsJob> jobs(specs.size());
  std::vector<py::object> arrays(jobs.size());
  for (size_t k = 0; k < jobs.size(); ++k) {
    py::sequence spec = py::reinterpret_borrow<py::sequence>(specs[k]);
    if (spec.size() != 11)
      throw py::value_error("each job must be (data, count, cols, row_class, col_class, table_map, C, freqs, P, "
                            "lanes, bits)");
    RowsJob& j = jobs[k];
    j.in.reset(new ByteView(spec[0], "rANS rc payload"));
    j.count = py::cast<uint64_t>(spec[1]);
    j.cols = py::cast<uint64_t>(spec[2]);
    const int C = py::cast<int>(spec[6]), P = py::cast<int>(spec[8]);
    j.lanes = check_lanes(py::cast<int>(spec[9]));
    j.bits = py::cast<int>(spec[10]);
    if (j.count > (uint64_t(1) << 30)) throw py::value_error("rANS rc stream: count exceeds 2^30");
    if (j.bits < 2 || j.bits > 8) throw py::value_error("bits must be 2..8");
    try {  // the model's own problems are this stream's error, like its payload's
      j.md = make_model(j.count, j.cols, spec[3], spec[4], spec[5], C, spec[7], P);
    } catch (const py::value_error& e) {
      j.error = e.what();
      arrays[k] = py::none();
      continue;
    }
    j.stride = qlayout::packed_row_stride(int64_t(j.cols), j.bits);
    py::array_t<uint8_t> a({py::ssize_t(j.count / j.cols), py::ssize_t(j.stride)});
    j.out = a.mutable_data();
    arrays[k] = a;
  }
  {
    py::gil_scoped_release nogil;
    std::atomic<size_t> next{0};
    rans::run_workers(threads, jobs.size(), [&] { rows_worker(jobs, next); });
  }
  py::list results;
  for (size_t k = 0; k < jobs.size(); ++k) {
    if (!jobs[k].error.empty())
      results.append(py::str(jobs[k].error));
    else
      results.append(arrays[k]);
  }
  return results;
}

}  // namespace

void register_rans_ctx(py::module_& m) {
  m.def("rans_ctx_decode_rows", &decode_rows_py, py::arg("jobs"), py::arg("threads") = 1,
        "rans_ctx_decode_rows(jobs: [(payload, count, cols, row_class, col_class, table_map, C, freqs, P,\n"
        "lanes, bits)], threads: int = 1) -> list\n\n"
        "rans_ctx_decode_packed for several streams: each result is the packed rows array, or a str\n"
        "naming the problem of that stream (the others still decode). Streams are interleaved 4 at a\n"
        "time per worker (AVX2) and shared among `threads` workers; the GIL is released while decoding.\n"
        "Arguments of the wrong type or range (lanes, bits, count) raise before anything is decoded.");
  m.def("rans_ctx_tables", [](const py::object& codes, int T, int lo, int P) {
    auto c = flat_array<uint8_t>(codes, "codes");
    if (T < 1 || c.size() % T) throw py::value_error("rANS rc stream: codes is not T x W");
    const int W = int(c.size() / T);
    py::array_t<uint32_t> out{py::ssize_t(T) * 256};
    try {
      rans_ctx::build_tables(c.data(), T, lo, W, P, out.mutable_data());
    } catch (const rans::Error& e) {
      throw py::value_error(e.what());
    }
    return out;
  }, py::arg("codes"), py::arg("T"), py::arg("lo"), py::arg("P"),
        "rans_ctx_tables(codes: uint8[T*W], T, lo, P) -> uint32[T*256]\n\n"
        "The frequencies (summing to 2^P per table) that T quantized code-length tables stand for\n"
        "(RANS.md 6.2; integer only, so encoder and decoder agree on every platform).");
  m.def("rans_ctx_encode", [](const py::object& symbols, uint64_t cols, const py::object& row_class,
                              const py::object& col_class, const py::object& map, int C,
                              const py::object& freqs, int P, int lanes) {
    auto s = flat_array<uint8_t>(symbols, "symbols");
    Model md = make_model(uint64_t(s.size()), cols, row_class, col_class, map, C, freqs, P);
    check_lanes(lanes);
    std::vector<uint8_t> out;
    try {
      py::gil_scoped_release nogil;
      out = rans_ctx::encode(s.data(), uint64_t(s.size()), md.ctx, md.tables, lanes);
    } catch (const rans::Error& e) {
      throw py::value_error(e.what());
    }
    return py::bytes(reinterpret_cast<const char*>(out.data()), out.size());
  }, py::arg("symbols"), py::arg("cols"), py::arg("row_class"), py::arg("col_class"), py::arg("table_map"),
        py::arg("C"), py::arg("freqs"), py::arg("P"), py::arg("lanes"),
        "rans_ctx_encode(symbols: uint8[rows*cols], cols, row_class: uint8[rows], col_class: uint8[cols],\n"
        "table_map: uint8[R*C], C, freqs: uint32[T*256], P, lanes) -> bytes (states + words)");
  m.def("rans_ctx_decode", [](const py::object& data, uint64_t count, uint64_t cols, const py::object& row_class,
                              const py::object& col_class, const py::object& map, int C,
                              const py::object& freqs, int P, int lanes) {
    if (count > (uint64_t(1) << 30)) throw py::value_error("rANS rc stream: count exceeds 2^30");
    ByteView in(data, "rANS rc payload");
    Model md = make_model(count, cols, row_class, col_class, map, C, freqs, P);
    check_lanes(lanes);
    py::array_t<uint8_t> out{py::ssize_t(count)};
    uint8_t* o = out.mutable_data();
    try {
      py::gil_scoped_release nogil;
      rans_ctx::ToArray sink{o};
      rans_ctx::decode(in.data(), in.size(), count, md.ctx, md.tables, lanes, sink);
    } catch (const rans::Error& e) {
      throw py::value_error(e.what());
    }
    return out;
  }, py::arg("data"), py::arg("count"), py::arg("cols"), py::arg("row_class"), py::arg("col_class"),
        py::arg("table_map"), py::arg("C"), py::arg("freqs"), py::arg("P"), py::arg("lanes"),
        "Inverse of rans_ctx_encode; validates the payload fully (ValueError 'rANS stream: ...').");
  m.def("rans_ctx_decode_packed", [](const py::object& data, uint64_t count, uint64_t cols, const py::object& row_class,
                                     const py::object& col_class, const py::object& map, int C,
                                     const py::object& freqs, int P, int lanes, int bits) {
    if (count > (uint64_t(1) << 30)) throw py::value_error("rANS rc stream: count exceeds 2^30");
    if (bits < 2 || bits > 8) throw py::value_error("bits must be 2..8");
    ByteView in(data, "rANS rc payload");
    Model md = make_model(count, cols, row_class, col_class, map, C, freqs, P);
    check_lanes(lanes);
    const uint64_t rows = count / cols;
    const int64_t stride = qlayout::packed_row_stride(int64_t(cols), bits);
    py::array_t<uint8_t> out({py::ssize_t(rows), py::ssize_t(stride)});
    try {
      py::gil_scoped_release nogil;
      rans_ctx::ToPackedRows sink(cols, bits, out.mutable_data(), stride, rans::uses_avx2(rans::resolved_isa()),
                                  md.tables);
      rans_ctx::decode(in.data(), in.size(), count, md.ctx, md.tables, lanes, sink);
    } catch (const rans::Error& e) {
      throw py::value_error(e.what());
    }
    return out;
  }, py::arg("data"), py::arg("count"), py::arg("cols"), py::arg("row_class"), py::arg("col_class"),
        py::arg("table_map"), py::arg("C"), py::arg("freqs"), py::arg("P"), py::arg("lanes"), py::arg("bits"),
        "rans_ctx_decode followed by qpack_rows(symbols - 128, bits), without the int8 array: rows\n"
        "[count/cols, packed_row_stride(cols, bits)]. Symbols outside b bits raise ValueError.");
}

}  // namespace golfpack

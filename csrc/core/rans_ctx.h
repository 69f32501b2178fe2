// rans_ctx.h: the rans_rc payload coder (rans_ctx.cpp; format csrc/RANS.md section 6): one
// static table per (row class, column class) cell.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "rans.h"

namespace golfpack {
namespace rans_ctx {

constexpr int kMinP = 10, kMaxP = 15;
constexpr uint8_t kAbsent = 255;
// round(2^16 * 2^(-k/4)), k = 0..3 (README 2).
constexpr uint32_t kQuarterPow[4] = {65536, 55109, 46341, 38968};

// One table: freq/cum over 256 symbols (absent: 0) and the slot -> symbol map.
struct CtxTables {
  int P = 0;
  int T = 0;
  std::vector<uint32_t> freq;  // T * 256
  std::vector<uint32_t> info;  // T * 256: rans::FreqCumEntry
  std::vector<uint8_t> lut;    // T * 2^P: slot -> symbol (only for P > 12)
  // P <= 12 (what the encoder writes): one lookup per symbol instead of two,
  // slot -> rans::SlotEntry32 (each field fits: freq <= 2^12).
  std::vector<uint32_t> entry;  // T * 2^P, empty when P > 12
};
constexpr int kPackedMaxP = rans::SlotEntry32::kMaxP32;
static_assert(kMaxP <= rans::kMaxPrecision, "rans_rc tables use rans::FreqCumEntry, sized for kMaxPrecision");

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


// codes: T rows of W bytes for symbols lo .. lo+W-1 (RANS.md 6.2); writes T*256 frequencies.
void build_tables(const uint8_t* codes, int T, int lo, int W, int P, uint32_t* freq_out);
// Validated decode tables for T frequency rows (each summing to 2^P); throws rans::Error.
CtxTables make_tables(const uint32_t* freq, int T, int P);

// A stream's context model: the class arrays (caller-owned; set ctx.row_class, ctx.col_class,
// ctx.map and ctx.C first) and the tables built by validate_model.
struct Model {
  Contexts ctx;
  CtxTables tables;
};
// Checks every model array against rows x cols, R x C cells and T tables, then builds the
// tables and the context rows. Throws std::invalid_argument ("rANS rc stream: ...").
void validate_model(Model& m, uint64_t count, uint64_t cols, size_t n_row_class, size_t n_col_class, size_t n_map,
                    const uint32_t* freqs, size_t n_freqs, int P);

// States + words for `count` symbols (RANS.md 6.4); throws rans::Error.
std::vector<uint8_t> encode(const uint8_t* sym, uint64_t count, const Contexts& ctx, const CtxTables& tb, int lanes);
// Decodes `count` symbols into out[count], or straight into packed rows out[count/cols][stride]
// (symbols outside b bits are an error); throws rans::Error naming the problem.
void decode_to_array(const uint8_t* data, size_t size, uint64_t count, const Model& m, int lanes, uint8_t* out);
void decode_to_packed(const uint8_t* data, size_t size, uint64_t count, const Model& m, int lanes, int bits,
                      uint8_t* out, int64_t stride);

// One stream of rans_ctx_decode_rows.
struct RowsJob {
  const uint8_t* data = nullptr;  // caller-owned payload
  size_t size = 0;
  Model md;
  uint64_t count = 0, cols = 0;
  int bits = 0, lanes = 0;
  int64_t stride = 0;
  uint8_t* out = nullptr;
  std::string error;  // set before decode_rows: skipped; after: this stream failed
};
// Decodes every job without an error, `threads` workers sharing the list (clamped).
void decode_rows(std::vector<RowsJob>& jobs, int threads);

}  // namespace rans_ctx
}  // namespace golfpack

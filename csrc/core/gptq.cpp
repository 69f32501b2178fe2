// GPTQ's in-block column loop (codec/gptq.py, _column_loop), one row at a time.
//
// READ ME FIRST
// - Rows are independent under GPTQ: row r's rounding error only moves later columns of row r.
//   So the loop over the block's columns runs per row, on a row slice of at most 128 doubles
//   that stays in L1, and rows are split across threads. The Python loop it replaces walks the
//   columns for all rows at once and streams the whole [rows, block] slab through memory once
//   per column (block_size times per block); here it is read once.
// - The arithmetic is the Python reference's, operation for operation, so the symbols are
//   bit-identical (tests/test_gptq.py compares them): q = clamp(nearbyint(w / s), -qmax, qmax)
//   with the default round-half-to-even mode (torch.round), e = (w - q * s) / u_ii, then
//   w_j -= e * u_ij for the later columns of the block. FMA contraction would change the last bit
//   of those products, so this file is compiled with -ffp-contract=off (CMakeLists.txt) and the
//   functions carry the same request.
// - The lazy update of the columns after the block is a matrix product and stays in torch.
#include "gptq.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "common.h"

#ifdef GOLFPACK_OPENMP
#include <omp.h>
#endif

namespace golfpack {
namespace {

__attribute__((optimize("fp-contract=off")))
void block_row(double* w, const double* s, double qm, const double* U, double* q, double* e, int64_t B) {
  for (int64_t i = 0; i < B; ++i) {
    double qi = std::nearbyint(w[i] / s[i]);
    qi = std::min(std::max(qi, -qm), qm);
    q[i] = qi;
    const double err = (w[i] - qi * s[i]) / U[i * B + i];
    e[i] = err;
    const double* u = U + i * B;
    for (int64_t j = i + 1; j < B; ++j) w[j] -= err * u[j];
  }
}

}  // namespace

void gptq_block(double* w, const double* s, const double* qmax, const double* U, double* q, double* e, int64_t R,
                int64_t B, int threads) {
#ifdef GOLFPACK_OPENMP
  const int t = clamp_threads(threads, R, omp_get_max_threads());
#pragma omp parallel for num_threads(t) schedule(static)
#else
  (void)threads;
#endif
  for (int64_t r = 0; r < R; ++r) block_row(w + r * B, s + r * B, qmax[r], U, q + r * B, e + r * B, B);
}

}  // namespace golfpack

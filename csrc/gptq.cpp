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
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>

#ifdef GOLFPACK_OPENMP
#include <omp.h>
#endif

namespace py = pybind11;

namespace golfpack {
namespace {

using F64 = py::array_t<double, py::array::c_style>;

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

int clamp_threads(int threads, int64_t rows) {
#ifdef GOLFPACK_OPENMP
  const int hw = std::max(1, int(std::thread::hardware_concurrency()));
  int t = threads > 0 ? std::min(threads, hw) : omp_get_max_threads();
  t = std::min(t, hw);
  return int(std::max<int64_t>(1, std::min<int64_t>(t, rows)));
#else
  (void)threads; (void)rows;
  return 1;
#endif
}

void check2(const F64& a, int64_t r, int64_t c, const char* what) {
  if (a.ndim() != 2 || a.shape(0) != r || a.shape(1) != c)
    throw std::invalid_argument(std::string(what) + " must be a C-contiguous float64 array of shape [" +
                                std::to_string(r) + ", " + std::to_string(c) + "]");
}

// W1 [R, B] (updated in place), S1 [R, B] scales, qmax [R], U1 [B, B]; returns (Q1, E1) [R, B].
py::tuple gptq_block_f64(F64 W1, const F64& S1, const F64& qmax, const F64& U1, int threads) {
  if (W1.ndim() != 2) throw std::invalid_argument("W must be a 2-D float64 array [R, B]");
  const int64_t R = W1.shape(0), B = W1.shape(1);
  if (!W1.writeable()) throw std::invalid_argument("W must be writeable");
  check2(S1, R, B, "S");
  check2(U1, B, B, "U");
  if (qmax.ndim() != 1 || qmax.shape(0) != R) throw std::invalid_argument("qmax must be float64 [R]");
  F64 Q({R, B}), E({R, B});
  double* w = W1.mutable_data();
  const double* s = S1.data();
  const double* qm = qmax.data();
  const double* u = U1.data();
  double* q = Q.mutable_data();
  double* e = E.mutable_data();
  const int t = clamp_threads(threads, R);
  {
    py::gil_scoped_release release;
#ifdef GOLFPACK_OPENMP
#pragma omp parallel for num_threads(t) schedule(static)
#endif
    for (int64_t r = 0; r < R; ++r) block_row(w + r * B, s + r * B, qm[r], u, q + r * B, e + r * B, B);
  }
  return py::make_tuple(Q, E);
}

}  // namespace

void register_gptq(py::module_& m) {
  m.def("gptq_block_f64", &gptq_block_f64, py::arg("W"), py::arg("S"), py::arg("qmax"), py::arg("U"),
        py::arg("threads") = 0,
        "GPTQ's in-block column loop on W [R, B] (in place) with scales S [R, B], per-row qmax [R] and "
        "the block's upper Cholesky factor U [B, B]: returns (symbols, scaled errors), each [R, B] float64.");
}

}  // namespace golfpack

// gptq_py.cpp: golfpack._C.gptq_block_f64 (csrc/core/gptq.h).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "gptq.h"

namespace py = pybind11;

namespace golfpack {
namespace {

using F64 = py::array_t<double, py::array::c_style>;

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
  {
    py::gil_scoped_release release;
    gptq_block(w, s, qm, u, q, e, R, B, threads);
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

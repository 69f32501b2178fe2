// qmatmul_py.cpp: the dequant-matmul bindings (csrc/core/qgemm.h, layout csrc/core/qmatmul.h) and
// the CUDA launchers when built. Every argument is checked here (dtype, shape, contiguity,
// aliasing, sizes that would overflow) before the GIL is released and the core runs.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "common.h"
#include "qgemm.h"
#include "qmatmul.h"
#ifdef GOLFPACK_WITH_CUDA
#include "cuda/qmatmul.cuh"
#endif

namespace py = pybind11;

namespace golfpack {
namespace {

using namespace qlayout;

// ---------------------------------------------------------------- argument checks

// The row stride for K symbols of `bits` bits, after the checks that keep it exact: bits in
// 2..8, 0 <= K <= kMaxRowSymbols (K*bits cannot overflow; issue 20: K >= 2^60 used to wrap to a
// 0 or negative stride that an empty array then matched).
int64_t row_stride(int64_t K, int bits) {
  check_bits(bits);
  if (K < 0) throw py::value_error("K must be >= 0, got " + std::to_string(K));
  if (K > kMaxRowSymbols)
    throw py::value_error("K = " + std::to_string(K) + " exceeds the packed-row limit of 2^56 symbols");
  return packed_row_stride(K, bits);
}

template <class T>
const char* dtype_name() {
  if (std::is_same<T, float>::value) return "float32";
  if (std::is_same<T, uint8_t>::value) return "uint8";
  if (std::is_same<T, int8_t>::value) return "int8";
  return "?";
}

// Checks dtype, C-contiguity and shape (-1 = any) of an array argument.
template <class T>
void check_array(const py::array& a, const char* name, std::initializer_list<int64_t> shape) {
  if (!a.dtype().is(py::dtype::of<T>()))
    throw py::type_error(std::string(name) + " must have dtype " + dtype_name<T>() + ", got " +
                         std::string(py::str(a.dtype())));
  if (a.ndim() != static_cast<py::ssize_t>(shape.size()))
    throw py::value_error(std::string(name) + " must have " + std::to_string(shape.size()) + " dimensions, got " +
                          std::to_string(a.ndim()));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + " must be C-contiguous");
  int d = 0;
  for (int64_t want : shape) {
    if (want >= 0 && a.shape(d) != want)
      throw py::value_error(std::string(name) + ": dimension " + std::to_string(d) + " is " +
                            std::to_string(a.shape(d)) + ", expected " + std::to_string(want));
    ++d;
  }
}

struct Packed {
  const uint8_t* data;
  const float* scales;
  int64_t N, stride;
};

Packed check_packed(const py::array& packed, const py::array& scales, int bits, int64_t K) {
  const int64_t stride = row_stride(K, bits);
  check_array<uint8_t>(packed, "packed", {-1, stride});
  const int64_t N = packed.shape(0);
  check_array<float>(scales, "scales", {N});
  return {static_cast<const uint8_t*>(packed.data()), static_cast<const float*>(scales.data()), N, stride};
}

bool overlaps(const py::array& a, const py::array& b) {
  const auto* a0 = static_cast<const char*>(a.data());
  const auto* b0 = static_cast<const char*>(b.data());
  return a.nbytes() > 0 && b.nbytes() > 0 && a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

// Output array: the caller's `out` (checked: float32, C-contiguous, writable,
// right shape, not aliasing an input) or a fresh one.
py::array_t<float> make_out(const py::object& out, int64_t rows, int64_t cols,
                            std::initializer_list<const py::array*> inputs) {
  if (out.is_none()) return py::array_t<float>({rows, cols});
  if (!py::isinstance<py::array>(out)) throw py::type_error("out must be a numpy float32 array or None");
  py::array o = py::reinterpret_borrow<py::array>(out);
  check_array<float>(o, "out", {rows, cols});
  if (!o.writeable()) throw py::value_error("out must be writable");
  for (const py::array* in : inputs)
    if (overlaps(o, *in)) throw py::value_error("out must not overlap an input array");
  return py::reinterpret_borrow<py::array_t<float>>(o);
}

// ---------------------------------------------------------------- bindings

py::array_t<float> qgemm_f32(const py::array& x, const py::array& packed, const py::array& scales, int bits,
                             int64_t K, const py::object& out, int threads) {
  const Packed w = check_packed(packed, scales, bits, K);
  check_array<float>(x, "x", {-1, K});
  const int64_t M = x.shape(0);
  py::array_t<float> y = make_out(out, M, w.N, {&x, &packed, &scales});
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release release;
    qgemm::forward(static_cast<const float*>(x.data()), M, K, w.data, w.stride, w.scales, w.N, bits, yp, threads);
  }
  return y;
}

py::array_t<float> qgemm_t_f32(const py::array& gy, const py::array& packed, const py::array& scales, int bits,
                               int64_t K, const py::object& out, int threads) {
  const Packed w = check_packed(packed, scales, bits, K);
  check_array<float>(gy, "gy", {-1, w.N});
  const int64_t M = gy.shape(0);
  py::array_t<float> gx = make_out(out, M, K, {&gy, &packed, &scales});
  float* gp = gx.mutable_data();
  {
    py::gil_scoped_release release;
    qgemm::transposed(static_cast<const float*>(gy.data()), M, w.N, w.data, w.stride, w.scales, K, bits, gp, threads);
  }
  return gx;
}

py::array_t<float> dequant_rows(const py::array& packed, const py::array& scales, int bits, int64_t K,
                                int64_t row_begin, int64_t row_end, const py::object& out, int threads) {
  const Packed w = check_packed(packed, scales, bits, K);
  if (row_begin < 0 || row_end < row_begin || row_end > w.N)
    throw py::value_error("row range [" + std::to_string(row_begin) + ", " + std::to_string(row_end) +
                          ") is not inside [0, " + std::to_string(w.N) + ")");
  py::array_t<float> o = make_out(out, row_end - row_begin, K, {&packed, &scales});
  float* op = o.mutable_data();
  {
    py::gil_scoped_release release;
    qgemm::dequant_rows(w.data, w.stride, w.scales, w.N, K, bits, row_begin, row_end, op, threads);
  }
  return o;
}

py::array_t<float> qgemm_f32_ref(const py::array& x, const py::array& packed, const py::array& scales, int bits,
                                 int64_t K) {
  const Packed w = check_packed(packed, scales, bits, K);
  check_array<float>(x, "x", {-1, K});
  const int64_t M = x.shape(0);
  py::array_t<float> y({M, w.N});
  float* yp = y.mutable_data();
  py::gil_scoped_release release;
  qgemm::forward_ref(static_cast<const float*>(x.data()), M, K, w.data, w.stride, w.scales, w.N, bits, yp);
  return y;
}

py::array_t<float> qgemm_t_f32_ref(const py::array& gy, const py::array& packed, const py::array& scales, int bits,
                                   int64_t K) {
  const Packed w = check_packed(packed, scales, bits, K);
  check_array<float>(gy, "gy", {-1, w.N});
  const int64_t M = gy.shape(0);
  py::array_t<float> gx({M, K});
  float* gp = gx.mutable_data();
  py::gil_scoped_release release;
  qgemm::transposed_ref(static_cast<const float*>(gy.data()), M, w.N, w.data, w.stride, w.scales, K, bits, gp);
  return gx;
}

// Symbols int8 [N, K] -> packed uint8 [N, stride] (the layout of qmatmul.h).
py::array_t<uint8_t> qpack_rows(const py::array& symbols, int bits) {
  check_bits(bits);
  check_array<int8_t>(symbols, "symbols", {-1, -1});
  const int64_t N = symbols.shape(0), K = symbols.shape(1);
  const int64_t stride = row_stride(K, bits);
  const auto* q = static_cast<const int8_t*>(symbols.data());
  qgemm::check_symbols(q, N, K, bits);
  py::array_t<uint8_t> out({N, stride});
  qgemm::pack_rows(q, N, K, bits, out.mutable_data());
  return out;
}

// Packed [N, stride] -> symbols int8 [N, K] (tests and debugging).
py::array_t<int8_t> qunpack_rows(const py::array& packed, int bits, int64_t K) {
  check_bits(bits);
  if (K < 0) throw py::value_error("K must be >= 0, got " + std::to_string(K));
  const int64_t stride = row_stride(K, bits);
  check_array<uint8_t>(packed, "packed", {-1, stride});
  const int64_t N = packed.shape(0);
  py::array_t<int8_t> out({N, K});
  qgemm::unpack_rows(static_cast<const uint8_t*>(packed.data()), N, K, bits, out.mutable_data());
  return out;
}

#ifdef GOLFPACK_WITH_CUDA
cuda::DType parse_dtype(const std::string& s) {
  if (s == "float32") return cuda::DType::kF32;
  if (s == "float16") return cuda::DType::kF16;
  if (s == "bfloat16") return cuda::DType::kBF16;
  throw py::value_error("CUDA dtype must be float32, float16 or bfloat16, got '" + s + "'");
}
#endif

}  // namespace

void register_qmatmul(py::module_& m) {
  m.attr("QMATMUL_ROW_ALIGN") = kRowAlign;
  m.def("qrow_stride", [](int64_t K, int bits) { return row_stride(K, bits); }, py::arg("K"), py::arg("bits"), "Row stride in bytes of the packed layout (ceil(K*bits/8) rounded up to 16).");
  m.def("qpack_rows", &qpack_rows, py::arg("symbols"), py::arg("bits"),
        "Pack int8 symbols [N,K] into the row-padded LSB-first layout uint8 [N, qrow_stride(K,bits)].");
  m.def("qunpack_rows", &qunpack_rows, py::arg("packed"), py::arg("bits"), py::arg("K"),
        "Inverse of qpack_rows: int8 symbols [N,K].");
  m.def("qgemm_f32", &qgemm_f32, py::arg("x"), py::arg("packed"), py::arg("scales"), py::arg("bits"), py::arg("K"),
        py::arg("out") = py::none(), py::arg("threads") = 0,
        "y[M,N] = x[M,K] . W_hat^T with W_hat[n,k] = q[n,k]*scales[n]; threads<=0: OpenMP default.");
  m.def("qgemm_t_f32", &qgemm_t_f32, py::arg("gy"), py::arg("packed"), py::arg("scales"), py::arg("bits"),
        py::arg("K"), py::arg("out") = py::none(), py::arg("threads") = 0,
        "gx[M,K] = gy[M,N] . W_hat (the input gradient of qgemm_f32).");
  m.def("dequant_rows", &dequant_rows, py::arg("packed"), py::arg("scales"), py::arg("bits"), py::arg("K"),
        py::arg("row_begin"), py::arg("row_end"), py::arg("out") = py::none(), py::arg("threads") = 0,
        "W_hat[row_begin:row_end, :] as float32 [rows, K].");
  m.def("qgemm_f32_ref", &qgemm_f32_ref, py::arg("x"), py::arg("packed"), py::arg("scales"), py::arg("bits"),
        py::arg("K"), "Scalar reference of qgemm_f32 (double accumulation).");
  m.def("qgemm_t_f32_ref", &qgemm_t_f32_ref, py::arg("gy"), py::arg("packed"), py::arg("scales"), py::arg("bits"),
        py::arg("K"), "Scalar reference of qgemm_t_f32 (double accumulation).");
  m.def("qmatmul_cpu_isa", []() { return std::string(qgemm::cpu_isa()); },
        "Which compiled variant of the CPU kernels runs on this machine.");

#ifdef GOLFPACK_WITH_CUDA
  // Raw-pointer launchers (the extension does not link libtorch): the Python
  // wrapper passes tensor.data_ptr() values and the current stream handle.
  m.def("qgemm_cuda",
        [](uintptr_t x, const std::string& dtype, int64_t M, int64_t K, uintptr_t packed, int64_t stride,
           uintptr_t scales, int bits, int64_t N, uintptr_t out, uintptr_t stream, int algo) {
          const cuda::DType dt = parse_dtype(dtype);
          py::gil_scoped_release release;
          cuda::qgemm(x, dt, M, K, packed, stride, scales, bits, N, out, stream, algo);
        },
        py::arg("x_ptr"), py::arg("dtype"), py::arg("M"), py::arg("K"), py::arg("packed_ptr"), py::arg("stride"),
        py::arg("scales_ptr"), py::arg("bits"), py::arg("N"), py::arg("out_ptr"), py::arg("stream"),
        py::arg("algo") = 0,
        "out[M,N] (dtype of x) = x[M,K] . W_hat^T on the GPU; algo 0 auto, 1 tiled, 2 small-M (M<=16).");
  m.def("qgemm_t_cuda",
        [](uintptr_t gy, const std::string& dtype, int64_t M, int64_t N, uintptr_t packed, int64_t stride,
           uintptr_t scales, int bits, int64_t K, uintptr_t out, uintptr_t stream) {
          const cuda::DType dt = parse_dtype(dtype);
          py::gil_scoped_release release;
          cuda::qgemm_t(gy, dt, M, N, packed, stride, scales, bits, K, out, stream);
        },
        py::arg("gy_ptr"), py::arg("dtype"), py::arg("M"), py::arg("N"), py::arg("packed_ptr"), py::arg("stride"),
        py::arg("scales_ptr"), py::arg("bits"), py::arg("K"), py::arg("out_ptr"), py::arg("stream"),
        "out[M,K] (dtype of gy) = gy[M,N] . W_hat on the GPU.");
  m.def("dequant_rows_cuda",
        [](uintptr_t packed, int64_t stride, uintptr_t scales, int bits, int64_t K, int64_t row_begin,
           int64_t row_end, uintptr_t out, const std::string& dtype, uintptr_t stream) {
          const cuda::DType dt = parse_dtype(dtype);
          py::gil_scoped_release release;
          cuda::dequant_rows(packed, stride, scales, bits, K, row_begin, row_end, out, dt, stream);
        },
        py::arg("packed_ptr"), py::arg("stride"), py::arg("scales_ptr"), py::arg("bits"), py::arg("K"),
        py::arg("row_begin"), py::arg("row_end"), py::arg("out_ptr"), py::arg("dtype"), py::arg("stream"),
        "out[rows,K] = W_hat[row_begin:row_end, :] in dtype on the GPU.");
#endif
}

}  // namespace golfpack

// golfpack._C: the native core. Each capability lives in its own translation
// unit and registers its functions here; module.cpp only wires them together.
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace golfpack {
void register_bitpack(py::module_& m);  // bitpack.cpp
void register_rans(py::module_& m);     // rans.cpp
void register_rans_rows(py::module_& m);  // rans_rows.cpp (rANS straight into packed rows)
void register_rans_ctx(py::module_& m);
void register_rans_x32(py::module_& m);   // rans_x32.cpp (32 narrow lanes: the fast-decode coder)   // rans_ctx.cpp (per-cell tables: the rans_rc coder)
void register_crc32(py::module_& m);      // crc32.cpp (zlib-compatible CRC-32, PCLMULQDQ)
void register_qmatmul(py::module_& m);  // qmatmul.cpp (CPU dequant-matmul; CUDA launchers when built)
void register_gptq(py::module_& m);     // gptq.cpp (GPTQ's in-block column loop)
}  // namespace golfpack

PYBIND11_MODULE(_C, m) {
  m.doc() = "golfpack native core: bit-packing, rANS, dequant-matmul";
#ifdef GOLFPACK_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  golfpack::register_bitpack(m);
  golfpack::register_rans(m);
  golfpack::register_rans_rows(m);
  golfpack::register_rans_ctx(m);
  golfpack::register_rans_x32(m);
  golfpack::register_crc32(m);
  golfpack::register_qmatmul(m);
  golfpack::register_gptq(m);
}

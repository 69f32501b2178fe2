// crc32_py.cpp: golfpack._C.crc32 and crc32_simd (csrc/core/crc32.h).
#include <pybind11/pybind11.h>

#include "byteview.h"
#include "common.h"
#include "crc32.h"

namespace py = pybind11;

namespace golfpack {

void register_crc32(py::module_& m) {
  m.def("crc32", [](const py::object& data, uint32_t value) {
    ByteView in(data, "data");
    if (in.size() >= (size_t(1) << 20)) {
      py::gil_scoped_release nogil;
      return crc32(value, in.data(), in.size());
    }
    return crc32(value, in.data(), in.size());
  }, py::arg("data"), py::arg("value") = 0,
        "crc32(data, value=0) -> int: the same CRC-32 as zlib.crc32, with PCLMULQDQ folding when\n"
        "the CPU has it (crc32_simd). Releases the GIL for buffers of 1 MiB and more.");
  m.attr("crc32_simd") = cpu_has_clmul();
}

}  // namespace golfpack

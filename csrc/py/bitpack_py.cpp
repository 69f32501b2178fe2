// bitpack_py.cpp: Python bindings of the bit-packer (csrc/core/bitpack.h).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "bitpack.h"
#include "byteview.h"
#include "common.h"

namespace py = pybind11;

namespace golfpack {

namespace {

// Below this many symbols the GIL round trip costs more than it frees.
constexpr size_t kReleaseGilAt = size_t(1) << 16;

py::array_t<int8_t, py::array::c_style> as_int8_vector(const py::object& obj) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error("symbols: expected a 1-D numpy int8 array");
  py::array arr = py::reinterpret_borrow<py::array>(obj);
  if (!arr.dtype().is(py::dtype::of<int8_t>()))
    throw py::type_error("symbols: expected dtype int8, got " +
                         std::string(py::str(arr.dtype())));
  if (arr.ndim() != 1)
    throw py::value_error("symbols: expected a 1-D array, got " + std::to_string(arr.ndim()) +
                          " dimensions");
  return py::array_t<int8_t, py::array::c_style>::ensure(arr);  // copies only if strided
}

template <bool kRef>
py::array_t<uint8_t> pack_py(const py::object& symbols, int bits) {
  check_bits(bits);
  auto arr = as_int8_vector(symbols);
  const int8_t* s = arr.data();
  const size_t n = size_t(arr.size());
  const size_t bad = bitpack::first_out_of_range(s, n, bits);
  if (bad != n)
    throw py::value_error("symbol " + std::to_string(int(s[bad])) + " at index " +
                          std::to_string(bad) + " does not fit in " + std::to_string(bits) +
                          " bits (range " + std::to_string(-(1 << (bits - 1))) + ".." +
                          std::to_string((1 << (bits - 1)) - 1) + ")");
  py::array_t<uint8_t> out{py::ssize_t(bitpack::packed_size(n, bits))};
  uint8_t* o = out.mutable_data();
  if (n >= kReleaseGilAt) {
    py::gil_scoped_release nogil;
    kRef ? bitpack::pack_ref(s, n, bits, o) : bitpack::pack(s, n, bits, o);
  } else {
    kRef ? bitpack::pack_ref(s, n, bits, o) : bitpack::pack(s, n, bits, o);
  }
  return out;
}

template <bool kRef>
py::array_t<int8_t> unpack_py(const py::object& packed, int bits, int64_t count) {
  check_bits(bits);
  if (count < 0) throw py::value_error("count must be >= 0, got " + std::to_string(count));
  if (uint64_t(count) > bitpack::kMaxCount)
    throw py::value_error("count " + std::to_string(count) + " is larger than the maximum 2^56");
  ByteView in(packed, "packed");
  const size_t n = size_t(count);
  const size_t need = bitpack::packed_size(n, bits);
  if (in.size() < need)
    throw py::value_error("packed buffer too short: " + std::to_string(count) + " symbols of " +
                          std::to_string(bits) + " bits need " + std::to_string(need) +
                          " bytes, got " + std::to_string(in.size()));
  py::array_t<int8_t> out{py::ssize_t(n)};
  int8_t* o = out.mutable_data();
  if (n >= kReleaseGilAt) {
    py::gil_scoped_release nogil;
    kRef ? bitpack::unpack_ref(in.data(), n, bits, o) : bitpack::unpack(in.data(), n, bits, o);
  } else {
    kRef ? bitpack::unpack_ref(in.data(), n, bits, o) : bitpack::unpack(in.data(), n, bits, o);
  }
  return out;
}

}  // namespace

void register_bitpack(py::module_& m) {
  const char* pack_doc =
      "pack_bits(symbols: int8[n], bits: 2..8) -> uint8[ceil(n*bits/8)]\n\n"
      "Stores s & (2^bits-1) LSB-first in a dense little-endian bitstream: symbol i\n"
      "occupies stream bits [i*bits, (i+1)*bits); stream bit k is bit k%8 of byte k//8.\n"
      "Unused high bits of the last byte are zero. ValueError names the first symbol\n"
      "outside [-2^(bits-1), 2^(bits-1)-1].";
  const char* unpack_doc =
      "unpack_bits(packed: bytes | uint8[:], bits: 2..8, count: int) -> int8[count]\n\n"
      "Inverse of pack_bits (sign-extends). `packed` must hold at least\n"
      "ceil(count*bits/8) bytes; extra bytes and nonzero unused trailing bits are ignored.";
  m.def("pack_bits", &pack_py<false>, py::arg("symbols"), py::arg("bits"), pack_doc);
  m.def("unpack_bits", &unpack_py<false>, py::arg("packed"), py::arg("bits"), py::arg("count"),
        unpack_doc);
  m.def("pack_bits_ref", &pack_py<true>, py::arg("symbols"), py::arg("bits"),
        "Bit-by-bit reference of pack_bits (same layout; for tests).");
  m.def("unpack_bits_ref", &unpack_py<true>, py::arg("packed"), py::arg("bits"),
        py::arg("count"), "Bit-by-bit reference of unpack_bits (same layout; for tests).");
}

}  // namespace golfpack

// rans_py.cpp: Python bindings of the v1 rANS coder (csrc/core/rans.h; format csrc/RANS.md):
// rans_encode, rans_decode, rans_decode_ref, rans_set_isa, rans_isa, rans_table_info.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "byteview.h"
#include "common.h"
#include "rans.h"

namespace py = pybind11;

namespace golfpack {

namespace {

constexpr size_t kReleaseGilAt = size_t(1) << 15;

uint64_t parse_count(const py::handle& obj) {
  if (!PyLong_Check(obj.ptr())) throw py::type_error("count must be an int");
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(obj.ptr(), &overflow);
  if (overflow > 0 || (overflow == 0 && v > 0 && uint64_t(v) > rans::kMaxCount))
    throw py::value_error("rANS stream: count exceeds the 2^40 cap [R4]");
  if (overflow < 0 || v < 0) throw py::value_error("rANS stream: count must be >= 0 [R4]");
  if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
  return uint64_t(v);
}

py::bytes encode_py(const py::object& symbols, int precision, int lanes) {
  if (!py::isinstance<py::array>(symbols))
    throw py::type_error("symbols: expected a 1-D numpy uint8 array");
  py::array arr = py::reinterpret_borrow<py::array>(symbols);
  if (!arr.dtype().is(py::dtype::of<uint8_t>()))
    throw py::type_error("symbols: expected dtype uint8, got " + std::string(py::str(arr.dtype())));
  if (arr.ndim() != 1)
    throw py::value_error("symbols: expected a 1-D array, got " + std::to_string(arr.ndim()) +
                          " dimensions");
  if (precision != 0 && (precision < rans::kMinPrecision || precision > rans::kMaxPrecision))
    throw py::value_error("precision must be 0 (auto) or 12..15, got " + std::to_string(precision));
  if (lanes != 0 && lanes != 1 && lanes != 2 && lanes != 4 && lanes != 8)
    throw py::value_error("lanes must be 0 (auto), 1, 2, 4 or 8, got " + std::to_string(lanes));
  auto c = py::array_t<uint8_t, py::array::c_style>::ensure(arr);
  const uint8_t* s = c.data();
  const size_t n = size_t(c.size());
  std::vector<uint8_t> out;
  try {
    if (n >= kReleaseGilAt) {
      py::gil_scoped_release nogil;
      out = rans::encode(s, n, precision, lanes);
    } else {
      out = rans::encode(s, n, precision, lanes);
    }
  } catch (const rans::Error& e) {
    throw py::value_error(e.what());
  }
  return py::bytes(reinterpret_cast<const char*>(out.data()), out.size());
}

template <bool kRef>
py::array_t<uint8_t> decode_py(const py::object& data, const py::object& count_obj) {
  const uint64_t count = parse_count(count_obj);
  ByteView in(data, "rANS stream");
  rans::Plan plan;
  try {
    plan = rans::prepare(in.data(), in.size(), count);
  } catch (const rans::Error& e) {
    throw py::value_error(e.what());
  }
  py::array_t<uint8_t> out{py::ssize_t(count)};  // only after every cheap check passed
  uint8_t* o = out.mutable_data();
  try {
    if (count >= kReleaseGilAt) {
      py::gil_scoped_release nogil;
      kRef ? rans::decode_ref(plan, o) : rans::decode_fast(plan, o);
    } else {
      kRef ? rans::decode_ref(plan, o) : rans::decode_fast(plan, o);
    }
  } catch (const rans::Error& e) {
    throw py::value_error(e.what());
  }
  return out;
}

py::dict table_info_py(const py::object& data) {
  ByteView in(data, "rANS stream");
  rans::Table t;
  try {
    t = rans::parse_table(in.data(), in.size());
  } catch (const rans::Error& e) {
    throw py::value_error(e.what());
  }
  py::dict d;
  d["precision"] = t.precision;
  py::list freqs;
  if (t.precision) {
    d["lo"] = t.lo;
    d["hi"] = t.hi;
    d["lanes"] = 1 << t.lane_code;
    d["sparse"] = t.sparse;
    for (int s = t.lo; s <= t.hi; ++s) freqs.append(t.freq[s]);
  } else {
    d["lo"] = py::none();
    d["hi"] = py::none();
    d["lanes"] = py::none();
    d["sparse"] = false;
  }
  d["freqs"] = freqs;
  d["present"] = t.present;
  d["table_bytes"] = t.table_bytes;
  d["payload_bytes"] = in.size() - t.table_bytes;
  return d;
}

}  // namespace

void register_rans(py::module_& m) {
  m.def("rans_encode", &encode_py, py::arg("symbols"), py::arg("precision") = 0,
        py::arg("lanes") = 0,
        "rans_encode(symbols: uint8[n], precision: int = 0, lanes: int = 0) -> bytes\n\n"
        "Self-contained static rANS stream (csrc/RANS.md): frequency table + interleaved\n"
        "payload. precision: probability bits 12..15, or 0 = auto (smallest table +\n"
        "payload). lanes: interleaved states 1/2/4/8, or 0 = auto (8 unless the 8-byte\n"
        "state flush per lane would exceed 0.1% of the payload; the decoder is unrolled\n"
        "for 1, 2, 4 and 8 lanes). The symbol count is NOT stored; pass it to rans_decode.");
  m.def("rans_decode", &decode_py<false>, py::arg("data"), py::arg("count"),
        "rans_decode(data: bytes | uint8[:], count: int) -> uint8[count]\n\n"
        "Validates the whole stream (table, count bound, payload bounds, final states,\n"
        "exact consumption); any violation raises ValueError('rANS stream: ...').");
  m.def("rans_decode_ref", &decode_py<true>, py::arg("data"), py::arg("count"),
        "Straightforward reference decoder of the rans_encode format (for tests).");
  static const char* const kIsaNames[] = {"auto", "scalar", "avx2", "avx512"};
  m.def("rans_set_isa", [](const std::string& name) {
    const rans::Isa prev = rans::get_isa();
    int i = 0;
    while (i < 4 && name != kIsaNames[i]) ++i;
    if (i == 4) throw py::value_error("rANS ISA must be 'auto', 'scalar', 'avx2' or 'avx512', got '" + name + "'");
    try {
      rans::set_isa(rans::Isa(i));
    } catch (const rans::Error& e) {
      throw py::value_error(e.what());
    }
    return std::string(kIsaNames[int(prev)]);
  }, py::arg("name"),
        "rans_set_isa(name: 'auto' | 'scalar' | 'avx2' | 'avx512') -> previous setting\n\n"
        "Process-wide choice of the fast decoder's inner loop (default: $GOLFPACK_RANS_ISA, else\n"
        "auto = AVX-512 on an Intel CPU that has it, else AVX2 when present). Every choice decodes\n"
        "the same bytes the same way.");
  m.def("rans_isa", []() { return std::string(kIsaNames[int(rans::resolved_isa())]); },
        "The inner loop rans_decode uses now: 'avx512', 'avx2' or 'scalar'.");
  m.def("rans_cpu_has_avx2", &cpu_has_avx2);
  m.def("rans_cpu_has_avx512", &cpu_has_avx512);
  m.def("rans_table_info", &table_info_py, py::arg("data"),
        "rans_table_info(data) -> dict(precision, lo, hi, lanes, sparse, freqs, present,\n"
        "table_bytes, payload_bytes). Validates the table only. Empty stream: precision\n"
        "0, lo/hi/lanes None.");
}

}  // namespace golfpack

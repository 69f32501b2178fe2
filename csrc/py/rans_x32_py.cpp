// rans_x32_py.cpp: Python bindings of the rans_x32 coder (csrc/core/rans_x32.h; format
// csrc/RANS.md §7): rans_x32_encode, rans_x32_decode, rans_x32_decode_ref, rans_x32_decode_rows.
// The inner loop follows the process-wide rans_set_isa switch of the v1 coder.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <string>
#include <vector>

#include "arena.h"
#include "batch_results.h"
#include "byteview.h"
#include "common.h"
#include "rans_x32.h"

namespace py = pybind11;

namespace golfpack {
namespace {

constexpr size_t kReleaseGilAt = size_t(1) << 15;

uint64_t as_count(const py::handle& h, const char* what) {
  if (!PyLong_Check(h.ptr())) throw py::type_error(std::string(what) + " must be an int");
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(h.ptr(), &overflow);
  if (overflow || v < 0 || uint64_t(v) > rans::kMaxCount)
    throw py::value_error(std::string("rans_x32 stream: ") + what + " must be in [0, 2^40] [X2]");
  return uint64_t(v);
}

py::bytes encode_py(const py::object& symbols) {
  if (!py::isinstance<py::array>(symbols)) throw py::type_error("symbols: expected a 1-D numpy uint8 array");
  py::array arr = py::reinterpret_borrow<py::array>(symbols);
  if (!arr.dtype().is(py::dtype::of<uint8_t>()))
    throw py::type_error("symbols: expected dtype uint8, got " + std::string(py::str(arr.dtype())));
  if (arr.ndim() != 1)
    throw py::value_error("symbols: expected a 1-D array, got " + std::to_string(arr.ndim()) + " dimensions");
  auto c = py::array_t<uint8_t, py::array::c_style>::ensure(arr);
  std::vector<uint8_t> out;
  try {
    if (size_t(c.size()) >= kReleaseGilAt) {
      py::gil_scoped_release nogil;
      out = rans_x32::encode(c.data(), size_t(c.size()));
    } else {
      out = rans_x32::encode(c.data(), size_t(c.size()));
    }
  } catch (const rans::Error& e) {
    throw py::value_error(e.what());
  }
  return py::bytes(reinterpret_cast<const char*>(out.data()), out.size());
}

template <bool kRef>
py::array_t<uint8_t> decode_py(const py::object& data, const py::object& count_obj) {
  const uint64_t count = as_count(count_obj, "count");
  ByteView in(data, "rans_x32 stream");
  rans_x32::Plan plan;
  try {
    plan = rans_x32::prepare(in.data(), in.size(), count);
  } catch (const rans::Error& e) {
    throw py::value_error(e.what());
  }
  py::array_t<uint8_t> out{py::ssize_t(count)};
  uint8_t* o = out.mutable_data();
  try {
    if (count >= kReleaseGilAt) {
      py::gil_scoped_release nogil;
      kRef ? rans_x32::decode_ref(plan, o) : rans_x32::decode_fast(plan, o);
    } else {
      kRef ? rans_x32::decode_ref(plan, o) : rans_x32::decode_fast(plan, o);
    }
  } catch (const rans::Error& e) {
    throw py::value_error(e.what());
  }
  return out;
}

py::list decode_rows_py(const py::sequence& specs, int threads) {
  if (threads < 1) throw py::value_error("threads must be >= 1, got " + std::to_string(threads));
  std::vector<rans_x32::RowsJob> jobs(specs.size());
  std::vector<std::unique_ptr<ByteView>> views(jobs.size());
  std::vector<std::pair<int64_t, int64_t>> shapes(jobs.size(), {-1, 0});
  for (size_t k = 0; k < jobs.size(); ++k) {
    py::sequence spec = py::reinterpret_borrow<py::sequence>(specs[k]);
    if (spec.size() != 4) throw py::value_error("each job must be (data, rows, cols, bits)");
    rans_x32::RowsJob& j = jobs[k];
    views[k].reset(new ByteView(spec[0], "rans_x32 stream"));
    j.data = views[k]->data();
    j.size = views[k]->size();
    j.rows = as_count(spec[1], "rows");
    j.cols = as_count(spec[2], "cols");
    j.bits = py::cast<int>(spec[3]);
    if (!valid_bits(j.bits)) throw py::value_error("bits must be 2..8, got " + std::to_string(j.bits));
    if (j.cols && j.rows > rans::kMaxCount / j.cols) throw py::value_error("rows * cols exceeds the 2^40 symbol cap");
    rans_x32::prepare_rows_job(j);
    if (j.error.empty()) shapes[k] = {int64_t(j.rows), j.stride};
  }
  std::vector<uint8_t*> outs;
  const std::vector<py::object> arrays = arena::arrays(shapes, outs);  // one allocation for all
  for (size_t k = 0; k < jobs.size(); ++k) jobs[k].out = outs[k];
  {
    py::gil_scoped_release nogil;
    rans_x32::decode_rows(jobs, threads);
  }
  return batch_results(jobs, arrays);
}

}  // namespace

void register_rans_x32(py::module_& m) {
  m.def("rans_x32_encode", &encode_py, py::arg("symbols"),
        "rans_x32_encode(symbols: uint8[n]) -> bytes\n\n"
        "The fast-decode rANS stream of csrc/RANS.md section 7: the v1 table at P = 12, 32 lanes of\n"
        "32-bit states, 16-bit words. The symbol count is NOT stored; pass it to rans_x32_decode.");
  m.def("rans_x32_decode", &decode_py<false>, py::arg("data"), py::arg("count"),
        "rans_x32_decode(data, count) -> uint8[count]; every violation raises\n"
        "ValueError('rANS stream: ... [rule]'). Inner loop: rans_set_isa.");
  m.def("rans_x32_decode_ref", &decode_py<true>, py::arg("data"), py::arg("count"),
        "The one-symbol-at-a-time reference decoder of section 7.3 (for tests).");
  m.def("rans_x32_decode_rows", &decode_rows_py, py::arg("jobs"), py::arg("threads") = 1,
        "rans_x32_decode_rows(jobs: [(data, rows, cols, bits)], threads=1) -> list\n\n"
        "As rans_decode_rows for rans_x32 streams: each result is the packed uint8\n"
        "[rows, qrow_stride(cols, bits)] array or a str naming that stream's problem.");
}

}  // namespace golfpack

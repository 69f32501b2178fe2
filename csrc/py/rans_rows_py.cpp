// rans_rows_py.cpp: golfpack._C.rans_decode_rows (csrc/core/rans_rows.h).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <string>
#include <vector>

#include "arena.h"
#include "batch_results.h"
#include "byteview.h"
#include "common.h"
#include "rans.h"
#include "rans_rows.h"

namespace py = pybind11;

namespace golfpack {
namespace {

uint64_t as_size(const py::handle& h, const char* what) {
  if (!PyLong_Check(h.ptr())) throw py::type_error(std::string(what) + " must be an int");
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(h.ptr(), &overflow);
  if (overflow || v < 0 || uint64_t(v) > rans::kMaxCount)
    throw py::value_error(std::string(what) + " must be in [0, 2^40]");
  return uint64_t(v);
}

py::list decode_rows_py(const py::sequence& specs, int threads) {
  if (threads < 1) throw py::value_error("threads must be >= 1, got " + std::to_string(threads));
  std::vector<rans_rows::Job> jobs(specs.size());
  std::vector<std::unique_ptr<ByteView>> views(jobs.size());
  std::vector<std::pair<int64_t, int64_t>> shapes(jobs.size(), {-1, 0});
  for (size_t k = 0; k < jobs.size(); ++k) {
    py::sequence spec = py::reinterpret_borrow<py::sequence>(specs[k]);
    if (spec.size() != 4) throw py::value_error("each job must be (data, rows, cols, bits)");
    rans_rows::Job& j = jobs[k];
    views[k].reset(new ByteView(spec[0], "rANS stream"));
    j.data = views[k]->data();
    j.size = views[k]->size();
    j.rows = as_size(spec[1], "rows");
    j.cols = as_size(spec[2], "cols");
    j.bits = py::cast<int>(spec[3]);
    if (j.bits < kMinBits || j.bits > kMaxBits)
      throw py::value_error("bits must be 2..8, got " + std::to_string(j.bits));
    if (j.cols && j.rows > rans::kMaxCount / j.cols)
      throw py::value_error("rows * cols exceeds the 2^40 symbol cap");
    rans_rows::prepare_job(j);
    if (j.error.empty()) shapes[k] = {int64_t(j.rows), j.stride};
  }
  std::vector<uint8_t*> outs;
  const std::vector<py::object> arrays = arena::arrays(shapes, outs);  // one allocation for all (arena.h)
  for (size_t k = 0; k < jobs.size(); ++k) jobs[k].out = outs[k];
  {
    py::gil_scoped_release nogil;
    rans_rows::decode(jobs, threads);
  }
  return batch_results(jobs, arrays);
}

}  // namespace

void register_rans_rows(py::module_& m) {
  m.def("huge_buffer", &arena::buffer, py::arg("n"),
        "huge_buffer(n) -> uint8[n]: a writable buffer in its own anonymous block, 2 MiB-aligned and\n"
        "advised MADV_HUGEPAGE from 2 MiB up (load_packed reads the artifact into it: one fault per 2 MiB\n"
        "instead of per 4 KiB). Its contents start undefined.");
  m.def("packed_arena_stats", [] { return py::make_tuple(arena::g_live.load(), arena::g_bytes.load()); },
        "packed_arena_stats() -> (arenas, bytes): the packed-rows arenas alive now (csrc/py/arena.h).\n\n"
        "Each rans_decode_rows / rans_x32_decode_rows / rans_ctx_decode_rows call returns its arrays as\n"
        "views into one allocation, released when the last view is gone (for the tests).");
  m.def("rans_decode_rows", &decode_rows_py, py::arg("jobs"), py::arg("threads") = 1,
        "rans_decode_rows(jobs: [(data, rows, cols, bits)], threads: int = 1) -> list\n\n"
        "Decode rANS int streams (symbols u = s + 128, s of `bits` bits) straight into the packed\n"
        "row layout of qpack_rows: uint8 [rows, qrow_stride(cols, bits)]. Validates each stream\n"
        "as rans_decode does, plus the symbol range. Each result is the array, or a str naming\n"
        "the problem of that stream ('rANS stream: ...'). Jobs are interleaved 4 at a time per\n"
        "worker (AVX2) and shared among `threads` workers; the GIL is released while decoding.");
}

}  // namespace golfpack

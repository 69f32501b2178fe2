// rans_ctx_py.cpp: the rans_rc bindings (csrc/core/rans_ctx.h): rans_ctx_tables, rans_ctx_encode,
// rans_ctx_decode, rans_ctx_decode_packed, rans_ctx_decode_rows.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "arena.h"
#include "batch_results.h"
#include "byteview.h"
#include "common.h"
#include "qmatmul.h"
#include "rans.h"
#include "rans_ctx.h"

namespace py = pybind11;

namespace golfpack {

namespace {

template <typename T>
py::array_t<T, py::array::c_style> flat_array(const py::object& obj, const char* what) {
  if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(what) + ": expected a numpy array");
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<T>()))
    throw py::type_error(std::string(what) + ": expected dtype " + std::string(py::str(py::dtype::of<T>())) +
                         ", got " + std::string(py::str(a.dtype())));
  return py::array_t<T, py::array::c_style>::ensure(a);
}

// The class arrays a model points into, kept alive with it.
struct Model {
  py::array_t<uint8_t, py::array::c_style> row_class, col_class, map;
  rans_ctx::Model m;
};

// Validates every model array against rows x cols, R x C cells and T tables.
Model make_model(uint64_t count, uint64_t cols, const py::object& row_class, const py::object& col_class,
                 const py::object& map, int C, const py::object& freqs, int P) {
  Model m;
  m.row_class = flat_array<uint8_t>(row_class, "row_class");
  m.col_class = flat_array<uint8_t>(col_class, "col_class");
  m.map = flat_array<uint8_t>(map, "table_map");
  auto f = flat_array<uint32_t>(freqs, "freqs");
  m.m.ctx.row_class = m.row_class.data();
  m.m.ctx.col_class = m.col_class.data();
  m.m.ctx.map = m.map.data();
  m.m.ctx.C = C;
  rans_ctx::validate_model(m.m, count, cols, size_t(m.row_class.size()), size_t(m.col_class.size()),
                           size_t(m.map.size()), f.data(), size_t(f.size()), P);
  return m;
}

int check_lanes(int lanes) {
  if (lanes != 1 && lanes != 2 && lanes != 4 && lanes != 8)
    throw py::value_error("lanes must be 1, 2, 4 or 8, got " + std::to_string(lanes));
  return lanes;
}

py::list decode_rows_py(const py::sequence& specs, int threads) {
  if (threads < 1) throw py::value_error("threads must be >= 1, got " + std::to_string(threads));
  std::vector<rans_ctx::RowsJob> jobs(specs.size());
  std::vector<std::unique_ptr<ByteView>> views(jobs.size());
  std::vector<Model> models(jobs.size());
  std::vector<std::pair<int64_t, int64_t>> shapes(jobs.size(), {-1, 0});
  for (size_t k = 0; k < jobs.size(); ++k) {
    py::sequence spec = py::reinterpret_borrow<py::sequence>(specs[k]);
    if (spec.size() != 11)
      throw py::value_error("each job must be (data, count, cols, row_class, col_class, table_map, C, freqs, P, "
                            "lanes, bits)");
    rans_ctx::RowsJob& j = jobs[k];
    views[k].reset(new ByteView(spec[0], "rANS rc payload"));
    j.data = views[k]->data();
    j.size = views[k]->size();
    j.count = py::cast<uint64_t>(spec[1]);
    j.cols = py::cast<uint64_t>(spec[2]);
    const int C = py::cast<int>(spec[6]), P = py::cast<int>(spec[8]);
    j.lanes = check_lanes(py::cast<int>(spec[9]));
    j.bits = py::cast<int>(spec[10]);
    if (j.count > (uint64_t(1) << 30)) throw py::value_error("rANS rc stream: count exceeds 2^30 [C1]");
    if (j.bits < 2 || j.bits > 8) throw py::value_error("bits must be 2..8");
    try {  // the model's own problems are this stream's error, like its payload's
      models[k] = make_model(j.count, j.cols, spec[3], spec[4], spec[5], C, spec[7], P);
      j.md = std::move(models[k].m);
    } catch (const std::invalid_argument& e) {
      j.error = e.what();
      continue;
    }
    j.stride = qlayout::packed_row_stride(int64_t(j.cols), j.bits);
    shapes[k] = {int64_t(j.count / j.cols), j.stride};
  }
  std::vector<uint8_t*> outs;
  const std::vector<py::object> arrays = arena::arrays(shapes, outs);  // one allocation for all (arena.h)
  for (size_t k = 0; k < jobs.size(); ++k) jobs[k].out = outs[k];
  {
    py::gil_scoped_release nogil;
    rans_ctx::decode_rows(jobs, threads);
  }
  return batch_results(jobs, arrays);
}

}  // namespace

void register_rans_ctx(py::module_& m) {
  m.def("rans_ctx_decode_rows", &decode_rows_py, py::arg("jobs"), py::arg("threads") = 1,
        "rans_ctx_decode_rows(jobs: [(payload, count, cols, row_class, col_class, table_map, C, freqs, P,\n"
        "lanes, bits)], threads: int = 1) -> list\n\n"
        "rans_ctx_decode_packed for several streams: each result is the packed rows array, or a str\n"
        "naming the problem of that stream (the others still decode). Streams are interleaved 4 at a\n"
        "time per worker (AVX2) and shared among `threads` workers; the GIL is released while decoding.\n"
        "Arguments of the wrong type or range (lanes, bits, count) raise before anything is decoded.");
  m.def("rans_ctx_tables", [](const py::object& codes, int T, int lo, int P) {
    auto c = flat_array<uint8_t>(codes, "codes");
    if (T < 1 || c.size() % T) throw py::value_error("rANS rc stream: codes is not T x W [C2]");
    const int W = int(c.size() / T);
    py::array_t<uint32_t> out{py::ssize_t(T) * 256};
    try {
      rans_ctx::build_tables(c.data(), T, lo, W, P, out.mutable_data());
    } catch (const rans::Error& e) {
      throw py::value_error(e.what());
    }
    return out;
  }, py::arg("codes"), py::arg("T"), py::arg("lo"), py::arg("P"),
        "rans_ctx_tables(codes: uint8[T*W], T, lo, P) -> uint32[T*256]\n\n"
        "The frequencies (summing to 2^P per table) that T quantized code-length tables stand for\n"
        "(RANS.md 6.2; integer only, so encoder and decoder agree on every platform).");
  m.def("rans_ctx_encode", [](const py::object& symbols, uint64_t cols, const py::object& row_class,
                              const py::object& col_class, const py::object& map, int C,
                              const py::object& freqs, int P, int lanes) {
    auto s = flat_array<uint8_t>(symbols, "symbols");
    Model md = make_model(uint64_t(s.size()), cols, row_class, col_class, map, C, freqs, P);
    check_lanes(lanes);
    std::vector<uint8_t> out;
    try {
      py::gil_scoped_release nogil;
      out = rans_ctx::encode(s.data(), uint64_t(s.size()), md.m.ctx, md.m.tables, lanes);
    } catch (const rans::Error& e) {
      throw py::value_error(e.what());
    }
    return py::bytes(reinterpret_cast<const char*>(out.data()), out.size());
  }, py::arg("symbols"), py::arg("cols"), py::arg("row_class"), py::arg("col_class"), py::arg("table_map"),
        py::arg("C"), py::arg("freqs"), py::arg("P"), py::arg("lanes"),
        "rans_ctx_encode(symbols: uint8[rows*cols], cols, row_class: uint8[rows], col_class: uint8[cols],\n"
        "table_map: uint8[R*C], C, freqs: uint32[T*256], P, lanes) -> bytes (states + words)");
  m.def("rans_ctx_decode", [](const py::object& data, uint64_t count, uint64_t cols, const py::object& row_class,
                              const py::object& col_class, const py::object& map, int C,
                              const py::object& freqs, int P, int lanes) {
    if (count > (uint64_t(1) << 30)) throw py::value_error("rANS rc stream: count exceeds 2^30 [C1]");
    ByteView in(data, "rANS rc payload");
    Model md = make_model(count, cols, row_class, col_class, map, C, freqs, P);
    check_lanes(lanes);
    py::array_t<uint8_t> out{py::ssize_t(count)};
    uint8_t* o = out.mutable_data();
    try {
      py::gil_scoped_release nogil;
      rans_ctx::decode_to_array(in.data(), in.size(), count, md.m, lanes, o);
    } catch (const rans::Error& e) {
      throw py::value_error(e.what());
    }
    return out;
  }, py::arg("data"), py::arg("count"), py::arg("cols"), py::arg("row_class"), py::arg("col_class"),
        py::arg("table_map"), py::arg("C"), py::arg("freqs"), py::arg("P"), py::arg("lanes"),
        "Inverse of rans_ctx_encode; validates the payload fully (ValueError 'rANS stream: ...').");
  m.def("rans_ctx_decode_packed", [](const py::object& data, uint64_t count, uint64_t cols, const py::object& row_class,
                                     const py::object& col_class, const py::object& map, int C,
                                     const py::object& freqs, int P, int lanes, int bits) {
    if (count > (uint64_t(1) << 30)) throw py::value_error("rANS rc stream: count exceeds 2^30 [C1]");
    if (bits < 2 || bits > 8) throw py::value_error("bits must be 2..8");
    ByteView in(data, "rANS rc payload");
    Model md = make_model(count, cols, row_class, col_class, map, C, freqs, P);
    check_lanes(lanes);
    const uint64_t rows = count / cols;
    const int64_t stride = qlayout::packed_row_stride(int64_t(cols), bits);
    py::array_t<uint8_t> out({py::ssize_t(rows), py::ssize_t(stride)});
    try {
      py::gil_scoped_release nogil;
      rans_ctx::decode_to_packed(in.data(), in.size(), count, md.m, lanes, bits, out.mutable_data(), stride);
    } catch (const rans::Error& e) {
      throw py::value_error(e.what());
    }
    return out;
  }, py::arg("data"), py::arg("count"), py::arg("cols"), py::arg("row_class"), py::arg("col_class"),
        py::arg("table_map"), py::arg("C"), py::arg("freqs"), py::arg("P"), py::arg("lanes"), py::arg("bits"),
        "rans_ctx_decode followed by qpack_rows(symbols - 128, bits), without the int8 array: rows\n"
        "[count/cols, packed_row_stride(cols, bits)]. Symbols outside b bits raise ValueError.");
}

}  // namespace golfpack

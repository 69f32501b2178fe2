// byteview.h: read-only view of any Python object that exposes a C-contiguous
// buffer of 1-byte items (bytes, bytearray, memoryview, np.ndarray[uint8/int8]).
//
// Why not py::array_t<uint8_t>: its implicit conversion silently copies or casts
// (a uint16 array would be reinterpreted or rejected with pybind's generic
// "incompatible function arguments"); we want one clear error for anything that
// is not a flat byte buffer, and zero copies for the common cases.
#pragma once

#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace golfpack {

class ByteView {
 public:
  // `what` names the argument in error messages ("packed", "rANS stream").
  ByteView(const pybind11::handle& obj, const char* what) {
    if (PyObject_GetBuffer(obj.ptr(), &view_, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
      PyErr_Clear();
      throw pybind11::type_error(std::string(what) +
                                 ": expected bytes or a C-contiguous 1-D uint8 array");
    }
    held_ = true;
    if (view_.itemsize != 1 || view_.ndim > 1) {
      PyBuffer_Release(&view_);
      held_ = false;
      throw pybind11::type_error(std::string(what) +
                                 ": expected bytes or a C-contiguous 1-D uint8 array");
    }
  }
  ~ByteView() {
    if (held_) PyBuffer_Release(&view_);
  }
  ByteView(const ByteView&) = delete;
  ByteView& operator=(const ByteView&) = delete;

  const uint8_t* data() const { return static_cast<const uint8_t*>(view_.buf); }
  size_t size() const { return static_cast<size_t>(view_.len); }

 private:
  Py_buffer view_{};
  bool held_ = false;
};

}  // namespace golfpack

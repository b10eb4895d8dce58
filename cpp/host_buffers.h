// Buffer access of bind_kernels.h for kernels that run on host memory: C-contiguous NumPy arrays
// of exactly the element type (deepstyle.ops converts), checked for size and, for outputs,
// writeability. Used by deepstyle._cpu and by the emulated CUDA module.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

namespace ds::bind {

namespace py = pybind11;

template <class T>
py::array host_array(py::handle obj, int64_t n, const char* name) {
  if (!py::array_t<T, py::array::c_style>::check_(obj))
    throw py::type_error(std::string(name) + ": expected a C-contiguous NumPy array of " +
                         py::str(py::dtype::of<T>()).cast<std::string>());
  auto array = py::reinterpret_borrow<py::array>(obj);
  if (array.size() != n)
    throw py::value_error(std::string(name) + ": expected " + std::to_string(n) +
                          " elements, got " + std::to_string(array.size()));
  return array;
}

struct HostBuffers {
  template <class T>
  static const T* in(py::handle obj, int64_t n, const char* name) {
    return static_cast<const T*>(host_array<T>(obj, n, name).data());
  }
  template <class T>
  static T* out(py::handle obj, int64_t n, const char* name) {
    py::array array = host_array<T>(obj, n, name);
    if (!array.writeable()) throw py::value_error(std::string(name) + ": array is read-only");
    return static_cast<T*>(array.mutable_data());
  }
  static void prepare() {}
  static void check_labels(const int64_t* labels, int64_t N, int64_t K) {
    for (int64_t i = 0; i < N; ++i)
      if (labels[i] < 0 || labels[i] >= K)
        throw py::value_error("softmax_cross_entropy: label out of range");
  }
};

}  // namespace ds::bind

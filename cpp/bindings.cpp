// pybind11 bindings of the CPU kernels: module deepstyle._cpu, the function table of
// bind_kernels.h on NumPy arrays, plus the thread-count settings and the CPU-only kernels
// (max pooling with argmax indices).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "activations.h"
#include "bind_kernels.h"
#include "conv.h"
#include "gemm.h"
#include "gram.h"
#include "loss.h"
#include "pool.h"
#include "threads.h"

namespace py = pybind11;

namespace {

// Buffers are C-contiguous NumPy arrays of exactly the element type (deepstyle.ops converts).
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

struct CpuBackend {
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

  static constexpr auto sgemm = &ds::cpu::sgemm;
  static constexpr auto conv2d_forward = &ds::cpu::conv2d_forward;
  static constexpr auto conv2d_backward = &ds::cpu::conv2d_backward;
  static constexpr auto max_pool2d_forward = &ds::cpu::max_pool2d_forward;
  static constexpr auto max_pool2d_backward = &ds::cpu::max_pool2d_backward;
  static constexpr auto avg_pool2d_forward = &ds::cpu::avg_pool2d_forward;
  static constexpr auto avg_pool2d_backward = &ds::cpu::avg_pool2d_backward;
  static constexpr auto gram_forward = &ds::cpu::gram_forward;
  static constexpr auto gram_backward = &ds::cpu::gram_backward;
  static constexpr auto relu_forward = &ds::cpu::relu_forward;
  static constexpr auto relu_backward = &ds::cpu::relu_backward;
  static constexpr auto leaky_relu_forward = &ds::cpu::leaky_relu_forward;
  static constexpr auto leaky_relu_backward = &ds::cpu::leaky_relu_backward;
  static constexpr auto sigmoid_forward = &ds::cpu::sigmoid_forward;
  static constexpr auto sigmoid_backward = &ds::cpu::sigmoid_backward;
  static constexpr auto tanh_forward = &ds::cpu::tanh_forward;
  static constexpr auto tanh_backward = &ds::cpu::tanh_backward;
  static constexpr auto softmax_cross_entropy = &ds::cpu::softmax_cross_entropy;
};

// Max pooling that records its argmax (int32 h * W + w per output cell), and the backward that
// scatters through them; CPU only, so outside the shared table.
void bind_max_pool_indices(py::module_& m) {
  m.def("max_pool2d_forward_indices", [](py::handle x, py::handle y, py::handle indices,
                                         const ds::Pool2dShape& s) {
    ds::bind::check_geometry(ds::pool_geometry_error(s));
    if (s.H * s.W >= (int64_t{1} << 31))
      throw py::value_error("max_pool2d: return_indices needs planes of fewer than 2^31 cells");
    const float* xp = CpuBackend::in<float>(x, s.N * s.C * s.H * s.W, "x");
    float* yp = CpuBackend::out<float>(y, s.N * s.C * s.P * s.Q, "y");
    int32_t* ip = CpuBackend::out<int32_t>(indices, s.N * s.C * s.P * s.Q, "indices");
    py::gil_scoped_release release;
    ds::cpu::max_pool2d_forward_indices(s, xp, yp, ip);
  });
  m.def("max_pool2d_backward_indices", [](py::handle grad_y, py::handle indices,
                                          py::handle grad_x, const ds::Pool2dShape& s) {
    ds::bind::check_geometry(ds::pool_geometry_error(s));
    const float* gyp = CpuBackend::in<float>(grad_y, s.N * s.C * s.P * s.Q, "grad_y");
    const int32_t* ip = CpuBackend::in<int32_t>(indices, s.N * s.C * s.P * s.Q, "indices");
    float* gxp = CpuBackend::out<float>(grad_x, s.N * s.C * s.H * s.W, "grad_x");
    bool valid;
    {
      py::gil_scoped_release release;
      valid = ds::cpu::max_pool2d_backward_indices(s, gyp, ip, gxp);
    }
    if (!valid)
      throw py::value_error(
          "indices: expected the argmax of each window, as max_pool2d(..., "
          "return_indices=True) returns them, got an index outside the input plane or its "
          "window");
  });
}

}  // namespace

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "deepstyle CPU kernels (use deepstyle.ops, which validates arguments)";
  m.def("set_num_threads", &ds::set_num_threads);
  m.def("get_num_threads", &ds::num_threads);
  m.def("max_hardware_threads", &ds::max_hardware_threads);
  m.attr("simd_level") = ds::simd_level();
  ds::bind::bind_kernels<CpuBackend>(m);
  bind_max_pool_indices(m);
}

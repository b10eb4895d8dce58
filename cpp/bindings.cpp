// pybind11 bindings of the CPU kernels: module deepstyle._cpu, the function table of
// bind_kernels.h on NumPy arrays, plus the thread-count settings and the CPU-only kernels
// (max pooling with argmax indices).
#include <pybind11/pybind11.h>

#include "activations.h"
#include "bind_kernels.h"
#include "conv.h"
#include "gemm.h"
#include "gram.h"
#include "host_buffers.h"
#include "loss.h"
#include "pool.h"
#include "threads.h"

namespace py = pybind11;

namespace {

struct CpuBackend : ds::bind::HostBuffers {
  DS_KERNEL_TABLE(ds::cpu)
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

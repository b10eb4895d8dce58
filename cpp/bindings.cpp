// pybind11 bindings of the CPU kernels: module deepstyle._cpu, the function table of
// bind_kernels.h on NumPy arrays, plus the thread-count settings.
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

}  // namespace

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "deepstyle CPU kernels (use deepstyle.ops, which validates arguments)";
  m.def("set_num_threads", &ds::set_num_threads);
  m.def("get_num_threads", &ds::num_threads);
  m.def("max_hardware_threads", &ds::max_hardware_threads);
  m.attr("simd_level") = ds::simd_level();
  ds::bind::bind_kernels<CpuBackend>(m);
}

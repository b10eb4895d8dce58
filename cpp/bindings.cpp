// pybind11 bindings of the CPU kernels: module deepstyle._cpu, the function table of
// bind_kernels.h on NumPy arrays, plus the thread-count settings and the CPU-only kernels
// (max pooling with argmax indices), and the C library's allocator setting for painting.
#include <pybind11/pybind11.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

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
                                         const ds::Pool2dShape& s, bool relu_after) {
    ds::bind::check_geometry(ds::pool_geometry_error(s));
    if (s.H * s.W >= (int64_t{1} << 31))
      throw py::value_error("max_pool2d: return_indices needs planes of fewer than 2^31 cells");
    const float* xp = CpuBackend::in<float>(x, s.N * s.C * s.H * s.W, "x");
    float* yp = CpuBackend::out<float>(y, s.N * s.C * s.P * s.Q, "y");
    int32_t* ip = CpuBackend::out<int32_t>(indices, s.N * s.C * s.P * s.Q, "indices");
    py::gil_scoped_release release;
    ds::cpu::max_pool2d_forward_indices(s, relu_after, xp, yp, ip);
  }, py::arg("x"), py::arg("y"), py::arg("indices"), py::arg("geometry"),
        py::arg("relu_after") = false);
  m.def("max_pool2d_backward_indices", [](py::handle grad_y, py::handle indices,
                                          py::handle grad_x, const ds::Pool2dShape& s,
                                          py::handle relu_y) {
    ds::bind::check_geometry(ds::pool_geometry_error(s));
    const float* gyp = CpuBackend::in<float>(grad_y, s.N * s.C * s.P * s.Q, "grad_y");
    const int32_t* ip = CpuBackend::in<int32_t>(indices, s.N * s.C * s.P * s.Q, "indices");
    const float* ryp =
        relu_y.is_none() ? nullptr : CpuBackend::in<float>(relu_y, s.N * s.C * s.P * s.Q, "y");
    float* gxp = CpuBackend::out<float>(grad_x, s.N * s.C * s.H * s.W, "grad_x");
    bool valid;
    {
      py::gil_scoped_release release;
      valid = ds::cpu::max_pool2d_backward_indices(s, gyp, ip, ryp, gxp);
    }
    if (!valid)
      throw py::value_error(
          "indices: expected the argmax of each window, as max_pool2d(..., "
          "return_indices=True) returns them, got an index outside the input plane or its "
          "window");
  }, py::arg("grad_y"), py::arg("indices"), py::arg("grad_x"), py::arg("geometry"),
        py::arg("relu_y") = py::none());
}

// ops.gemm's common call in one step: a new C = alpha op(a) op(b) for 2-D C-contiguous float32
// NumPy arrays whose inner sizes match, checked and allocated here (for a small product the
// Python-side checks cost more than the arithmetic); None for anything else, which ops.gemm then
// converts and checks itself. The flags and alpha are taken only as bool and float (noconvert).
py::object gemm_new(py::handle a, py::handle b, bool trans_a, bool trans_b, float alpha) {
  using Matrix = py::array_t<float, py::array::c_style>;
  if (!Matrix::check_(a) || !Matrix::check_(b)) return py::none();
  const auto A = py::reinterpret_borrow<py::array>(a), B = py::reinterpret_borrow<py::array>(b);
  if (A.ndim() != 2 || B.ndim() != 2) return py::none();
  const int64_t M = A.shape(trans_a ? 1 : 0), K = A.shape(trans_a ? 0 : 1);
  const int64_t N = B.shape(trans_b ? 0 : 1);
  if (B.shape(trans_b ? 1 : 0) != K) return py::none();
  Matrix C({M, N});
  const float* ap = static_cast<const float*>(A.data());
  const float* bp = static_cast<const float*>(B.data());
  float* cp = C.mutable_data();
  {
    py::gil_scoped_release release;
    ds::cpu::sgemm(trans_a, trans_b, M, N, K, alpha, ap, trans_a ? M : K, bp, trans_b ? K : N,
                   0.0f, cp, N);
  }
  return C;
}

// glibc maps every block above its mmap threshold (which it raises to at most 32 MiB) afresh
// and unmaps it when freed, so a loop that allocates and frees 64 MiB activations pays the
// kernel for faulting in and zeroing new pages each time. keep=true serves blocks of up to
// 1 GiB from the heap and does not trim it, so freed blocks are reused; keep=false restores
// the 32 MiB / 64 MiB thresholds glibc's own adjustment reaches and gives the free memory
// back. Returns false where the C library is not glibc or refuses the setting (nothing done).
bool keep_freed_memory(bool keep) {
#ifdef __GLIBC__
  constexpr int kHeld = 1 << 30, kMmapDefault = 32 << 20, kTrimDefault = 64 << 20;
  if (keep) return mallopt(M_MMAP_THRESHOLD, kHeld) == 1 && mallopt(M_TRIM_THRESHOLD, kHeld) == 1;
  const bool restored = mallopt(M_MMAP_THRESHOLD, kMmapDefault) == 1 &&
                        mallopt(M_TRIM_THRESHOLD, kTrimDefault) == 1;
  malloc_trim(0);
  return restored;
#else
  (void)keep;
  return false;
#endif
}

}  // namespace

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "deepstyle CPU kernels (use deepstyle.ops, which validates arguments)";
  m.def("set_num_threads", &ds::set_num_threads);
  m.def("get_num_threads", &ds::num_threads);
  m.def("max_hardware_threads", &ds::max_hardware_threads);
  m.def("keep_freed_memory", &keep_freed_memory, py::arg("keep"));
  m.attr("simd_level") = ds::simd_level();
  ds::bind::bind_kernels<CpuBackend>(m);
  bind_max_pool_indices(m);
  m.def("gemm_new", &gemm_new, py::arg("a"), py::arg("b"), py::arg("trans_a").noconvert(),
        py::arg("trans_b").noconvert(), py::arg("alpha").noconvert());
}

// pybind11 bindings of the CPU kernels: module deepstyle._cpu, the function table of
// bind_kernels.h on NumPy arrays, plus the thread-count settings and the CPU-only kernels
// (max pooling with argmax indices), and the C library's allocator setting for painting.
#include <pybind11/numpy.h>
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
// NumPy arrays (exactly ndarray) whose inner sizes match, bool flags and float alpha and beta
// (exactly float); None for anything else, which ops.gemm then converts and checks itself, saying
// what is wrong. A plain CPython function (METH_FASTCALL), not a pybind11 one: for a 10x100x64
// product (~1 us of arithmetic) pybind11's argument dispatch cost as much as NumPy's whole call
// overhead. The GIL is kept for products too small for another Python thread to gain from it.
PyObject* gemm_new(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  using Matrix = py::array_t<float, py::array::c_style>;
  if (nargs != 6) {
    PyErr_SetString(PyExc_TypeError, "gemm_new(a, b, trans_a, trans_b, alpha, beta): expected 6 "
                                     "positional arguments");
    return nullptr;
  }
  PyObject *a = args[0], *b = args[1];
  const auto flag = [](PyObject* o) { return o == Py_True ? 1 : o == Py_False ? 0 : -1; };
  const int trans_a = flag(args[2]), trans_b = flag(args[3]);
  PyTypeObject* ndarray = py::detail::npy_api::get().PyArray_Type_;
  if (Py_TYPE(a) != ndarray || Py_TYPE(b) != ndarray || trans_a < 0 || trans_b < 0 ||
      !PyFloat_CheckExact(args[4]) || !PyFloat_CheckExact(args[5]) || !Matrix::check_(a) ||
      !Matrix::check_(b))
    Py_RETURN_NONE;
  try {
    const auto A = py::reinterpret_borrow<py::array>(a), B = py::reinterpret_borrow<py::array>(b);
    if (A.ndim() != 2 || B.ndim() != 2) Py_RETURN_NONE;
    const int64_t M = A.shape(trans_a ? 1 : 0), K = A.shape(trans_a ? 0 : 1);
    const int64_t N = B.shape(trans_b ? 0 : 1);
    if (B.shape(trans_b ? 1 : 0) != K) Py_RETURN_NONE;
    const float alpha = static_cast<float>(PyFloat_AS_DOUBLE(args[4]));
    Matrix C({M, N});
    const float* ap = static_cast<const float*>(A.data());
    const float* bp = static_cast<const float*>(B.data());
    float* cp = C.mutable_data();
    const auto multiply = [&] {
      ds::cpu::sgemm(trans_a, trans_b, M, N, K, alpha, ap, trans_a ? M : K, bp,
                     trans_b ? K : N, 0.0f, cp, N);
    };
    if (M * N * K < ds::cpu::kGemmOneThread) {
      multiply();
    } else {
      py::gil_scoped_release release;
      multiply();
    }
    return C.release().ptr();
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (const std::bad_alloc&) {
    PyErr_NoMemory();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return nullptr;
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
  static PyMethodDef gemm_new_def = {"gemm_new", reinterpret_cast<PyCFunction>(
                                                      reinterpret_cast<void (*)()>(&gemm_new)),
                                      METH_FASTCALL, "ops.gemm's common call, or None"};
  m.add_object("gemm_new", py::reinterpret_steal<py::object>(
                               PyCFunction_NewEx(&gemm_new_def, nullptr, m.attr("__name__").ptr())));
}

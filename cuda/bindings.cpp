// pybind11 bindings of the CUDA kernels (host compiler only; nvcc never sees pybind11): the
// function table of cpp/bind_kernels.h over ds::cuda. Built twice:
// - deepstyle._cuda: buffers are CuPy arrays (device pointers from __cuda_array_interface__),
//   kernels run on CuPy's current stream;
// - deepstyle._cuda_emulated (DS_CUDA_EMULATED): the same launchers and kernels compiled for the
//   CPU over emulation.h, so that the tests run them without a GPU: on the tests' stand-in device
//   arrays (host memory behind __cuda_array_interface__, read by the same checks as on a GPU) or
//   on NumPy arrays.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "../cpp/bind_kernels.h"
#include "kernels.h"

#if defined(DS_CUDA_EMULATED)
#include "../cpp/host_buffers.h"
#endif

namespace py = pybind11;

namespace {

// CuPy arrays (or anything with __cuda_array_interface__), C-contiguous, of exactly the element
// type: checked here so that a direct call can never pass a wrong-sized or strided buffer.
template <class T>
constexpr const char* typestr() {
  if constexpr (sizeof(T) == 4) return "<f4";
  return "<i8";
}

template <class T>
uintptr_t device_pointer(py::handle obj, int64_t n, const char* name, bool output) {
  const std::string prefix = std::string(name) + ": ";
  if (!py::hasattr(obj, "__cuda_array_interface__"))
    throw py::type_error(prefix + "expected a CuPy array");
  const py::dict face = obj.attr("__cuda_array_interface__");
  if (face["typestr"].cast<std::string>() != typestr<T>())
    throw py::type_error(prefix + "expected dtype " + typestr<T>() + ", got " +
                         face["typestr"].cast<std::string>());
  int64_t size = 1;
  for (py::handle extent : face["shape"].cast<py::tuple>()) size *= extent.cast<int64_t>();
  if (size != n)
    throw py::value_error(prefix + "expected " + std::to_string(n) + " elements, got " +
                          std::to_string(size));
  if (face.contains("strides") && !face["strides"].is_none()) {
    int64_t expected = sizeof(T);  // C order; extents of 1 may carry any stride
    const py::tuple shape = face["shape"], strides = face["strides"];
    for (size_t d = shape.size(); d-- > 0;) {
      const int64_t extent = shape[d].cast<int64_t>();
      if (extent != 1 && strides[d].cast<int64_t>() != expected)
        throw py::value_error(prefix + "expected a C-contiguous array");
      expected *= extent;
    }
  }
  const py::tuple data = face["data"];
  if (output && data[1].cast<bool>()) throw py::value_error(prefix + "array is read-only");
  return data[0].cast<uintptr_t>();
}

struct DeviceBuffers {
  template <class T>
  static const T* in(py::handle obj, int64_t n, const char* name) {
    return reinterpret_cast<const T*>(device_pointer<T>(obj, n, name, false));
  }
  template <class T>
  static T* out(py::handle obj, int64_t n, const char* name) {
    return reinterpret_cast<T*>(device_pointer<T>(obj, n, name, true));
  }
};

#if defined(DS_CUDA_EMULATED)
// Emulated "device" memory is host memory: stand-in device arrays through the GPU checks, NumPy
// arrays through the host ones. There are no streams to order with.
struct EmulatedBuffers : ds::bind::HostBuffers {
  template <class T>
  static const T* in(py::handle obj, int64_t n, const char* name) {
    if (py::hasattr(obj, "__cuda_array_interface__")) return DeviceBuffers::in<T>(obj, n, name);
    return HostBuffers::in<T>(obj, n, name);
  }
  template <class T>
  static T* out(py::handle obj, int64_t n, const char* name) {
    if (py::hasattr(obj, "__cuda_array_interface__")) return DeviceBuffers::out<T>(obj, n, name);
    return HostBuffers::out<T>(obj, n, name);
  }
};
using Buffers = EmulatedBuffers;
#else
struct CupyBuffers : DeviceBuffers {
  // Kernels go on CuPy's current stream, so they order with CuPy's own work.
  static void prepare() {
    // Looked up once and never released (a static py::object would outlive the interpreter).
    static const py::object* current =
        new py::object(py::module_::import("cupy.cuda").attr("get_current_stream"));
    ds::cuda::set_stream_handle(reinterpret_cast<void*>((*current)().attr("ptr").cast<uintptr_t>()));
  }
  static void check_labels(const int64_t*, int64_t, int64_t) {}  // the kernel guards (NaN loss)
};
using Buffers = CupyBuffers;
#endif

struct CudaBackend : Buffers {
  DS_KERNEL_TABLE(ds::cuda)
};

}  // namespace

#if defined(DS_CUDA_EMULATED)
PYBIND11_MODULE(_cuda_emulated, m) {
  m.doc() = "deepstyle CUDA kernels emulated on the CPU, on NumPy arrays (for the tests)";
  ds::bind::bind_kernels<CudaBackend>(m);
}
#else
PYBIND11_MODULE(_cuda, m) {
  m.doc() = "deepstyle CUDA kernels on CuPy arrays (use deepstyle.ops, which validates arguments)";
  ds::bind::bind_kernels<CudaBackend>(m);
}
#endif

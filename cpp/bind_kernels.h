// The kernel function table as Python sees it, bound once for every backend. deepstyle.ops
// validates the arguments, computes every output shape and allocates every output with the
// arrays' own library; these functions only check that each buffer is as large as the geometry
// says (so a direct call can never read or write out of bounds), release the GIL and fill the
// outputs. Nothing here allocates.
//
// Backend supplies the kernels (static function pointers with the signatures of ds::cpu) and
// the buffer access: in<T>(obj, n, name) / out<T>(obj, n, name) give the data pointer of an
// array of n elements of T (out: writeable; both throw otherwise), prepare() runs before a
// kernel with the GIL held, and check_labels(labels, N, K) guards class indices.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>

#include "shapes.h"
#include "updates.h"

// Geometry structs travel from Python as tuples of ints in field order.
namespace pybind11::detail {

template <class Struct>
struct int64_fields_caster {
  static constexpr Py_ssize_t kFields = sizeof(Struct) / sizeof(int64_t);
  PYBIND11_TYPE_CASTER(Struct, const_name("tuple[int, ...]"));
  bool load(handle src, bool) {
    if (!PyTuple_Check(src.ptr()) || PyTuple_GET_SIZE(src.ptr()) != kFields) return false;
    int64_t fields[kFields];
    for (Py_ssize_t i = 0; i < kFields; ++i) {
      fields[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(src.ptr(), i));
      if (fields[i] == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return false;
      }
    }
    std::memcpy(&value, fields, sizeof fields);
    return true;
  }
};

template <>
struct type_caster<ds::Conv2dShape> : int64_fields_caster<ds::Conv2dShape> {};
template <>
struct type_caster<ds::Pool2dShape> : int64_fields_caster<ds::Pool2dShape> {};

}  // namespace pybind11::detail

// A backend's kernels as the static members bind_kernels() calls (ns: ds::cpu or ds::cuda).
#define DS_KERNEL_TABLE(ns)                                                       \
  static constexpr auto sgemm = &ns::sgemm;                                       \
  static constexpr auto conv2d_forward = &ns::conv2d_forward;                     \
  static constexpr auto conv2d_backward = &ns::conv2d_backward;                   \
  static constexpr auto max_pool2d_forward = &ns::max_pool2d_forward;             \
  static constexpr auto max_pool2d_backward = &ns::max_pool2d_backward;           \
  static constexpr auto avg_pool2d_forward = &ns::avg_pool2d_forward;             \
  static constexpr auto avg_pool2d_backward = &ns::avg_pool2d_backward;           \
  static constexpr auto gram_forward = &ns::gram_forward;                         \
  static constexpr auto gram_backward = &ns::gram_backward;                       \
  static constexpr auto relu_forward = &ns::relu_forward;                         \
  static constexpr auto relu_backward = &ns::relu_backward;                       \
  static constexpr auto leaky_relu_forward = &ns::leaky_relu_forward;             \
  static constexpr auto leaky_relu_backward = &ns::leaky_relu_backward;           \
  static constexpr auto sigmoid_forward = &ns::sigmoid_forward;                   \
  static constexpr auto sigmoid_backward = &ns::sigmoid_backward;                 \
  static constexpr auto tanh_forward = &ns::tanh_forward;                         \
  static constexpr auto tanh_backward = &ns::tanh_backward;                       \
  static constexpr auto softmax_cross_entropy = &ns::softmax_cross_entropy;       \
  static constexpr auto sgd_update = &ns::sgd_update;                             \
  static constexpr auto adam_update = &ns::adam_update;

namespace ds::bind {

namespace py = pybind11;

template <class Backend, class T>
T* optional_out(py::handle obj, int64_t n, const char* name) {
  return obj.is_none() ? nullptr : Backend::template out<T>(obj, n, name);
}

inline const char* conv_algo_error(int algo) {
  return algo >= static_cast<int>(ConvAlgo::kAuto) && algo <= static_cast<int>(ConvAlgo::kWinograd)
             ? nullptr
             : "conv2d: algo must be 0 (auto), 1 (direct) or 2 (winograd)";
}

inline void check_geometry(const char* error) {
  if (error) throw py::value_error(error);
}

template <class Backend>
void bind_kernels(py::module_& m) {
  using B = Backend;

  m.def("gemm", [](py::handle a, py::handle b, py::handle c, bool trans_a, bool trans_b,
                   int64_t M, int64_t N, int64_t K, float alpha, float beta) {
    if (M < 0 || N < 0 || K < 0) throw py::value_error("gemm: negative size");
    const float* ap = B::template in<float>(a, M * K, "a");
    const float* bp = B::template in<float>(b, K * N, "b");
    float* cp = B::template out<float>(c, M * N, "c");
    B::prepare();
    py::gil_scoped_release release;
    B::sgemm(trans_a, trans_b, M, N, K, alpha, ap, trans_a ? M : K, bp, trans_b ? K : N, beta,
             cp, N);
  });

  m.def("conv2d_forward", [](py::handle x, py::handle w, py::handle bias, py::handle y,
                             const Conv2dShape& s, int algo) {
    check_geometry(conv_geometry_error(s));
    check_geometry(conv_algo_error(algo));
    const float* xp = B::template in<float>(x, s.N * s.C * s.H * s.W, "x");
    const float* wp = B::template in<float>(w, s.K * s.C * s.R * s.S, "weight");
    const float* bp = bias.is_none() ? nullptr : B::template in<float>(bias, s.K, "bias");
    float* yp = B::template out<float>(y, s.N * s.K * s.P * s.Q, "y");
    B::prepare();
    py::gil_scoped_release release;
    B::conv2d_forward(s, xp, wp, bp, yp, static_cast<ConvAlgo>(algo));
  }, py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("y"), py::arg("geometry"),
        py::arg("algo") = 0);

  m.def("conv2d_backward", [](py::handle grad_y, py::handle x, py::handle w, py::handle grad_x,
                              py::handle grad_w, py::handle grad_b, const Conv2dShape& s,
                              int algo) {
    check_geometry(conv_geometry_error(s));
    check_geometry(conv_algo_error(algo));
    const float* gyp = B::template in<float>(grad_y, s.N * s.K * s.P * s.Q, "grad_y");
    const float* xp = B::template in<float>(x, s.N * s.C * s.H * s.W, "x");
    const float* wp = B::template in<float>(w, s.K * s.C * s.R * s.S, "weight");
    float* gxp = optional_out<B, float>(grad_x, s.N * s.C * s.H * s.W, "grad_x");
    float* gwp = optional_out<B, float>(grad_w, s.K * s.C * s.R * s.S, "grad_weight");
    float* gbp = optional_out<B, float>(grad_b, s.K, "grad_bias");
    B::prepare();
    py::gil_scoped_release release;
    B::conv2d_backward(s, gyp, xp, wp, gxp, gwp, gbp, static_cast<ConvAlgo>(algo));
  }, py::arg("grad_y"), py::arg("x"), py::arg("weight"), py::arg("grad_x"), py::arg("grad_weight"),
        py::arg("grad_bias"), py::arg("geometry"), py::arg("algo") = 0);

  // relu_after / relu_before / relu_x: a ReLU fused with the pooling (pool.h).
  m.def("max_pool2d_forward", [](py::handle x, py::handle y, const Pool2dShape& s,
                                 bool relu_after) {
    check_geometry(pool_geometry_error(s));
    const float* xp = B::template in<float>(x, s.N * s.C * s.H * s.W, "x");
    float* yp = B::template out<float>(y, s.N * s.C * s.P * s.Q, "y");
    B::prepare();
    py::gil_scoped_release release;
    B::max_pool2d_forward(s, relu_after, xp, yp);
  }, py::arg("x"), py::arg("y"), py::arg("geometry"), py::arg("relu_after") = false);

  m.def("max_pool2d_backward", [](py::handle grad_y, py::handle x, py::handle grad_x,
                                  const Pool2dShape& s, bool relu_after) {
    check_geometry(pool_geometry_error(s));
    const float* gyp = B::template in<float>(grad_y, s.N * s.C * s.P * s.Q, "grad_y");
    const float* xp = B::template in<float>(x, s.N * s.C * s.H * s.W, "x");
    float* gxp = B::template out<float>(grad_x, s.N * s.C * s.H * s.W, "grad_x");
    B::prepare();
    py::gil_scoped_release release;
    B::max_pool2d_backward(s, relu_after, gyp, xp, gxp);
  }, py::arg("grad_y"), py::arg("x"), py::arg("grad_x"), py::arg("geometry"),
        py::arg("relu_after") = false);

  m.def("avg_pool2d_forward", [](py::handle x, py::handle y, const Pool2dShape& s,
                                 bool count_include_pad, bool relu_before) {
    check_geometry(pool_geometry_error(s));
    const float* xp = B::template in<float>(x, s.N * s.C * s.H * s.W, "x");
    float* yp = B::template out<float>(y, s.N * s.C * s.P * s.Q, "y");
    B::prepare();
    py::gil_scoped_release release;
    B::avg_pool2d_forward(s, count_include_pad, relu_before, xp, yp);
  }, py::arg("x"), py::arg("y"), py::arg("geometry"), py::arg("count_include_pad"),
        py::arg("relu_before") = false);

  m.def("avg_pool2d_backward", [](py::handle grad_y, py::handle grad_x, const Pool2dShape& s,
                                  bool count_include_pad, py::handle relu_x) {
    check_geometry(pool_geometry_error(s));
    const float* gyp = B::template in<float>(grad_y, s.N * s.C * s.P * s.Q, "grad_y");
    const float* rxp =
        relu_x.is_none() ? nullptr : B::template in<float>(relu_x, s.N * s.C * s.H * s.W, "x");
    float* gxp = B::template out<float>(grad_x, s.N * s.C * s.H * s.W, "grad_x");
    B::prepare();
    py::gil_scoped_release release;
    B::avg_pool2d_backward(s, count_include_pad, gyp, rxp, gxp);
  }, py::arg("grad_y"), py::arg("grad_x"), py::arg("geometry"), py::arg("count_include_pad"),
        py::arg("relu_x") = py::none());

  m.def("gram_forward", [](py::handle x, py::handle g, int64_t N, int64_t C, int64_t HW) {
    if (N < 0 || C < 0 || HW < 1) throw py::value_error("gram: bad sizes");
    const float* xp = B::template in<float>(x, N * C * HW, "x");
    float* gp = B::template out<float>(g, N * C * C, "g");
    B::prepare();
    py::gil_scoped_release release;
    B::gram_forward(N, C, HW, xp, gp);
  });

  m.def("gram_backward", [](py::handle grad_g, py::handle x, py::handle grad_x, int64_t N,
                            int64_t C, int64_t HW) {
    if (N < 0 || C < 0 || HW < 1) throw py::value_error("gram: bad sizes");
    const float* ggp = B::template in<float>(grad_g, N * C * C, "grad_g");
    const float* xp = B::template in<float>(x, N * C * HW, "x");
    float* gxp = B::template out<float>(grad_x, N * C * HW, "grad_x");
    B::prepare();
    py::gil_scoped_release release;
    B::gram_backward(N, C, HW, ggp, xp, gxp);
  });

  // Elementwise kernels: n is the size of every buffer.
  using Unary = void (*)(int64_t, const float*, float*);
  using UnaryBackward = void (*)(int64_t, const float*, const float*, float*);
  auto unary = [&m](const char* name, Unary kernel) {
    m.def(name, [kernel](py::handle x, py::handle y, int64_t n) {
      const float* xp = B::template in<float>(x, n, "x");
      float* yp = B::template out<float>(y, n, "y");
      B::prepare();
      py::gil_scoped_release release;
      kernel(n, xp, yp);
    });
  };
  auto unary_backward = [&m](const char* name, UnaryBackward kernel) {
    m.def(name, [kernel](py::handle grad_y, py::handle saved, py::handle grad_x, int64_t n) {
      const float* gyp = B::template in<float>(grad_y, n, "grad_y");
      const float* sp = B::template in<float>(saved, n, "saved");
      float* gxp = B::template out<float>(grad_x, n, "grad_x");
      B::prepare();
      py::gil_scoped_release release;
      kernel(n, gyp, sp, gxp);
    });
  };
  unary("relu_forward", B::relu_forward);
  unary_backward("relu_backward", B::relu_backward);
  unary("sigmoid_forward", B::sigmoid_forward);
  unary_backward("sigmoid_backward", B::sigmoid_backward);
  unary("tanh_forward", B::tanh_forward);
  unary_backward("tanh_backward", B::tanh_backward);

  m.def("leaky_relu_forward", [](py::handle x, py::handle y, int64_t n, float slope) {
    const float* xp = B::template in<float>(x, n, "x");
    float* yp = B::template out<float>(y, n, "y");
    B::prepare();
    py::gil_scoped_release release;
    B::leaky_relu_forward(n, slope, xp, yp);
  });

  m.def("leaky_relu_backward", [](py::handle grad_y, py::handle x, py::handle grad_x, int64_t n,
                                  float slope) {
    const float* gyp = B::template in<float>(grad_y, n, "grad_y");
    const float* xp = B::template in<float>(x, n, "x");
    float* gxp = B::template out<float>(grad_x, n, "grad_x");
    B::prepare();
    py::gil_scoped_release release;
    B::leaky_relu_backward(n, slope, gyp, xp, gxp);
  });

  // Optimiser updates, in place over n elements (updates.h); velocity may be None.
  m.def("sgd_update", [](py::handle param, py::handle grad, py::handle velocity, int64_t n,
                         float lr, float momentum, float weight_decay) {
    float* pp = B::template out<float>(param, n, "param");
    const float* gp = B::template in<float>(grad, n, "grad");
    float* vp = optional_out<B, float>(velocity, n, "velocity");
    B::prepare();
    py::gil_scoped_release release;
    B::sgd_update(n, SgdUpdate{lr, momentum, weight_decay}, pp, gp, vp);
  });

  m.def("adam_update", [](py::handle param, py::handle grad, py::handle m_buffer,
                          py::handle v_buffer, int64_t n, float step_size, float beta1,
                          float beta2, float eps, float correction2, float weight_decay) {
    float* pp = B::template out<float>(param, n, "param");
    const float* gp = B::template in<float>(grad, n, "grad");
    float* mp = B::template out<float>(m_buffer, n, "m");
    float* vp = B::template out<float>(v_buffer, n, "v");
    B::prepare();
    py::gil_scoped_release release;
    B::adam_update(n, AdamUpdate{step_size, beta1, beta2, eps, correction2, weight_decay}, pp,
                   gp, mp, vp);
  });

  m.def("softmax_cross_entropy", [](py::handle logits, py::handle labels, py::handle grad,
                                    int64_t N, int64_t K) {
    if (N < 1 || K < 1) throw py::value_error("softmax_cross_entropy: empty logits");
    const float* xp = B::template in<float>(logits, N * K, "logits");
    const int64_t* lp = B::template in<int64_t>(labels, N, "labels");
    float* gp = B::template out<float>(grad, N * K, "grad_logits");
    B::check_labels(lp, N, K);
    B::prepare();
    py::gil_scoped_release release;
    return B::softmax_cross_entropy(N, K, xp, lp, gp);
  });
}

}  // namespace ds::bind

// pybind11 bindings of the CPU kernels: module deepstyle._cpu.
//
// deepstyle.ops validates arguments and computes output geometry; these bindings only check that
// every buffer is as large as the geometry says (so a direct call can never read out of bounds),
// allocate outputs, and release the GIL while a kernel runs.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include <stdexcept>
#include <string>

#include "activations.h"
#include "conv.h"
#include "gemm.h"
#include "gram.h"
#include "loss.h"
#include "pool.h"
#include "threads.h"

namespace py = pybind11;

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using LabelArray = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

void require_size(const py::array& a, int64_t expected, const char* name) {
  if (a.size() != expected)
    throw py::value_error(std::string(name) + ": expected " + std::to_string(expected) +
                          " elements, got " + std::to_string(a.size()));
}

FloatArray empty_like_shape(std::vector<py::ssize_t> shape) { return FloatArray(shape); }

// --- gemm -----------------------------------------------------------------------------------
void gemm(FloatArray a, FloatArray b, py::array_t<float, py::array::c_style> c, bool trans_a,
          bool trans_b, float alpha, float beta) {
  if (a.ndim() != 2 || b.ndim() != 2 || c.ndim() != 2)
    throw py::value_error("gemm: a, b and c must be 2-D");
  const int64_t M = trans_a ? a.shape(1) : a.shape(0), K = trans_a ? a.shape(0) : a.shape(1);
  const int64_t Kb = trans_b ? b.shape(1) : b.shape(0), N = trans_b ? b.shape(0) : b.shape(1);
  if (K != Kb || c.shape(0) != M || c.shape(1) != N)
    throw py::value_error("gemm: inconsistent shapes");
  float* cp = c.mutable_data();
  const float *ap = a.data(), *bp = b.data();
  const int64_t lda = a.shape(1), ldb = b.shape(1);
  py::gil_scoped_release release;
  ds::sgemm(trans_a, trans_b, M, N, K, alpha, ap, lda, bp, ldb, beta, cp, N);
}

// --- conv -----------------------------------------------------------------------------------
ds::Conv2dShape conv_shape(const py::array& x, const py::array& w, int64_t sh, int64_t sw,
                           int64_t ph, int64_t pw) {
  if (x.ndim() != 4 || w.ndim() != 4) throw py::value_error("conv2d: x and weight must be 4-D");
  if (sh <= 0 || sw <= 0 || ph < 0 || pw < 0) throw py::value_error("conv2d: bad stride/padding");
  ds::Conv2dShape s{x.shape(0), x.shape(1), x.shape(2), x.shape(3), w.shape(0), w.shape(2),
                    w.shape(3), sh, sw, ph, pw, 0, 0};
  if (w.shape(1) != s.C) throw py::value_error("conv2d: channel mismatch");
  if (s.H + 2 * ph < s.R || s.W + 2 * pw < s.S)
    throw py::value_error("conv2d: kernel larger than padded input");
  s.P = (s.H + 2 * ph - s.R) / sh + 1;
  s.Q = (s.W + 2 * pw - s.S) / sw + 1;
  return s;
}

FloatArray conv2d_forward(FloatArray x, FloatArray w, std::optional<FloatArray> bias, int64_t sh,
                          int64_t sw, int64_t ph, int64_t pw, int algo) {
  const ds::Conv2dShape s = conv_shape(x, w, sh, sw, ph, pw);
  if (bias) require_size(*bias, s.K, "bias");
  FloatArray y = empty_like_shape({s.N, s.K, s.P, s.Q});
  const float* bp = bias ? bias->data() : nullptr;
  const float *xp = x.data(), *wp = w.data();
  float* yp = y.mutable_data();
  py::gil_scoped_release release;
  ds::conv2d_forward(s, xp, wp, bp, yp, static_cast<ds::ConvAlgo>(algo));
  return y;
}

py::tuple conv2d_backward(FloatArray grad_y, FloatArray x, FloatArray w, int64_t sh, int64_t sw,
                          int64_t ph, int64_t pw, bool need_x, bool need_weight, bool need_bias,
                          int algo) {
  const ds::Conv2dShape s = conv_shape(x, w, sh, sw, ph, pw);
  require_size(grad_y, s.N * s.K * s.P * s.Q, "grad_y");
  py::object gx = py::none(), gw = py::none(), gb = py::none();
  float *gxp = nullptr, *gwp = nullptr, *gbp = nullptr;
  if (need_x) {
    FloatArray a = empty_like_shape({s.N, s.C, s.H, s.W});
    gxp = a.mutable_data();
    gx = a;
  }
  if (need_weight) {
    FloatArray a = empty_like_shape({s.K, s.C, s.R, s.S});
    gwp = a.mutable_data();
    gw = a;
  }
  if (need_bias) {
    FloatArray a = empty_like_shape({s.K});
    gbp = a.mutable_data();
    gb = a;
  }
  const float *gyp = grad_y.data(), *xp = x.data(), *wp = w.data();
  {
    py::gil_scoped_release release;
    ds::conv2d_backward(s, gyp, xp, wp, gxp, gwp, gbp, static_cast<ds::ConvAlgo>(algo));
  }
  return py::make_tuple(gx, gw, gb);
}

// --- pooling --------------------------------------------------------------------------------
ds::Pool2dShape pool_shape(const py::array& x, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                           int64_t ph, int64_t pw, int64_t P, int64_t Q) {
  if (x.ndim() != 4) throw py::value_error("pool2d: x must be 4-D");
  if (kh <= 0 || kw <= 0 || sh <= 0 || sw <= 0 || ph < 0 || pw < 0 || P <= 0 || Q <= 0)
    throw py::value_error("pool2d: bad kernel/stride/padding/output size");
  // Every window must start inside the padded input, so none reads past it.
  if ((P - 1) * sh >= x.shape(2) + ph || (Q - 1) * sw >= x.shape(3) + pw)
    throw py::value_error("pool2d: output size too large for the input");
  return {x.shape(0), x.shape(1), x.shape(2), x.shape(3), kh, kw, sh, sw, ph, pw, P, Q};
}

FloatArray max_pool2d_forward(FloatArray x, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                              int64_t ph, int64_t pw, int64_t P, int64_t Q) {
  const ds::Pool2dShape s = pool_shape(x, kh, kw, sh, sw, ph, pw, P, Q);
  FloatArray y = empty_like_shape({s.N, s.C, P, Q});
  const float* xp = x.data();
  float* yp = y.mutable_data();
  py::gil_scoped_release release;
  ds::max_pool2d_forward(s, xp, yp);
  return y;
}

FloatArray max_pool2d_backward(FloatArray grad_y, FloatArray x, int64_t kh, int64_t kw, int64_t sh,
                               int64_t sw, int64_t ph, int64_t pw, int64_t P, int64_t Q) {
  const ds::Pool2dShape s = pool_shape(x, kh, kw, sh, sw, ph, pw, P, Q);
  require_size(grad_y, s.N * s.C * P * Q, "grad_y");
  FloatArray gx = empty_like_shape({s.N, s.C, s.H, s.W});
  const float *gyp = grad_y.data(), *xp = x.data();
  float* gxp = gx.mutable_data();
  py::gil_scoped_release release;
  ds::max_pool2d_backward(s, gyp, xp, gxp);
  return gx;
}

using IndexArray = py::array_t<int32_t, py::array::c_style>;

py::tuple max_pool2d_forward_indices(FloatArray x, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                                     int64_t ph, int64_t pw, int64_t P, int64_t Q) {
  const ds::Pool2dShape s = pool_shape(x, kh, kw, sh, sw, ph, pw, P, Q);
  if (s.H * s.W >= (int64_t{1} << 31))
    throw py::value_error("max_pool2d: return_indices needs planes of fewer than 2^31 cells");
  FloatArray y = empty_like_shape({s.N, s.C, P, Q});
  IndexArray indices(std::vector<py::ssize_t>{s.N, s.C, P, Q});
  const float* xp = x.data();
  float* yp = y.mutable_data();
  int32_t* ip = indices.mutable_data();
  {
    py::gil_scoped_release release;
    ds::max_pool2d_forward_indices(s, xp, yp, ip);
  }
  return py::make_tuple(y, indices);
}

FloatArray max_pool2d_backward_indices(FloatArray grad_y, IndexArray indices,
                                       py::array x_shape_source, int64_t kh, int64_t kw,
                                       int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t P,
                                       int64_t Q) {
  const ds::Pool2dShape s = pool_shape(x_shape_source, kh, kw, sh, sw, ph, pw, P, Q);
  require_size(grad_y, s.N * s.C * P * Q, "grad_y");
  require_size(indices, s.N * s.C * P * Q, "indices");
  FloatArray gx = empty_like_shape({s.N, s.C, s.H, s.W});
  const float* gyp = grad_y.data();
  const int32_t* ip = indices.data();
  float* gxp = gx.mutable_data();
  bool valid;
  {
    py::gil_scoped_release release;
    valid = ds::max_pool2d_backward_indices(s, gyp, ip, gxp);
  }
  if (!valid)
    throw py::value_error(
        "indices: expected the argmax of each window, as max_pool2d(..., return_indices=True) "
        "returns them, got an index outside the input plane or its window");
  return gx;
}

FloatArray avg_pool2d_forward(FloatArray x, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                              int64_t ph, int64_t pw, int64_t P, int64_t Q,
                              bool count_include_pad) {
  const ds::Pool2dShape s = pool_shape(x, kh, kw, sh, sw, ph, pw, P, Q);
  FloatArray y = empty_like_shape({s.N, s.C, P, Q});
  const float* xp = x.data();
  float* yp = y.mutable_data();
  py::gil_scoped_release release;
  ds::avg_pool2d_forward(s, count_include_pad, xp, yp);
  return y;
}

FloatArray avg_pool2d_backward(FloatArray grad_y, py::array x_shape_source, int64_t kh,
                               int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                               int64_t P, int64_t Q, bool count_include_pad) {
  const ds::Pool2dShape s = pool_shape(x_shape_source, kh, kw, sh, sw, ph, pw, P, Q);
  require_size(grad_y, s.N * s.C * P * Q, "grad_y");
  FloatArray gx = empty_like_shape({s.N, s.C, s.H, s.W});
  const float* gyp = grad_y.data();
  float* gxp = gx.mutable_data();
  py::gil_scoped_release release;
  ds::avg_pool2d_backward(s, count_include_pad, gyp, gxp);
  return gx;
}

// --- gram -----------------------------------------------------------------------------------
FloatArray gram_forward(FloatArray x) {
  if (x.ndim() != 4) throw py::value_error("gram: x must be 4-D");
  const int64_t N = x.shape(0), C = x.shape(1), HW = x.shape(2) * x.shape(3);
  FloatArray g = empty_like_shape({N, C, C});
  const float* xp = x.data();
  float* gp = g.mutable_data();
  py::gil_scoped_release release;
  ds::gram_forward(N, C, HW, xp, gp);
  return g;
}

FloatArray gram_backward(FloatArray grad_g, FloatArray x) {
  if (x.ndim() != 4) throw py::value_error("gram: x must be 4-D");
  const int64_t N = x.shape(0), C = x.shape(1), HW = x.shape(2) * x.shape(3);
  require_size(grad_g, N * C * C, "grad_g");
  FloatArray gx = empty_like_shape({N, C, x.shape(2), x.shape(3)});
  const float *ggp = grad_g.data(), *xp = x.data();
  float* gxp = gx.mutable_data();
  py::gil_scoped_release release;
  ds::gram_backward(N, C, HW, ggp, xp, gxp);
  return gx;
}

// --- activations ----------------------------------------------------------------------------
template <void (*Kernel)(int64_t, const float*, float*)>
FloatArray unary(FloatArray x) {
  FloatArray y(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  const float* xp = x.data();
  float* yp = y.mutable_data();
  const int64_t n = x.size();
  py::gil_scoped_release release;
  Kernel(n, xp, yp);
  return y;
}

template <void (*Kernel)(int64_t, const float*, const float*, float*)>
FloatArray unary_backward(FloatArray grad_y, FloatArray saved) {
  require_size(grad_y, saved.size(), "grad_y");
  FloatArray gx(std::vector<py::ssize_t>(saved.shape(), saved.shape() + saved.ndim()));
  const float *gyp = grad_y.data(), *sp = saved.data();
  float* gxp = gx.mutable_data();
  const int64_t n = saved.size();
  py::gil_scoped_release release;
  Kernel(n, gyp, sp, gxp);
  return gx;
}

FloatArray leaky_relu_forward(FloatArray x, float slope) {
  FloatArray y(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  const float* xp = x.data();
  float* yp = y.mutable_data();
  const int64_t n = x.size();
  py::gil_scoped_release release;
  ds::leaky_relu_forward(n, slope, xp, yp);
  return y;
}

FloatArray leaky_relu_backward(FloatArray grad_y, FloatArray x, float slope) {
  require_size(grad_y, x.size(), "grad_y");
  FloatArray gx(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  const float *gyp = grad_y.data(), *xp = x.data();
  float* gxp = gx.mutable_data();
  const int64_t n = x.size();
  py::gil_scoped_release release;
  ds::leaky_relu_backward(n, slope, gyp, xp, gxp);
  return gx;
}

// --- loss -----------------------------------------------------------------------------------
py::tuple softmax_cross_entropy(FloatArray logits, LabelArray labels) {
  if (logits.ndim() != 2 || labels.ndim() != 1 || labels.shape(0) != logits.shape(0))
    throw py::value_error("softmax_cross_entropy: logits must be (N, K) and labels (N,)");
  const int64_t N = logits.shape(0), K = logits.shape(1);
  if (N == 0 || K == 0) throw py::value_error("softmax_cross_entropy: empty logits");
  const int64_t* lp = labels.data();
  for (int64_t i = 0; i < N; ++i)
    if (lp[i] < 0 || lp[i] >= K) throw py::value_error("softmax_cross_entropy: label out of range");
  FloatArray grad = empty_like_shape({N, K});
  const float* xp = logits.data();
  float* gp = grad.mutable_data();
  double loss;
  {
    py::gil_scoped_release release;
    loss = ds::softmax_cross_entropy(N, K, xp, lp, gp);
  }
  return py::make_tuple(loss, grad);
}

}  // namespace

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "deepstyle CPU kernels (use deepstyle.ops, which validates arguments)";
  m.def("set_num_threads", &ds::set_num_threads);
  m.def("get_num_threads", &ds::num_threads);
  m.def("max_hardware_threads", &ds::max_hardware_threads);
  m.attr("simd_level") = ds::simd_level();

  m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("c").noconvert(), py::arg("trans_a"),
        py::arg("trans_b"), py::arg("alpha"), py::arg("beta"));
  // algo: ds::ConvAlgo (0 auto, 1 direct, 2 winograd)
  m.def("conv2d_forward", &conv2d_forward, py::arg("x"), py::arg("weight"), py::arg("bias"),
        py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_h"), py::arg("pad_w"),
        py::arg("algo") = 0);
  m.def("conv2d_backward", &conv2d_backward, py::arg("grad_y"), py::arg("x"), py::arg("weight"),
        py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_h"), py::arg("pad_w"),
        py::arg("need_x"), py::arg("need_weight"), py::arg("need_bias"), py::arg("algo") = 0);
  m.def("max_pool2d_forward", &max_pool2d_forward);
  m.def("max_pool2d_backward", &max_pool2d_backward);
  m.def("max_pool2d_forward_indices", &max_pool2d_forward_indices);
  m.def("max_pool2d_backward_indices", &max_pool2d_backward_indices);
  m.def("avg_pool2d_forward", &avg_pool2d_forward);
  m.def("avg_pool2d_backward", &avg_pool2d_backward);
  m.def("gram_forward", &gram_forward);
  m.def("gram_backward", &gram_backward);
  m.def("relu_forward", &unary<ds::relu_forward>);
  m.def("relu_backward", &unary_backward<ds::relu_backward>);
  m.def("sigmoid_forward", &unary<ds::sigmoid_forward>);
  m.def("sigmoid_backward", &unary_backward<ds::sigmoid_backward>);
  m.def("tanh_forward", &unary<ds::tanh_forward>);
  m.def("tanh_backward", &unary_backward<ds::tanh_backward>);
  m.def("leaky_relu_forward", &leaky_relu_forward);
  m.def("leaky_relu_backward", &leaky_relu_backward);
  m.def("softmax_cross_entropy", &softmax_cross_entropy);
}

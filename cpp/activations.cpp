// Elementwise maps: one vectorisable loop each, split across threads only when the array is
// large enough to pay for waking them.
#include "activations.h"

#include <cmath>

#include "threads.h"

namespace ds::cpu {
namespace {

constexpr int64_t kParallelThreshold = 1 << 16;

template <typename F>
void elementwise(int64_t n, F f) {
  const int threads = n >= kParallelThreshold ? num_threads() : 1;
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    // A copy local to each thread: GCC then keeps the captured pointers in registers. Read
    // through the shared closure, every element reloaded them and no loop vectorised.
    const F local = f;
#pragma omp for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) local(i);
  }
}

}  // namespace

void relu_forward(int64_t n, const float* x, float* y) {
  // "not below zero" rather than "above zero", so that NaN passes through as in PyTorch
  // instead of hiding a diverged computation.
  elementwise(n, [=](int64_t i) { y[i] = x[i] < 0.0f ? 0.0f : x[i]; });
}

void relu_backward(int64_t n, const float* grad_y, const float* x, float* grad_x) {
  elementwise(n, [=](int64_t i) { grad_x[i] = x[i] > 0.0f ? grad_y[i] : 0.0f; });
}

void leaky_relu_forward(int64_t n, float slope, const float* x, float* y) {
  elementwise(n, [=](int64_t i) { y[i] = x[i] > 0.0f ? x[i] : slope * x[i]; });
}

void leaky_relu_backward(int64_t n, float slope, const float* grad_y, const float* x,
                         float* grad_x) {
  elementwise(n, [=](int64_t i) { grad_x[i] = x[i] > 0.0f ? grad_y[i] : slope * grad_y[i]; });
}

void sigmoid_forward(int64_t n, const float* x, float* y) {
  // exp(-x) overflows to inf for very negative x, which still gives the right limit 0.
  elementwise(n, [=](int64_t i) { y[i] = 1.0f / (1.0f + std::exp(-x[i])); });
}

void sigmoid_backward(int64_t n, const float* grad_y, const float* y, float* grad_x) {
  elementwise(n, [=](int64_t i) { grad_x[i] = grad_y[i] * y[i] * (1.0f - y[i]); });
}

void tanh_forward(int64_t n, const float* x, float* y) {
  elementwise(n, [=](int64_t i) { y[i] = std::tanh(x[i]); });
}

void tanh_backward(int64_t n, const float* grad_y, const float* y, float* grad_x) {
  elementwise(n, [=](int64_t i) { grad_x[i] = grad_y[i] * (1.0f - y[i] * y[i]); });
}

}  // namespace ds::cpu

// Elementwise maps: one vectorisable loop each (elementwise.h).
#include "activations.h"

#include <cmath>

#include "elementwise.h"

namespace ds::cpu {

void relu_forward(int64_t n, const float* x, float* y) {
  // "not below zero" rather than "above zero", so that NaN passes through as in PyTorch
  // instead of hiding a diverged computation.
  for_each_element(n, [=](int64_t i) { y[i] = x[i] < 0.0f ? 0.0f : x[i]; });
}

void relu_backward(int64_t n, const float* grad_y, const float* x, float* grad_x) {
  for_each_element(n, [=](int64_t i) { grad_x[i] = x[i] > 0.0f ? grad_y[i] : 0.0f; });
}

void leaky_relu_forward(int64_t n, float slope, const float* x, float* y) {
  for_each_element(n, [=](int64_t i) { y[i] = x[i] > 0.0f ? x[i] : slope * x[i]; });
}

void leaky_relu_backward(int64_t n, float slope, const float* grad_y, const float* x,
                         float* grad_x) {
  for_each_element(n, [=](int64_t i) { grad_x[i] = x[i] > 0.0f ? grad_y[i] : slope * grad_y[i]; });
}

void sigmoid_forward(int64_t n, const float* x, float* y) {
  // exp(-x) overflows to inf for very negative x, which still gives the right limit 0.
  for_each_element(n, [=](int64_t i) { y[i] = 1.0f / (1.0f + std::exp(-x[i])); });
}

void sigmoid_backward(int64_t n, const float* grad_y, const float* y, float* grad_x) {
  for_each_element(n, [=](int64_t i) { grad_x[i] = grad_y[i] * y[i] * (1.0f - y[i]); });
}

void tanh_forward(int64_t n, const float* x, float* y) {
  for_each_element(n, [=](int64_t i) { y[i] = std::tanh(x[i]); });
}

void tanh_backward(int64_t n, const float* grad_y, const float* y, float* grad_x) {
  for_each_element(n, [=](int64_t i) { grad_x[i] = grad_y[i] * (1.0f - y[i] * y[i]); });
}

}  // namespace ds::cpu

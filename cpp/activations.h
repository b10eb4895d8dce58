#pragma once

#include <cstdint>

namespace ds::cpu {

// Elementwise activations over n floats and their backward passes. Backward passes take the
// forward input x (relu, leaky_relu) or the forward output y (sigmoid, tanh), whichever the
// derivative is cheapest from.
void relu_forward(int64_t n, const float* x, float* y);
void relu_backward(int64_t n, const float* grad_y, const float* x, float* grad_x);
void leaky_relu_forward(int64_t n, float slope, const float* x, float* y);
void leaky_relu_backward(int64_t n, float slope, const float* grad_y, const float* x,
                         float* grad_x);
void sigmoid_forward(int64_t n, const float* x, float* y);
void sigmoid_backward(int64_t n, const float* grad_y, const float* y, float* grad_x);
void tanh_forward(int64_t n, const float* x, float* y);
void tanh_backward(int64_t n, const float* grad_y, const float* y, float* grad_x);

}  // namespace ds::cpu

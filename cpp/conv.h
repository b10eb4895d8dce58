#pragma once

#include <cstdint>

namespace ds {

// Geometry of a 2-D convolution in PyTorch's conventions: x (N, C, H, W), weight (K, C, R, S),
// y (N, K, P, Q) with P = (H + 2*pad_h - R) / stride_h + 1 and Q likewise.
struct Conv2dShape {
  int64_t N, C, H, W;
  int64_t K, R, S;
  int64_t stride_h, stride_w, pad_h, pad_w;
  int64_t P, Q;
};

// Which algorithm computes the forward pass and grad_x: kAuto picks the faster one for the
// shape; kWinograd needs a 3x3 kernel with stride 1 and padding <= 2 (winograd_applies) and
// falls back to the direct kernels otherwise; grad_weight is always direct.
enum class ConvAlgo { kAuto, kDirect, kWinograd };

// y = conv(x, weight) + bias; bias may be null.
void conv2d_forward(const Conv2dShape& s, const float* x, const float* weight, const float* bias,
                    float* y, ConvAlgo algo = ConvAlgo::kAuto);

// Gradients of conv2d_forward. Each of grad_x, grad_weight, grad_bias may be null to skip it.
void conv2d_backward(const Conv2dShape& s, const float* grad_y, const float* x,
                     const float* weight, float* grad_x, float* grad_weight, float* grad_bias,
                     ConvAlgo algo = ConvAlgo::kAuto);

}  // namespace ds

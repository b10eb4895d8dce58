#pragma once

#include <cstdint>

#include "shapes.h"

namespace ds::cpu {

// y = conv(x, weight) + bias; bias may be null. kAuto takes Winograd where it pays off
// (winograd_pays_off_forward), else the direct kernels.
void conv2d_forward(const Conv2dShape& s, const float* x, const float* weight, const float* bias,
                    float* y, ConvAlgo algo = ConvAlgo::kAuto);

// Gradients of conv2d_forward. Each of grad_x, grad_weight, grad_bias may be null to skip it.
void conv2d_backward(const Conv2dShape& s, const float* grad_y, const float* x,
                     const float* weight, float* grad_x, float* grad_weight, float* grad_bias,
                     ConvAlgo algo = ConvAlgo::kAuto);

}  // namespace ds::cpu

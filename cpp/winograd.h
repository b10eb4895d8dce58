#pragma once

#include "shapes.h"

namespace ds::cpu {

// Whether a convolution has the geometry the Winograd kernels take: stride 1 and a 3x3 kernel
// with padding at most 2 on each side or a 5x5 one with padding at most 4 (grad_x is then a
// convolution with padding r - 1 - pad).
bool winograd_applies(const Conv2dShape& s);

// Whether the Winograd kernels are expected to beat the direct ones on this shape (enough input
// and output channels to amortise the transforms, enough tiles to fill the GEMM panels).
bool winograd_pays_off_forward(const Conv2dShape& s);
bool winograd_pays_off_grad_x(const Conv2dShape& s);

// y = conv(x, weight) + bias (bias may be null), by Winograd F(4x4, 3x3) or F(2x2, 5x5).
// Needs winograd_applies.
void winograd_forward(const Conv2dShape& s, const float* x, const float* weight, const float* bias,
                      float* y);

// grad_x of conv2d_forward, by Winograd F(4x4, 3x3) or F(2x2, 5x5). Needs winograd_applies.
void winograd_grad_x(const Conv2dShape& s, const float* grad_y, const float* weight,
                     float* grad_x);

}  // namespace ds::cpu

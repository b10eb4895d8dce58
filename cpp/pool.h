#pragma once

#include <cstdint>

#include "shapes.h"

namespace ds::cpu {

// Max over each window; padding counts as -inf.
void max_pool2d_forward(const Pool2dShape& s, const float* x, float* y);
// Routes each grad_y to the first maximum of its window (PyTorch's tie rule).
void max_pool2d_backward(const Pool2dShape& s, const float* grad_y, const float* x,
                         float* grad_x);

// Mean over each window. The divisor is the window clipped to the padded input when
// count_include_pad, else clipped to the input itself.
void avg_pool2d_forward(const Pool2dShape& s, bool count_include_pad, const float* x, float* y);
void avg_pool2d_backward(const Pool2dShape& s, bool count_include_pad, const float* grad_y,
                         float* grad_x);

}  // namespace ds::cpu

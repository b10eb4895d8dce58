#pragma once

#include <cstdint>

#include "shapes.h"

namespace ds::cpu {

// Max over each window; padding counts as -inf.
void max_pool2d_forward(const Pool2dShape& s, const float* x, float* y);
// Routes each grad_y to the first maximum of its window (PyTorch's tie rule).
void max_pool2d_backward(const Pool2dShape& s, const float* grad_y, const float* x,
                         float* grad_x);

// max_pool2d_forward that also records where each maximum is: indices[n, c, p, q] = h * W + w
// of the cell max_pool2d_backward would route grad_y[n, c, p, q] to. Needs H * W < 2^31.
void max_pool2d_forward_indices(const Pool2dShape& s, const float* x, float* y, int32_t* indices);
// grad_x from those indices: a scatter, with no search. Returns false (grad_x then undefined)
// if an index lies outside its window's plane, or, for disjoint 2x2 stride-2 windows over the
// whole input, outside its window.
bool max_pool2d_backward_indices(const Pool2dShape& s, const float* grad_y, const int32_t* indices,
                                 float* grad_x);

// Mean over each window. The divisor is the window clipped to the padded input when
// count_include_pad, else clipped to the input itself.
void avg_pool2d_forward(const Pool2dShape& s, bool count_include_pad, const float* x, float* y);
void avg_pool2d_backward(const Pool2dShape& s, bool count_include_pad, const float* grad_y,
                         float* grad_x);

}  // namespace ds::cpu

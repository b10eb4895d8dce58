#pragma once

#include <cstdint>

#include "shapes.h"

namespace ds::cpu {

// Max over each window; padding counts as -inf. relu_after: y = ReLU(max), a max-pool followed by
// a ReLU in one pass (ReLU commutes with the max).
void max_pool2d_forward(const Pool2dShape& s, bool relu_after, const float* x, float* y);
// Routes each grad_y to the first maximum of its window (PyTorch's tie rule); with relu_after,
// only where that maximum is above 0 (the ReLU's backward).
void max_pool2d_backward(const Pool2dShape& s, bool relu_after, const float* grad_y,
                         const float* x, float* grad_x);

// max_pool2d_forward that also records where each maximum is: indices[n, c, p, q] = h * W + w
// of the cell max_pool2d_backward would route grad_y[n, c, p, q] to. Needs H * W < 2^31.
void max_pool2d_forward_indices(const Pool2dShape& s, bool relu_after, const float* x, float* y,
                                int32_t* indices);
// grad_x from those indices: a scatter, with no search; relu_y (the relu_after forward's y, or
// null): the relu_after backward, routing grad_y only where relu_y is above 0. Returns false
// (grad_x then undefined) if an index lies outside its window's plane, or, for disjoint 2x2
// stride-2 windows over the whole input, outside its window.
bool max_pool2d_backward_indices(const Pool2dShape& s, const float* grad_y, const int32_t* indices,
                                 const float* relu_y, float* grad_x);

// Mean over each window. The divisor is the window clipped to the padded input when
// count_include_pad, else clipped to the input itself. relu_before: the mean of ReLU(x), a ReLU
// followed by an avg-pool in one pass; its backward then takes relu_x, the ReLU's input x, and
// keeps grad_x only where x > 0 (null: no ReLU).
void avg_pool2d_forward(const Pool2dShape& s, bool count_include_pad, bool relu_before,
                        const float* x, float* y);
void avg_pool2d_backward(const Pool2dShape& s, bool count_include_pad, const float* grad_y,
                         const float* relu_x, float* grad_x);

}  // namespace ds::cpu

// Pooling of small planes (CIFAR's 8x8 to 32x32 maps), kVecWidth planes at a time: a block of
// planes is transposed so that each SIMD lane holds one plane, and every window is then the same
// for all lanes -- whole-vector operations with no edge cases per lane, however few output cells
// a row has. Internal to pool.cpp and pool_routing.cpp, which decide where these kernels serve.
#pragma once

#include <cstdint>

#include "shapes.h"

namespace ds::cpu::lanes {

enum class Kernel { kMaxForward, kMaxBackward, kAverage };

// Whether the plane-lane kernel takes this geometry (small planes, where the row kernels spend
// more on per-row and per-plane overheads than on the windows).
bool suits(const Pool2dShape& s, Kernel kernel);

// As max_pool2d_forward(_indices), max_pool2d_backward and avg_pool2d_forward/backward of
// pool.h, for geometries that suit(): the same results, bit for bit, as the row kernels (but for
// the sign of a zero gradient).
void max_forward(const Pool2dShape& s, bool relu_after, const float* x, float* y,
                 int32_t* indices);
void avg_forward(const Pool2dShape& s, bool count_include_pad, bool relu_before, const float* x,
                 float* y);
void avg_backward(const Pool2dShape& s, bool count_include_pad, const float* grad_y,
                  const float* relu_x, float* grad_x);
void max_backward(const Pool2dShape& s, bool relu_after, const float* grad_y, const float* x,
                  float* grad_x);

}  // namespace ds::cpu::lanes

#pragma once

#include <cstdint>

namespace ds::cpu {

// Gram matrices of feature maps: x (N, C, HW) -> g (N, C, C), g[n] = F F^T / HW with F = x[n].
void gram_forward(int64_t N, int64_t C, int64_t HW, const float* x, float* g);

// grad_x[n] = (grad_g[n] + grad_g[n]^T) F / HW.
void gram_backward(int64_t N, int64_t C, int64_t HW, const float* grad_g, const float* x,
                   float* grad_x);

}  // namespace ds::cpu

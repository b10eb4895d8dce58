// The optimisers' elementwise parameter updates, fused into one pass over each parameter: the
// per-element formulas, shared by the CPU loops (updates.cpp) and the CUDA kernels
// (cuda/elementwise.cuh), so both backends compute exactly the same expressions.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define DS_HOST_DEVICE __host__ __device__
#else
#define DS_HOST_DEVICE
#endif

namespace ds {

// SGD with momentum and L2 weight decay, PyTorch's convention (deepstyle.optim.SGD):
//   d = g + weight_decay * p;  v = momentum * v + d;  p -= lr * v
// and without a velocity buffer (plain steps) p -= lr * d. lr already carries the parameter's
// learning-rate multiplier; weight_decay is 0 for biases. (No branch inside: a conditional
// store kept GCC from vectorising the loop.)
struct SgdUpdate {
  float lr, momentum, weight_decay;

  DS_HOST_DEVICE void operator()(int64_t i, float* param, const float* grad,
                                 float* velocity) const {
    float d = grad[i] + weight_decay * param[i];
    d += momentum * velocity[i];
    velocity[i] = d;
    param[i] -= lr * d;
  }

  DS_HOST_DEVICE void operator()(int64_t i, float* param, const float* grad) const {
    param[i] -= lr * (grad[i] + weight_decay * param[i]);
  }
};

// Adam (Kingma & Ba) with bias correction and L2 weight decay added to the gradient:
//   d = g + weight_decay * p;  m = beta1 m + (1 - beta1) d;  v = beta2 v + (1 - beta2) d^2;
//   p -= step_size * m / (sqrt(v / correction2) + eps)
// with step_size = lr * multiplier / (1 - beta1^t) and correction2 = 1 - beta2^t.
struct AdamUpdate {
  float step_size, beta1, beta2, eps, correction2, weight_decay;

  DS_HOST_DEVICE void operator()(int64_t i, float* param, const float* grad, float* m,
                                 float* v) const {
    const float d = grad[i] + weight_decay * param[i];
    const float mi = beta1 * m[i] + (1.0f - beta1) * d;
    const float vi = beta2 * v[i] + (1.0f - beta2) * (d * d);
    m[i] = mi;
    v[i] = vi;
    param[i] -= step_size * mi / (sqrtf(vi / correction2) + eps);
  }
};

namespace cpu {

// Over n elements, in place; velocity may be null (plain SGD steps).
void sgd_update(int64_t n, const SgdUpdate& update, float* param, const float* grad,
                float* velocity);
void adam_update(int64_t n, const AdamUpdate& update, float* param, const float* grad, float* m,
                 float* v);

}  // namespace cpu
}  // namespace ds

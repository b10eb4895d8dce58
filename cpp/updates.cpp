// The fused optimiser updates on the CPU: one pass over each parameter (updates.h).
#include "updates.h"

#include "elementwise.h"

namespace ds::cpu {

// The functors are rebuilt from scalars inside each loop: a captured struct lives in memory,
// which the stores through the float pointers might alias for all GCC knows, so it reloaded
// the fields every iteration and did not vectorise.
void sgd_update(int64_t n, const SgdUpdate& update, float* param, const float* grad,
                float* velocity) {
  const float lr = update.lr, momentum = update.momentum, decay = update.weight_decay;
  if (velocity) {
    for_each_element(n, [=](int64_t i) {
      SgdUpdate{lr, momentum, decay}(i, param, grad, velocity);
    });
  } else {
    for_each_element(n, [=](int64_t i) { SgdUpdate{lr, momentum, decay}(i, param, grad); });
  }
}

void adam_update(int64_t n, const AdamUpdate& update, float* param, const float* grad, float* m,
                 float* v) {
  const float step = update.step_size, b1 = update.beta1, b2 = update.beta2, eps = update.eps;
  const float c2 = update.correction2, decay = update.weight_decay;
  for_each_element(n, [=](int64_t i) { AdamUpdate{step, b1, b2, eps, c2, decay}(i, param, grad, m, v); });
}

}  // namespace ds::cpu

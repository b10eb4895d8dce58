// The fused optimiser updates on the CPU: one pass over each parameter (updates.h).
#include "updates.h"

#include "elementwise.h"

namespace ds::cpu {

void sgd_update(int64_t n, const SgdUpdate& update, float* param, const float* grad,
                float* velocity) {
  const SgdUpdate u = update;
  if (velocity) {
    for_each_element(n, [=](int64_t i) { u(i, param, grad, velocity); });
  } else {  // a separate loop, so that neither tests the pointer per element
    for_each_element(n, [=](int64_t i) { u(i, param, grad, nullptr); });
  }
}

void adam_update(int64_t n, const AdamUpdate& update, float* param, const float* grad, float* m,
                 float* v) {
  const AdamUpdate u = update;
  for_each_element(n, [=](int64_t i) { u(i, param, grad, m, v); });
}

}  // namespace ds::cpu

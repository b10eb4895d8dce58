#pragma once

#include <cstdint>

namespace ds::cpu {

// Mean softmax cross-entropy of logits (N, K) against integer labels (N,), and its gradient
// (softmax - onehot) / N. Shifts each row by its maximum, so large logits do not overflow.
double softmax_cross_entropy(int64_t N, int64_t K, const float* logits, const int64_t* labels,
                             float* grad_logits);

}  // namespace ds::cpu

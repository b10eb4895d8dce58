#include "loss.h"

#include <algorithm>
#include <cmath>

namespace ds::cpu {

double softmax_cross_entropy(int64_t N, int64_t K, const float* logits, const int64_t* labels,
                             float* grad_logits) {
  double total = 0.0;
  for (int64_t i = 0; i < N; ++i) {
    const float* row = logits + i * K;
    float* grad = grad_logits + i * K;
    const float shift = *std::max_element(row, row + K);
    double sum = 0.0;
    for (int64_t k = 0; k < K; ++k) sum += std::exp(static_cast<double>(row[k] - shift));
    total += std::log(sum) - static_cast<double>(row[labels[i]] - shift);
    for (int64_t k = 0; k < K; ++k)
      grad[k] = static_cast<float>(std::exp(static_cast<double>(row[k] - shift)) / sum / N);
    grad[labels[i]] -= 1.0f / static_cast<float>(N);
  }
  return total / static_cast<double>(N);
}

}  // namespace ds::cpu

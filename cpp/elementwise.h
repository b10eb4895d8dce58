// The loop of every elementwise CPU kernel (activations, optimiser updates): one vectorisable
// loop, split across threads only when the array is large enough to pay for waking them.
#pragma once

#include <cstdint>

#include "threads.h"

namespace ds::cpu {

constexpr int64_t kElementwiseParallelThreshold = 1 << 16;

template <typename F>
void for_each_element(int64_t n, F f) {
  const int threads = n >= kElementwiseParallelThreshold ? num_threads() : 1;
#pragma omp parallel for simd schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t i = 0; i < n; ++i) f(i);
}

}  // namespace ds::cpu

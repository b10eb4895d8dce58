// The loop of every elementwise CPU kernel (activations, optimiser updates): one vectorisable
// loop, split across threads only when the array is large enough to pay for waking them.
#pragma once

#include <cstdint>

#include "threads.h"

namespace ds::cpu {

constexpr int64_t kElementwiseParallelThreshold = 1 << 16;

// One thread: a plain `omp simd` loop in a function of its own. (GCC 12 left the loop of
// `parallel for simd ... if (threads > 1)` scalar -- no vector instruction in the activations or
// the updates -- and the same `omp simd` loop written inline below the thread-count test too,
// for Adam's update: "latch block not empty".) The threaded loop's chunks are multiples of the
// vector width (simd:static), so every element takes the same code path (vector body or final
// tail) whatever the thread count, and results stay bitwise independent of it.
template <typename F>
void simd_loop(int64_t n, F f) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) f(i);
}

template <typename F>
void for_each_element(int64_t n, F f) {
  const int threads = n >= kElementwiseParallelThreshold ? num_threads() : 1;
  if (threads <= 1) return simd_loop(n, f);
#pragma omp parallel num_threads(threads)
  {
    // each thread's own copy of the closure: read through the shared one, the captured
    // pointers were reloaded for every element and a conditional load (ReLU backward's
    // grad_y where x > 0) kept the loop scalar and branchy, 10x slower on 512 px maps
    const F local = f;
#pragma omp for simd schedule(simd : static)
    for (int64_t i = 0; i < n; ++i) local(i);
  }
}

}  // namespace ds::cpu

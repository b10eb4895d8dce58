#include "threads.h"

#include <omp.h>

#include <algorithm>
#include <atomic>

namespace ds {

static std::atomic<int> g_num_threads{0};

int max_hardware_threads() { return omp_get_num_procs(); }

// At most kMaxThreads (deepstyle.MAX_THREADS checks the same bound with a clear error): a raw
// call with 100000 would make libgomp overflow its stack creating the threads on the next op.
constexpr int kMaxThreads = 1024;

void set_num_threads(int n) {
  g_num_threads.store(n > 0 ? std::min(n, kMaxThreads) : max_hardware_threads());
}

int num_threads() {
  int n = g_num_threads.load();
  return n > 0 ? n : max_hardware_threads();
}

const char* simd_level() {
#if defined(__AVX512F__)
  return "AVX-512";
#elif defined(__AVX2__)
  return "AVX2";
#elif defined(__AVX__)
  return "AVX";
#elif defined(__SSE2__)
  return "SSE2";
#else
  return "scalar";
#endif
}

}  // namespace ds

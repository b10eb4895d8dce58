// What kernels and launchers share, for nvcc and for the CPU emulation alike: the CUDA runtime
// (or emulation.h), the launch helper that checks every launch, and the stream kernels run on.
// Launches go through launch(), never <<<>>> in a kernel file, so the same source compiles as C++.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#if defined(__CUDACC__)
#include <cuda_runtime.h>
#else
#include "emulation.h"
#endif

namespace ds::cuda {

// CuPy's current stream for the calls of this Python thread (set by the bindings).
cudaStream_t current_stream();
void set_stream(cudaStream_t stream);

// A failed CUDA call becomes an exception naming what was being done (a Python RuntimeError).
inline void check(cudaError_t error, const char* what) {
  if (error != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error in ") + what + ": " +
                             cudaGetErrorString(error));
}

inline unsigned blocks_for(int64_t items, int64_t per_block) {
  return static_cast<unsigned>((items + per_block - 1) / per_block);
}

// kernel<<<grid, block, 0, current_stream()>>>(args...), checked; an empty grid launches
// nothing (CUDA would call it an invalid configuration).
template <class... Params, class... Args>
void launch(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, Args... args) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
#if defined(__CUDACC__)
  kernel<<<grid, block, 0, current_stream()>>>(args...);
#else
  ds::emu::launch(kernel, grid, block, args...);
#endif
  check(cudaGetLastError(), name);
}

// Elementwise kernels: grid-stride loops over at most this many blocks of kBlock threads.
constexpr int kBlock = 256;
constexpr int64_t kMaxBlocks = 4096;

inline unsigned elementwise_blocks(int64_t n) {
  return static_cast<unsigned>(n < kMaxBlocks * kBlock ? blocks_for(n, kBlock) : kMaxBlocks);
}

}  // namespace ds::cuda

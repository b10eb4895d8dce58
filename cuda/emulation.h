// CUDA's execution model on the CPU, so that the kernels of cuda/*.cuh compile unchanged as C++20
// and run in the test suite on machines without a GPU (deepstyle._cuda_emulated).
//
// A launch runs its grid one block at a time. Each CUDA thread of the block is an OS thread
// (created once per launch and reused for every block); __syncthreads() is a std::barrier over
// the block's threads, and the same barrier separates consecutive blocks, so __shared__ arrays
// (static storage: one instance shared by every thread, as on the GPU) are never used by two
// blocks at once. Launches are serialised. Device memory is host memory: the launchers' few
// runtime calls (memset, copy from a symbol, synchronise) map onto their host equivalents.
//
// What this checks: indexing, tiling, bounds, the need for every __syncthreads (a missing one is
// a real data race between OS threads here, and wrong results), shared-memory reuse across
// blocks. What it cannot: warp-level timing, memory coalescing, occupancy, speed.
#pragma once

#if defined(__CUDACC__)
#error "emulation.h is for host compilers only"
#endif

#include <math.h>

#include <atomic>
#include <barrier>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

using cudaStream_t = void*;
enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidConfiguration = 9 };
enum cudaMemcpyKind { cudaMemcpyDeviceToHost = 2 };

inline const char* cudaGetErrorString(cudaError_t error) {
  return error == cudaSuccess ? "no error" : "invalid configuration argument";
}

namespace ds::emu {

inline std::barrier<>* block_barrier = nullptr;
inline std::mutex launch_mutex;
inline cudaError_t last_error = cudaSuccess;

// The grid, block by block, each block's threads on OS threads.
template <class... Params, class... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, Args... args) {
  std::lock_guard<std::mutex> lock(launch_mutex);
  const unsigned threads = block.x * block.y * block.z;
  if (threads == 0 || threads > 1024) {
    last_error = cudaErrorInvalidConfiguration;
    return;
  }
  std::barrier<> barrier(threads);
  block_barrier = &barrier;
  blockDim = block;
  gridDim = grid;
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (unsigned t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      threadIdx = dim3(t % block.x, t / block.x % block.y, t / (block.x * block.y));
      for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
          for (unsigned x = 0; x < grid.x; ++x) {
            blockIdx = dim3(x, y, z);
            kernel(args...);
            barrier.arrive_and_wait();  // the block is done before the next reuses __shared__
          }
    });
  for (std::thread& thread : pool) thread.join();
  block_barrier = nullptr;
}

}  // namespace ds::emu

inline void __syncthreads() { ds::emu::block_barrier->arrive_and_wait(); }

inline float atomicAdd(float* address, float value) {
  return std::atomic_ref<float>(*address).fetch_add(value);
}

inline cudaError_t cudaGetLastError() {
  const cudaError_t error = ds::emu::last_error;
  ds::emu::last_error = cudaSuccess;
  return error;
}

inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

inline cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t) {
  std::memset(ptr, value, bytes);
  return cudaSuccess;
}

template <class T>
cudaError_t cudaMemcpyFromSymbolAsync(void* dst, const T& symbol, size_t bytes, size_t offset,
                                      cudaMemcpyKind, cudaStream_t) {
  std::memcpy(dst, reinterpret_cast<const char*>(&symbol) + offset, bytes);
  return cudaSuccess;
}

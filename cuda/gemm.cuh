// The tiled SGEMM every matrix-shaped kernel goes through, on "problems" that say where op(A) and
// op(B) come from and where C goes, so that convolutions gather their im2col operands straight
// from the images (implicit GEMM: no column matrix is stored) and Gram matrices skip the tiles
// symmetry gives for free.
//
// A block of 16 x 16 threads computes a 64 x 64 tile of C. K is walked in slices of 16: the block
// stages the 64 x 16 slice of op(A) and the 16 x 64 slice of op(B) in shared memory, then each
// thread accumulates a 4 x 4 register block (rows ty + 16 r, columns tx + 16 c: neighbouring
// threads read neighbouring shared-memory words, without bank conflicts). Out-of-range rows,
// columns and depths are staged as zeros, so no tile size is special. blockIdx.z is the batch
// (image) index passed to the problem.
//
// A problem provides M, N, K, a(batch, i, k), b(batch, k, j), skip_tile(row0, col0) (block-uniform)
// and store(batch, i, j, sum).
#pragma once

#include "device.h"

namespace ds::cuda {

constexpr int kTile = 64, kTileK = 16, kThreads = 16, kMicro = kTile / kThreads;

template <class Problem>
__global__ void __launch_bounds__(kThreads * kThreads) tiled_gemm(Problem p) {
  __shared__ float a_tile[kTileK][kTile];
  __shared__ float b_tile[kTileK][kTile];
  const int batch = blockIdx.z;
  const int64_t row0 = (int64_t)blockIdx.y * kTile, col0 = (int64_t)blockIdx.x * kTile;
  if (p.skip_tile(row0, col0)) return;
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * kThreads + tx;
  float acc[kMicro][kMicro];
  for (int r = 0; r < kMicro; ++r)
    for (int c = 0; c < kMicro; ++c) acc[r][c] = 0.0f;
  for (int64_t k0 = 0; k0 < p.K; k0 += kTileK) {
    for (int l = tid; l < kTile * kTileK; l += kThreads * kThreads) {
      const int row = l / kTileK, depth = l % kTileK;
      const int64_t i = row0 + row, k = k0 + depth;
      a_tile[depth][row] = i < p.M && k < p.K ? p.a(batch, i, k) : 0.0f;
    }
    for (int l = tid; l < kTile * kTileK; l += kThreads * kThreads) {
      const int depth = l / kTile, col = l % kTile;
      const int64_t k = k0 + depth, j = col0 + col;
      b_tile[depth][col] = k < p.K && j < p.N ? p.b(batch, k, j) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int depth = 0; depth < kTileK; ++depth) {
      float a[kMicro], b[kMicro];
      for (int r = 0; r < kMicro; ++r) a[r] = a_tile[depth][ty + r * kThreads];
      for (int c = 0; c < kMicro; ++c) b[c] = b_tile[depth][tx + c * kThreads];
      for (int r = 0; r < kMicro; ++r)
        for (int c = 0; c < kMicro; ++c) acc[r][c] += a[r] * b[c];
    }
    __syncthreads();  // the tiles are overwritten by the next slice
  }
  for (int r = 0; r < kMicro; ++r)
    for (int c = 0; c < kMicro; ++c) {
      const int64_t i = row0 + ty + r * kThreads, j = col0 + tx + c * kThreads;
      if (i < p.M && j < p.N) p.store(batch, i, j, acc[r][c]);
    }
}

template <class Problem>
void run_gemm(const char* name, const Problem& p, int64_t batches = 1) {
  launch(name, tiled_gemm<Problem>,
         dim3(blocks_for(p.N, kTile), blocks_for(p.M, kTile), static_cast<unsigned>(batches)),
         dim3(kThreads, kThreads), p);
}

// C = alpha * op(A) * op(B) + beta * C on row-major matrices; beta == 0 never reads C.
struct MatrixProduct {
  int64_t M, N, K;
  const float* A;
  int64_t lda;
  bool trans_a;
  const float* B;
  int64_t ldb;
  bool trans_b;
  float alpha, beta;
  float* C;
  int64_t ldc;

  __device__ float a(int, int64_t i, int64_t k) const {
    return trans_a ? A[k * lda + i] : A[i * lda + k];
  }
  __device__ float b(int, int64_t k, int64_t j) const {
    return trans_b ? B[j * ldb + k] : B[k * ldb + j];
  }
  __device__ bool skip_tile(int64_t, int64_t) const { return false; }
  __device__ void store(int, int64_t i, int64_t j, float sum) const {
    float& c = C[i * ldc + j];
    c = beta == 0.0f ? alpha * sum : alpha * sum + beta * c;
  }
};

}  // namespace ds::cuda

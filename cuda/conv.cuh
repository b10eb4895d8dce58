// 2-D convolution as implicit GEMM on the tiled kernel of gemm.cuh: the im2col operand
// col[(c, r, s), (n, p, q)] = x[n, c, p*stride_h - pad_h + r, q*stride_w - pad_w + s] (zero
// outside the image) is gathered element by element as the tiles are staged, never stored.
//
// forward:      y (K x N.PQ)   = W (K x CRS) . col (CRS x N.PQ) + bias
// grad_weight:  dW (K x CRS)   = dy (K x N.PQ) . col^T
// grad_x:       dx (C x N.HW)  = W^T (C x KRS) . dy gathered as dcol^T: dx[n, c, h, w] sums
//               W[k, c, r, s] dy[n, k, p, q] over the (k, r, s) with p*stride_h - pad_h + r = h
//               (and likewise q), so no col2im scatter and no atomics.
// grad_bias:    one block per output channel, a tree reduction in double.
#pragma once

#include "../cpp/shapes.h"
#include "gemm.cuh"

namespace ds::cuda {

// x value under tap (c, r, s) of output cell (n, p, q) of column `col` = (n, p, q).
__device__ inline float im2col_value(const Conv2dShape& s, const float* x, int64_t crs,
                                     int64_t col) {
  const int64_t c = crs / (s.R * s.S), r = crs / s.S % s.R, t = crs % s.S;
  const int64_t n = col / (s.P * s.Q), p = col / s.Q % s.P, q = col % s.Q;
  const int64_t h = p * s.stride_h - s.pad_h + r, w = q * s.stride_w - s.pad_w + t;
  if (h < 0 || h >= s.H || w < 0 || w >= s.W) return 0.0f;
  return x[((n * s.C + c) * s.H + h) * s.W + w];
}

// Offset of y[n, k, p, q] (or dy's) for output channel k and column `col` = (n, p, q).
__device__ inline int64_t output_offset(const Conv2dShape& s, int64_t k, int64_t col) {
  const int64_t n = col / (s.P * s.Q), pq = col % (s.P * s.Q);
  return (n * s.K + k) * s.P * s.Q + pq;
}

struct ConvForward {
  int64_t M, N, K;  // K_out, N.P.Q, C.R.S
  Conv2dShape s;
  const float *x, *weight, *bias;
  float* y;

  __device__ float a(int, int64_t k, int64_t crs) const { return weight[k * K + crs]; }
  __device__ float b(int, int64_t crs, int64_t col) const { return im2col_value(s, x, crs, col); }
  __device__ bool skip_tile(int64_t, int64_t) const { return false; }
  __device__ void store(int, int64_t k, int64_t col, float sum) const {
    y[output_offset(s, k, col)] = bias ? sum + bias[k] : sum;
  }
};

struct ConvGradWeight {
  int64_t M, N, K;  // K_out, C.R.S, N.P.Q
  Conv2dShape s;
  const float *grad_y, *x;
  float* grad_weight;

  __device__ float a(int, int64_t k, int64_t col) const {
    return grad_y[output_offset(s, k, col)];
  }
  __device__ float b(int, int64_t col, int64_t crs) const { return im2col_value(s, x, crs, col); }
  __device__ bool skip_tile(int64_t, int64_t) const { return false; }
  __device__ void store(int, int64_t k, int64_t crs, float sum) const {
    grad_weight[k * N + crs] = sum;
  }
};

struct ConvGradInput {
  int64_t M, N, K;  // C, N.H.W, K_out.R.S
  Conv2dShape s;
  const float *grad_y, *weight;
  float* grad_x;

  __device__ float a(int, int64_t c, int64_t krs) const {
    const int64_t k = krs / (s.R * s.S), rs = krs % (s.R * s.S);
    return weight[(k * s.C + c) * s.R * s.S + rs];
  }
  // dy[n, k, p, q] where tap (r, t) of output cell (p, q) lands on input cell (h, w), else 0.
  __device__ float b(int, int64_t krs, int64_t col) const {
    const int64_t k = krs / (s.R * s.S), r = krs / s.S % s.R, t = krs % s.S;
    const int64_t n = col / (s.H * s.W), h = col / s.W % s.H, w = col % s.W;
    const int64_t hp = h + s.pad_h - r, wq = w + s.pad_w - t;
    if (hp < 0 || wq < 0 || hp % s.stride_h != 0 || wq % s.stride_w != 0) return 0.0f;
    const int64_t p = hp / s.stride_h, q = wq / s.stride_w;
    if (p >= s.P || q >= s.Q) return 0.0f;
    return grad_y[((n * s.K + k) * s.P + p) * s.Q + q];
  }
  __device__ bool skip_tile(int64_t, int64_t) const { return false; }
  __device__ void store(int, int64_t c, int64_t col, float sum) const {
    const int64_t n = col / (s.H * s.W), hw = col % (s.H * s.W);
    grad_x[(n * s.C + c) * s.H * s.W + hw] = sum;
  }
};

// grad_bias[k] = sum of grad_y[n, k, :, :] over n, one block per channel (gridDim.x = K).
__global__ void __launch_bounds__(kBlock) conv_grad_bias(Conv2dShape s, const float* grad_y,
                                                          float* grad_bias) {
  __shared__ double partial[kBlock];
  const int64_t k = blockIdx.x, plane = s.P * s.Q;
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < s.N * plane; i += blockDim.x)
    sum += grad_y[(i / plane * s.K + k) * plane + i % plane];
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int half = kBlock / 2; half > 0; half /= 2) {
    if ((int)threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) grad_bias[k] = static_cast<float>(partial[0]);
}

}  // namespace ds::cuda

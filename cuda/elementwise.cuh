// Activations and optimiser updates (grid-stride loops; the same formulas as cpp/activations.cpp
// and cpp/updates.h), Gram matrices on the tiled GEMM, and the softmax cross-entropy.
#pragma once

#include "../cpp/updates.h"
#include "gemm.cuh"

namespace ds::cuda {

// The optimisers' fused parameter updates (the formulas of cpp/updates.h, shared with the CPU).
__global__ void sgd_update_kernel(int64_t n, SgdUpdate update, float* param, const float* grad,
                                  float* velocity) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    if (velocity)  // the same for every thread: no divergence
      update(i, param, grad, velocity);
    else
      update(i, param, grad);
}

__global__ void adam_update_kernel(int64_t n, AdamUpdate update, float* param, const float* grad,
                                   float* m, float* v) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    update(i, param, grad, m, v);
}

// y[i] = f(x[i]) for a functor f (the activations below).
template <class F>
__global__ void map_unary(int64_t n, F f, const float* x, float* y) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    y[i] = f(x[i]);
}

// grad_x[i] = f(grad_y[i], saved[i]), saved being the forward input or output.
template <class F>
__global__ void map_binary(int64_t n, F f, const float* grad_y, const float* saved,
                           float* grad_x) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    grad_x[i] = f(grad_y[i], saved[i]);
}

// NaN passes through relu, as in PyTorch ("not below zero").
struct Relu {
  __device__ float operator()(float x) const { return x < 0.0f ? 0.0f : x; }
};
struct ReluGrad {
  __device__ float operator()(float g, float x) const { return x > 0.0f ? g : 0.0f; }
};
struct LeakyRelu {
  float slope;
  __device__ float operator()(float x) const { return x > 0.0f ? x : slope * x; }
};
struct LeakyReluGrad {
  float slope;
  __device__ float operator()(float g, float x) const { return x > 0.0f ? g : slope * g; }
};
struct Sigmoid {
  __device__ float operator()(float x) const { return 1.0f / (1.0f + expf(-x)); }
};
struct SigmoidGrad {
  __device__ float operator()(float g, float y) const { return g * y * (1.0f - y); }
};
struct Tanh {
  __device__ float operator()(float x) const { return tanhf(x); }
};
struct TanhGrad {
  __device__ float operator()(float g, float y) const { return g * (1.0f - y * y); }
};

// g[n] = F F^T * scale with F = x[n] (C x HW). Only tiles on or above the diagonal are computed;
// each off-diagonal tile writes its mirror too.
struct GramForward {
  int64_t M, N, K;  // C, C, HW
  const float* x;
  float* g;
  float scale;

  __device__ float a(int n, int64_t i, int64_t k) const { return x[(n * M + i) * K + k]; }
  __device__ float b(int n, int64_t k, int64_t j) const { return x[(n * M + j) * K + k]; }
  __device__ bool skip_tile(int64_t row0, int64_t col0) const { return row0 > col0; }
  __device__ void store(int n, int64_t i, int64_t j, float sum) const {
    float* out = g + n * M * M;
    out[i * M + j] = sum * scale;
    if (i / kTile != j / kTile) out[j * M + i] = sum * scale;
  }
};

// grad_x[n] = (grad_g[n] + grad_g[n]^T) F * scale, the symmetrisation folded into A's gather.
struct GramBackward {
  int64_t M, N, K;  // C, HW, C
  const float *grad_g, *x;
  float* grad_x;
  float scale;

  __device__ float a(int n, int64_t i, int64_t k) const {
    const float* gg = grad_g + n * M * M;
    return gg[i * M + k] + gg[k * M + i];
  }
  __device__ float b(int n, int64_t k, int64_t j) const { return x[(n * M + k) * N + j]; }
  __device__ bool skip_tile(int64_t, int64_t) const { return false; }
  __device__ void store(int n, int64_t i, int64_t j, float sum) const {
    grad_x[(n * M + i) * N + j] = sum * scale;
  }
};

// Mean softmax cross-entropy over N rows of K logits, in one block: each thread takes rows
// tid, tid + blockDim, ... (max shift, sums in double as on the CPU), writes their gradient, and
// the row losses are summed by a tree reduction into softmax_loss (a device variable, so that
// nothing is allocated; the launcher copies it back). A label outside [0, K) makes the
// loss NaN (the bindings of the CPU refuse it; here it must not read out of bounds).
static __device__ double softmax_loss;

__global__ void __launch_bounds__(kBlock) softmax_cross_entropy_kernel(
    int64_t N, int64_t K, const float* logits, const int64_t* labels, float* grad) {
  __shared__ double partial[kBlock];
  double total = 0.0;
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) {
    const float* row = logits + i * K;
    float* g = grad + i * K;
    float shift = row[0];
    for (int64_t k = 1; k < K; ++k) shift = row[k] > shift ? row[k] : shift;
    const int64_t label = labels[i];
    // As on the CPU: the label's entry p - 1 = -(sum of the other exponentials) / sum, not the
    // difference, which cancels when p is near 1 (found by the GPU stand-in's run of
    // test_ops_loss: 5% off at a logit gap of 16).
    double sum = 0.0, others = 0.0;
    for (int64_t k = 0; k < K; ++k) {
      const double e = exp(static_cast<double>(row[k] - shift));
      sum += e;
      if (k != label) others += e;
    }
    for (int64_t k = 0; k < K; ++k)
      g[k] = static_cast<float>(exp(static_cast<double>(row[k] - shift)) / sum / N);
    if (label < 0 || label >= K) {
      total += NAN;
      continue;
    }
    total += log(sum) - static_cast<double>(row[label] - shift);
    g[label] = static_cast<float>(-others / sum / N);
  }
  partial[threadIdx.x] = total;
  __syncthreads();
  for (int half = kBlock / 2; half > 0; half /= 2) {
    if ((int)threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) softmax_loss = partial[0] / static_cast<double>(N);
}

}  // namespace ds::cuda

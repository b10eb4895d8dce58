// Pooling with every option of the CPU kernels (cpp/pool.cpp), one thread per output cell
// forward and one per input cell backward (a gather over the windows that cover the cell, in the
// CPU's order: deterministic, no atomics, no zeroing pass).
#pragma once

#include "../cpp/shapes.h"
#include "device.h"

namespace ds::cuda {

// Output cell i's window along one axis: input cells [lo, hi) and its length clipped to the
// padded input (the count_include_pad divisor).
struct Span {
  int64_t lo, hi, padded;
};

__device__ inline Span window(int64_t i, int64_t in, int64_t kernel, int64_t stride, int64_t pad) {
  const int64_t start = i * stride - pad;
  const int64_t end = start + kernel < in + pad ? start + kernel : in + pad;
  return {start > 0 ? start : 0, end < in ? end : in, end - start};
}

// PyTorch's maximum: the first larger value or NaN (so the last NaN wins); -1 if empty.
__device__ inline int64_t window_argmax(const float* plane, int64_t W, Span rows, Span cols) {
  if (rows.lo >= rows.hi || cols.lo >= cols.hi) return -1;
  int64_t best = rows.lo * W + cols.lo;
  float best_value = -INFINITY;
  for (int64_t h = rows.lo; h < rows.hi; ++h)
    for (int64_t w = cols.lo; w < cols.hi; ++w) {
      const float v = plane[h * W + w];
      if (v > best_value || v != v) best_value = v, best = h * W + w;
    }
  return best;
}

__device__ inline int64_t divisor(Span rows, Span cols, bool count_include_pad) {
  return count_include_pad ? rows.padded * cols.padded : (rows.hi - rows.lo) * (cols.hi - cols.lo);
}

// ReLU as the CPU computes it ("not below zero": NaN passes).
__device__ inline float relu(float v) { return v < 0.0f ? 0.0f : v; }

// relu: the ReLU of the maximum, or the average of the ReLU of x (a ReLU fused with the pooling).
__global__ void pool_forward(Pool2dShape s, bool is_max, bool count_include_pad, bool relu_fused,
                             const float* x, float* y) {
  const int64_t total = s.N * s.C * s.P * s.Q;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t plane = i / (s.P * s.Q), p = i / s.Q % s.P, q = i % s.Q;
    const float* in = x + plane * s.H * s.W;
    const Span rows = window(p, s.H, s.kernel_h, s.stride_h, s.pad_h);
    const Span cols = window(q, s.W, s.kernel_w, s.stride_w, s.pad_w);
    if (is_max) {
      const int64_t at = window_argmax(in, s.W, rows, cols);
      const float max = at < 0 ? -INFINITY : in[at];
      y[i] = relu_fused ? relu(max) : max;
    } else {
      float sum = 0.0f;
      for (int64_t h = rows.lo; h < rows.hi; ++h)
        for (int64_t w = cols.lo; w < cols.hi; ++w)
          sum += relu_fused ? relu(in[h * s.W + w]) : in[h * s.W + w];
      const int64_t d = divisor(rows, cols, count_include_pad);
      y[i] = d > 0 ? sum / (float)d : 0.0f;
    }
  }
}

// Output cells whose window (along one axis) covers input cell h: [first, last].
__device__ inline void covering(int64_t h, int64_t out, int64_t kernel, int64_t stride,
                                int64_t pad, int64_t& first, int64_t& last) {
  const int64_t low = h + pad - kernel + 1;  // the earliest window start that still covers h
  first = low <= 0 ? 0 : (low + stride - 1) / stride;
  last = (h + pad) / stride;
  if (last > out - 1) last = out - 1;
}

// grad_x of max or average pooling. With relu_fused (the backward of pool_forward's), only
// where the window's maximum is above 0 (max), or only where x > 0 (average); x is needed for max
// pooling and for a fused ReLU.
__global__ void pool_backward(Pool2dShape s, bool is_max, bool count_include_pad, bool relu_fused,
                              const float* grad_y, const float* x, float* grad_x) {
  const int64_t total = s.N * s.C * s.H * s.W;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    if (relu_fused && !(x[i] > 0.0f)) {  // the fused ReLU's mask: no gradient reaches this cell
      grad_x[i] = 0.0f;
      continue;
    }
    const int64_t plane = i / (s.H * s.W), h = i / s.W % s.H, w = i % s.W;
    const float* gy = grad_y + plane * s.P * s.Q;
    int64_t p0, p1, q0, q1;
    covering(h, s.P, s.kernel_h, s.stride_h, s.pad_h, p0, p1);
    covering(w, s.Q, s.kernel_w, s.stride_w, s.pad_w, q0, q1);
    float sum = 0.0f;
    for (int64_t p = p0; p <= p1; ++p) {
      const Span rows = window(p, s.H, s.kernel_h, s.stride_h, s.pad_h);
      for (int64_t q = q0; q <= q1; ++q) {
        const Span cols = window(q, s.W, s.kernel_w, s.stride_w, s.pad_w);
        if (is_max) {
          if (window_argmax(x + plane * s.H * s.W, s.W, rows, cols) == h * s.W + w)
            sum += gy[p * s.Q + q];
        } else {
          const int64_t d = divisor(rows, cols, count_include_pad);
          if (d > 0) sum += gy[p * s.Q + q] / static_cast<float>(d);
        }
      }
    }
    grad_x[i] = sum;
  }
}

}  // namespace ds::cuda

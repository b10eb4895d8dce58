// 2-D convolution as GEMM over an im2col matrix, one image at a time.
//
// forward:      y[n] (K x PQ)        = W (K x CRS) . col[n] (CRS x PQ) + bias
// grad_weight:  dW (K x CRS)        += dy[n] (K x PQ) . col[n]^T
// grad_x:       dcol (CRS x PQ)      = W^T . dy[n], scattered back by col2im
// A 1x1, stride-1, unpadded convolution uses the image itself as its col matrix. When the batch
// is at least as large as the thread count, threads take whole images (serial GEMMs, one col
// buffer each); otherwise images go one by one through the threaded GEMM. grad_weight partial
// sums are per thread and added in thread order, so results repeat for a fixed thread count.
#include "conv.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "gemm.h"
#include "threads.h"

namespace ds {
namespace {

int64_t col_rows(const Conv2dShape& s) { return s.C * s.R * s.S; }
int64_t col_cols(const Conv2dShape& s) { return s.P * s.Q; }

bool is_pointwise(const Conv2dShape& s) {
  return s.R == 1 && s.S == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 &&
         s.pad_w == 0;
}

// col[(c, r, t), (p, q)] = x[c, p*stride_h - pad_h + r, q*stride_w - pad_w + t], zero outside.
void im2col(const Conv2dShape& s, const float* x, float* col) {
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t r = 0; r < s.R; ++r)
      for (int64_t t = 0; t < s.S; ++t) {
        float* row = col + ((c * s.R + r) * s.S + t) * s.P * s.Q;
        for (int64_t p = 0; p < s.P; ++p) {
          float* out = row + p * s.Q;
          const int64_t ih = p * s.stride_h - s.pad_h + r;
          if (ih < 0 || ih >= s.H) {
            std::memset(out, 0, sizeof(float) * s.Q);
            continue;
          }
          const float* in = x + (c * s.H + ih) * s.W;
          for (int64_t q = 0; q < s.Q; ++q) {
            const int64_t iw = q * s.stride_w - s.pad_w + t;
            out[q] = (iw >= 0 && iw < s.W) ? in[iw] : 0.0f;
          }
        }
      }
}

// Adjoint of im2col: x[c, ih, iw] += col[(c, r, t), (p, q)] over all taps that read (ih, iw).
void col2im(const Conv2dShape& s, const float* col, float* x) {
  std::memset(x, 0, sizeof(float) * s.C * s.H * s.W);
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t r = 0; r < s.R; ++r)
      for (int64_t t = 0; t < s.S; ++t) {
        const float* row = col + ((c * s.R + r) * s.S + t) * s.P * s.Q;
        for (int64_t p = 0; p < s.P; ++p) {
          const int64_t ih = p * s.stride_h - s.pad_h + r;
          if (ih < 0 || ih >= s.H) continue;
          float* out = x + (c * s.H + ih) * s.W;
          const float* in = row + p * s.Q;
          for (int64_t q = 0; q < s.Q; ++q) {
            const int64_t iw = q * s.stride_w - s.pad_w + t;
            if (iw >= 0 && iw < s.W) out[iw] += in[q];
          }
        }
      }
}

using Gemm = void (*)(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                      const float*, int64_t, float, float*, int64_t);

// Runs body(n, col_buffer, gemm) for every image n: threads over images when the batch can
// feed them all, else images in turn with the threaded GEMM.
template <typename Body>
void for_each_image(const Conv2dShape& s, int64_t col_floats, Body body) {
  const int threads = num_threads();
  if (s.N >= threads && threads > 1) {
#pragma omp parallel num_threads(threads)
    {
      std::vector<float> col(col_floats);
#pragma omp for schedule(static)
      for (int64_t n = 0; n < s.N; ++n) body(n, col.data(), omp_get_thread_num(), &sgemm_serial);
    }
  } else {
    std::vector<float> col(col_floats);
    for (int64_t n = 0; n < s.N; ++n) body(n, col.data(), 0, &sgemm);
  }
}

}  // namespace

void conv2d_forward(const Conv2dShape& s, const float* x, const float* weight, const float* bias,
                    float* y) {
  const int64_t crs = col_rows(s), pq = col_cols(s);
  const bool pointwise = is_pointwise(s);
  for_each_image(s, pointwise ? 0 : crs * pq, [&](int64_t n, float* col, int, Gemm gemm) {
    const float* xn = x + n * s.C * s.H * s.W;
    float* yn = y + n * s.K * pq;
    if (!pointwise) im2col(s, xn, col);
    gemm(false, false, s.K, pq, crs, 1.0f, weight, crs, pointwise ? xn : col, pq, 0.0f, yn, pq);
    if (bias)
      for (int64_t k = 0; k < s.K; ++k)
        for (int64_t i = 0; i < pq; ++i) yn[k * pq + i] += bias[k];
  });
}

void conv2d_backward(const Conv2dShape& s, const float* grad_y, const float* x,
                     const float* weight, float* grad_x, float* grad_weight, float* grad_bias) {
  const int64_t crs = col_rows(s), pq = col_cols(s);
  const bool pointwise = is_pointwise(s);
  const int threads = num_threads();
  // Per-thread partial sums of grad_weight and grad_bias.
  std::vector<float> dw_parts(grad_weight ? threads * s.K * crs : 0, 0.0f);
  std::vector<double> db_parts(grad_bias ? threads * s.K : 0, 0.0);

  for_each_image(s, pointwise ? 0 : crs * pq, [&](int64_t n, float* col, int tid, Gemm gemm) {
    const float* xn = x + n * s.C * s.H * s.W;
    const float* dyn = grad_y + n * s.K * pq;
    if (grad_weight) {
      if (!pointwise) im2col(s, xn, col);
      gemm(false, true, s.K, crs, pq, 1.0f, dyn, pq, pointwise ? xn : col, pq, 1.0f,
           dw_parts.data() + tid * s.K * crs, crs);
    }
    if (grad_bias)
      for (int64_t k = 0; k < s.K; ++k) {
        double sum = 0.0;
        for (int64_t i = 0; i < pq; ++i) sum += dyn[k * pq + i];
        db_parts[tid * s.K + k] += sum;
      }
    if (grad_x) {
      float* dxn = grad_x + n * s.C * s.H * s.W;
      if (pointwise) {
        gemm(true, false, crs, pq, s.K, 1.0f, weight, crs, dyn, pq, 0.0f, dxn, pq);
      } else {
        gemm(true, false, crs, pq, s.K, 1.0f, weight, crs, dyn, pq, 0.0f, col, pq);
        col2im(s, col, dxn);
      }
    }
  });

  if (grad_weight) {
    std::memcpy(grad_weight, dw_parts.data(), sizeof(float) * s.K * crs);
    for (int t = 1; t < threads; ++t)
      for (int64_t i = 0; i < s.K * crs; ++i) grad_weight[i] += dw_parts[t * s.K * crs + i];
  }
  if (grad_bias)
    for (int64_t k = 0; k < s.K; ++k) {
      double sum = 0.0;
      for (int t = 0; t < threads; ++t) sum += db_parts[t * s.K + k];
      grad_bias[k] = static_cast<float>(sum);
    }
}

}  // namespace ds

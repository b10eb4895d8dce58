// Pooling over (N*C) independent planes, split across threads by plane. Each output cell scans
// its window clipped to the input; windows are small (2x2, 3x3), so no further blocking.
#include "pool.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "threads.h"

namespace ds {
namespace {

struct Window {
  int64_t h0, h1, w0, w1;  // clipped to the input: [h0, h1) x [w0, w1)
  int64_t padded_area;     // clipped to the padded input
};

inline Window window(const Pool2dShape& s, int64_t p, int64_t q) {
  const int64_t hs = p * s.stride_h - s.pad_h, ws = q * s.stride_w - s.pad_w;
  const int64_t he = std::min(hs + s.kernel_h, s.H + s.pad_h);
  const int64_t we = std::min(ws + s.kernel_w, s.W + s.pad_w);
  return {std::max<int64_t>(hs, 0), std::min(he, s.H), std::max<int64_t>(ws, 0),
          std::min(we, s.W), (he - hs) * (we - ws)};
}

inline int64_t divisor(const Window& w, bool count_include_pad) {
  return count_include_pad ? w.padded_area : (w.h1 - w.h0) * (w.w1 - w.w0);
}

// Index in the plane of the first maximum of the window (NaN wins, as in PyTorch), or -1 for a
// window that covers padding only.
inline int64_t argmax(const Pool2dShape& s, const float* plane, const Window& w) {
  int64_t best = -1;
  float best_val = -std::numeric_limits<float>::infinity();
  for (int64_t h = w.h0; h < w.h1; ++h)
    for (int64_t v = w.w0; v < w.w1; ++v) {
      const float val = plane[h * s.W + v];
      if (best < 0 || val > best_val || std::isnan(val)) {
        best = h * s.W + v;
        best_val = val;
        if (std::isnan(val)) return best;
      }
    }
  return best;
}

}  // namespace

void max_pool2d_forward(const Pool2dShape& s, const float* x, float* y) {
#pragma omp parallel for schedule(static) num_threads(num_threads())
  for (int64_t plane = 0; plane < s.N * s.C; ++plane) {
    const float* in = x + plane * s.H * s.W;
    float* out = y + plane * s.P * s.Q;
    for (int64_t p = 0; p < s.P; ++p)
      for (int64_t q = 0; q < s.Q; ++q) {
        const int64_t i = argmax(s, in, window(s, p, q));
        out[p * s.Q + q] = i < 0 ? -std::numeric_limits<float>::infinity() : in[i];
      }
  }
}

void max_pool2d_backward(const Pool2dShape& s, const float* grad_y, const float* x,
                         float* grad_x) {
#pragma omp parallel for schedule(static) num_threads(num_threads())
  for (int64_t plane = 0; plane < s.N * s.C; ++plane) {
    const float* in = x + plane * s.H * s.W;
    const float* gy = grad_y + plane * s.P * s.Q;
    float* gx = grad_x + plane * s.H * s.W;
    std::memset(gx, 0, sizeof(float) * s.H * s.W);
    for (int64_t p = 0; p < s.P; ++p)
      for (int64_t q = 0; q < s.Q; ++q) {
        const int64_t i = argmax(s, in, window(s, p, q));
        if (i >= 0) gx[i] += gy[p * s.Q + q];
      }
  }
}

void avg_pool2d_forward(const Pool2dShape& s, bool count_include_pad, const float* x, float* y) {
#pragma omp parallel for schedule(static) num_threads(num_threads())
  for (int64_t plane = 0; plane < s.N * s.C; ++plane) {
    const float* in = x + plane * s.H * s.W;
    float* out = y + plane * s.P * s.Q;
    for (int64_t p = 0; p < s.P; ++p)
      for (int64_t q = 0; q < s.Q; ++q) {
        const Window w = window(s, p, q);
        float sum = 0.0f;
        for (int64_t h = w.h0; h < w.h1; ++h)
          for (int64_t v = w.w0; v < w.w1; ++v) sum += in[h * s.W + v];
        const int64_t d = divisor(w, count_include_pad);
        out[p * s.Q + q] = d > 0 ? sum / static_cast<float>(d) : 0.0f;
      }
  }
}

void avg_pool2d_backward(const Pool2dShape& s, bool count_include_pad, const float* grad_y,
                         float* grad_x) {
#pragma omp parallel for schedule(static) num_threads(num_threads())
  for (int64_t plane = 0; plane < s.N * s.C; ++plane) {
    const float* gy = grad_y + plane * s.P * s.Q;
    float* gx = grad_x + plane * s.H * s.W;
    std::memset(gx, 0, sizeof(float) * s.H * s.W);
    for (int64_t p = 0; p < s.P; ++p)
      for (int64_t q = 0; q < s.Q; ++q) {
        const Window w = window(s, p, q);
        const int64_t d = divisor(w, count_include_pad);
        if (d <= 0) continue;
        const float g = gy[p * s.Q + q] / static_cast<float>(d);
        for (int64_t h = w.h0; h < w.h1; ++h)
          for (int64_t v = w.w0; v < w.w1; ++v) gx[h * s.W + v] += g;
      }
  }
}

}  // namespace ds

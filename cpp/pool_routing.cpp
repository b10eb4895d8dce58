// Pooling backward passes that route gradients without searching any window, planes split across
// threads: the max-pool backward from the forward's recorded argmax (for VGG's 2x2/2 windows
// tiling the input, two whole rows of grad_x per output row, gradient or zero; else zeroing and
// a scatter), and the average backward (separable windows: whole-row adds). Planes of up to
// 32x32 cells of the average go to the plane-lane kernels of pool_lanes.cpp instead.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include <omp.h>

#include "pool.h"
#include "pool_lanes.h"
#include "pool_windows.h"
#include "simd.h"
#include "threads.h"

namespace ds::cpu {
namespace {

typedef int32_t vint __attribute__((vector_size(kVecWidth * sizeof(int32_t))));

// Backward of 2x2 stride-2 windows tiling the whole plane (H = 2P, W = 2Q: VGG's pooling) in
// rows of whole vectors of windows (Q a multiple of kVecWidth): every grad_x cell written once,
// gradient or zero, two rows per output row. Returns false if an index is not in its window.
bool max_pool_backward_2x2(const Pool2dShape& s, const float* gy, const int32_t* idx, float* gx) {
  vint lane;
  for (int i = 0; i < kVecWidth; ++i) lane[i] = 2 * i;
  const vfloat zero = vfloat{};
  vint in_window = ~vint{};  // lanes stay all ones while every index is in its window
  for (int64_t p = 0; p < s.P; ++p) {
    float* top = gx + 2 * p * s.W;
    float* bottom = top + s.W;
    for (int64_t q0 = 0; q0 < s.Q; q0 += kVecWidth) {
      vint at;
      std::memcpy(&at, idx + p * s.Q + q0, sizeof(at));
      const vfloat g = vload(gy + p * s.Q + q0);
      const vint base = lane + (int32_t)(2 * p * s.W + 2 * q0), d = at - base;
      const vint w0 = d == 0, w1 = d == 1, w2 = d == (int32_t)s.W, w3 = d == (int32_t)s.W + 1;
      in_window &= w0 | w1 | w2 | w3;
      const vfloat g0 = w0 ? g : zero, g1 = w1 ? g : zero, g2 = w2 ? g : zero,
                   g3 = w3 ? g : zero;
      store_interleaved(top + 2 * q0, g0, g1);
      store_interleaved(bottom + 2 * q0, g2, g3);
    }
  }
  bool valid = true;
  for (int i = 0; i < kVecWidth; ++i) valid &= in_window[i] != 0;
  return valid;
}

// g where y > 0, else +0, without a branch: ReLU's mask can be as good as random (a branch on it
// made the fused backward of random 24x24 planes, 2x2/2 with padding 1, 2x slower).
inline float masked(float g, float y) {
  uint32_t bits;
  std::memcpy(&bits, &g, sizeof(bits));
  bits &= -(uint32_t)(y > 0);
  std::memcpy(&g, &bits, sizeof(g));
  return g;
}

// grad_x of planes [first, last) from their indices: each plane zeroed, then each gradient added
// at its index, outputs in row-major order (PyTorch's order, and that of max_pool2d_backward's
// scatter: the same sums); relu_y: only where relu_y > 0. Returns false if an index is outside
// its plane. Scalar stores bound it (about one retires a cycle); the vector gathers tried instead
// (16 columns at a time, by masked compares of permuted indices) were 2x slower on Zen 4. One
// call per thread's share of planes, not inlined: a call per plane cost 15% of pool3's backward
// (8x8 planes, 16 gradients each), and inlined into the OpenMP region's function beside the 2x2
// kernel, the loop kept its pointers on the stack (three more loads per gradient, 1.4x slower).
template <bool kRelu>
__attribute__((noinline)) bool scatter_planes(const Pool2dShape& s, int64_t first, int64_t last,
                                              const float* grad_y, const int32_t* indices,
                                              const float* relu_y, float* grad_x) {
  const int64_t plane = s.H * s.W, out_plane = s.P * s.Q;
  bool valid = true;
  for (int64_t c = first; c < last; ++c) {
    const float* gy = grad_y + c * out_plane;
    const int32_t* idx = indices + c * out_plane;
    const float* y = kRelu ? relu_y + c * out_plane : nullptr;
    float* gx = grad_x + c * plane;
    zero_floats(gx, plane);
    for (int64_t i = 0; i < out_plane; ++i) {
      const int32_t at = idx[i];
      if (at < 0 || at >= plane) {
        valid = false;
        continue;
      }
      gx[at] += kRelu ? masked(gy[i], y[i]) : gy[i];
    }
  }
  return valid;
}

}  // namespace

bool max_pool2d_backward_indices(const Pool2dShape& s, const float* grad_y, const int32_t* indices,
                                 const float* relu_y, float* grad_x) {
  // Rows of whole vectors of 2x2/2 windows are routed a vector at a time; shorter or ragged rows
  // (VGG's at 224 px: 7 to 56 windows) are zeroed and scattered, which beat a scalar tail by
  // 2-12x (Zen 4: 14x14 planes 1.74 -> 0.15 ms, 56x56 0.73 -> 0.15 ms, 112x112 0.56 -> 0.31 ms).
  const bool tiled_2x2 = !relu_y && s.kernel_h == 2 && s.kernel_w == 2 && s.stride_h == 2 &&
                         s.stride_w == 2 && s.pad_h == 0 && s.pad_w == 0 && s.H == 2 * s.P &&
                         s.W == 2 * s.Q && s.Q % kVecWidth == 0;
  const int64_t planes = s.N * s.C, plane = s.H * s.W, out_plane = s.P * s.Q;
  int invalid = 0;  // a flag, not an exception: nothing may throw out of the parallel region
#pragma omp parallel num_threads(num_threads()) reduction(| : invalid) if (pool_in_parallel(s))
  {
    const int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t first = planes * t / threads, last = planes * (t + 1) / threads;
    bool valid = true;
    if (tiled_2x2) {
      for (int64_t c = first; c < last; ++c)
        valid &= max_pool_backward_2x2(s, grad_y + c * out_plane, indices + c * out_plane,
                                       grad_x + c * plane);
    } else if (relu_y) {
      valid = scatter_planes<true>(s, first, last, grad_y, indices, relu_y, grad_x);
    } else {
      valid = scatter_planes<false>(s, first, last, grad_y, indices, nullptr, grad_x);
    }
    invalid |= !valid;
  }
  return !invalid;
}

// spread[2q] = spread[2q+1] = g[q] (as 0 + g[q], the sum the general loop makes) for every q of
// g's whole vectors: the windows of VGG's 2x2/2 pooling along a row, 2 wide, 2 apart, unpadded.
inline void spread_pairs(const float* g, int64_t Q, float* spread) {
  for (int64_t q0 = 0; q0 < Q; q0 += kVecWidth) {
    const vfloat v = vfloat{} + vload(g + q0);
    store_interleaved(spread + 2 * q0, v, v);
  }
}

// The windows are products of a row span and a column span, so each output row's gradients
// (divided by their windows' sizes, a vector at a time) are first spread along one row buffer,
// which then goes to every input row under the window: whole-vector stores instead of one scalar
// add per window cell. Where no two window rows overlap (stride_h >= kernel_h, VGG's 2x2/2), each
// input row is under at most one window row and is written once, not zeroed and then added to.
void avg_pool2d_backward(const Pool2dShape& s, bool count_include_pad, const float* grad_y,
                         const float* relu_x, float* grad_x) {
  if (lanes::suits(s, lanes::Kernel::kAverage))
    return lanes::avg_backward(s, count_include_pad, grad_y, relu_x, grad_x);
  const Windows win(s);
  const std::vector<float> col_extent = column_extents(win.cols, count_include_pad);
  const bool disjoint_rows = s.stride_h >= s.kernel_h;
  std::vector<char> covered(s.H, 0);
  for (const Span& rows : win.rows)
    for (int64_t h = rows.lo; h < rows.hi; ++h) covered[h] = 1;
  const bool pairs = s.kernel_w == 2 && s.stride_w == 2 && s.pad_w == 0;
  const int64_t q_vectors = (s.Q + kVecWidth - 1) / kVecWidth * kVecWidth;
  struct Rows {
    // one output row's gradients over their divisors, zero past Q; spread, zero past W (and
    // past 2Q with pairs, which never writes there)
    std::vector<float> g, spread;
  };
  const auto buffers = [&] {
    return Rows{std::vector<float>(q_vectors, 0.0f),
                std::vector<float>(std::max(s.W, 2 * q_vectors) + kVecWidth, 0.0f)};
  };
  for_each_plane(s, buffers, [&](Rows& b, int64_t in_off, int64_t out_off) {
    float* gx = grad_x + in_off;
    if (!disjoint_rows) std::memset(gx, 0, sizeof(float) * s.H * s.W);
    for (int64_t h = 0; disjoint_rows && h < s.H; ++h)
      if (!covered[h]) std::memset(gx + h * s.W, 0, sizeof(float) * s.W);
    for (int64_t p = 0; p < s.P; ++p) {
      const Span& rows = win.rows[p];
      if (rows.lo >= rows.hi) continue;
      const float* gy = grad_y + out_off + p * s.Q;
      const float row_extent = extent(rows, count_include_pad);
      int64_t q = 0;
      for (; q + kVecWidth <= s.Q; q += kVecWidth) {
        const vfloat d = vbroadcast(row_extent) * vload(col_extent.data() + q);
        vstore(b.g.data() + q, d > 0 ? vload(gy + q) / d : vfloat{});
      }
      for (; q < s.Q; ++q) {
        const float d = row_extent * col_extent[q];
        b.g[q] = d > 0 ? gy[q] / d : 0.0f;
      }
      if (pairs) {
        spread_pairs(b.g.data(), s.Q, b.spread.data());
      } else {
        std::fill(b.spread.begin(), b.spread.end(), 0.0f);
        for (q = 0; q < s.Q; ++q)
          for (int64_t w = win.cols[q].lo; w < win.cols[q].hi; ++w) b.spread[w] += b.g[q];
      }
      for (int64_t h = rows.lo; h < rows.hi; ++h) {
        float* dst = gx + h * s.W;
        const float* spread = b.spread.data();
        if (disjoint_rows) {
          copy_floats(dst, spread, s.W);
          continue;
        }
        int64_t w = 0;
        for (; w + kVecWidth <= s.W; w += kVecWidth)
          vstore(dst + w, vload(dst + w) + vload(spread + w));
        for (; w < s.W; ++w) dst[w] += spread[w];
      }
    }
    if (relu_x) {  // ReLU's backward, while the plane is in cache
      const float* mask = relu_x + in_off;
      int64_t i = 0;
      for (; i + kVecWidth <= s.H * s.W; i += kVecWidth)
        vstore(gx + i, vload(mask + i) > 0 ? vload(gx + i) : vfloat{});
      for (; i < s.H * s.W; ++i) gx[i] = mask[i] > 0 ? gx[i] : 0.0f;
    }
  });
}

}  // namespace ds::cpu

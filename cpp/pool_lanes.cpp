// Small planes, one per SIMD lane: kVecWidth planes are transposed (in-register butterflies of
// kVecWidth x kVecWidth blocks) into a scratch of vectors indexed by cell, so that every window
// is a run of whole-vector loads with the same bounds in all lanes; the results are transposed
// back. The windows' arithmetic is that of the row kernels (pool.cpp, pool_routing.cpp), in the
// same order, so both paths give the same bits.
#include "pool_lanes.h"

#include <omp.h>

#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

#include "pool_windows.h"
#include "simd.h"
#include "threads.h"

namespace ds::cpu::lanes {
namespace {

constexpr int kLanes = kVecWidth;
typedef int32_t vint __attribute__((vector_size(kLanes * sizeof(int32_t))));

// Planes of at most this many cells take the lane kernels: the scratch of one block (at most
// 3 planes' worth of vectors, 192 KiB with AVX-512, in max_backward) then stays in L2, and the
// row kernels' per-row overheads dominate up to there.
constexpr int64_t kMaxCells = 1024;

// One butterfly stage of the transpose: swaps bit B of the row index with bit B of the lane.
template <int B>
inline void transpose_stage(vfloat* r) {
  vint low, high;
  for (int j = 0; j < kLanes; ++j) {
    low[j] = (j & B) ? kLanes + j - B : j;
    high[j] = (j & B) ? kLanes + j : j + B;
  }
  for (int i = 0; i < kLanes; ++i)
    if (!(i & B)) {
      const vfloat a = r[i], b = r[i + B];
      r[i] = __builtin_shuffle(a, b, low);
      r[i + B] = __builtin_shuffle(a, b, high);
    }
  if constexpr (2 * B < kLanes) transpose_stage<2 * B>(r);
}

// r[i][j] <- r[j][i].
inline void transpose(vfloat* r) { transpose_stage<1>(r); }

// cells[c] lane i = src[i * plane + c] (its ReLU with relu_in) for the n planes of the block,
// 0 in the lanes beyond.
void planes_to_lanes(const float* src, int64_t plane, int n, bool relu_in, vfloat* cells) {
  int64_t c = 0;
  vfloat r[kLanes];
  for (; c + kLanes <= plane; c += kLanes) {
    for (int i = 0; i < kLanes; ++i) r[i] = i < n ? vload(src + i * plane + c) : vfloat{};
    transpose(r);
    for (int j = 0; j < kLanes; ++j) cells[c + j] = relu_in ? relu(r[j]) : r[j];
  }
  for (; c < plane; ++c) {
    vfloat v = vfloat{};
    for (int i = 0; i < n; ++i) v[i] = src[i * plane + c];
    cells[c] = relu_in ? relu(v) : v;
  }
}

// dst[i * plane + c] = cells[c] lane i for the n planes of the block; with mask (the block's
// planes of a tensor shaped like dst), only where mask > 0, else 0 (ReLU's backward).
void lanes_to_planes(const vfloat* cells, int64_t plane, int n, const float* mask, float* dst) {
  int64_t c = 0;
  vfloat r[kLanes];
  for (; c + kLanes <= plane; c += kLanes) {
    for (int j = 0; j < kLanes; ++j) r[j] = cells[c + j];
    transpose(r);
    for (int i = 0; i < n; ++i) {
      const vfloat v = mask ? (vload(mask + i * plane + c) > 0 ? r[i] : vfloat{}) : r[i];
      vstore(dst + i * plane + c, v);
    }
  }
  for (; c < plane; ++c)
    for (int i = 0; i < n; ++i)
      dst[i * plane + c] = !mask || mask[i * plane + c] > 0 ? cells[c][i] : 0.0f;
}

// Runs body(first_plane, planes_in_block, scratch) for every block of kLanes planes, blocks
// split across threads, each thread with its own scratch of scratch_vectors vectors (allocated
// here, before the parallel region, so that bad_alloc is thrown outside it).
template <typename Body>
void for_each_block(const Pool2dShape& s, int64_t scratch_vectors, Body body) {
  const int64_t planes = s.N * s.C, blocks = (planes + kLanes - 1) / kLanes;
  const int threads = pool_in_parallel(s) && blocks > 1 ? num_threads() : 1;
  const std::unique_ptr<vfloat[]> scratch(new vfloat[threads * scratch_vectors]);  // no zeroing
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t first = b * kLanes;
    const int n = (int)std::min<int64_t>(kLanes, planes - first);
    body(first, n, scratch.get() + omp_get_thread_num() * scratch_vectors);
  }
}

// Calls f(kh, kw) with the kernel's size as std::integral_constants for CIFAR's 3x3 and VGG's 2x2
// windows, 0 x 0 (unknown) otherwise.
template <typename F>
void with_kernel_size(const Pool2dShape& s, F f) {
  using three = std::integral_constant<int, 3>;
  using two = std::integral_constant<int, 2>;
  if (s.kernel_h == 3 && s.kernel_w == 3) return f(three{}, three{});
  if (s.kernel_h == 2 && s.kernel_w == 2) return f(two{}, two{});
  f(std::integral_constant<int, 0>{}, std::integral_constant<int, 0>{});
}

// Calls f(h * W + w) for the cells of the window rows x cols in row-major order; a whole window of
// a known kernel size KH x KW has constant loop bounds (unrolled), a clipped one does not.
template <int KH, int KW, typename F>
inline void for_each_cell(int64_t W, const Span& rows, const Span& cols, F f) {
  if (KH > 0 && rows.hi - rows.lo == KH && cols.hi - cols.lo == KW) {
    const int64_t first = rows.lo * W + cols.lo;
    for (int h = 0; h < KH; ++h)
      for (int w = 0; w < KW; ++w) f(first + h * W + w);
    return;
  }
  for (int64_t h = rows.lo; h < rows.hi; ++h)
    for (int64_t w = cols.lo; w < cols.hi; ++w) f(h * W + w);
}

// Maximum of one window in every lane, and (kTrackIndex) the cell h * W + w it is at: PyTorch's
// rule, a value replaces the running maximum when larger or NaN; -1 for an empty window.
template <int KH, int KW, bool kTrackIndex>
inline void window_max(const Pool2dShape& s, const Span& rows, const Span& cols,
                       const vfloat* cells, vfloat& best, vint& at) {
  best = vbroadcast(-std::numeric_limits<float>::infinity());
  at = vint{} + (rows.lo < rows.hi && cols.lo < cols.hi ? (int32_t)(rows.lo * s.W + cols.lo) : -1);
  for_each_cell<KH, KW>(s.W, rows, cols, [&](int64_t c) {
    const vfloat v = cells[c];
    const auto take = (v > best) | (v != v);
    best = take ? v : best;
    if (kTrackIndex) at = take ? vint{} + (int32_t)c : at;
  });
}

template <int KH, int KW, bool kTrackIndex>
void max_forward_blocks(const Pool2dShape& s, bool relu_after, const float* x, float* y,
                        int32_t* indices) {
  const Windows win(s);
  const int64_t plane = s.H * s.W, out_plane = s.P * s.Q;
  for_each_block(s, plane + 2 * out_plane, [&](int64_t first, int n, vfloat* scratch) {
    vfloat *cells = scratch, *best_of = cells + plane, *at_of = best_of + out_plane;
    planes_to_lanes(x + first * plane, plane, n, false, cells);
    for (int64_t p = 0; p < s.P; ++p) {
      for (int64_t q = 0; q < s.Q; ++q) {
        vfloat best;
        vint at;
        window_max<KH, KW, kTrackIndex>(s, win.rows[p], win.cols[q], cells, best, at);
        best_of[p * s.Q + q] = relu_after ? relu(best) : best;
        if (kTrackIndex) at_of[p * s.Q + q] = (vfloat)at;
      }
    }
    lanes_to_planes(best_of, out_plane, n, nullptr, y + first * out_plane);
    if (kTrackIndex)  // int32 bits through float lanes: transposing only moves them
      lanes_to_planes(at_of, out_plane, n, nullptr,
                      reinterpret_cast<float*>(indices + first * out_plane));
  });
}

}  // namespace

// Measured on the CIFAR and VGG shapes (pool.cpp's row kernels against these, 1 thread): the
// averages win up to 32x32 planes; the max-pool forward too where windows overlap or rows are
// short, but not for VGG's 2x2/2 on 32x32, whose rows fill whole vectors; the max-pool backward
// (which repeats the forward's search) only on small planes.
bool suits(const Pool2dShape& s, Kernel kernel) {
  const int64_t cells = s.H * s.W;
  const bool overlapping = s.stride_h < s.kernel_h || s.stride_w < s.kernel_w;
  if (cells > kMaxCells || s.P * s.Q > kMaxCells) return false;
  switch (kernel) {
    case Kernel::kAverage:
      return true;
    case Kernel::kMaxForward:
      return cells <= 256 || overlapping;
    case Kernel::kMaxBackward:
      return cells <= 64 || (cells <= 256 && !overlapping);
  }
  return false;
}

void max_forward(const Pool2dShape& s, bool relu_after, const float* x, float* y,
                 int32_t* indices) {
  with_kernel_size(s, [&](auto kh, auto kw) {
    if (indices)
      max_forward_blocks<kh(), kw(), true>(s, relu_after, x, y, indices);
    else
      max_forward_blocks<kh(), kw(), false>(s, relu_after, x, y, nullptr);
  });
}

void avg_forward(const Pool2dShape& s, bool count_include_pad, bool relu_before, const float* x,
                 float* y) {
  const Windows win(s);
  const int64_t plane = s.H * s.W, out_plane = s.P * s.Q;
  with_kernel_size(s, [&](auto kh, auto kw) {
    for_each_block(s, plane + out_plane, [&](int64_t first, int n, vfloat* scratch) {
      vfloat *cells = scratch, *mean_of = cells + plane;
      planes_to_lanes(x + first * plane, plane, n, relu_before, cells);
      for (int64_t p = 0; p < s.P; ++p) {
        const Span& rows = win.rows[p];
        for (int64_t q = 0; q < s.Q; ++q) {
          const Span& cols = win.cols[q];
          vfloat sum = vfloat{};
          for_each_cell<kh(), kw()>(s.W, rows, cols, [&](int64_t c) { sum += cells[c]; });
          const int64_t d = divisor(rows, cols, count_include_pad);
          mean_of[p * s.Q + q] = d > 0 ? sum / vbroadcast((float)d) : vfloat{};
        }
      }
      lanes_to_planes(mean_of, out_plane, n, nullptr, y + first * out_plane);
    });
  });
}

// As the row kernel: each output row's gradients (over their divisors) spread along one row,
// which is then added to every input row under the window.
void avg_backward(const Pool2dShape& s, bool count_include_pad, const float* grad_y,
                  const float* relu_x, float* grad_x) {
  const Windows win(s);
  const int64_t plane = s.H * s.W, out_plane = s.P * s.Q;
  for_each_block(s, plane + out_plane + s.W, [&](int64_t first, int n, vfloat* scratch) {
    vfloat *gx = scratch, *gy = gx + plane, *spread = gy + out_plane;
    planes_to_lanes(grad_y + first * out_plane, out_plane, n, false, gy);
    for (int64_t c = 0; c < plane; ++c) gx[c] = vfloat{};
    for (int64_t p = 0; p < s.P; ++p) {
      const Span& rows = win.rows[p];
      if (rows.lo >= rows.hi) continue;
      for (int64_t w = 0; w < s.W; ++w) spread[w] = vfloat{};
      for (int64_t q = 0; q < s.Q; ++q) {
        const Span& cols = win.cols[q];
        const int64_t d = divisor(rows, cols, count_include_pad);
        if (d <= 0) continue;
        const vfloat g = gy[p * s.Q + q] / vbroadcast((float)d);
        for (int64_t w = cols.lo; w < cols.hi; ++w) spread[w] += g;
      }
      for (int64_t h = rows.lo; h < rows.hi; ++h)
        for (int64_t w = 0; w < s.W; ++w) gx[h * s.W + w] += spread[w];
    }
    lanes_to_planes(gx, plane, n, relu_x ? relu_x + first * plane : nullptr,
                    grad_x + first * plane);
  });
}

// Each window's gradient goes to its maximum, found again: whole-vector adds of gradient-or-zero
// to every cell of the window, in the order of the row kernels' scatter (windows row by row), so
// the sums are the same.
void max_backward(const Pool2dShape& s, bool relu_after, const float* grad_y, const float* x,
                  float* grad_x) {
  const Windows win(s);
  const int64_t plane = s.H * s.W, out_plane = s.P * s.Q;
  with_kernel_size(s, [&](auto kh, auto kw) {
    for_each_block(s, 2 * plane + out_plane, [&](int64_t first, int n, vfloat* scratch) {
      vfloat *gx = scratch, *gy = gx + plane, *cells = gy + out_plane;
      planes_to_lanes(grad_y + first * out_plane, out_plane, n, false, gy);
      planes_to_lanes(x + first * plane, plane, n, false, cells);
      for (int64_t c = 0; c < plane; ++c) gx[c] = vfloat{};
      for (int64_t p = 0; p < s.P; ++p) {
        const Span& rows = win.rows[p];
        for (int64_t q = 0; q < s.Q; ++q) {
          const Span& cols = win.cols[q];
          vfloat best, g = gy[p * s.Q + q];
          vint at;
          window_max<kh(), kw(), true>(s, rows, cols, cells, best, at);
          if (relu_after) g = best > 0 ? g : vfloat{};
          for_each_cell<kh(), kw()>(s.W, rows, cols, [&](int64_t c) {
            gx[c] += at == (int32_t)c ? g : vfloat{};
          });
        }
      }
      lanes_to_planes(gx, plane, n, nullptr, grad_x + first * plane);
    });
  });
}

}  // namespace ds::cpu::lanes

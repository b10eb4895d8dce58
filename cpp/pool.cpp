// Max pooling (forward, forward with indices, backward that searches the windows again) and the
// average forward over (N*C) independent planes, split across threads by plane; planes of up to
// 32x32 cells mostly go to the plane-lane kernels of pool_lanes.cpp instead, and the backward
// passes that need no search (from indices, and the average's) are in pool_routing.cpp. Max
// pooling and the average forward work one output row at a time on SIMD vectors of adjacent
// output cells: the plane is first copied into a buffer whose rows are padded with the identity
// (-inf or 0), so that every cell, edges included, scans its full window in row-major order with
// plain (stride 1) or deinterleaved (stride 2) vector loads; the common window widths and strides
// are compile-time constants. The max backward finds each window's maximum again the same way;
// when windows do not overlap (stride >= kernel, VGG's 2x2/2) it writes every row of grad_x
// once, whole vectors of gradient-or-zero, else it zeroes grad_x and adds cell by cell.
// max_pool2d_forward_indices records each window's argmax as it finds it. A fused ReLU is
// applied as the plane is read (before an average) or as the maximum is stored (after a max),
// and its backward as the gradient is routed.
// Max pooling follows PyTorch's CPU kernel exactly: a value replaces the running maximum when it
// is larger or NaN (so the last NaN wins), starting from -inf at the window's first in-bounds
// cell; padding is never chosen.
#include "pool.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "pool_lanes.h"
#include "pool_windows.h"
#include "simd.h"
#include "threads.h"

namespace ds::cpu {
namespace {

// Index in the plane of PyTorch's maximum of the window rows x cols, or -1 if it is empty.
inline int64_t argmax(const float* plane, int64_t W, const Span& rows, const Span& cols) {
  if (rows.lo >= rows.hi || cols.lo >= cols.hi) return -1;
  int64_t best = rows.lo * W + cols.lo;
  float best_val = -std::numeric_limits<float>::infinity();
  for (int64_t h = rows.lo; h < rows.hi; ++h)
    for (int64_t w = cols.lo; w < cols.hi; ++w) {
      const float v = plane[h * W + w];
      if (v > best_val || v != v) best_val = v, best = h * W + w;
    }
  return best;
}

// The vector paths lay every input row out padded for whole-vector loads of the strided windows
// (pad_w + W + (Q + 2 kVecWidth) stride_w + kernel_w floats) and keep cell indices in int32.
// Where that is out of proportion to the input (huge strides, kernels or paddings: stride 1e6
// on an 8x8 input would take 2 GB) or the plane is beyond int32, the windows are scanned one
// cell at a time instead, in memory proportional to the output.
bool vector_layout_fits(const Pool2dShape& s) {
  constexpr int64_t kMaxStride = 16, kMaxPad = 1024, kMaxKernel = 2048;
  return s.stride_w <= kMaxStride && s.pad_w <= kMaxPad && s.kernel_w <= kMaxKernel &&
         s.kernel_h <= kMaxKernel && s.H * s.W < (int64_t{1} << 31) - kMaxKernel * kMaxStride;
}

// The scalar path of vector_layout_fits: max or average (sum, then the divisor) of every
// window, summing in the vector path's order (rows, then columns: bitwise the same result).
// relu: the ReLU of the maximum, or the average of the ReLU of the input.
void pool_forward_by_cell(const Pool2dShape& s, bool is_max, bool count_include_pad, bool relu,
                          const float* x, float* y) {
  const Windows win(s);
  for_each_plane(s, [] { return 0; }, [&](int, int64_t in_off, int64_t out_off) {
    const float* plane = x + in_off;
    for (int64_t p = 0; p < s.P; ++p)
      for (int64_t q = 0; q < s.Q; ++q) {
        const Span &rows = win.rows[p], &cols = win.cols[q];
        float value;
        if (is_max) {
          const int64_t at = argmax(plane, s.W, rows, cols);
          value = at < 0 ? -std::numeric_limits<float>::infinity() : plane[at];
          if (relu) value = ds::cpu::relu(value);
        } else {
          float sum = 0.0f;
          for (int64_t h = rows.lo; h < rows.hi; ++h)
            for (int64_t w = cols.lo; w < cols.hi; ++w)
              sum += relu ? ds::cpu::relu(plane[h * s.W + w]) : plane[h * s.W + w];
          const int64_t d = divisor(rows, cols, count_include_pad);
          value = d > 0 ? sum / (float)d : 0.0f;
        }
        y[out_off + p * s.Q + q] = value;
      }
  });
}

typedef int32_t vint __attribute__((vector_size(kVecWidth * sizeof(int32_t))));

// Lanes p[0], p[stride], ... p[(kVecWidth-1)*stride]; reads up to p[2*kVecWidth-1] for stride 2.
inline vfloat load_strided(const float* p, int64_t stride) {
  if (stride == 1) return vload(p);
  vfloat v;
  if (stride == 2) {
    vint even;
    for (int i = 0; i < kVecWidth; ++i) even[i] = 2 * i;
    return __builtin_shuffle(vload(p), vload(p + kVecWidth), even);
  }
  for (int i = 0; i < kVecWidth; ++i) v[i] = p[i * stride];
  return v;
}

// One input plane laid out for the vector loops: cell (h, w) at row(h)[pad_w + w], the identity
// value on both sides of every row, with room for the last vector's loads. The whole plane is
// copied before any row is read, so that loads never wait on the copy's just-issued stores.
class PaddedPlane {
 public:
  PaddedPlane(const Pool2dShape& s, float fill)
      : s_(s),
        stride_(s.pad_w + s.W + (s.Q + 2 * kVecWidth) * s.stride_w + s.kernel_w),
        buf_(s.H * stride_, fill) {}
  // relu_in: the plane's ReLU (avg pooling of a ReLU's output without that output).
  void load(const float* plane, bool relu_in = false) {
    for (int64_t h = 0; h < s_.H; ++h) {  // short rows: an inline loop beats memcpy's call
      float* dst = &buf_[h * stride_ + s_.pad_w];
      const float* src = plane + h * s_.W;
      if (!relu_in) {
        copy_floats(dst, src, s_.W);
        continue;
      }
      int64_t w = 0;
      for (; w + kVecWidth <= s_.W; w += kVecWidth) vstore(dst + w, relu(vload(src + w)));
      for (; w < s_.W; ++w) dst[w] = relu(src[w]);
    }
  }
  const float* row(int64_t h) const { return &buf_[h * stride_]; }

 private:
  const Pool2dShape& s_;
  int64_t stride_;
  std::vector<float> buf_;
};

// Stores the first n lanes of v to dst.
inline void store_lanes(float* dst, vfloat v, int64_t n) {
  if (n == kVecWidth) {
    vstore(dst, v);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = v[i];
  }
}

// Calls f(KW, SW) with std::integral_constant window widths and strides for the common cases
// (2x2/2, 3x3/2, stride 1), 0 for "read it from s": with constants the tap loops unroll and
// the strided loads are chosen at compile time.
template <typename F>
void with_window_width(const Pool2dShape& s, F f) {
  using two = std::integral_constant<int, 2>;
  using three = std::integral_constant<int, 3>;
  using any = std::integral_constant<int, 0>;
  if (s.kernel_w == 2 && s.stride_w == 2) return f(two{}, two{});
  if (s.kernel_w == 3 && s.stride_w == 2) return f(three{}, two{});
  if (s.stride_w == 1) return f(any{}, std::integral_constant<int, 1>{});
  f(any{}, any{});
}

// Maximum (best) and index h * W + w of the maximum (best_at, when kTrackIndex) of the windows
// of output cells q0 .. q0 + kVecWidth - 1 of row p. KW, SW: kernel_w and stride_w, or 0.
template <int KW, int SW, bool kTrackIndex>
inline void window_max(const Pool2dShape& s, const Windows& win, const PaddedPlane& plane,
                       int64_t p, int64_t q0, vfloat& best, vint& best_at) {
  const int64_t kernel_w = KW ? KW : s.kernel_w, stride_w = SW ? SW : s.stride_w;
  const Span& rows = win.rows[p];
  vint lane;
  for (int i = 0; i < kVecWidth; ++i) lane[i] = i * stride_w;
  best = vbroadcast(-std::numeric_limits<float>::infinity());
  best_at = vint{};
  if (kTrackIndex) {
    std::memcpy(&best_at, win.first_col.data() + q0, sizeof(best_at));
    best_at += (int32_t)(rows.lo * s.W);
  }
  for (int64_t h = rows.lo; h < rows.hi; ++h) {
    const float* padded = plane.row(h) + q0 * stride_w;
    for (int64_t t = 0; t < kernel_w; ++t) {
      const vfloat v = load_strided(padded + t, stride_w);
      const auto take = (v > best) | (v != v);
      best = take ? v : best;
      if (kTrackIndex) {
        const vint at = lane + (int32_t)(h * s.W + q0 * stride_w - s.pad_w + t);
        best_at = take ? at : best_at;
      }
    }
  }
}

// Max over the windows of output row p, kVecWidth cells at a time; index (h * W + w) of each
// cell's maximum goes to argmax_out when it is not null.
template <int KW, int SW>
void max_pool_row(const Pool2dShape& s, const Windows& win, const PaddedPlane& plane, int64_t p,
                  bool relu_after, float* max_out, int32_t* argmax_out) {
  for (int64_t q0 = 0; q0 < s.Q; q0 += kVecWidth) {
    vfloat best;
    vint best_at;
    if (argmax_out)
      window_max<KW, SW, true>(s, win, plane, p, q0, best, best_at);
    else
      window_max<KW, SW, false>(s, win, plane, p, q0, best, best_at);
    if (relu_after) best = relu(best);
    if (max_out) store_lanes(max_out + q0, best, std::min<int64_t>(kVecWidth, s.Q - q0));
    if (argmax_out) std::memcpy(argmax_out + q0, &best_at, sizeof(best_at));
  }
}

// Backward of output row p when no two windows overlap (stride >= kernel on both axes), so that
// every input cell gets at most one gradient and can be written rather than accumulated: for
// each window row h and tap t, the lanes whose maximum sits at (h, tap) take their gy, the others
// 0, stored to the tap's cells of out row h - rows.lo (laid out like PaddedPlane's rows). gy
// holds the row's Q gradients followed by zeros, so lanes past Q store zeros.
template <int KW, int SW>
void max_pool_row_backward_disjoint(const Pool2dShape& s, const Windows& win,
                                    const PaddedPlane& plane, int64_t p, bool relu_after,
                                    const float* gy, float* out, int64_t out_stride) {
  const Span& rows = win.rows[p];
  vint lane;
  for (int i = 0; i < kVecWidth; ++i) lane[i] = i * s.stride_w;
  const vfloat zero = vfloat{};
  for (int64_t q0 = 0; q0 < s.Q; q0 += kVecWidth) {
    vfloat best;
    vint best_at;
    window_max<KW, SW, true>(s, win, plane, p, q0, best, best_at);
    const vfloat g = relu_after ? (best > 0 ? vload(gy + q0) : zero) : vload(gy + q0);
    for (int64_t h = rows.lo; h < rows.hi; ++h) {
      float* o = out + (h - rows.lo) * out_stride + q0 * s.stride_w;
      const vint at = lane + (int32_t)(h * s.W + q0 * s.stride_w - s.pad_w);
      if (KW == 2 && SW == 2) {  // the two taps interleave into whole vectors
        store_interleaved(o, best_at == at ? g : zero, best_at == at + 1 ? g : zero);
        continue;
      }
      for (int64_t t = 0; t < s.kernel_w; ++t) {
        const vfloat gt = best_at == at + (int32_t)t ? g : zero;
        for (int i = 0; i < kVecWidth; ++i) o[t + i * s.stride_w] = gt[i];
      }
    }
  }
}
}  // namespace

void max_pool2d_forward(const Pool2dShape& s, bool relu_after, const float* x, float* y) {
  if (lanes::suits(s, lanes::Kernel::kMaxForward))
    return lanes::max_forward(s, relu_after, x, y, nullptr);
  if (!vector_layout_fits(s)) return pool_forward_by_cell(s, true, false, relu_after, x, y);
  const Windows win(s);
  const auto plane = [&] { return PaddedPlane(s, -std::numeric_limits<float>::infinity()); };
  with_window_width(s, [&](auto kw, auto sw) {
    for_each_plane(s, plane, [&](PaddedPlane& in, int64_t in_off, int64_t out_off) {
      in.load(x + in_off);
      for (int64_t p = 0; p < s.P; ++p)
        max_pool_row<kw(), sw()>(s, win, in, p, relu_after, y + out_off + p * s.Q, nullptr);
    });
  });
}

void max_pool2d_backward(const Pool2dShape& s, bool relu_after, const float* grad_y,
                         const float* x, float* grad_x) {
  if (lanes::suits(s, lanes::Kernel::kMaxBackward))
    return lanes::max_backward(s, relu_after, grad_y, x, grad_x);
  const Windows win(s);
  if (!vector_layout_fits(s)) {  // each window's gradient to its maximum, found cell by cell
    for_each_plane(s, [] { return 0; }, [&](int, int64_t in_off, int64_t out_off) {
      float* gx = grad_x + in_off;
      std::memset(gx, 0, sizeof(float) * s.H * s.W);
      for (int64_t p = 0; p < s.P; ++p)
        for (int64_t q = 0; q < s.Q; ++q) {
          const int64_t at = argmax(x + in_off, s.W, win.rows[p], win.cols[q]);
          if (at >= 0 && (!relu_after || x[in_off + at] > 0))
            gx[at] += grad_y[out_off + p * s.Q + q];
        }
    });
    return;
  }
  if (s.stride_h >= s.kernel_h && s.stride_w >= s.kernel_w) {
    // Disjoint windows: every row of grad_x written once, from a padded row buffer.
    std::vector<char> covered(s.H, 0);
    for (const Span& rows : win.rows)
      for (int64_t h = rows.lo; h < rows.hi; ++h) covered[h] = 1;
    const int64_t out_stride = s.pad_w + s.W + (s.Q + 2 * kVecWidth) * s.stride_w + s.kernel_w;
    struct Scratch {
      PaddedPlane in;
      std::vector<float> gy, out;  // zero outside what every row writes
    };
    const auto scratch = [&] {
      return Scratch{PaddedPlane(s, -std::numeric_limits<float>::infinity()),
                     std::vector<float>(s.Q + kVecWidth, 0.0f),
                     std::vector<float>(s.kernel_h * out_stride, 0.0f)};
    };
    with_window_width(s, [&](auto kw, auto sw) {
      for_each_plane(s, scratch, [&](Scratch& sc, int64_t in_off, int64_t out_off) {
        float* gx = grad_x + in_off;
        sc.in.load(x + in_off);
        for (int64_t h = 0; h < s.H; ++h)
          if (!covered[h]) std::memset(gx + h * s.W, 0, sizeof(float) * s.W);
        for (int64_t p = 0; p < s.P; ++p) {
          const Span& rows = win.rows[p];
          if (rows.lo >= rows.hi) continue;
          std::memcpy(sc.gy.data(), grad_y + out_off + p * s.Q, sizeof(float) * s.Q);
          max_pool_row_backward_disjoint<kw(), sw()>(s, win, sc.in, p, relu_after,
                                                     sc.gy.data(), sc.out.data(), out_stride);
          for (int64_t h = rows.lo; h < rows.hi; ++h)
            copy_floats(gx + h * s.W, sc.out.data() + (h - rows.lo) * out_stride + s.pad_w, s.W);
        }
      });
    });
    return;
  }
  // Overlapping windows: accumulate each window's gradient at its maximum.
  struct Scratch {
    PaddedPlane in;
    std::vector<int32_t> argmax;
  };
  const bool no_empty_cols = std::all_of(win.cols.begin(), win.cols.end(),
                                         [](const Span& c) { return c.lo < c.hi; });
  const auto scratch = [&] {
    return Scratch{PaddedPlane(s, -std::numeric_limits<float>::infinity()),
                   std::vector<int32_t>(s.Q + kVecWidth)};  // whole vectors are stored
  };
  with_window_width(s, [&](auto kw, auto sw) {
    for_each_plane(s, scratch, [&](Scratch& sc, int64_t in_off, int64_t out_off) {
      const float* gy = grad_y + out_off;
      float* gx = grad_x + in_off;
      const float* in = x + in_off;
      sc.in.load(in);
      std::memset(gx, 0, sizeof(float) * s.H * s.W);
      for (int64_t p = 0; p < s.P; ++p) {
        max_pool_row<kw(), sw()>(s, win, sc.in, p, false, nullptr, sc.argmax.data());
        if (win.rows[p].lo >= win.rows[p].hi) continue;
        if (no_empty_cols && !relu_after) {
          for (int64_t q = 0; q < s.Q; ++q) gx[sc.argmax[q]] += gy[p * s.Q + q];
        } else {
          for (int64_t q = 0; q < s.Q; ++q)
            if (win.cols[q].lo < win.cols[q].hi && (!relu_after || in[sc.argmax[q]] > 0))
              gx[sc.argmax[q]] += gy[p * s.Q + q];
        }
      }
    });
  });
}

void avg_pool2d_forward(const Pool2dShape& s, bool count_include_pad, bool relu_before,
                        const float* x, float* y) {
  if (lanes::suits(s, lanes::Kernel::kAverage))
    return lanes::avg_forward(s, count_include_pad, relu_before, x, y);
  if (!vector_layout_fits(s))
    return pool_forward_by_cell(s, false, count_include_pad, relu_before, x, y);
  const Windows win(s);
  const std::vector<float> col_extent = column_extents(win.cols, count_include_pad);
  const auto plane = [&] { return PaddedPlane(s, 0.0f); };
  with_window_width(s, [&](auto kw, auto sw) {
    const int64_t kernel_w = kw() ? kw() : s.kernel_w, stride_w = sw() ? sw() : s.stride_w;
    for_each_plane(s, plane, [&](PaddedPlane& in, int64_t in_off, int64_t out_off) {
      in.load(x + in_off, relu_before);
      for (int64_t p = 0; p < s.P; ++p) {
        const Span& rows = win.rows[p];
        const vfloat row_extent = vbroadcast(extent(rows, count_include_pad));
        for (int64_t q0 = 0; q0 < s.Q; q0 += kVecWidth) {
          vfloat sum = vfloat{};
          for (int64_t h = rows.lo; h < rows.hi; ++h) {
            const float* padded = in.row(h) + q0 * stride_w;
            for (int64_t t = 0; t < kernel_w; ++t) sum += load_strided(padded + t, stride_w);
          }
          const vfloat d = row_extent * vload(col_extent.data() + q0);
          store_lanes(y + out_off + p * s.Q + q0, d > 0 ? sum / d : vfloat{},
                      std::min<int64_t>(kVecWidth, s.Q - q0));
        }
      }
    });
  });
}

void max_pool2d_forward_indices(const Pool2dShape& s, bool relu_after, const float* x, float* y,
                                int32_t* indices) {
  if (lanes::suits(s, lanes::Kernel::kMaxForward))
    return lanes::max_forward(s, relu_after, x, y, indices);
  const Windows win(s);
  if (!vector_layout_fits(s)) {
    for_each_plane(s, [] { return 0; }, [&](int, int64_t in_off, int64_t out_off) {
      for (int64_t p = 0; p < s.P; ++p)
        for (int64_t q = 0; q < s.Q; ++q) {
          const int64_t at = argmax(x + in_off, s.W, win.rows[p], win.cols[q]);
          const float max = at < 0 ? -std::numeric_limits<float>::infinity() : x[in_off + at];
          y[out_off + p * s.Q + q] = relu_after ? relu(max) : max;
          indices[out_off + p * s.Q + q] = (int32_t)at;
        }
    });
    return;
  }
  struct Scratch {
    PaddedPlane in;
    std::vector<int32_t> argmax;
  };
  const auto scratch = [&] {
    return Scratch{PaddedPlane(s, -std::numeric_limits<float>::infinity()),
                   std::vector<int32_t>(s.Q + kVecWidth)};  // whole vectors are stored
  };
  with_window_width(s, [&](auto kw, auto sw) {
    for_each_plane(s, scratch, [&](Scratch& sc, int64_t in_off, int64_t out_off) {
      sc.in.load(x + in_off);
      for (int64_t p = 0; p < s.P; ++p) {
        max_pool_row<kw(), sw()>(s, win, sc.in, p, relu_after, y + out_off + p * s.Q,
                                 sc.argmax.data());
        std::memcpy(indices + out_off + p * s.Q, sc.argmax.data(), sizeof(int32_t) * s.Q);
      }
    });
  });
}

}  // namespace ds::cpu

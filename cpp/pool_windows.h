// Pooling windows and the loop over planes, shared by the row kernels (pool.cpp), the backward
// passes that route gradients without searching windows (pool_routing.cpp) and the plane-lane
// kernels of small planes (pool_lanes.cpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <optional>
#include <utility>
#include <vector>

#include "shapes.h"
#include "simd.h"
#include "threads.h"

namespace ds::cpu {

// [lo, hi): the input cells under output cell i along one axis; padded: the window's length
// clipped to the padded input (avg pooling's count_include_pad divisor).
struct Span {
  int64_t lo, hi, padded;
};

inline std::vector<Span> spans(int64_t out, int64_t in, int64_t kernel, int64_t stride,
                               int64_t pad) {
  std::vector<Span> result(out);
  for (int64_t i = 0; i < out; ++i) {
    const int64_t start = i * stride - pad, end = std::min(start + kernel, in + pad);
    result[i] = {std::max<int64_t>(start, 0), std::min(end, in), end - start};
  }
  return result;
}

// The window of every output row and column, computed once per call.
struct Windows {
  std::vector<Span> rows, cols;
  std::vector<int32_t> first_col;  // cols[q].lo, padded to whole vectors for the row kernels
  explicit Windows(const Pool2dShape& s)
      : rows(spans(s.P, s.H, s.kernel_h, s.stride_h, s.pad_h)),
        cols(spans(s.Q, s.W, s.kernel_w, s.stride_w, s.pad_w)),
        first_col(s.Q + kVecWidth, 0) {
    for (int64_t q = 0; q < s.Q; ++q) first_col[q] = (int32_t)cols[q].lo;
  }
};

inline int64_t divisor(const Span& rows, const Span& cols, bool count_include_pad) {
  return count_include_pad ? rows.padded * cols.padded
                           : (rows.hi - rows.lo) * (cols.hi - cols.lo);
}

// The average's divisor as a row's extent times a column's (divisor() = extent(rows) *
// extent(cols)), so that the row kernels build a whole vector of divisors from one broadcast and
// one load of column extents. The float product is exact while both are below 2^24 (every
// window a lane kernel takes), so both paths divide by the same float.
inline float extent(const Span& span, bool count_include_pad) {
  return (float)(count_include_pad ? span.padded : span.hi - span.lo);
}

// Lanes first .. first + kVecWidth - 1 of a0 b0 a1 b1 ... (constant shuffle indices, so that
// the masks are never built at run time).
template <int first, size_t... I>
inline vfloat interleaved(vfloat a, vfloat b, std::index_sequence<I...>) {
  return __builtin_shufflevector(a, b, ((first + I) / 2 + (first + I) % 2 * kVecWidth)...);
}

// dst[2i] = a[i], dst[2i + 1] = b[i] for every lane i: two whole-vector stores. The 2-wide,
// 2-apart windows of VGG's pooling route a vector of output cells to twice as many inputs so.
inline void store_interleaved(float* dst, vfloat a, vfloat b) {
  constexpr auto lanes = std::make_index_sequence<kVecWidth>{};
  vstore(dst, interleaved<0>(a, b, lanes));
  vstore(dst + kVecWidth, interleaved<kVecWidth>(a, b, lanes));
}

// extent() of every column window, padded with ones to whole vectors past the last.
inline std::vector<float> column_extents(const std::vector<Span>& cols, bool count_include_pad) {
  std::vector<float> result(cols.size() + kVecWidth, 1.0f);
  for (size_t q = 0; q < cols.size(); ++q) result[q] = extent(cols[q], count_include_pad);
  return result;
}

// Below this many input cells a pooling is not split across threads (waking them costs more than
// the split saves).
constexpr int64_t kPoolParallelCells = 1 << 15;

// Whether a pooling over planes of s runs on more than one thread.
inline bool pool_in_parallel(const Pool2dShape& s) {
  return s.N * s.C > 1 && s.N * s.C * s.H * s.W >= kPoolParallelCells;
}

// Runs body(state, in_plane_offset, out_plane_offset) for every plane, planes split across
// threads; each thread makes its state (its scratch buffers) once. An exception (bad_alloc)
// must not leave an OpenMP region (the runtime would abort the process): the first one is kept
// and rethrown after the region, every thread still meeting the worksharing loop.
template <typename MakeState, typename Body>
void for_each_plane(const Pool2dShape& s, MakeState make_state, Body body) {
  const int64_t planes = s.N * s.C;
  std::exception_ptr error;
#pragma omp parallel num_threads(num_threads()) if (pool_in_parallel(s))
  {
    std::optional<decltype(make_state())> state;
    try {
      state.emplace(make_state());
    } catch (...) {
#pragma omp critical(pool_error)
      if (!error) error = std::current_exception();
    }
#pragma omp for schedule(static)
    for (int64_t plane = 0; plane < planes; ++plane) {
      if (!state) continue;
      try {
        body(*state, plane * s.H * s.W, plane * s.P * s.Q);
      } catch (...) {
#pragma omp critical(pool_error)
        if (!error) error = std::current_exception();
      }
    }
  }
  if (error) std::rethrow_exception(error);
}

// ReLU as deepstyle.ops.relu computes it: "not below zero" rather than "above zero", so that NaN
// passes through.
template <typename T>
inline T relu(T v) {
  return v < 0 ? T{} : v;
}

}  // namespace ds::cpu

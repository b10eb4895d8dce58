// Pooling windows along one axis, shared by the row kernels (pool.cpp) and the plane-lane
// kernels of small planes (pool_lanes.cpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "shapes.h"

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

inline int64_t divisor(const Span& rows, const Span& cols, bool count_include_pad) {
  return count_include_pad ? rows.padded * cols.padded
                           : (rows.hi - rows.lo) * (cols.hi - cols.lo);
}

// ReLU as deepstyle.ops.relu computes it: "not below zero" rather than "above zero", so that NaN
// passes through.
template <typename T>
inline T relu(T v) {
  return v < 0 ? T{} : v;
}

}  // namespace ds::cpu

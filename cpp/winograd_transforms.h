#pragma once
// The transforms of Winograd's minimal filtering F(m x m, r x r) on 6x6 tiles (m + r - 1 = 6):
// the tables and the vectorised pieces that apply them (one tile per vector lane).
//
// Both variants use the interpolation points 0, -1, 1, 1/2, -2 and infinity. The input
// transform B^T depends only on the points (it is the transposed interpolation matrix), so
// F(4x4, 3x3) and F(2x2, 5x5) share it. Row k of G is s_k times the filter polynomial's
// evaluation at point k, (1, a, a^2, ..., a^(r-1)) (the point at infinity picks the last tap),
// with s = 1, -1/3, 1/3, -16/15, 1/15, 1 from the interpolation; column k of A^T is
// (1, a, ..., a^(m-1)) (infinity: the last output). These points keep the transforms small in
// float32 (see bench/README.md for the measured error; 0, ±1, ±2 gave about 3x more).
#include "simd.h"

namespace ds::cpu::winograd {

constexpr int kLanes = kVecWidth;  // tiles per vector
constexpr int kAlpha = 6;          // side of a transformed tile
constexpr int kXi = kAlpha * kAlpha;

constexpr float kBT[6][6] = {{1, -1.5f, -2, 1.5f, 1, 0},    {0, 1, -2.5f, 0.5f, 1, 0},
                             {0, -1, 0.5f, 2.5f, 1, 0},     {0, -2, -1, 2, 1, 0},
                             {0, 0.5f, -1, -0.5f, 1, 0},    {0, 1, -1.5f, -2, 1.5f, 1}};

// F(4x4, 3x3): 36 multiplications per 16 outputs instead of 144.
struct F4x4_3x3 {
  static constexpr int m = 4, r = 3;
  static constexpr float G[6][3] = {{1, 0, 0},
                                    {-1.0f / 3, 1.0f / 3, -1.0f / 3},
                                    {1.0f / 3, 1.0f / 3, 1.0f / 3},
                                    {-16.0f / 15, -8.0f / 15, -4.0f / 15},
                                    {1.0f / 15, -2.0f / 15, 4.0f / 15},
                                    {0, 0, 1}};
  static constexpr float AT[4][6] = {{1, 1, 1, 1, 1, 0},
                                     {0, -1, 1, 0.5f, -2, 0},
                                     {0, 1, 1, 0.25f, 4, 0},
                                     {0, -1, 1, 0.125f, -8, 1}};
};

// F(2x2, 5x5): 36 multiplications per 4 outputs instead of 100.
struct F2x2_5x5 {
  static constexpr int m = 2, r = 5;
  static constexpr float G[6][5] = {
      {1, 0, 0, 0, 0},
      {-1.0f / 3, 1.0f / 3, -1.0f / 3, 1.0f / 3, -1.0f / 3},
      {1.0f / 3, 1.0f / 3, 1.0f / 3, 1.0f / 3, 1.0f / 3},
      {-16.0f / 15, -8.0f / 15, -4.0f / 15, -2.0f / 15, -1.0f / 15},
      {1.0f / 15, -2.0f / 15, 4.0f / 15, -8.0f / 15, 16.0f / 15},
      {0, 0, 0, 0, 1}};
  static constexpr float AT[2][6] = {{1, 1, 1, 1, 1, 0}, {0, -1, 1, 0.5f, -2, 1}};
};

// out[r * out_step] = sum over c of m[r][c] * in[c * in_step]; after inlining and unrolling the
// coefficients are constants, so zero terms vanish and ±1 become adds.
template <int Rows, int Cols>
inline void combine(const float (&m)[Rows][Cols], const vfloat* in, int in_step, vfloat* out,
                    int out_step) {
#pragma GCC unroll 6
  for (int r = 0; r < Rows; ++r) {
    vfloat sum = vfloat{};
    bool started = false;  // the first term starts the sum (0 + v is not free without fast-math)
#pragma GCC unroll 6
    for (int c = 0; c < Cols; ++c) {
      const float coef = m[r][c];
      const vfloat v = in[c * in_step];
      if (coef == 0.0f) continue;
      if (!started)
        sum = coef == 1.0f ? v : coef == -1.0f ? -v : vbroadcast(coef) * v;
      else if (coef == 1.0f)
        sum += v;
      else if (coef == -1.0f)
        sum -= v;
      else
        sum += vbroadcast(coef) * v;
      started = true;
    }
    out[r * out_step] = sum;
  }
}

// out (Rows x Rows) = m . in (Cols x Cols) . m^T, row-major arrays of vectors.
template <int Rows, int Cols>
inline void transform_2d(const float (&m)[Rows][Cols], const vfloat* in, vfloat* out) {
  vfloat half[Rows * Cols];
#pragma GCC unroll 6
  for (int c = 0; c < Cols; ++c) combine(m, in + c, Cols, half + c, Cols);
#pragma GCC unroll 6
  for (int r = 0; r < Rows; ++r) combine(m, half + r * Cols, 1, out + r * Rows, 1);
}

// Floats of an input row under kLanes adjacent tiles of width M (6 columns each, M apart), and
// the vectors that hold them.
template <int M>
constexpr int kRowFloats = M * (kLanes - 1) + kAlpha;
template <int M>
constexpr int kRowVectors = (kRowFloats<M> + kLanes - 1) / kLanes;

#if defined(__AVX512F__)
// Lanes Shift.. of the concatenation (lo, hi): 16 consecutive floats of a row held in vectors.
template <int Shift>
inline vfloat shifted(vfloat lo, vfloat hi) {
  constexpr int k = Shift;
  return __builtin_shufflevector(lo, hi, k, k + 1, k + 2, k + 3, k + 4, k + 5, k + 6, k + 7,
                                 k + 8, k + 9, k + 10, k + 11, k + 12, k + 13, k + 14, k + 15);
}
#endif

// Lane l = row[M * l + J] of a row held in kRowVectors<M> vectors: the J-th column of the
// patches of kLanes adjacent tiles.
template <int M, int J>
inline vfloat patch_column(const vfloat* row) {
#if defined(__AVX512F__)
  if constexpr (M == 4) {
    constexpr int s = J & 3, base = J - s;
    const vfloat a = shifted<base>(row[0], row[1]), b = shifted<base>(row[1], row[2]),
                 c = shifted<base>(row[2], row[3]), e = shifted<base>(row[3], row[4]);
    const vfloat lo = __builtin_shufflevector(a, b, s, s + 4, s + 8, s + 12, s + 16, s + 20,
                                              s + 24, s + 28, s, s, s, s, s, s, s, s);
    const vfloat hi = __builtin_shufflevector(c, e, s, s + 4, s + 8, s + 12, s + 16, s + 20,
                                              s + 24, s + 28, s, s, s, s, s, s, s, s);
    return __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22,
                                   23);
  } else if constexpr (M == 2) {
    constexpr int s = J & 1, base = J - s;
    const vfloat a = shifted<base>(row[0], row[1]), b = shifted<base>(row[1], row[2]);
    return __builtin_shufflevector(a, b, s, s + 2, s + 4, s + 6, s + 8, s + 10, s + 12, s + 14,
                                   s + 16, s + 18, s + 20, s + 22, s + 24, s + 26, s + 28,
                                   s + 30);
  }
#endif
  alignas(64) float lanes[kRowVectors<M> * kLanes];
  for (int k = 0; k < kRowVectors<M>; ++k) vstore(lanes + k * kLanes, row[k]);
  for (int l = 0; l < kLanes; ++l) lanes[l] = lanes[M * l + J];  // reads stay ahead of writes
  return vload(lanes);
}

typedef int vint __attribute__((vector_size(kVecWidth * sizeof(int))));

// put(d[r * 6 + j], c) for c the j-th column of row r of the patches of kLanes adjacent tiles.
template <int M, class Put>
inline void for_patch_columns(const vfloat (*rows)[kRowVectors<M>], vfloat* d, Put put) {
  for (int r = 0; r < kAlpha; ++r) {
    vfloat* out = d + r * kAlpha;
    put(out[0], patch_column<M, 0>(rows[r]));
    put(out[1], patch_column<M, 1>(rows[r]));
    put(out[2], patch_column<M, 2>(rows[r]));
    put(out[3], patch_column<M, 3>(rows[r]));
    put(out[4], patch_column<M, 4>(rows[r]));
    put(out[5], patch_column<M, 5>(rows[r]));
  }
}

// d[r * 6 + j] = the j-th column of row r of the patches of kLanes adjacent tiles, every lane
// (d may be uninitialised).
template <int M>
inline void patch_columns(const vfloat (*rows)[kRowVectors<M>], vfloat* d) {
  for_patch_columns<M>(rows, d, [](vfloat& out, vfloat column) { out = column; });
}

// The same in the lanes where `mine` is set; the others keep d's values.
template <int M>
inline void patch_columns(const vfloat (*rows)[kRowVectors<M>], vfloat* d, vint mine) {
  for_patch_columns<M>(rows, d,
                       [mine](vfloat& out, vfloat column) { out = mine ? column : out; });
}

#if defined(__AVX512F__)
// Lanes 0-7 of a and b interleaved (a0 b0 a1 b1 ...), and lanes 8-15.
inline vfloat interleave_low(vfloat a, vfloat b) {
  return __builtin_shufflevector(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
}
inline vfloat interleave_high(vfloat a, vfloat b) {
  return __builtin_shufflevector(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15,
                                 31);
}
#endif

// rows[i][M * l + j] = y[i * M + j] lane l: the M output rows of kLanes adjacent tiles.
template <int M>
inline void interleave_tiles(const vfloat* y, float (*rows)[M * kLanes]) {
  for (int i = 0; i < M; ++i) {
    const vfloat* c = y + M * i;
#if defined(__AVX512F__)
    const vfloat a_lo = interleave_low(c[0], c[1]), a_hi = interleave_high(c[0], c[1]);
    if constexpr (M == 2) {
      vstore(rows[i], a_lo);
      vstore(rows[i] + 16, a_hi);
      continue;
    } else if constexpr (M == 4) {
      const vfloat b_lo = interleave_low(c[2], c[3]), b_hi = interleave_high(c[2], c[3]);
      vstore(rows[i], __builtin_shufflevector(a_lo, b_lo, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20,
                                              21, 6, 7, 22, 23));
      vstore(rows[i] + 16, __builtin_shufflevector(a_lo, b_lo, 8, 9, 24, 25, 10, 11, 26, 27, 12,
                                                   13, 28, 29, 14, 15, 30, 31));
      vstore(rows[i] + 32, __builtin_shufflevector(a_hi, b_hi, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5,
                                                   20, 21, 6, 7, 22, 23));
      vstore(rows[i] + 48, __builtin_shufflevector(a_hi, b_hi, 8, 9, 24, 25, 10, 11, 26, 27, 12,
                                                   13, 28, 29, 14, 15, 30, 31));
      continue;
    }
#endif
    alignas(64) float lanes[M][kLanes];
    for (int j = 0; j < M; ++j) vstore(lanes[j], c[j]);
    for (int l = 0; l < kLanes; ++l)
      for (int j = 0; j < M; ++j) rows[i][M * l + j] = lanes[j][l];
  }
}

}  // namespace ds::cpu::winograd

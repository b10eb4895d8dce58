// Unpacked products of the blocked family: A B^T by dot products along contiguous rows (long
// sums over few rows and columns: Gram matrices of small images, grad_weight of few output
// channels), and mirror_upper, which completes a symmetric product computed as its upper
// triangle (here and in gemm_blocked.h's `upper` mode).
#pragma once

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "gemm_blocked.h"
#include "simd.h"

namespace ds {
namespace blocked {

// C's lower triangle (n x n) copied from its upper one, in square blocks so that the transposed
// reads stay within a few cache lines.
inline void mirror_upper(int64_t n, float* C, int64_t ldc) {
  constexpr int64_t kBlock = 32;
  for (int64_t i0 = 0; i0 < n; i0 += kBlock)
    for (int64_t j0 = 0; j0 <= i0; j0 += kBlock)
      for (int64_t i = i0; i < std::min(n, i0 + kBlock); ++i)
        for (int64_t j = j0; j < std::min(i, j0 + kBlock); ++j) C[i * ldc + j] = C[j * ldc + i];
}

// C (M x N) = alpha * A B^T + beta * C, where row i of A is a_row(i) and row j of B is b_row(j),
// L contiguous floats each: dot products in vector lanes, with no packing or transposing, for
// products whose small M and N would leave the packs above poorly amortised. Each tile of
// kDotRows x kDotCols accumulates one chunk of L in registers (the chunk of a tile's B rows
// stays in L1, A's in L2), then adds its lane sums to C; threads own disjoint ranges of tiles,
// so every element is summed in the same order whatever the thread count.
// With `symmetric` (A and B the same matrix), only tiles that reach the upper triangle are
// computed and the lower triangle is mirrored from it (exactly: each product pairs the same
// floats in the same order), half the work.
template <typename ARow, typename BRow>
void gemm_dot(int64_t M, int64_t N, int64_t L, const ARow& a_row, const BRow& b_row, float alpha,
              float beta, float* C, int64_t ldc, int threads, bool symmetric = false) {
  constexpr int kDotRows = 4, kDotCols = 6;
  constexpr int64_t kChunk = 2048;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
  const int64_t col_tiles = (N + kDotCols - 1) / kDotCols, row_tiles = (M + kDotRows - 1) / kDotRows;
  const int64_t vector_end = L / kVecWidth * kVecWidth;
#pragma omp parallel num_threads(std::max<int>(1, std::min<int64_t>(threads, col_tiles * row_tiles)))
  {
    // This thread's tiles: items [lo, hi) of tj * row_tiles + ti. Even ranges of items, not of
    // whole column tiles: a fully connected layer's 64 outputs are 11 column tiles, 6 of which
    // went to one thread (2 threads: 1.57x the speed of 1 on cifar-cnn's 4x4 layer).
    int64_t lo, hi;
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    split_range(col_tiles * row_tiles, nt, t, lo, hi);
    if (symmetric) {  // column tile tj holds about tj+1 tiles of work: balance the squares
      lo = (int64_t)(col_tiles * std::sqrt((double)t / nt)) * row_tiles;
      hi = t + 1 == nt ? col_tiles * row_tiles
                       : (int64_t)(col_tiles * std::sqrt((double)(t + 1) / nt)) * row_tiles;
    }
    for (int64_t u0 = 0; u0 < L; u0 += kChunk) {
      const int64_t u1 = std::min(L, u0 + kChunk), v1 = std::min(u1, vector_end);
      for (int64_t tj = lo / row_tiles; tj * row_tiles < hi; ++tj) {
        const float* b[kDotCols];  // a tile past the last row repeats it and stores nothing
        for (int j = 0; j < kDotCols; ++j) b[j] = b_row(std::min(N - 1, tj * kDotCols + j));
        const int64_t i_end = symmetric ? std::min(M, (tj + 1) * kDotCols) : M;
        const int64_t ti_end = std::min(row_tiles, hi - tj * row_tiles);
        for (int64_t ti = std::max<int64_t>(0, lo - tj * row_tiles);
             ti < ti_end && ti * kDotRows < i_end; ++ti) {
          const int64_t i0 = ti * kDotRows;
          const float* a[kDotRows];
          for (int i = 0; i < kDotRows; ++i) a[i] = a_row(std::min(M - 1, i0 + i));
          vfloat acc[kDotRows][kDotCols] = {};
          for (int64_t u = u0; u < v1; u += kVecWidth) {
            vfloat av[kDotRows];
#pragma GCC unroll 4
            for (int i = 0; i < kDotRows; ++i) av[i] = vload(a[i] + u);
#pragma GCC unroll 6
            for (int j = 0; j < kDotCols; ++j) {
              vfloat bv = vload(b[j] + u);
              asm("" : "+v"(bv));  // one load per B row (else every FMA reloads it)
#pragma GCC unroll 4
              for (int i = 0; i < kDotRows; ++i) acc[i][j] += av[i] * bv;
            }
          }
          for (int i = 0; i < kDotRows && i0 + i < M; ++i)
            for (int j = 0; j < kDotCols && tj * kDotCols + j < N; ++j) {
              float sum = vsum(acc[i][j]);
              for (int64_t u = v1; u < u1; ++u) sum += a[i][u] * b[j][u];
              C[(i0 + i) * ldc + tj * kDotCols + j] += alpha * sum;
            }
        }
      }
    }
  }
  if (symmetric) mirror_upper(M, C, ldc);
}

}  // namespace blocked
}  // namespace ds

// SGEMM for small products, without packing: for a few hundred thousand multiply-adds, copying
// the operands into panels (and the thread-local buffers that hold them) costs as much as the
// products themselves. The micro-kernel reads op(B)'s rows where they lie and broadcasts op(A)'s
// elements from wherever they are; the last vector of a row is read and written under a lane
// mask, so nothing outside the matrices is touched. gemm_shallow.h runs the same tiles on panels
// of B that it copies as it goes, for shallow sums over few rows at larger sizes.
//
// It needs one operand whose rows are contiguous along an output dimension: op(B) = B (rows along
// N: C is computed as it is), or op(A) = A^T (A's rows run along M: C^T = op(B)^T A is computed
// and stored transposed). A B^T has neither and goes to the blocked driver.
#pragma once

#include <algorithm>
#include <cstdint>

#include "simd.h"

namespace ds::small_gemm {

constexpr int kMaxRows = 8;     // broadcast rows per tile
constexpr int kMaxVectors = 3;  // vectors per tile row: at most 24 accumulators
constexpr int64_t kPanel = kMaxVectors * kVecWidth;  // columns per panel

// The first n (1..kVecWidth) lanes of p, the others zero; store_first writes only those lanes.
inline vfloat load_first(const float* p, int n) {
#if defined(__AVX512F__)
  return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
#else
  float lanes[kVecWidth] = {};
  for (int i = 0; i < n; ++i) lanes[i] = p[i];
  return vload(lanes);
#endif
}

inline void store_first(float* p, vfloat v, int n) {
#if defined(__AVX512F__)
  _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), v);
#else
  float lanes[kVecWidth];
  vstore(lanes, v);
  for (int i = 0; i < n; ++i) p[i] = lanes[i];
#endif
}

// A store that goes around the caches (p aligned to a whole vector), for outputs too large to
// stay in them: it saves reading each line of C in before it is written.
inline void store_streaming(float* p, vfloat v) {
#if defined(__AVX512F__)
  _mm512_stream_ps(p, v);
#elif defined(__AVX__)
  _mm256_stream_ps(p, v);
#else
  vstore(p, v);
#endif
}

// Nothing done beside a tile's sums (gemm_shallow.h copies the next panel of B there).
struct NoSideWork {
  void operator()(int64_t) {}
};

// One tile: out(r, v) = alpha * sum_k a[r * a_row + k * a_depth] * b[k * ldb + lanes of v]
// + beta * out(r, v), for ROWS rows and NVU vectors, the last of which has `last` (1..kVecWidth)
// valid lanes. out(r, column j) is c[r * c_row + j * c_col]; c_col == 1 stores whole vectors,
// around the caches with `stream` (then every row's whole vectors are aligned). side(k) runs at
// step k of the sum.
template <int ROWS, int NVU, typename Side>
void tile(int64_t K, const float* a, int64_t a_row, int64_t a_depth, const float* b, int64_t ldb,
          int last, float alpha, float beta, float* c, int64_t c_row, int64_t c_col, bool stream,
          Side& side) {
  vfloat acc[ROWS][NVU];
#pragma GCC unroll 8
  for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 3
    for (int v = 0; v < NVU; ++v) acc[r][v] = vfloat{};
  for (int64_t k = 0; k < K; ++k) {
    side(k);
    const float* bk = b + k * ldb;
    vfloat bv[NVU];
#pragma GCC unroll 3
    for (int v = 0; v + 1 < NVU; ++v) bv[v] = vload(bk + v * kVecWidth);
    bv[NVU - 1] = load_first(bk + (NVU - 1) * kVecWidth, last);
    const float* ak = a + k * a_depth;
#pragma GCC unroll 8
    for (int r = 0; r < ROWS; ++r) {
      const vfloat ar = vbroadcast(ak[r * a_row]);
#pragma GCC unroll 3
      for (int v = 0; v < NVU; ++v) acc[r][v] += ar * bv[v];
    }
  }
  // Unrolled, so that acc is indexed by constants only: else GCC keeps a copy of every
  // accumulator on the stack and stores it on each step of the loop above.
  const vfloat va = vbroadcast(alpha), vb = vbroadcast(beta);
#pragma GCC unroll 8
  for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 3
    for (int v = 0; v < NVU; ++v) {
      const int lanes = v + 1 < NVU ? kVecWidth : last;
      float* out = c + r * c_row + v * kVecWidth * c_col;
      if (c_col == 1) {
        vfloat sum = va * acc[r][v];
        if (beta != 0.0f) sum += vb * load_first(out, lanes);
        if (stream && lanes == kVecWidth)
          store_streaming(out, sum);
        else
          store_first(out, sum, lanes);
      } else {
        float sums[kVecWidth];
        vstore(sums, va * acc[r][v]);
        for (int l = 0; l < lanes; ++l)
          out[l * c_col] = beta != 0.0f ? sums[l] + beta * out[l * c_col] : sums[l];
      }
    }
}

template <int ROWS, typename Side>
void tile_rows(int vectors, int64_t K, const float* a, int64_t a_row, int64_t a_depth,
               const float* b, int64_t ldb, int last, float alpha, float beta, float* c,
               int64_t c_row, int64_t c_col, bool stream, Side& side) {
  if (vectors == 1)
    tile<ROWS, 1>(K, a, a_row, a_depth, b, ldb, last, alpha, beta, c, c_row, c_col, stream, side);
  else if (vectors == 2)
    tile<ROWS, 2>(K, a, a_row, a_depth, b, ldb, last, alpha, beta, c, c_row, c_col, stream, side);
  else
    tile<ROWS, 3>(K, a, a_row, a_depth, b, ldb, last, alpha, beta, c, c_row, c_col, stream, side);
}

// A tile of 1..kMaxRows rows and 1..kMaxVectors vectors.
template <typename Side>
void tile_any(int rows, int vectors, int64_t K, const float* a, int64_t a_row, int64_t a_depth,
              const float* b, int64_t ldb, int last, float alpha, float beta, float* c,
              int64_t c_row, int64_t c_col, bool stream, Side& side) {
  switch (rows) {
#define DS_SMALL_GEMM_ROWS(R)                                                                  \
  case R:                                                                                       \
    tile_rows<R>(vectors, K, a, a_row, a_depth, b, ldb, last, alpha, beta, c, c_row, c_col,    \
                 stream, side);                                                                 \
    break;
    DS_SMALL_GEMM_ROWS(1)
    DS_SMALL_GEMM_ROWS(2)
    DS_SMALL_GEMM_ROWS(3)
    DS_SMALL_GEMM_ROWS(4)
    DS_SMALL_GEMM_ROWS(5)
    DS_SMALL_GEMM_ROWS(6)
    DS_SMALL_GEMM_ROWS(7)
    DS_SMALL_GEMM_ROWS(8)
#undef DS_SMALL_GEMM_ROWS
  }
}

// out (rows x cols) = alpha * P Q + beta * out, P(r, k) = a[r * a_row + k * a_depth], row k of
// Q at b + k * ldb (contiguous), out(r, j) at c[r * c_row + j * c_col]. beta == 0 never reads out.
// Rows go in tiles of at most kMaxRows, as even as possible (10 rows: 5 + 5, so that every tile
// keeps enough independent sums in flight); columns in panels of kMaxVectors vectors.
// Threads take (panel, row tile) pairs; each tile's sums run in the same order whoever takes it.
inline void gemm(int64_t rows, int64_t cols, int64_t K, float alpha, const float* a,
                 int64_t a_row, int64_t a_depth, const float* b, int64_t ldb, float beta,
                 float* c, int64_t c_row, int64_t c_col, int threads) {
  const int64_t row_tiles = (rows + kMaxRows - 1) / kMaxRows;
  const int64_t panels = (cols + kPanel - 1) / kPanel;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t item = 0; item < panels * row_tiles; ++item) {
    const int64_t j0 = item / row_tiles * kPanel, t = item % row_tiles;
    const int64_t width = std::min(kPanel, cols - j0);
    const int vectors = static_cast<int>((width + kVecWidth - 1) / kVecWidth);
    const int last = static_cast<int>(width - (vectors - 1) * kVecWidth);
    const int64_t r0 = rows * t / row_tiles, r1 = rows * (t + 1) / row_tiles;
    NoSideWork none;
    tile_any(static_cast<int>(r1 - r0), vectors, K, a + r0 * a_row, a_row, a_depth, b + j0, ldb,
             last, alpha, beta, c + r0 * c_row + j0 * c_col, c_row, c_col, false, none);
  }
}

}  // namespace ds::small_gemm

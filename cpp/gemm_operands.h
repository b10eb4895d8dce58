// The operands of the blocked SGEMM (gemm_blocked.h) as plain row-major matrices, and the
// register tile their packed panels are shaped for (MR rows x NR columns of C). A source of
// op(A) packs MR-tall panels, one of op(B) NR-wide panels, both k-major and zero-padded to the
// full tile; a C destination gives the addresses tiles are stored to. The implicit-GEMM
// operands of the convolutions (conv_operands.h) and of the Gram gradient (gram.cpp) offer the
// same pack / at / ld / direct members. MatrixA::transpose_rows_8x16 is the AVX-512 transpose
// that the other A and B sources share.
#pragma once

#include <cstdint>
#include <cstring>

#include "simd.h"

namespace ds {
namespace blocked {

// The micro-kernel's register tile: MR rows x NV vectors (NR floats) of C.
constexpr int NV = kVecWidth == 16 ? 3 : 2;
constexpr int NR = NV * kVecWidth;            // 48 with AVX-512: 8 x 3 = 24 zmm accumulators
constexpr int MR = kVecWidth == 16 ? 8 : 6;

// op(A) from a row-major matrix: pack(i0, rows, k0, kc, dst) writes rows [i0, i0+rows) x depth
// [k0, k0+kc) as an MR-tall panel, k-major, zero-padded to MR rows.
struct MatrixA {
  const float* A;
  int64_t lda;
  bool trans;
  float value(int64_t i, int64_t k) const { return trans ? A[k * lda + i] : A[i * lda + k]; }
  void pack(int64_t i0, int64_t rows, int64_t k0, int64_t kc, float* dst) const {
    if (trans) {
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = A + (k0 + k) * lda + i0;
        float* d = dst + k * MR;
        int64_t r = 0;
        for (; r < rows; ++r) d[r] = src[r];
        for (; r < MR; ++r) d[r] = 0.0f;
      }
      return;
    }
    int64_t k_done = 0;
#if defined(__AVX512F__)
    if (rows == MR && MR == 8) k_done = transpose_rows_8x16(A + i0 * lda + k0, lda, kc, dst);
#endif
    for (int64_t r = 0; r < MR; ++r) {
      if (r < rows) {
        const float* src = A + (i0 + r) * lda + k0;
        for (int64_t k = k_done; k < kc; ++k) dst[k * MR + r] = src[k];
      } else {
        for (int64_t k = k_done; k < kc; ++k) dst[k * MR + r] = 0.0f;
      }
    }
  }

#if defined(__AVX512F__)
  // dst[k * dst_ld + r] = src[r * ld + k] for 8 rows and k in whole blocks of 16, by three rounds
  // of two-source permutes (pairs of rows, then of 64-bit and of 128-bit units); returns the k
  // done. dst_ld = 8 is an A panel; wider, 8 columns of a B panel. With `plus` (A panels only),
  // plus[k * plus_ld + r] is added to each element before it is stored.
  static int64_t transpose_rows_8x16(const float* src, int64_t ld, int64_t kc, float* dst,
                                     int64_t dst_ld = 8, const float* plus = nullptr,
                                     int64_t plus_ld = 0) {
    const __m512i pair_lo =
        _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i pair_hi = _mm512_add_epi32(pair_lo, _mm512_set1_epi32(8));
    const __m512i quad_lo = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
    const __m512i quad_hi = _mm512_add_epi64(quad_lo, _mm512_set1_epi64(4));
    const __m512i oct_lo = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
    const __m512i oct_hi = _mm512_add_epi64(oct_lo, _mm512_set1_epi64(4));
    int64_t k = 0;
    for (; k + 16 <= kc; k += 16) {
      __m512 row[8];
      for (int r = 0; r < 8; ++r) row[r] = _mm512_loadu_ps(src + r * ld + k);
      __m512d pairs[4][2];  // rows 2i, 2i+1 interleaved: k 0-7, k 8-15
      for (int i = 0; i < 4; ++i) {
        const __m512 even = row[2 * i], odd = row[2 * i + 1];
        pairs[i][0] = _mm512_castps_pd(_mm512_permutex2var_ps(even, pair_lo, odd));
        pairs[i][1] = _mm512_castps_pd(_mm512_permutex2var_ps(even, pair_hi, odd));
      }
      __m512d quads[2][4];  // rows 4i..4i+3 for k 0-3, 4-7, 8-11, 12-15
      for (int i = 0; i < 2; ++i)
        for (int h = 0; h < 2; ++h) {
          const __m512d first = pairs[2 * i][h], second = pairs[2 * i + 1][h];
          quads[i][2 * h] = _mm512_permutex2var_pd(first, quad_lo, second);
          quads[i][2 * h + 1] = _mm512_permutex2var_pd(first, quad_hi, second);
        }
      float* d = dst + k * dst_ld;
      for (int q = 0; q < 4; ++q) {  // all 8 rows for k 4q, 4q+1 and 4q+2, 4q+3
        const __m512d top = quads[0][q], bottom = quads[1][q];
        __m512d k01 = _mm512_permutex2var_pd(top, oct_lo, bottom);
        __m512d k23 = _mm512_permutex2var_pd(top, oct_hi, bottom);
        if (plus) {  // rows k, k+1 of `plus` side by side, as k01 and k23 hold them
          typedef float eight __attribute__((vector_size(32)));
          eight row[4];
          for (int h = 0; h < 4; ++h) std::memcpy(&row[h], plus + (k + 4 * q + h) * plus_ld, 32);
          k01 = _mm512_castps_pd(_mm512_castpd_ps(k01) +
                                 __builtin_shufflevector(row[0], row[1], 0, 1, 2, 3, 4, 5, 6, 7,
                                                         8, 9, 10, 11, 12, 13, 14, 15));
          k23 = _mm512_castps_pd(_mm512_castpd_ps(k23) +
                                 __builtin_shufflevector(row[2], row[3], 0, 1, 2, 3, 4, 5, 6, 7,
                                                         8, 9, 10, 11, 12, 13, 14, 15));
        }
        if (dst_ld == 8) {
          _mm512_storeu_pd((double*)(d + 32 * q), k01);
          _mm512_storeu_pd((double*)(d + 32 * q + 16), k23);
        } else {
          // Halves by vector shuffles: GCC 12 warns on the extract intrinsics' undefined operand.
          typedef double half __attribute__((vector_size(32)));
          const half parts[4] = {__builtin_shufflevector(k01, k01, 0, 1, 2, 3),
                                 __builtin_shufflevector(k01, k01, 4, 5, 6, 7),
                                 __builtin_shufflevector(k23, k23, 0, 1, 2, 3),
                                 __builtin_shufflevector(k23, k23, 4, 5, 6, 7)};
          for (int h = 0; h < 4; ++h) std::memcpy(d + (4 * q + h) * dst_ld, &parts[h], 32);
        }
      }
    }
    return k;
  }
#endif
};

// op(B) from a row-major matrix: pack(k0, kc, j0, cols, dst) writes depth [k0, k0+kc) x columns
// [j0, j0+cols) as one NR-wide panel, k-major, zero-padded to NR columns.
struct MatrixB {
  const float* B;
  int64_t ldb;
  bool trans;
  void pack(int64_t k0, int64_t kc, int64_t j0, int64_t cols, float* dst) const {
    if (trans) {  // columns of op(B) are rows of B: transposed, 8 at a time where possible
      int64_t c = 0;
#if defined(__AVX512F__)
      for (; c + 8 <= cols; c += 8) {
        const float* src = B + (j0 + c) * ldb + k0;
        const int64_t k_done = MatrixA::transpose_rows_8x16(src, ldb, kc, dst + c, NR);
        for (int64_t r = 0; r < 8; ++r)
          for (int64_t k = k_done; k < kc; ++k) dst[k * NR + c + r] = src[r * ldb + k];
      }
#endif
      for (; c < NR; ++c) {
        if (c < cols) {
          const float* src = B + (j0 + c) * ldb + k0;
          for (int64_t k = 0; k < kc; ++k) dst[k * NR + c] = src[k];
        } else {
          for (int64_t k = 0; k < kc; ++k) dst[k * NR + c] = 0.0f;
        }
      }
      return;
    }
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = B + (k0 + k) * ldb + j0;
      float* d = dst + k * NR;
      if (cols == NR) {
        for (int v = 0; v < NV; ++v) vstore(d + v * kVecWidth, vload(src + v * kVecWidth));
      } else {
        int64_t c = 0;
        for (; c < cols; ++c) d[c] = src[c];
        for (; c < NR; ++c) d[c] = 0.0f;
      }
    }
  }
};

// C as a row-major matrix. Every C destination offers at(i, j), the address of element (i, j)
// (null for a column that is not stored), with rows ld() apart, and direct(i, j0, cols), the
// address of (i, j0) when columns [j0, j0+cols) are adjacent in memory, else null.
struct MatrixC {
  float* C;
  int64_t ldc;
  float* at(int64_t i, int64_t j) const { return C + i * ldc + j; }
  int64_t ld() const { return ldc; }
  float* direct(int64_t i, int64_t j0, int64_t) const { return at(i, j0); }
};

}  // namespace blocked
}  // namespace ds

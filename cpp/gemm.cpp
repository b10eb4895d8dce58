// SGEMM in the BLIS/GotoBLAS style.
//
// Loops, outermost first: jc over NC-wide column blocks of C; pc over KC-deep slices of K, with
// the KC x NC block of op(B) packed into NR-wide panels (kept in L2/L3); ic over MC-tall row
// blocks, with the MC x KC block of op(A) packed into MR-tall panels (kept in L2); then every
// (MR x NR) tile of C is one call of the register-blocked micro-kernel, which streams one A panel
// and one B panel and keeps the MR x NR accumulators in registers (MR = 12, NR = 32 with AVX-512:
// 24 zmm accumulators). Packing pads edges with zeros, so the micro-kernel never branches on size;
// partial tiles go through a small buffer.
//
// Threads split the tiles of each (pc, ic) block; every element of C is summed by one thread in
// a fixed order, so results are bitwise identical from run to run for a given thread count, and
// also across thread counts.
#include "gemm.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <vector>

#include "simd.h"
#include "threads.h"

namespace ds {
namespace {

constexpr int NR = 2 * kVecWidth;
constexpr int MR = kVecWidth == 16 ? 12 : 6;
constexpr int64_t KC = 256;
constexpr int64_t MC = MR * 16;
constexpr int64_t NC = NR * 128;

struct AlignedFree {
  void operator()(float* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<float, AlignedFree>;

Buffer aligned_floats(int64_t n) {
  size_t bytes = ((size_t)n * sizeof(float) + 63) / 64 * 64;
  return Buffer(static_cast<float*>(std::aligned_alloc(64, bytes)));
}

// Packs rows [i0, i0+mc) x depth [k0, k0+kc) of op(A) into MR-tall panels, k-major inside a panel.
void pack_a_panel(const float* A, int64_t lda, bool trans, int64_t i0, int64_t rows, int64_t k0,
                  int64_t kc, float* dst) {
  if (!trans) {
    for (int64_t r = 0; r < MR; ++r) {
      if (r < rows) {
        const float* src = A + (i0 + r) * lda + k0;
        for (int64_t k = 0; k < kc; ++k) dst[k * MR + r] = src[k];
      } else {
        for (int64_t k = 0; k < kc; ++k) dst[k * MR + r] = 0.0f;
      }
    }
  } else {
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = A + (k0 + k) * lda + i0;
      float* d = dst + k * MR;
      int64_t r = 0;
      for (; r < rows; ++r) d[r] = src[r];
      for (; r < MR; ++r) d[r] = 0.0f;
    }
  }
}

// Packs depth [k0, k0+kc) x columns [j0, j0+cols) of op(B) into one NR-wide panel, k-major.
void pack_b_panel(const float* B, int64_t ldb, bool trans, int64_t k0, int64_t kc, int64_t j0,
                  int64_t cols, float* dst) {
  if (!trans) {
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = B + (k0 + k) * ldb + j0;
      float* d = dst + k * NR;
      int64_t c = 0;
      if (cols == NR) {
        for (; c < NR; c += kVecWidth) vstore(d + c, vload(src + c));
      } else {
        for (; c < cols; ++c) d[c] = src[c];
        for (; c < NR; ++c) d[c] = 0.0f;
      }
    }
  } else {
    for (int64_t c = 0; c < NR; ++c) {
      if (c < cols) {
        const float* src = B + (j0 + c) * ldb + k0;
        for (int64_t k = 0; k < kc; ++k) dst[k * NR + c] = src[k];
      } else {
        for (int64_t k = 0; k < kc; ++k) dst[k * NR + c] = 0.0f;
      }
    }
  }
}

// acc(MR x NR) = sum over k of a[k, :]^T b[k, :]; then C = alpha * acc + beta * C on the
// (rows x cols) corner that lies inside C.
void micro_kernel(int64_t kc, const float* __restrict a, const float* __restrict b, float alpha,
                  float beta, float* C, int64_t ldc, int64_t rows, int64_t cols) {
  vfloat acc[MR][2];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = vfloat{};
  for (int64_t k = 0; k < kc; ++k) {
    vfloat b0 = vload(b + k * NR);
    vfloat b1 = vload(b + k * NR + kVecWidth);
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      vfloat ar = vbroadcast(a[k * MR + r]);
      acc[r][0] += ar * b0;
      acc[r][1] += ar * b1;
    }
  }
  const vfloat va = vbroadcast(alpha);
  if (rows == MR && cols == NR) {
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      float* c = C + r * ldc;
      if (beta == 0.0f) {
        vstore(c, va * acc[r][0]);
        vstore(c + kVecWidth, va * acc[r][1]);
      } else {
        const vfloat vb = vbroadcast(beta);
        vstore(c, va * acc[r][0] + vb * vload(c));
        vstore(c + kVecWidth, va * acc[r][1] + vb * vload(c + kVecWidth));
      }
    }
    return;
  }
  alignas(64) float tile[MR][NR];
  for (int r = 0; r < MR; ++r) {
    vstore(tile[r], va * acc[r][0]);
    vstore(tile[r] + kVecWidth, va * acc[r][1]);
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      C[r * ldc + c] = beta == 0.0f ? tile[r][c] : tile[r][c] + beta * C[r * ldc + c];
}

void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
}

void sgemm_impl(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                int64_t ldc, int threads) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) {
    scale_c(M, N, beta, C, ldc);
    return;
  }
  const int64_t nc_max = std::min(NC, (N + NR - 1) / NR * NR);
  const int64_t mc_max = std::min(MC, (M + MR - 1) / MR * MR);
  const int64_t kc_max = std::min(KC, K);
  Buffer packed_b = aligned_floats(kc_max * nc_max);
  // One packed-A block per thread: threads work on different row blocks when M is large.
  Buffer packed_a = aligned_floats(kc_max * mc_max * threads);

  for (int64_t j0 = 0; j0 < N; j0 += NC) {
    const int64_t nc = std::min(NC, N - j0);
    const int64_t b_panels = (nc + NR - 1) / NR;
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
      const int64_t kc = std::min(KC, K - k0);
      const float beta_here = k0 == 0 ? beta : 1.0f;
      const int64_t m_blocks = (M + MC - 1) / MC;
#pragma omp parallel num_threads(threads) if (threads > 1)
      {
#pragma omp for schedule(static)
        for (int64_t p = 0; p < b_panels; ++p)
          pack_b_panel(B, ldb, trans_b, k0, kc, j0 + p * NR, std::min<int64_t>(NR, nc - p * NR),
                       packed_b.get() + p * NR * kc);
        // Row blocks are shared out when there are enough of them; otherwise all threads
        // pack one block together and split its tiles.
        if (m_blocks >= threads) {
          float* pa = packed_a.get() + omp_get_thread_num() * kc_max * mc_max;
#pragma omp for schedule(static)
          for (int64_t ib = 0; ib < m_blocks; ++ib) {
            const int64_t i0 = ib * MC, mc = std::min(MC, M - i0);
            const int64_t a_panels = (mc + MR - 1) / MR;
            for (int64_t q = 0; q < a_panels; ++q)
              pack_a_panel(A, lda, trans_a, i0 + q * MR, std::min<int64_t>(MR, mc - q * MR), k0,
                           kc, pa + q * MR * kc);
            for (int64_t p = 0; p < b_panels; ++p)
              for (int64_t q = 0; q < a_panels; ++q)
                micro_kernel(kc, pa + q * MR * kc, packed_b.get() + p * NR * kc, alpha,
                             beta_here, C + (i0 + q * MR) * ldc + j0 + p * NR, ldc,
                             std::min<int64_t>(MR, mc - q * MR), std::min<int64_t>(NR, nc - p * NR));
          }
        } else {
          for (int64_t i0 = 0; i0 < M; i0 += MC) {
            const int64_t mc = std::min(MC, M - i0);
            const int64_t a_panels = (mc + MR - 1) / MR;
            float* pa = packed_a.get();
#pragma omp for schedule(static)
            for (int64_t q = 0; q < a_panels; ++q)
              pack_a_panel(A, lda, trans_a, i0 + q * MR, std::min<int64_t>(MR, mc - q * MR), k0,
                           kc, pa + q * MR * kc);
#pragma omp for schedule(static) collapse(2)
            for (int64_t p = 0; p < b_panels; ++p)
              for (int64_t q = 0; q < a_panels; ++q)
                micro_kernel(kc, pa + q * MR * kc, packed_b.get() + p * NR * kc, alpha,
                             beta_here, C + (i0 + q * MR) * ldc + j0 + p * NR, ldc,
                             std::min<int64_t>(MR, mc - q * MR), std::min<int64_t>(NR, nc - p * NR));
          }
        }
      }
    }
  }
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc) {
  // Small products are not worth waking the thread team for.
  const int threads = M * N * K < 32 * 32 * 32 ? 1 : num_threads();
  sgemm_impl(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, threads);
}

void sgemm_serial(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                  const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                  int64_t ldc) {
  sgemm_impl(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, 1);
}

}  // namespace ds

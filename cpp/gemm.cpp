// SGEMM on plain row-major matrices: the blocked driver of gemm_blocked.h (packed panels, an
// 8x48 register-blocked AVX-512 micro-kernel, threads on disjoint slices of C), or, for A.B^T
// with small M and N and a long K, its unpacked dot-product kernel; small products run unpacked
// (gemm_small.h), and so do larger shallow ones over few rows (gemm_shallow.h). A.A^T (a Gram
// matrix) computes one triangle and mirrors it.
#include "gemm.h"

#include <algorithm>

#include "gemm_blocked.h"
#include "gemm_dot.h"
#include "gemm_shallow.h"
#include "gemm_small.h"
#include "threads.h"

namespace ds::cpu {
namespace {

// Below these, packing costs more than it saves (measured on AVX-512: the unpacked kernel is
// 1.0-1.6x the packed one from 10x100x64 to 128x128x256).
constexpr int64_t kSmallProduct = 1 << 22, kSmallTransposed = 64 * 64 * 64;
// A shallow sum over few rows of A runs unpacked at any size: a column panel of B (K x 48
// floats, at most 15 KB) stays in L1 while the row tiles pass over it, so B is read once; above
// kSmallProduct, gemm_shallow.h copies each panel as it goes when B comes from memory (on Zen 4
// B's rows read in place alias in the caches when N is a multiple of 1024: 32x65536x75, 1 thread,
// 7.0 ms in place, 3.2 copied). Packing it in the blocked driver was the part that did not speed
// up with a second thread (per-thread packing time at 2 threads = the whole packing at 1, on the
// Xeon). In-process A/B on the Xeon, unpacked / blocked time: 1 thread 0.64-0.90 for 8-32 rows
// (32x65536x75 2.2-2.6 vs 2.7-2.9 ms), 0.99-1.08 for 64; 2 threads 0.6-0.96 for 40-64 rows
// (32x65536x75 1.1 vs 1.9 ms). Not above 64 rows (1.18-1.39 at 96-256 rows, 1 thread), nor for
// A^T (1.24-1.34: its rows' broadcasts stride through A), nor at K >= 96 (1.07-2: the panel no
// longer stays in L1).
constexpr int64_t kUnpackedDepth = small_gemm::kMaxDepth, kUnpackedRows = 64;
// A B^T by dot products when the smaller of M, N is at most kDotMax and K >= 1024; A A^T only up
// to kDotSymmetricMax rows, above which the blocked driver's upper triangle does better (on VGG's
// Gram matrices, 1 thread: 1.4x at 128 channels, 1.1-1.7x at 256 and 512; 0.66x at 64).
constexpr int64_t kDotMax = 128, kDotSymmetricMax = 64;

void sgemm_impl(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                int64_t ldc, int threads) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) {
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  const int64_t products = M * N * K;
  if (!trans_a && !trans_b && products >= kSmallProduct && K <= kUnpackedDepth &&
      M <= kUnpackedRows) {
    small_gemm::gemm_shallow(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, threads);
    return;
  }
  if (!trans_b && products < kSmallProduct) {  // B's rows run along N
    small_gemm::gemm(M, N, K, alpha, A, trans_a ? 1 : lda, trans_a ? lda : 1, B, ldb, beta, C,
                     ldc, 1, threads);
    return;
  }
  // A's rows run along M: C^T = B A, stored transposed, element by element, which only a deep
  // enough sum amortises.
  if (trans_a && trans_b && products < kSmallTransposed && K >= 32) {
    small_gemm::gemm(N, M, K, alpha, B, ldb, 1, A, lda, beta, C, 1, ldc, threads);
    return;
  }
  // A A^T (a Gram matrix) needs only its upper triangle: the blocked driver computes the tiles
  // that reach it; for few rows, dot products (below) do better.
  const bool symmetric = !trans_a && trans_b && A == B && lda == ldb && M == N && beta == 0.0f;
  if (symmetric && !(M <= kDotSymmetricMax && K >= 1024)) {
    blocked::gemm(M, N, K, alpha, blocked::MatrixA{A, lda, false},
                  blocked::MatrixB{B, ldb, true}, 0.0f, blocked::MatrixC{C, ldc}, nullptr,
                  threads, true);
    blocked::mirror_upper(M, C, ldc);
    return;
  }
  // A B^T with few rows and columns and a long sum: dot products, unpacked.
  if (!trans_a && trans_b && K >= 1024 && std::min(M, N) <= kDotMax) {
    blocked::gemm_dot(
        M, N, K, [&](int64_t i) { return A + i * lda; }, [&](int64_t j) { return B + j * ldb; },
        alpha, beta, C, ldc, threads, symmetric);
    return;
  }
  blocked::gemm(M, N, K, alpha, blocked::MatrixA{A, lda, trans_a},
                blocked::MatrixB{B, ldb, trans_b}, beta, blocked::MatrixC{C, ldc}, nullptr,
                threads);
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc) {
  sgemm_impl(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
             gemm_threads(M * N * K));
}

int gemm_threads(int64_t multiply_adds) {
  return multiply_adds < kGemmOneThread ? 1 : num_threads();
}

}  // namespace ds::cpu

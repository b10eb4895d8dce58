#pragma once

#include <cstdint>

namespace ds::cpu {

// C = alpha * op(A) * op(B) + beta * C, row-major, float32.
// op(A) is M x K (A is K x M with lda >= M when trans_a), op(B) is K x N (B is N x K when
// trans_b). beta == 0 never reads C, so C may hold garbage or NaN.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc);

// Below this many multiply-adds (a few microseconds) a product runs on one thread: waking the
// thread team, or releasing the GIL for another Python thread, costs more than it saves.
constexpr int64_t kGemmOneThread = 64 * 64 * 64;

// Threads for a product of this many multiply-adds: one for small ones, where waking the thread
// team costs more than it saves; else the configured count.
int gemm_threads(int64_t multiply_adds);

}  // namespace ds::cpu

// Gram matrices through the GEMMs of gemm.cpp / gemm_blocked.h, one image at a time (style
// transfer runs batch 1, so the threads go to the GEMM). The forward's F F^T is recognised by
// sgemm as symmetric and only its upper triangle computed. The backward multiplies F by
// grad_g + grad_g^T without forming it: the blocked driver packs its A panels from both halves
// directly (SymmetrizedRows), so the C x C sum is never written or read back.
#include "gram.h"

#include "gemm.h"
#include "gemm_blocked.h"

namespace ds::cpu {
namespace {

// op(A) = G + G^T for a C x C row-major G: panel element (r, k) = G[i0+r][k] + G[k][i0+r]. For
// full panels the first term is the AVX-512 transpose of MR rows and the second (for fixed k, MR
// adjacent floats of row k) is added to its results before they are stored: one pass over the
// panel (adding it in a second pass cost 14% of relu5_1's backward at 256²).
struct SymmetrizedRows {
  const float* g;
  int64_t C;
  void pack(int64_t i0, int64_t rows, int64_t k0, int64_t kc, float* dst) const {
    using blocked::MR;
    int64_t k_done = 0;
#if defined(__AVX512F__)
    if (rows == MR && MR == 8)  // both terms in one pass: the column term added before storing
      k_done = blocked::MatrixA::transpose_rows_8x16(g + i0 * C + k0, C, kc, dst, 8,
                                                     g + k0 * C + i0, C);
#endif
    for (int64_t k = k_done; k < kc; ++k) {
      float* d = dst + k * MR;
      int64_t r = 0;
      for (; r < rows; ++r) d[r] = g[(i0 + r) * C + k0 + k] + g[(k0 + k) * C + i0 + r];
      for (; r < MR; ++r) d[r] = 0.0f;
    }
  }
};

}  // namespace

void gram_forward(int64_t N, int64_t C, int64_t HW, const float* x, float* g) {
  const float scale = HW > 0 ? 1.0f / static_cast<float>(HW) : 0.0f;
  for (int64_t n = 0; n < N; ++n)
    sgemm(false, true, C, C, HW, scale, x + n * C * HW, HW, x + n * C * HW, HW, 0.0f,
          g + n * C * C, C);
}

void gram_backward(int64_t N, int64_t C, int64_t HW, const float* grad_g, const float* x,
                   float* grad_x) {
  if (C <= 0 || HW <= 0) return;
  const float scale = 1.0f / static_cast<float>(HW);
  for (int64_t n = 0; n < N; ++n)
    blocked::gemm(C, HW, C, scale, SymmetrizedRows{grad_g + n * C * C, C},
                  blocked::MatrixB{x + n * C * HW, HW, false}, 0.0f,
                  blocked::MatrixC{grad_x + n * C * HW, HW}, nullptr, gemm_threads(C * HW * C));
}

}  // namespace ds::cpu

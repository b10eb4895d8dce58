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

// op(A) = G + G^T for a C x C row-major G: panel element (r, k) = G[i0+r][k] + G[k][i0+r]. The
// first term is a transpose of MR rows (vectorised for full panels); the second, for fixed k, is
// MR adjacent floats of row k, added in the panel's own layout.
struct SymmetrizedRows {
  const float* g;
  int64_t C;
  void pack(int64_t i0, int64_t rows, int64_t k0, int64_t kc, float* dst) const {
    using blocked::MR;
    blocked::MatrixA{g, C, false}.pack(i0, rows, k0, kc, dst);
    for (int64_t k = 0; k < kc; ++k) {
      const float* column = g + (k0 + k) * C + i0;  // G[k][i0 ...]
      float* d = dst + k * MR;
      if (rows == MR) {
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) d[r] += column[r];
      } else {
        for (int64_t r = 0; r < rows; ++r) d[r] += column[r];
      }
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

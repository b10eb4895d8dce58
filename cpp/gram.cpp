// Gram matrices through the blocked GEMM, one image at a time (style transfer runs batch 1, so
// the threads go to the GEMM). The backward symmetrises grad_g first so that one GEMM suffices;
// it does so in square tiles, so that the transposed reads stay within a few cache lines, into a
// per-thread buffer that is reused from call to call.
#include "gram.h"

#include <algorithm>

#include "gemm.h"
#include "gemm_blocked.h"

namespace ds::cpu {

void gram_forward(int64_t N, int64_t C, int64_t HW, const float* x, float* g) {
  const float scale = HW > 0 ? 1.0f / static_cast<float>(HW) : 0.0f;
  for (int64_t n = 0; n < N; ++n)
    sgemm(false, true, C, C, HW, scale, x + n * C * HW, HW, x + n * C * HW, HW, 0.0f,
          g + n * C * C, C);
}

void gram_backward(int64_t N, int64_t C, int64_t HW, const float* grad_g, const float* x,
                   float* grad_x) {
  const float scale = HW > 0 ? 1.0f / static_cast<float>(HW) : 0.0f;
  constexpr int64_t kTile = 16;
  thread_local blocked::Scratch buffer;
  float* sym = buffer.get(C * C);
  for (int64_t n = 0; n < N; ++n) {
    const float* gg = grad_g + n * C * C;
    for (int64_t i0 = 0; i0 < C; i0 += kTile)
      for (int64_t j0 = 0; j0 < C; j0 += kTile) {
        const int64_t i1 = std::min(i0 + kTile, C), j1 = std::min(j0 + kTile, C);
        for (int64_t i = i0; i < i1; ++i)
          for (int64_t j = j0; j < j1; ++j) sym[i * C + j] = gg[i * C + j] + gg[j * C + i];
      }
    sgemm(false, false, C, HW, C, scale, sym, C, x + n * C * HW, HW, 0.0f, grad_x + n * C * HW,
          HW);
  }
}

}  // namespace ds::cpu

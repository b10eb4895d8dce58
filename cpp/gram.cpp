// Gram matrices through the blocked GEMM, one image at a time (style transfer runs batch 1, so
// the threads go to the GEMM). The backward symmetrises grad_g first so that one GEMM suffices.
#include "gram.h"

#include <vector>

#include "gemm.h"

namespace ds {

void gram_forward(int64_t N, int64_t C, int64_t HW, const float* x, float* g) {
  const float scale = HW > 0 ? 1.0f / static_cast<float>(HW) : 0.0f;
  for (int64_t n = 0; n < N; ++n)
    sgemm(false, true, C, C, HW, scale, x + n * C * HW, HW, x + n * C * HW, HW, 0.0f,
          g + n * C * C, C);
}

void gram_backward(int64_t N, int64_t C, int64_t HW, const float* grad_g, const float* x,
                   float* grad_x) {
  const float scale = HW > 0 ? 1.0f / static_cast<float>(HW) : 0.0f;
  std::vector<float> sym(C * C);
  for (int64_t n = 0; n < N; ++n) {
    const float* gg = grad_g + n * C * C;
    for (int64_t i = 0; i < C; ++i)
      for (int64_t j = 0; j < C; ++j) sym[i * C + j] = gg[i * C + j] + gg[j * C + i];
    sgemm(false, false, C, HW, C, scale, sym.data(), C, x + n * C * HW, HW, 0.0f,
          grad_x + n * C * HW, HW);
  }
}

}  // namespace ds

// Portable SIMD vectors through GCC/Clang vector extensions: the width follows the -march the
// module is built for (16 floats with AVX-512, 8 with AVX/AVX2, 4 otherwise), so one source
// compiles to the best instructions of the build machine.
#pragma once

#include <cstring>

namespace ds {

#if defined(__AVX512F__)
constexpr int kVecWidth = 16;
#elif defined(__AVX__)
constexpr int kVecWidth = 8;
#else
constexpr int kVecWidth = 4;
#endif

typedef float vfloat __attribute__((vector_size(kVecWidth * sizeof(float))));

inline vfloat vload(const float* p) {
  vfloat v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline void vstore(float* p, vfloat v) { std::memcpy(p, &v, sizeof(v)); }

inline vfloat vbroadcast(float s) { return vfloat{} + s; }

}  // namespace ds

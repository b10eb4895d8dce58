// Portable SIMD vectors through GCC/Clang vector extensions: the width follows the -march the
// module is built for (16 floats with AVX-512, 8 with AVX/AVX2, 4 otherwise), so one source
// compiles to the best instructions of the build machine.
#pragma once

#include <immintrin.h>

#include <cstdint>
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

// dst[0, n) = src[0, n), inline (a libc call costs more than copying a few dozen floats; the
// attribute keeps GCC from turning the loop back into one).
__attribute__((optimize("no-tree-loop-distribute-patterns"))) inline void copy_floats(
    float* dst, const float* src, int64_t n) {
  int64_t i = 0;
  for (; i + kVecWidth <= n; i += kVecWidth) vstore(dst + i, vload(src + i));
  for (; i < n; ++i) dst[i] = src[i];
}

// dst[0, n) = 0, inline (as copy_floats: for planes of a few hundred floats the call to memset
// costs more than the stores).
__attribute__((optimize("no-tree-loop-distribute-patterns"))) inline void zero_floats(float* dst,
                                                                                     int64_t n) {
  int64_t i = 0;
  for (; i + kVecWidth <= n; i += kVecWidth) vstore(dst + i, vfloat{});
  for (; i < n; ++i) dst[i] = 0.0f;
}

// Intrinsics rather than `vfloat{} + s`, which costs an extra add per broadcast (0 + s is not
// s for s = -0 without -ffast-math).
inline vfloat vbroadcast(float s) {
#if defined(__AVX512F__)
  return _mm512_set1_ps(s);
#elif defined(__AVX__)
  return _mm256_set1_ps(s);
#else
  return vfloat{s, s, s, s};
#endif
}

// Sum of the lanes, pairwise in a fixed order.
inline float vsum(vfloat v) {
#if defined(__AVX512F__)
  typedef float half __attribute__((vector_size(32)));
  typedef float quarter __attribute__((vector_size(16)));
  const half h = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
                 __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  const quarter q = __builtin_shufflevector(h, h, 0, 1, 2, 3) +
                    __builtin_shufflevector(h, h, 4, 5, 6, 7);
  return (q[0] + q[2]) + (q[1] + q[3]);
#else
  float lanes[kVecWidth];
  std::memcpy(lanes, &v, sizeof(v));
  for (int width = kVecWidth / 2; width > 0; width /= 2)
    for (int i = 0; i < width; ++i) lanes[i] += lanes[i + width];
  return lanes[0];
#endif
}

}  // namespace ds

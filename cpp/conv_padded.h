// What the convolution kernels of conv.cpp and conv_direct.cpp share: per-thread scratch
// buffers, the zero-framed batch layout of stride-1 convolutions (PaddedBatch), a 16x16
// transpose, and the direct kernels of conv_direct.cpp (32 or 64 output channels; input layers).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "shapes.h"
#include "simd.h"
#include "threads.h"

namespace ds::cpu::conv_detail {

// Per-thread buffers reused from call to call: fresh multi-megabyte allocations would page-fault
// on every call. One slot per use, since their lifetimes overlap.
enum ScratchSlot { kBatchSlot, kWeightSlot, kGradSlot, kTransposedSlot, kSlots };
float* scratch(ScratchSlot slot, int64_t n);

// The batch laid out for a stride-1 convolution with 0 <= pad < kernel size, so that every tap
// of every output position is one fixed offset away: channel-major, images stacked along the
// rows, each image row followed by pad_w zeros (the right padding of one row is the left
// padding of the next) and each image by pad_h zero rows (likewise shared), plus one leading
// zero row. Output position (n, p, q) becomes the "virtual" column u = (n*period + p)*Wp + q;
// columns with p >= P or q >= Q are computed but not stored.
// Kernels that compute whole vectors of positions also read, at every tap, the inputs of
// positions they do not store: along an output row, direct_conv_rows up to position Q + 6 and
// input_layer_rows up to Q + 30 (conv_direct.cpp), reading on into the next rows of the plane;
// over the virtual columns, few_channel_block (conv.cpp) whole blocks of up to 8 vectors and
// grad_weight_dot (conv.cpp) whole vectors. From the last tap's offset, reads so run past the
// plane's last virtual column by less than kReadSlack floats (the last output row's by at most
// 31), which the plane holds after its rows (the leading zero row, the images, R + 1 more).
constexpr int64_t kReadSlack = 8 * kVecWidth;

struct PaddedBatch {
  const Conv2dShape& s;
  int64_t Wp, period, plane, virtual_cols;
  float* data;                      // C planes of `plane` floats
  std::vector<int64_t> tap_offset;  // of (c, r, t) from a column's own position

  PaddedBatch(const Conv2dShape& shape, const float* x)
      : s(shape),
        Wp(shape.W + shape.pad_w),
        period(shape.H + shape.pad_h),
        plane((shape.N * period + shape.R + 2) * Wp + kReadSlack + shape.S),
        virtual_cols(shape.N * period * Wp),
        data(scratch(kBatchSlot, shape.C * plane)),
        tap_offset(shape.C * shape.R * shape.S) {
    // Every float written once, by (channel, image, block of rows), the blocks only as many as
    // share out a few planes evenly (one RGB image is 3 planes): image n's rows
    // [1 + n * period, 1 + (n + 1) * period) are pad_h zero rows (written with its first block),
    // then its H rows each followed by pad_w zeros; the first image also writes the leading zero
    // row, the last block of the last image the zeros after it.
    const int64_t blocks = std::clamp<int64_t>(32 / (s.C * s.N), 1, std::max<int64_t>(s.H, 1));
#pragma omp parallel for collapse(3) schedule(static) num_threads(num_threads()) \
    if (s.C * s.N * blocks > 1)
    for (int64_t c = 0; c < s.C; ++c)
      for (int64_t n = 0; n < s.N; ++n)
        for (int64_t b = 0; b < blocks; ++b) {
          float* first = data + c * plane + (1 + n * period) * Wp;
          float* rows = first + s.pad_h * Wp;
          if (b == 0) std::fill(first, rows, 0.0f);
          for (int64_t h = b * s.H / blocks; h < (b + 1) * s.H / blocks; ++h) {
            std::memcpy(rows + h * Wp, x + ((n * s.C + c) * s.H + h) * s.W, sizeof(float) * s.W);
            std::fill_n(rows + h * Wp + s.W, s.pad_w, 0.0f);
          }
          if (n == 0 && b == 0) std::fill_n(data + c * plane, Wp, 0.0f);
          if (n == s.N - 1 && b == blocks - 1)
            std::fill(rows + s.H * Wp, data + (c + 1) * plane, 0.0f);
        }
    for (int64_t c = 0; c < s.C; ++c)
      for (int64_t r = 0; r < s.R; ++r)
        for (int64_t t = 0; t < s.S; ++t)
          tap_offset[(c * s.R + r) * s.S + t] = c * plane + (1 + r) * Wp + t - s.pad_w;
  }

  static bool fits(const Conv2dShape& s) {
    return s.stride_h == 1 && s.stride_w == 1 && s.pad_h >= 0 && s.pad_h < s.R &&
           s.pad_w >= 0 && s.pad_w < s.S;
  }

  // Whether at least half the virtual columns are output positions, for the kernels that
  // compute all of them.
  static bool dense(const Conv2dShape& s) {
    return 2 * s.P * s.Q >= (s.H + s.pad_h) * (s.W + s.pad_w);
  }
};

#if defined(__AVX512F__)
// dst[i * ld_dst + j] = row[j][i] for 16 rows of 16 floats, in three rounds of two-source
// shuffles (vector extensions: the intrinsics trip GCC 12's -Wmaybe-uninitialized): rows
// interleaved in pairs within 128-bit lanes, then in 4-row groups, then 128-bit lanes across
// groups.
inline void transpose_16x16(const float* const row[16], float* dst, int64_t ld_dst) {
  vfloat t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    const vfloat even = vload(row[i]), odd = vload(row[i + 1]);
    t[i] = __builtin_shufflevector(even, odd, 0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25, 12, 28,
                                   13, 29);
    t[i + 1] = __builtin_shufflevector(even, odd, 2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11, 27, 14,
                                       30, 15, 31);
  }
  // u[4g + j], lane L: rows 4g..4g+3 of column 4L + j.
  for (int g = 0; g < 16; g += 4)
    for (int h = 0; h < 2; ++h) {
      const vfloat a = t[g + h], b = t[g + h + 2];
      u[g + 2 * h] = __builtin_shufflevector(a, b, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12,
                                             13, 28, 29);
      u[g + 2 * h + 1] = __builtin_shufflevector(a, b, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26,
                                                 27, 14, 15, 30, 31);
    }
  const auto even_lanes = [](vfloat a, vfloat b) {  // lanes 0, 2 of a, then of b
    return __builtin_shufflevector(a, b, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
  };
  const auto odd_lanes = [](vfloat a, vfloat b) {  // lanes 1, 3 of a, then of b
    return __builtin_shufflevector(a, b, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30,
                                   31);
  };
  for (int j = 0; j < 4; ++j) {
    const vfloat even_lo = even_lanes(u[j], u[4 + j]), odd_lo = odd_lanes(u[j], u[4 + j]);
    const vfloat even_hi = even_lanes(u[8 + j], u[12 + j]), odd_hi = odd_lanes(u[8 + j], u[12 + j]);
    vstore(dst + j * ld_dst, even_lanes(even_lo, even_hi));
    vstore(dst + (4 + j) * ld_dst, even_lanes(odd_lo, odd_hi));
    vstore(dst + (8 + j) * ld_dst, odd_lanes(even_lo, even_hi));
    vstore(dst + (12 + j) * ld_dst, odd_lanes(odd_lo, odd_hi));
  }
}
#endif

// The blocking of the 32/64-output-channel direct kernels (conv_direct.cpp's forward and
// conv_grad_weight.cpp's grad_weight): blocks of kDirectPositions adjacent output positions and
// groups of kDirectGroup output channels (2 vectors). direct_channels_fit: the shapes they are
// written for.
constexpr int64_t kDirectPositions = 8, kDirectGroup = 2 * kVecWidth;
bool direct_channels_fit(const Conv2dShape& s);

// Input layers up to this many taps (C*R*S: 4 channels of 5x5) take the direct kernels on any
// image size (the forward's with positions in the lanes, input_layer_rows); the dot products of
// grad_weight_dot and the packed GEMM are faster on more.
constexpr int64_t kMaxInputLayerTaps = 100;

// Forward convolution by the direct kernels of conv_direct.cpp, where they pay off: 32 or 64
// output channels and at least 256 taps, output channels in the vector lanes, or (AVX-512) an
// input layer of 64-100 taps and a multiple of 8 output channels, output positions in the lanes.
bool direct_conv_pays_off(const Conv2dShape& s);
void direct_conv(const Conv2dShape& s, const PaddedBatch& batch, const float* weight,
                 const float* bias, float* y);

// grad_weight (and grad_bias, when not null) of 32 or 64 output channels, the direct kernel's
// adjoint (conv_grad_weight.cpp), where it pays off: small images and input layers.
bool direct_grad_weight_pays_off(const Conv2dShape& s);
void direct_grad_weight(const Conv2dShape& s, const float* x, const float* grad_y,
                        float* grad_weight, float* grad_bias);

}  // namespace ds::cpu::conv_detail

// The direct forward convolution kernels on a PaddedBatch. With 32 or 64 output channels, output
// channels in the vector lanes: CIFAR-10's 5x5 layers, VGG's conv1_2, and their grad_x through
// the flipped forward (grad_weight, the adjoint: conv_grad_weight.cpp); no packing, each input is
// broadcast from the batch at a fixed offset per tap. With output positions in the lanes
// (AVX-512): input layers of 64-100 taps and any multiple of 8 output channels (CIFAR-10's
// conv1), loading vectors of the batch.
#include <algorithm>
#include <cstdlib>

#include "conv_padded.h"

namespace ds::cpu::conv_detail {

// Forward convolution with 32 or 64 output channels straight from a PaddedBatch, with output
// channels in the vector lanes: each task is one output row (n, p) and a group of 2 vectors of
// channels; blocks of kDirectPositions adjacent positions of the row keep their
// kDirectPositions x 2 accumulators in registers while the taps stream past, each tap one
// broadcast per position (a fixed offset into the batch) and two vectors of the transposed
// weights. Kernel rows that fall wholly in the padding are skipped, and so are the products of
// the padding columns in a row's first and last blocks (up to kMaxZeros inputs at either end,
// compile-time variants picked per block: CIFAR-10's 8x8 layer 1.05-1.15x faster, the 16x16 one
// 1.05x, batch 100, 1 thread; rows of many blocks unchanged), and there is no packing:
// the implicit GEMM's panels would be reused by few output channels (CIFAR-10's 8x8 and 16x16
// layers: 1.4-1.7x faster; VGG's conv1_2: 1.1x). Short rows (Q < 8) and few taps (an RGB input)
// leave too little work per task. (kDirectPositions, kDirectGroup: conv_padded.h.)

// Output channels per task of input_layer_rows: 8 x 2 vectors of accumulators. It pays off
// over the blocked GEMM from about kMinRowTaps taps, where each block of positions has enough
// taps to amortise its stores (measured, 1 thread: CIFAR-10's 75 taps 20% faster; 25 taps
// (Fashion-MNIST's 1x5x5) the same; VGG conv1_1's 27 taps 1.4x slower).
constexpr int64_t kRowChannels = 8, kMinRowTaps = 64;

// Padding inputs whose products direct_conv_rows leaves out, at most, at either end of a block.
constexpr int64_t kMaxZeros = 2;

bool input_layer_rows_apply(const Conv2dShape& s) {
#if defined(__AVX512F__)  // the row's last vector is stored under a lane mask
  const int64_t taps = s.C * s.R * s.S;
  return PaddedBatch::fits(s) && s.K % kRowChannels == 0 && s.Q >= kVecWidth &&
         taps >= kMinRowTaps && taps <= kMaxInputLayerTaps;
#else
  return false;
#endif
}

bool direct_channels_fit(const Conv2dShape& s) {
  return PaddedBatch::fits(s) && s.K % kDirectGroup == 0 && s.K <= 64 && s.Q >= 8;
}

bool direct_conv_pays_off(const Conv2dShape& s) {
  return (direct_channels_fit(s) && s.C * s.R * s.S >= 256) ||
         input_layer_rows_apply(s);
}

// The taps of one kernel row (c, r) added to a block's accumulators. The S taps of a row read
// the same kDirectPositions + S - 1 inputs shifted by one, so with S known at compile time
// (kS > 0; 32 vector registers hold the 16 accumulators and the 12 inputs of a 5-wide kernel)
// each input is broadcast once per row instead of once per tap: 25% faster on CIFAR-10's 5x5
// layers, whose loop was bound by the broadcasts. kS = 0 takes the width from s.S. The first
// kZeroL and last kZeroR inputs are padding (the first and last blocks of a row): their
// products are left out.
template <int kS, int kZeroL = 0, int kZeroR = 0>
inline void direct_conv_row(const float* x, const float* w, int64_t S, int64_t K,
                            vfloat (&acc)[kDirectPositions][2]) {
  if constexpr (kS > 0) {
    constexpr int kInputs = kDirectPositions + kS - 1;
    vfloat in[kInputs];
#pragma GCC unroll 16
    for (int j = kZeroL; j < kInputs - kZeroR; ++j) in[j] = vbroadcast(x[j]);
#pragma GCC unroll 8
    for (int t = 0; t < kS; ++t) {
      const vfloat w0 = vload(w + t * K), w1 = vload(w + t * K + kVecWidth);
#pragma GCC unroll 8
      for (int i = 0; i < kDirectPositions; ++i) {
        if (i + t < kZeroL || i + t >= kInputs - kZeroR) continue;
        acc[i][0] += in[i + t] * w0;
        acc[i][1] += in[i + t] * w1;
      }
    }
  } else {
    for (int64_t t = 0; t < S; ++t) {
      const vfloat w0 = vload(w + t * K), w1 = vload(w + t * K + kVecWidth);
#pragma GCC unroll 8
      for (int i = 0; i < kDirectPositions; ++i) {
        const vfloat xi = vbroadcast(x[i + t]);
        acc[i][0] += xi * w0;
        acc[i][1] += xi * w1;
      }
    }
  }
}

// One block of kDirectPositions positions of output row (n, p) (its inputs at src) and
// kDirectGroup output channels (weights at wt): the accumulators over input channels and the
// kernel rows [r_lo, r_hi) that read the image.
template <int kS, int kZeroL, int kZeroR>
void direct_conv_block(const Conv2dShape& s, const PaddedBatch& batch, const float* src,
                       const float* wt, int64_t r_lo, int64_t r_hi,
                       vfloat (&acc)[kDirectPositions][2]) {
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t r = r_lo; r < r_hi; ++r) {
      const int64_t tap = (c * s.R + r) * s.S;  // the row's first tap; its taps are adjacent
      direct_conv_row<kS, kZeroL, kZeroR>(src + batch.tap_offset[tap], wt + tap * s.K, s.S, s.K,
                                          acc);
    }
}

template <int kS>
void direct_conv_rows(const Conv2dShape& s, const PaddedBatch& batch, const float* wt,
                      const float* bias, float* y) {
  const int64_t pq = s.P * s.Q;
  const int64_t groups = s.K / kDirectGroup, rows = s.N * s.P;
#pragma omp parallel for schedule(static) num_threads(num_threads())
  for (int64_t task = 0; task < rows * groups; ++task) {
    const int64_t n = task / groups / s.P, p = task / groups % s.P;
    const int64_t k0 = task % groups * kDirectGroup;
    const int64_t r_lo = std::max<int64_t>(0, s.pad_h - p);  // kernel rows inside the image
    const int64_t r_hi = std::min<int64_t>(s.R, s.H + s.pad_h - p);
    for (int64_t q0 = 0; q0 < s.Q; q0 += kDirectPositions) {
      const float* src = batch.data + (n * batch.period + p) * batch.Wp + q0;
      vfloat acc[kDirectPositions][2] = {};
      const float* w = wt + k0;
      // The block's inputs in padding columns (image columns [-pad_w, 0) and [W, ..), the
      // latter read past the right padding only by positions past Q): left out with kS > 0.
      const int64_t zl = std::clamp<int64_t>(s.pad_w - q0, 0, kMaxZeros);
      const int64_t zr = std::clamp<int64_t>(q0 + kDirectPositions + s.S - 1 - s.pad_w - s.W,
                                             0, kMaxZeros);
      switch (kS > 0 ? zl * (kMaxZeros + 1) + zr : 0) {
        case 0: direct_conv_block<kS, 0, 0>(s, batch, src, w, r_lo, r_hi, acc); break;
        case 1: direct_conv_block<kS, 0, 1>(s, batch, src, w, r_lo, r_hi, acc); break;
        case 2: direct_conv_block<kS, 0, 2>(s, batch, src, w, r_lo, r_hi, acc); break;
        case 3: direct_conv_block<kS, 1, 0>(s, batch, src, w, r_lo, r_hi, acc); break;
        case 4: direct_conv_block<kS, 1, 1>(s, batch, src, w, r_lo, r_hi, acc); break;
        case 5: direct_conv_block<kS, 1, 2>(s, batch, src, w, r_lo, r_hi, acc); break;
        case 6: direct_conv_block<kS, 2, 0>(s, batch, src, w, r_lo, r_hi, acc); break;
        case 7: direct_conv_block<kS, 2, 1>(s, batch, src, w, r_lo, r_hi, acc); break;
        default: direct_conv_block<kS, 2, 2>(s, batch, src, w, r_lo, r_hi, acc); break;
      }
      alignas(64) float tile[kDirectPositions][kDirectGroup];
      for (int i = 0; i < kDirectPositions; ++i) {
        vstore(tile[i], acc[i][0]);
        vstore(tile[i] + kVecWidth, acc[i][1]);
      }
      const int64_t len = std::min(kDirectPositions, s.Q - q0);
      for (int64_t k = 0; k < kDirectGroup; ++k) {
        float* dst = y + (n * s.K + k0 + k) * pq + p * s.Q + q0;
        const float add = bias ? bias[k0 + k] : 0.0f;
        for (int64_t i = 0; i < len; ++i) dst[i] = tile[i][k] + add;
      }
    }
  }
}

#if defined(__AVX512F__)
// One tap of input_layer_rows: two unaligned loads of the batch at the tap's offset (src) and
// one broadcast weight per channel (w), into kRowChannels x 2 accumulators.
inline void input_layer_tap(const float* src, const float* w, vfloat (&acc)[kRowChannels][2]) {
  const vfloat x0 = vload(src), x1 = vload(src + kVecWidth);  // reads past Q: see kReadSlack
#pragma GCC unroll 8
  for (int k = 0; k < kRowChannels; ++k) {
    vfloat wk = vbroadcast(w[k]);
    asm("" : "+v"(wk));  // one broadcast (else each multiply-add loads its own)
    acc[k][0] += wk * x0;
    acc[k][1] += wk * x1;
  }
}

// Forward convolution of an input layer (few taps, any image) with output positions in the
// vector lanes: each task is one output row (n, p) and kRowChannels output channels, whose
// blocks of 2 vectors of positions keep kRowChannels x 2 accumulators while the taps stream
// past (input_layer_tap), a kernel row's taps adjacent (kS = S > 0 unrolls them; kS = 0 takes
// the width from s.S). No packing (the blocked GEMM packs its B panels, which did not scale to
// 2 threads), and every store is a whole vector along an output row of y (masked at its end).
// Tasks go by (image, channel block, row), so that each thread writes kRowChannels runs of y
// in order: the output (13 MB on CIFAR-10's conv1) is far larger than the caches, and
// channel-block-major order (32 channel rows 4 KB apart, the next row of each only 4 tasks
// later) left a quarter of the time waiting on writes (1 thread: 1.27x faster; streaming
// stores gained nothing on top).
template <int kS>
void input_layer_rows(const Conv2dShape& s, const PaddedBatch& batch, const float* wt,
                      const float* bias, float* y) {
  const int64_t rs = s.R * s.S, blocks = s.K / kRowChannels, S = kS > 0 ? kS : s.S;
#pragma omp parallel for schedule(static) num_threads(num_threads())
  for (int64_t task = 0; task < s.N * blocks * s.P; ++task) {
    const int64_t n = task / (blocks * s.P), p = task % s.P;
    const int64_t k0 = task / s.P % blocks * kRowChannels;
    const int64_t r_lo = std::max<int64_t>(0, s.pad_h - p);  // kernel rows inside the image
    const int64_t r_hi = std::min<int64_t>(s.R, s.H + s.pad_h - p);
    const float* row = batch.data + (n * batch.period + p) * batch.Wp;
    for (int64_t q0 = 0; q0 < s.Q; q0 += 2 * kVecWidth) {
      vfloat acc[kRowChannels][2] = {};
      for (int64_t c = 0; c < s.C; ++c)
        for (int64_t r = r_lo; r < r_hi; ++r) {
          const int64_t tap = c * rs + r * S;  // the row's first tap; its taps are adjacent
          const float* src = row + batch.tap_offset[tap] + q0;
          const float* w = wt + tap * s.K + k0;
#pragma GCC unroll 8
          for (int64_t t = 0; t < S; ++t) input_layer_tap(src + t, w + t * s.K, acc);
        }
      const auto lanes = [&](int64_t v) -> __mmask16 {  // of vector v that are in the row
        const int64_t left = s.Q - q0 - v * kVecWidth;
        return left >= kVecWidth ? 0xFFFF : left > 0 ? (1u << left) - 1 : 0;
      };
      const __mmask16 lanes0 = lanes(0), lanes1 = lanes(1);
#pragma GCC unroll 8
      for (int k = 0; k < kRowChannels; ++k) {
        float* dst = y + ((n * s.K + k0 + k) * s.P + p) * s.Q + q0;
        const vfloat add = vbroadcast(bias ? bias[k0 + k] : 0.0f);
        _mm512_mask_storeu_ps(dst, lanes0, (__m512)(acc[k][0] + add));
        _mm512_mask_storeu_ps(dst + kVecWidth, lanes1, (__m512)(acc[k][1] + add));
      }
    }
  }
}
#endif

void direct_conv(const Conv2dShape& s, const PaddedBatch& batch, const float* weight,
                 const float* bias, float* y) {
  const int64_t crs = s.C * s.R * s.S;
  float* wt = scratch(kTransposedSlot, crs * s.K);  // wt[tap][k] = weight[k][tap]
  for (int64_t k = 0; k < s.K; ++k)
    for (int64_t tap = 0; tap < crs; ++tap) wt[tap * s.K + k] = weight[k * crs + tap];
#if defined(__AVX512F__)  // narrower vectors have 16 registers: too few to keep the inputs
  if (getenv("DS_EXP") && atoi(getenv("DS_EXP")) == 1) return;
  if (input_layer_rows_apply(s))
    return s.S == 5 ? input_layer_rows<5>(s, batch, wt, bias, y)
                    : input_layer_rows<0>(s, batch, wt, bias, y);
  if (s.S == 5) return direct_conv_rows<5>(s, batch, wt, bias, y);
  if (s.S == 3) return direct_conv_rows<3>(s, batch, wt, bias, y);
#endif
  direct_conv_rows<0>(s, batch, wt, bias, y);
}

}  // namespace ds::cpu::conv_detail

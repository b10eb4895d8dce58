// The direct convolution kernels on a PaddedBatch. With 32 or 64 output channels, output channels
// in the vector lanes: the forward pass (CIFAR-10's 5x5 layers, VGG's conv1_2, and their grad_x
// through the flipped forward) and grad_weight (small images, and input layers of few taps on
// any image); no packing, each input is broadcast from the batch at a fixed offset per tap.
// With output positions in the lanes (AVX-512): the forward pass of input layers of 64-100 taps
// and any multiple of 8 output channels (CIFAR-10's conv1), loading vectors of the batch.
#include <algorithm>
#include <type_traits>
#include <vector>

#include "conv_padded.h"

namespace ds::cpu::conv_detail {

// Forward convolution with 32 or 64 output channels straight from a PaddedBatch, with output
// channels in the vector lanes: each task is one output row (n, p) and a group of 2 vectors of
// channels; blocks of kDirectPositions adjacent positions of the row keep their
// kDirectPositions x 2 accumulators in registers while the taps stream past, each tap one
// broadcast per position (a fixed offset into the batch) and two vectors of the transposed
// weights. Kernel rows that fall wholly in the padding are skipped, and there is no packing:
// the implicit GEMM's panels would be reused by few output channels (CIFAR-10's 8x8 and 16x16
// layers: 1.4-1.7x faster; VGG's conv1_2: 1.1x). Short rows (Q < 8) and few taps (an RGB input)
// leave too little work per task.
constexpr int64_t kDirectPositions = 8, kDirectGroup = 2 * kVecWidth;

// Input layers up to this many taps (C*R*S: 4 channels of 5x5) take the direct kernels on any
// image size (the forward's with positions in the lanes, input_layer_rows); the dot products of
// grad_weight_dot and the packed GEMM are faster on more.
constexpr int64_t kMaxInputLayerTaps = 100;

// Output channels per task of input_layer_rows: 8 x 2 vectors of accumulators. It pays off
// over the blocked GEMM from about kMinRowTaps taps, where each block of positions has enough
// taps to amortise its stores (measured, 1 thread: CIFAR-10's 75 taps 20% faster; 25 taps
// (Fashion-MNIST's 1x5x5) the same; VGG conv1_1's 27 taps 1.4x slower).
constexpr int64_t kRowChannels = 8, kMinRowTaps = 64;

bool input_layer_rows_apply(const Conv2dShape& s) {
#if defined(__AVX512F__)  // the row's last vector is stored under a lane mask
  const int64_t taps = s.C * s.R * s.S;
  return PaddedBatch::fits(s) && s.K % kRowChannels == 0 && s.Q >= kVecWidth &&
         taps >= kMinRowTaps && taps <= kMaxInputLayerTaps;
#else
  return false;
#endif
}

// The shapes the 32/64-output-channel kernels (forward and grad_weight) are written for.
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
// layers, whose loop was bound by the broadcasts. kS = 0 takes the width from s.S.
template <int kS>
inline void direct_conv_row(const float* x, const float* w, int64_t S, int64_t K,
                            vfloat (&acc)[kDirectPositions][2]) {
  if constexpr (kS > 0) {
    constexpr int kInputs = kDirectPositions + kS - 1;
    vfloat in[kInputs];
#pragma GCC unroll 16
    for (int j = 0; j < kInputs; ++j) in[j] = vbroadcast(x[j]);
#pragma GCC unroll 8
    for (int t = 0; t < kS; ++t) {
      const vfloat w0 = vload(w + t * K), w1 = vload(w + t * K + kVecWidth);
#pragma GCC unroll 8
      for (int i = 0; i < kDirectPositions; ++i) {
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

template <int kS>
void direct_conv_rows(const Conv2dShape& s, const PaddedBatch& batch, const float* wt,
                      const float* bias, float* y) {
  const int64_t rs = s.R * s.S, pq = s.P * s.Q;
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
      for (int64_t c = 0; c < s.C; ++c)
        for (int64_t r = r_lo; r < r_hi; ++r) {
          const int64_t tap = c * rs + r * s.S;  // the row's first tap; its taps are adjacent
          direct_conv_row<kS>(src + batch.tap_offset[tap], wt + tap * s.K + k0, s.S, s.K, acc);
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
// Forward convolution of an input layer (few taps, any image) with output positions in the
// vector lanes: each task is one output row (n, p) and kRowChannels output channels, whose
// blocks of 2 vectors of positions keep kRowChannels x 2 accumulators while the taps stream
// past: per tap, two unaligned loads of the batch at the tap's offset and one broadcast weight
// per channel. No packing (the blocked GEMM packs its B panels, which did not scale to 2
// threads), and every store is a whole vector along an output row of y.
void input_layer_rows(const Conv2dShape& s, const PaddedBatch& batch, const float* wt,
                      const float* bias, float* y) {
  const int64_t rs = s.R * s.S, blocks = s.K / kRowChannels;
#pragma omp parallel for schedule(static) num_threads(num_threads())
  for (int64_t task = 0; task < s.N * s.P * blocks; ++task) {
    const int64_t n = task / blocks / s.P, p = task / blocks % s.P;
    const int64_t k0 = task % blocks * kRowChannels;
    const int64_t r_lo = std::max<int64_t>(0, s.pad_h - p);  // kernel rows inside the image
    const int64_t r_hi = std::min<int64_t>(s.R, s.H + s.pad_h - p);
    const float* row = batch.data + (n * batch.period + p) * batch.Wp;
    for (int64_t q0 = 0; q0 < s.Q; q0 += 2 * kVecWidth) {
      vfloat acc[kRowChannels][2] = {};
      for (int64_t c = 0; c < s.C; ++c)
        for (int64_t r = r_lo; r < r_hi; ++r)
          for (int64_t t = 0; t < s.S; ++t) {
            const int64_t tap = c * rs + r * s.S + t;
            const float* src = row + batch.tap_offset[tap] + q0;  // reads past Q: see
            const vfloat x0 = vload(src), x1 = vload(src + kVecWidth);  // kReadSlack
            const float* w = wt + tap * s.K + k0;
#pragma GCC unroll 8
            for (int k = 0; k < kRowChannels; ++k) {
              vfloat wk = vbroadcast(w[k]);
              asm("" : "+v"(wk));  // one broadcast (else each multiply-add loads its own)
              acc[k][0] += wk * x0;
              acc[k][1] += wk * x1;
            }
          }
      for (int64_t k = 0; k < kRowChannels; ++k) {
        float* dst = y + ((n * s.K + k0 + k) * s.P + p) * s.Q + q0;
        const vfloat add = vbroadcast(bias ? bias[k0 + k] : 0.0f);
        for (int v = 0; v < 2; ++v) {
          const int64_t left = s.Q - q0 - v * kVecWidth;
          if (left <= 0) break;
          const __mmask16 lanes = left >= kVecWidth ? 0xFFFF : (1u << left) - 1;
          _mm512_mask_storeu_ps(dst + v * kVecWidth, lanes, (__m512)(acc[k][v] + add));
        }
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
  if (input_layer_rows_apply(s)) return input_layer_rows(s, batch, wt, bias, y);
  if (s.S == 5) return direct_conv_rows<5>(s, batch, wt, bias, y);
  if (s.S == 3) return direct_conv_rows<3>(s, batch, wt, bias, y);
#endif
  direct_conv_rows<0>(s, batch, wt, bias, y);
}

// grad_weight with 32 or 64 output channels, the direct kernel's adjoint, for small images and
// for input layers (few taps on large images): dW[k, tap] = sum over output positions of
// dy[n, k, p, q] * batch[tap_offset[tap] + u(n, p, q)], output channels in the vector lanes.
// The sum over the N.P output rows is cut into kWeightUnits fixed ranges, whatever the thread
// count (so results are bitwise the same at any count), each summed by one thread into partial
// sums of its own that are added up in order at the end: an RGB layer has too few taps to share
// out instead (15 tasks of 5 taps for CIFAR-10's conv1). A work item is one range and one group
// of 2 vectors of output channels; it walks its rows in chunks whose dy it transposes to
// dyT[position][k] in an L1-sized buffer, then for each task (c, r, up to kWeightTaps adjacent
// taps t0..) adds the chunk's products to the task's sums. Along a row, kDirectPositions
// positions and kT adjacent taps read only kDirectPositions + kT - 1 inputs: each is broadcast
// once and kept in a register (as in direct_conv_row), and each position costs two loads of dyT
// for its 2 kT products.
constexpr int64_t kWeightTaps = 5, kWeightChunkFloats = 8192, kWeightUnits = 16;

bool direct_grad_weight_pays_off(const Conv2dShape& s) {
  return direct_channels_fit(s) && (s.P * s.Q <= 256 || s.C * s.R * s.S <= kMaxInputLayerTaps);
}

// Accumulator sets of weight_row: with fewer than 4 taps, 2 sets (even and odd positions) keep
// enough independent sums in flight to cover the latency of the multiply-adds (6 chains for 3
// taps would leave the FMA units idle a quarter of the time: VGG's 3x3 conv1_1).
template <int kT>
constexpr int kWeightSets = kT <= 3 ? 2 : 1;

// acc[set][t] += the products of taps t0 + t (t < kT) over positions [0, Q) of one output row,
// whose inputs start at x (the row's tap t0) and dyT rows at dy (kDirectGroup floats apart).
template <int kT>
inline void weight_row(const float* x, const float* dy, int64_t Q,
                       vfloat (&acc)[2][kWeightTaps][2]) {
  constexpr int64_t G = kDirectGroup;
  constexpr int kSets = kWeightSets<kT>;
  int64_t q = 0;
  for (; q + kDirectPositions <= Q; q += kDirectPositions) {
    constexpr int kInputs = kDirectPositions + kT - 1;
    vfloat in[kInputs];
#pragma GCC unroll 16
    for (int j = 0; j < kInputs; ++j) in[j] = vbroadcast(x[q + j]);
#pragma GCC unroll 8
    for (int i = 0; i < kDirectPositions; ++i) {
      const float* d = dy + (q + i) * G;
      vfloat d0 = vload(d), d1 = vload(d + kVecWidth);
      asm("" : "+v"(d0), "+v"(d1));  // one load each (else every multiply-add reloads them)
#pragma GCC unroll 8
      for (int t = 0; t < kT; ++t) {
        acc[i % kSets][t][0] += in[i + t] * d0;
        acc[i % kSets][t][1] += in[i + t] * d1;
      }
    }
  }
  for (; q < Q; ++q) {  // the row's last Q % kDirectPositions positions
    const vfloat d0 = vload(dy + q * G), d1 = vload(dy + q * G + kVecWidth);
    for (int t = 0; t < kT; ++t) {
      const vfloat xi = vbroadcast(x[q + t]);
      acc[0][t][0] += xi * d0;
      acc[0][t][1] += xi * d1;
    }
  }
}

// The taps (c, r, t0 .. t0 + kT - 1) of one group of output channels, summed over output rows
// [row0, row1) (their dyT at dyt) and added to the task's sums (kWeightTaps x 2 vectors).
template <int kT>
void weight_taps(const Conv2dShape& s, const PaddedBatch& batch, const float* dyt, int64_t tap0,
                 int64_t r, int64_t row0, int64_t row1, float* sums) {
  vfloat acc[2][kWeightTaps][2];
  for (int t = 0; t < kT; ++t)
    for (int v = 0; v < 2; ++v) {
      acc[0][t][v] = vload(sums + (2 * t + v) * kVecWidth);
      acc[1][t][v] = vfloat{};
    }
  for (int64_t row = row0; row < row1; ++row) {
    const int64_t n = row / s.P, p = row % s.P, ih = p - s.pad_h + r;
    if (ih < 0 || ih >= s.H) continue;  // the taps read padding only
    const float* x = batch.data + (n * batch.period + p) * batch.Wp + batch.tap_offset[tap0];
    weight_row<kT>(x, dyt + (row - row0) * s.Q * kDirectGroup, s.Q, acc);
  }
  for (int t = 0; t < kT; ++t)
    for (int v = 0; v < 2; ++v)
      vstore(sums + (2 * t + v) * kVecWidth,
             kWeightSets<kT> == 2 ? acc[0][t][v] + acc[1][t][v] : acc[0][t][v]);
}

// dyt[(row - row0) * Q + q][k] = grad_y[n, k0 + k, p, q] for output rows row = (n, p) in
// [row0, row1) and k < kDirectGroup; with bias_sums, each row's sum per channel (in float along
// the row, in two chains) is added to bias_sums[k] in double.
static void transpose_output_rows(const Conv2dShape& s, const float* grad_y, int64_t k0,
                                  int64_t row0, int64_t row1, float* dyt, double* bias_sums) {
  constexpr int64_t G = kDirectGroup;
  const int64_t pq = s.P * s.Q;
  for (int64_t row = row0; row < row1; ++row) {
    const float* src = grad_y + (row / s.P * s.K + k0) * pq + row % s.P * s.Q;  // + k * pq
    float* dst = dyt + (row - row0) * s.Q * G;
    int64_t q0 = 0;
#if defined(__AVX512F__)
    for (; q0 + 16 <= s.Q; q0 += 16)
      for (int64_t k = 0; k < G; k += 16) {
        const float* channel[16];
        for (int j = 0; j < 16; ++j) channel[j] = src + (k + j) * pq + q0;
        transpose_16x16(channel, dst + q0 * G + k, G);
      }
#endif
    for (int64_t q = q0; q < s.Q; ++q)
      for (int64_t k = 0; k < G; ++k) dst[q * G + k] = src[k * pq + q];
    if (!bias_sums) continue;
    vfloat even[2] = {}, odd[2] = {};
    int64_t q = 0;
    for (; q + 2 <= s.Q; q += 2)
      for (int v = 0; v < 2; ++v) {
        even[v] += vload(dst + q * G + v * kVecWidth);
        odd[v] += vload(dst + (q + 1) * G + v * kVecWidth);
      }
    if (q < s.Q)
      for (int v = 0; v < 2; ++v) even[v] += vload(dst + q * G + v * kVecWidth);
    alignas(64) float row_sum[G];
    for (int v = 0; v < 2; ++v) vstore(row_sum + v * kVecWidth, even[v] + odd[v]);
    for (int64_t k = 0; k < G; ++k) bias_sums[k] += row_sum[k];
  }
}

// grad_bias (when not null) comes with it: the transposes read every dy anyway.
void direct_grad_weight(const Conv2dShape& s, const PaddedBatch& batch, const float* grad_y,
                        float* grad_weight, float* grad_bias) {
  constexpr int64_t G = kDirectGroup, kTaskSums = kWeightTaps * G;
  const int64_t crs = s.C * s.R * s.S, rows = s.N * s.P, groups = s.K / G;
  const int64_t blocks = (s.S + kWeightTaps - 1) / kWeightTaps;  // of taps along a kernel row
  const int64_t tasks = s.C * s.R * blocks, units = std::min(kWeightUnits, rows);
  // Each work item's sums, tasks x kWeightTaps x 2 vectors.
  const int64_t item_sums = tasks * kTaskSums;
  float* partial = scratch(kTransposedSlot, units * groups * item_sums);
  const int64_t chunk_rows = std::max<int64_t>(1, kWeightChunkFloats / (s.Q * G));
  std::vector<double> bias_partial(grad_bias ? units * s.K : 0);  // [unit][k]
#pragma omp parallel num_threads(num_threads())
  {
    float* dyt = scratch(kGradSlot, chunk_rows * s.Q * G);
#pragma omp for schedule(static)
    for (int64_t item = 0; item < units * groups; ++item) {
      const int64_t unit = item / groups, k0 = item % groups * G;
      float* sums = partial + item * item_sums;
      std::fill_n(sums, item_sums, 0.0f);
      const int64_t last = (unit + 1) * rows / units;
      for (int64_t row0 = unit * rows / units; row0 < last; row0 += chunk_rows) {
        const int64_t row1 = std::min(last, row0 + chunk_rows);
        transpose_output_rows(s, grad_y, k0, row0, row1, dyt,
                              grad_bias ? bias_partial.data() + unit * s.K + k0 : nullptr);
        for (int64_t task = 0; task < tasks; ++task) {
          const int64_t cr = task / blocks, t0 = task % blocks * kWeightTaps;
          float* own = sums + task * kTaskSums;
          const auto run = [&](auto taps) {
            weight_taps<decltype(taps)::value>(s, batch, dyt, cr * s.S + t0, cr % s.R, row0,
                                               row1, own);
          };
          switch (std::min(kWeightTaps, s.S - t0)) {
            case 1: run(std::integral_constant<int, 1>{}); break;
            case 2: run(std::integral_constant<int, 2>{}); break;
            case 3: run(std::integral_constant<int, 3>{}); break;
            case 4: run(std::integral_constant<int, 4>{}); break;
            default: run(std::integral_constant<int, 5>{}); break;
          }
        }
      }
    }
    // The units' sums added in order.
#pragma omp for schedule(static)
    for (int64_t i = 0; i < groups * tasks; ++i) {
      const int64_t group = i / tasks, task = i % tasks;
      const int64_t tap0 = task / blocks * s.S + task % blocks * kWeightTaps;
      for (int64_t t = 0; t < std::min(kWeightTaps, s.S - task % blocks * kWeightTaps); ++t)
        for (int64_t k = 0; k < G; ++k) {
          const float* sum = partial + group * item_sums + task * kTaskSums + t * G + k;
          float total = sum[0];
          for (int64_t unit = 1; unit < units; ++unit) total += sum[unit * groups * item_sums];
          grad_weight[(group * G + k) * crs + tap0 + t] = total;
        }
    }
  }
  if (grad_bias)
    for (int64_t k = 0; k < s.K; ++k) {
      double total = 0.0;
      for (int64_t unit = 0; unit < units; ++unit) total += bias_partial[unit * s.K + k];
      grad_bias[k] = static_cast<float>(total);
    }
}

}  // namespace ds::cpu::conv_detail

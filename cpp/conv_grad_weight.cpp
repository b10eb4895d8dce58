// grad_weight (and grad_bias) with 32 or 64 output channels, the adjoint of conv_direct.cpp's
// forward kernel, for small images and for input layers (few taps on large images), output
// channels in the vector lanes; blocking and order of the sums at kWeightTaps below.
#include <omp.h>

#include <algorithm>
#include <optional>
#include <type_traits>
#include <vector>

#include "conv_padded.h"

namespace ds::cpu::conv_detail {

// dW[k, tap] = sum over output positions of dy[n, k, p, q] * (input of tap at (n, p, q)).
// The sum over the N.P output rows is cut into kWeightUnits fixed ranges, whatever the thread
// count (so results are bitwise the same at any count), each summed by one thread into partial
// sums of its own that are added up in order at the end: an RGB layer has too few taps to share
// out instead (15 tasks of 5 taps for CIFAR-10's conv1). 8 ranges, not 16: the partial sums
// (1.6 MB on CIFAR-10's conv3) are written and read back once, which cost 5% of its time more.
// A work item is one range and one group of 2 vectors of output channels; it walks its rows in
// chunks (usually one: each (chunk, task) pass costs a few hundred cycles to start and end) whose
// dy it transposes to dyT[position][k], then for each task (c, r, up to kWeightTaps adjacent
// taps t0..) adds the chunk's products to the task's sums. Along a row, kDirectPositions
// positions and kT adjacent taps read only kDirectPositions + kT - 1 inputs: each is broadcast
// once and kept in a register (as in direct_conv_row), and each position costs two loads of dyT
// for its 2 kT products; products of padding inputs are skipped (weight_block).
constexpr int64_t kWeightTaps = 5, kWeightChunkFloats = 65536, kWeightUnits = 8;

bool direct_grad_weight_pays_off(const Conv2dShape& s) {
  return direct_channels_fit(s) && (s.P * s.Q <= 256 || s.C * s.R * s.S <= kMaxInputLayerTaps);
}

// Accumulator sets of weight_rows: with fewer than 4 taps, 2 sets (even and odd positions) keep
// enough independent sums in flight to cover the latency of the multiply-adds (6 chains for 3
// taps would leave the FMA units idle a quarter of the time: VGG's 3x3 conv1_1).
template <int kT>
constexpr int kWeightSets = kT <= 3 ? 2 : 1;

// Inputs of a block of kDirectPositions positions known to be zero padding at either end,
// whose products weight_block skips: up to kMaxZeros (a 5x5 kernel's pad 2; wider padding only
// skips fewer of its zeros).
constexpr int64_t kMaxZeros = 2;

// acc[set][t] += the products of taps t0 + t (t < kT) over the kDirectPositions positions of a
// block, whose kDirectPositions + kT - 1 inputs start at x and dyT rows at dy (kDirectGroup
// floats apart); the first kZeroL and last kZeroR inputs are padding, and their products
// (always 0) are left out: 15% of the multiply-adds of a 5x5 kernel (pad 2) on 8-wide rows.
template <int kT, int kZeroL, int kZeroR>
inline void weight_block(const float* x, const float* dy, vfloat (&acc)[2][kWeightTaps][2]) {
  constexpr int64_t G = kDirectGroup;
  constexpr int kSets = kWeightSets<kT>, kInputs = kDirectPositions + kT - 1;
  vfloat in[kInputs];
#pragma GCC unroll 16
  for (int j = kZeroL; j < kInputs - kZeroR; ++j) in[j] = vbroadcast(x[j]);
#pragma GCC unroll 8
  for (int i = 0; i < kDirectPositions; ++i) {
    vfloat d0 = vload(dy + i * G), d1 = vload(dy + i * G + kVecWidth);
    asm("" : "+v"(d0), "+v"(d1));  // one load each (else every multiply-add reloads them)
#pragma GCC unroll 8
    for (int t = 0; t < kT; ++t) {
      if (i + t < kZeroL || i + t >= kInputs - kZeroR) continue;
      acc[i % kSets][t][0] += in[i + t] * d0;
      acc[i % kSets][t][1] += in[i + t] * d1;
    }
  }
}

// Where grad_weight finds the input of tap (c, r, t) of output position (n, p, q):
// data[n * n_stride + (p + r) * p_stride + c * c_stride + q + t + base], in a PaddedBatch or,
// where no multiply-add reads padding (see direct_grad_weight), in x itself.
struct WeightInputs {
  const float* data;
  int64_t n_stride, p_stride, c_stride, base;
};

// The rows a task walks: output rows [row0, row1), their dyT at dyt, and the inputs of the
// taps (c, r, t0 ..) at `offset` from each row's origin in `in`.
struct WeightRows {
  const Conv2dShape& s;
  const WeightInputs& in;
  const float* dyt;
  int64_t offset, t0, r, row0, row1;
};

// The products of taps t0 .. t0 + kT - 1 over each row whose taps read the image, added to
// sums (kWeightTaps x 2 vectors; in registers meanwhile): whole blocks of kDirectPositions,
// then the last Q % kDirectPositions positions one at a time. The first block's first kZeroL
// inputs and the last block's last kZeroR are padding, the same in every row. With `fresh`,
// sums is overwritten instead.
template <int kT, int kZeroL, int kZeroR>
void weight_rows(const WeightRows& w, float* sums, bool fresh) {
  constexpr int64_t G = kDirectGroup;
  vfloat acc[2][kWeightTaps][2];
  for (int t = 0; t < kT; ++t)
    for (int v = 0; v < 2; ++v) {
      acc[0][t][v] = fresh ? vfloat{} : vload(sums + (2 * t + v) * kVecWidth);
      acc[1][t][v] = vfloat{};
    }
  const Conv2dShape& s = w.s;
  const int64_t last = (s.Q / kDirectPositions - 1) * kDirectPositions;  // the last block's q
  int64_t n = w.row0 / s.P, p = w.row0 % s.P;  // stepped along (no division per row)
  for (int64_t row = w.row0; row < w.row1; ++row) {
    const int64_t ih = p - s.pad_h + w.r;
    if (ih >= 0 && ih < s.H) {  // else the taps read padding only
      const float* x = w.in.data + n * w.in.n_stride + p * w.in.p_stride + w.offset;
      const float* dy = w.dyt + (row - w.row0) * s.Q * G;
      if (last == 0) {
        weight_block<kT, kZeroL, kZeroR>(x, dy, acc);
      } else {
        weight_block<kT, kZeroL, 0>(x, dy, acc);
        for (int64_t q = kDirectPositions; q < last; q += kDirectPositions)
          weight_block<kT, 0, 0>(x + q, dy + q * G, acc);
        weight_block<kT, 0, kZeroR>(x + last, dy + last * G, acc);
      }
      for (int64_t q = last + kDirectPositions; q < s.Q; ++q) {
        const vfloat d0 = vload(dy + q * G), d1 = vload(dy + q * G + kVecWidth);
        for (int t = 0; t < kT; ++t) {
          const vfloat xi = vbroadcast(x[q + t]);
          acc[0][t][0] += xi * d0;
          acc[0][t][1] += xi * d1;
        }
      }
    }
    if (++p == s.P) p = 0, ++n;
  }
  for (int t = 0; t < kT; ++t)
    for (int v = 0; v < 2; ++v)
      vstore(sums + (2 * t + v) * kVecWidth,
             kWeightSets<kT> == 2 ? acc[0][t][v] + acc[1][t][v] : acc[0][t][v]);
}

// The taps (c, r, t0 .. t0 + kT - 1) of one group of output channels, summed over the rows of w
// and added to the task's sums (kWeightTaps x 2 vectors), by the weight_rows variant that skips
// the padding of the row's first and last blocks (image columns [-pad_w, 0) and [W, W + pad_w)),
// picked once per task (a choice per row took a third of an 8-wide row's time).
template <int kT>
void weight_taps(const WeightRows& w, float* sums, bool fresh) {
  const int64_t col0 = w.t0 - w.s.pad_w, end = w.s.Q / kDirectPositions * kDirectPositions;
  const int64_t zl = std::clamp<int64_t>(-col0, 0, kMaxZeros);
  const int64_t zr = std::clamp<int64_t>(col0 + end + kT - 1 - w.s.W, 0, kMaxZeros);
  switch (zl * (kMaxZeros + 1) + zr) {
    case 0: return weight_rows<kT, 0, 0>(w, sums, fresh);
    case 1: return weight_rows<kT, 0, 1>(w, sums, fresh);
    case 2: return weight_rows<kT, 0, 2>(w, sums, fresh);
    case 3: return weight_rows<kT, 1, 0>(w, sums, fresh);
    case 4: return weight_rows<kT, 1, 1>(w, sums, fresh);
    case 5: return weight_rows<kT, 1, 2>(w, sums, fresh);
    case 6: return weight_rows<kT, 2, 0>(w, sums, fresh);
    case 7: return weight_rows<kT, 2, 1>(w, sums, fresh);
    default: return weight_rows<kT, 2, 2>(w, sums, fresh);
  }
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
void direct_grad_weight(const Conv2dShape& s, const float* x, const float* grad_y,
                        float* grad_weight, float* grad_bias) {
  constexpr int64_t G = kDirectGroup, kTaskSums = kWeightTaps * G;
  // The multiply-adds read no padding where weight_rows skips all of it: the zero columns of a
  // row are only those of its first and last block (no positions one at a time), at most
  // kMaxZeros; padding rows are skipped anyway. There the inputs come from x as it is (copying
  // it to a PaddedBatch took 5% of CIFAR-10's 16x16 layer).
  std::optional<PaddedBatch> batch;
  WeightInputs in{x, s.C * s.H * s.W, s.W, s.H * s.W, -s.pad_h * s.W - s.pad_w};
  if (s.pad_w > kMaxZeros || s.Q % kDirectPositions != 0) {
    batch.emplace(s, x);
    in = {batch->data, batch->period * batch->Wp, batch->Wp, batch->plane,
          batch->Wp - s.pad_w};
  }
  const int64_t crs = s.C * s.R * s.S, rows = s.N * s.P, groups = s.K / G;
  const int64_t blocks = (s.S + kWeightTaps - 1) / kWeightTaps;  // of taps along a kernel row
  const int64_t tasks = s.C * s.R * blocks, units = std::min(kWeightUnits, rows);
  // Each work item's sums, tasks x kWeightTaps x 2 vectors.
  const int64_t item_sums = tasks * kTaskSums;
  float* partial = scratch(kTransposedSlot, units * groups * item_sums);
  const int64_t chunk_rows = std::max<int64_t>(1, kWeightChunkFloats / (s.Q * G));
  std::vector<double> bias_partial(grad_bias ? units * s.K : 0);  // [unit][k]
  // Every thread's dyT, taken here: a std::bad_alloc must not leave the parallel region.
  const int threads = num_threads();
  const int64_t dyt_floats = (chunk_rows * s.Q * G + 15) / 16 * 16;  // whole cache lines each
  float* const dyt_all = scratch(kGradSlot, threads * dyt_floats);
#pragma omp parallel num_threads(threads)
  {
    float* dyt = dyt_all + omp_get_thread_num() * dyt_floats;
#pragma omp for schedule(static)
    for (int64_t item = 0; item < units * groups; ++item) {
      const int64_t unit = item / groups, k0 = item % groups * G;
      float* sums = partial + item * item_sums;
      const int64_t first = unit * rows / units, last = (unit + 1) * rows / units;
      for (int64_t row0 = first; row0 < last; row0 += chunk_rows) {
        const int64_t row1 = std::min(last, row0 + chunk_rows);
        transpose_output_rows(s, grad_y, k0, row0, row1, dyt,
                              grad_bias ? bias_partial.data() + unit * s.K + k0 : nullptr);
        for (int64_t task = 0; task < tasks; ++task) {
          const int64_t cr = task / blocks, t0 = task % blocks * kWeightTaps;
          float* own = sums + task * kTaskSums;
          const int64_t c = cr / s.R, r = cr % s.R;
          const WeightRows walk{s, in, dyt, c * in.c_stride + r * in.p_stride + t0 + in.base,
                                t0, r, row0, row1};
          const bool fresh = row0 == first;  // the unit's first chunk
          const auto run = [&](auto taps) {
            weight_taps<decltype(taps)::value>(walk, own, fresh);
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
    // The units' sums added in order, a vector of channels at a time (the units' sums of one
    // task lie item_sums apart: summed one float at a time, every add missed the cache).
#pragma omp for schedule(static)
    for (int64_t i = 0; i < groups * tasks; ++i) {
      const int64_t group = i / tasks, task = i % tasks;
      const int64_t tap0 = task / blocks * s.S + task % blocks * kWeightTaps;
      const int64_t taps = std::min(kWeightTaps, s.S - task % blocks * kWeightTaps);
      const float* first = partial + group * item_sums + task * kTaskSums;
      alignas(64) float total[kTaskSums];
      for (int64_t j = 0; j < taps * G; j += kVecWidth) {
        vfloat sum = vload(first + j);
        for (int64_t unit = 1; unit < units; ++unit)
          sum += vload(first + unit * groups * item_sums + j);
        vstore(total + j, sum);
      }
      for (int64_t t = 0; t < taps; ++t)
        for (int64_t k = 0; k < G; ++k)
          grad_weight[(group * G + k) * crs + tap0 + t] = total[t * G + k];
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

// 2-D convolution as implicit GEMM: the blocked GEMM of gemm_blocked.h packs its panels straight
// from the images, so no im2col matrix is ever stored, and a whole batch is one GEMM (small
// images still give the micro-kernel long rows). With col[(c, r, t), (n, p, q)] =
// x[n, c, p*stride_h - pad_h + r, q*stride_w - pad_w + t] (zero outside the image):
//
// forward:      y (K x N.PQ, NCHW)   = W (K x CRS) . col (CRS x N.PQ) + bias
// grad_weight:  dW (K x CRS)         = dy (K x N.PQ) . col^T: with 32 or 64 output channels, for
//               small images and for input layers (few taps), a direct kernel, else unpacked
//               dot products along N.PQ for layers with few output channels, else a packed GEMM
// grad_x:       with stride 1, a forward convolution of dy with the weights flipped and
//               transposed, padding R-1-pad (negative padding crops); otherwise (and where that
//               would waste work) dcol = W^T . dy over chunks of images, scattered back by col2im.
//
// Stride-1 convolutions first copy the batch into a zero-framed layout (PaddedBatch) where every
// tap is one fixed offset away, so packing is plain copying (col^T: 16x16 transposes); layers
// with 1-4 output channels (grad_x of RGB input layers) skip the GEMM for a direct kernel on
// that layout, and so do convolutions with 32 or 64 output channels and at least 256 taps
// (CIFAR-10's layers, VGG's conv1_2, and their grad_x), with output channels in the vector
// lanes; grad_weight of such small images and of input layers likewise. A kernel covering the
// whole unpadded image is a fully connected layer: plain sgemm calls. Every output element is
// summed in a fixed order whatever the thread count (grad_bias: in double per channel, from
// float row sums where the direct grad_weight makes it), so results are bitwise identical from
// run to run.
#include "conv.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "gemm.h"
#include "gemm_blocked.h"
#include "threads.h"
#include "winograd.h"

namespace ds::cpu {
namespace {

using blocked::MR;
using blocked::NR;

// Per-thread buffers reused from call to call: fresh multi-megabyte allocations would page-fault
// on every call. One slot per use, since their lifetimes overlap.
enum ScratchSlot { kBatchSlot, kWeightSlot, kGradSlot, kTransposedSlot, kSlots };
float* scratch(ScratchSlot slot, int64_t n) {
  static thread_local blocked::Scratch buffers[kSlots];
  return buffers[slot].get(n);
}

// dst[i * dst_step] = row[iw0 + i * src_step] for i in [0, len), zero where the source index
// falls outside [0, W).
inline void gather_clipped(float* dst, int64_t dst_step, const float* row, int64_t iw0,
                           int64_t src_step, int64_t len, int64_t W) {
  // Valid i satisfy 0 <= iw0 + i * src_step < W.
  const int64_t lo = std::clamp<int64_t>((src_step - 1 - iw0) / src_step, 0, len);
  const int64_t hi = std::clamp<int64_t>((W - iw0 + src_step - 1) / src_step, lo, len);
  if (dst_step == 1 && src_step == 1) {
    std::fill(dst, dst + lo, 0.0f);
    std::memcpy(dst + lo, row + iw0 + lo, sizeof(float) * (hi - lo));
    std::fill(dst + hi, dst + len, 0.0f);
    return;
  }
  for (int64_t i = 0; i < lo; ++i) dst[i * dst_step] = 0.0f;
  for (int64_t i = lo; i < hi; ++i) dst[i * dst_step] = row[iw0 + i * src_step];
  for (int64_t i = hi; i < len; ++i) dst[i * dst_step] = 0.0f;
}

// A run of output positions (n, p, q .. q+len-1) that lie in one image row.
struct Run {
  int64_t n, p, q, len;
};

// Splits output positions [j0, j0 + cols) of the flattened (n, p, q) range into runs.
inline int runs_of(const Conv2dShape& s, int64_t j0, int64_t cols, Run* runs) {
  int count = 0;
  int64_t n = j0 / (s.P * s.Q), pq = j0 % (s.P * s.Q), p = pq / s.Q, q = pq % s.Q;
  while (cols > 0) {
    const int64_t len = std::min(cols, s.Q - q);
    runs[count++] = {n, p, q, len};
    cols -= len;
    q = 0;
    if (++p == s.P) p = 0, ++n;
  }
  return count;
}

// op(B) = col (CRS x N.PQ), for the forward pass: a panel is kc taps (c, r, t) by NR output
// positions, each tap a few clipped runs of one input row.
struct ImageColumns {
  const Conv2dShape& s;
  const float* x;
  void pack(int64_t k0, int64_t kc, int64_t j0, int64_t cols, float* dst) const {
    Run runs[NR];
    const int count = runs_of(s, j0, cols, runs);
    for (int64_t k = 0; k < kc; ++k) {
      const int64_t tap = k0 + k, c = tap / (s.R * s.S), r = tap / s.S % s.R, t = tap % s.S;
      float* d = dst + k * NR;
      for (int i = 0; i < count; ++i) {
        const Run& run = runs[i];
        const int64_t ih = run.p * s.stride_h - s.pad_h + r;
        if (ih < 0 || ih >= s.H) {
          std::fill(d, d + run.len, 0.0f);
        } else {
          const float* row = x + ((run.n * s.C + c) * s.H + ih) * s.W;
          gather_clipped(d, 1, row, run.q * s.stride_w - s.pad_w + t, s.stride_w, run.len, s.W);
        }
        d += run.len;
      }
      std::fill(d, dst + (k + 1) * NR, 0.0f);
    }
  }
};

// op(B) = col^T (N.PQ x CRS), for grad_weight: a panel is kc output positions by NR taps, each
// tap filled down the panel from clipped runs of input rows.
struct ImageColumnsT {
  const Conv2dShape& s;
  const float* x;
  void pack(int64_t k0, int64_t kc, int64_t j0, int64_t cols, float* dst) const {
    constexpr int64_t max_runs = 512;
    Run runs[max_runs];
    for (int64_t c0 = 0; c0 < NR; ++c0)
      if (c0 >= cols)
        for (int64_t k = 0; k < kc; ++k) dst[k * NR + c0] = 0.0f;
    // Runs along the reduction dimension, in chunks that fit the run buffer.
    for (int64_t kk = 0; kk < kc;) {
      const int64_t span = std::min<int64_t>(kc - kk, max_runs);
      const int count = runs_of(s, k0 + kk, span, runs);
      for (int64_t col = 0; col < cols; ++col) {
        const int64_t tap = j0 + col, c = tap / (s.R * s.S), r = tap / s.S % s.R, t = tap % s.S;
        float* d = dst + kk * NR + col;
        for (int i = 0; i < count; ++i) {
          const Run& run = runs[i];
          const int64_t ih = run.p * s.stride_h - s.pad_h + r;
          if (ih < 0 || ih >= s.H) {
            for (int64_t m = 0; m < run.len; ++m) d[m * NR] = 0.0f;
          } else {
            const float* row = x + ((run.n * s.C + c) * s.H + ih) * s.W;
            gather_clipped(d, NR, row, run.q * s.stride_w - s.pad_w + t, s.stride_w, run.len, s.W);
          }
          d += run.len * NR;
        }
      }
      kk += span;
    }
  }
};

// op(A) = dy viewed as K x N.PQ, for grad_weight.
struct OutputRows {
  const Conv2dShape& s;
  const float* dy;
  void pack(int64_t i0, int64_t rows, int64_t k0, int64_t kc, float* dst) const {
    const int64_t pq = s.P * s.Q;
    // Segments of the depth range within one image, where the tile's rows are pq apart.
    for (int64_t k = 0, n = k0 / pq, j = k0 % pq; k < kc; j = 0, ++n) {
      const int64_t len = std::min(kc - k, pq - j);
      const float* src = dy + (n * s.K + i0) * pq + j;
      int64_t done = 0;
#if defined(__AVX512F__)
      if (rows == MR && MR == 8)
        done = blocked::MatrixA::transpose_rows_8x16(src, pq, len, dst + k * MR);
#endif
      for (int64_t r = 0; r < MR; ++r)
        for (int64_t m = done; m < len; ++m)
          dst[(k + m) * MR + r] = r < rows ? src[r * pq + m] : 0.0f;
      k += len;
    }
  }
};

// op(B) = dy viewed as K x N.PQ, for the col2im form of grad_x.
struct OutputColumns {
  const Conv2dShape& s;
  const float* dy;
  void pack(int64_t k0, int64_t kc, int64_t j0, int64_t cols, float* dst) const {
    const int64_t pq = s.P * s.Q;
    for (int64_t k = 0; k < kc; ++k) {
      float* d = dst + k * NR;
      for (int64_t n = j0 / pq, j = j0 % pq, left = cols; left > 0; j = 0, ++n) {
        const int64_t len = std::min(left, pq - j);
        std::memcpy(d, dy + (n * s.K + k0 + k) * pq + j, sizeof(float) * len);
        d += len;
        left -= len;
      }
      std::fill(d, dst + (k + 1) * NR, 0.0f);
    }
  }
};

// C = y (N, K, P, Q) seen as K x N.PQ: column j is image j / PQ, position j % PQ.
struct BatchOutput {
  const Conv2dShape& s;
  float* y;
  float* at(int64_t i, int64_t j) const {
    const int64_t pq = s.P * s.Q;
    return y + (j / pq * s.K + i) * pq + j % pq;
  }
  int64_t ld() const { return s.P * s.Q; }
  float* direct(int64_t i, int64_t j0, int64_t cols) const {
    const int64_t pq = s.P * s.Q;
    return j0 / pq == (j0 + cols - 1) / pq ? at(i, j0) : nullptr;
  }
};

// The batch laid out for a stride-1 convolution with 0 <= pad < kernel size, so that every tap
// of every output position is one fixed offset away: channel-major, images stacked along the
// rows, each image row followed by pad_w zeros (the right padding of one row is the left
// padding of the next) and each image by pad_h zero rows (likewise shared), plus one leading
// zero row. Output position (n, p, q) becomes the "virtual" column u = (n*period + p)*Wp + q;
// columns with p >= P or q >= Q are computed but not stored.
// Floats past a plane's last virtual column that kernels may read, unused: a GEMM panel (NR) or
// few_channel_block's whole-vector block (at most 8 vectors), from the last tap's offset.
constexpr int64_t kReadSlack = std::max<int64_t>(NR, 8 * kVecWidth);

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
    // Every float written once, image by image (an RGB batch has too few planes to split
    // evenly): image n's rows [1 + n * period, 1 + (n + 1) * period) are pad_h zero rows, then
    // its H rows each followed by pad_w zeros; the first image also writes the leading zero row,
    // the last one the zeros after it.
#pragma omp parallel for collapse(2) schedule(static) num_threads(num_threads()) \
    if (s.C * s.N > 1)
    for (int64_t c = 0; c < s.C; ++c)
      for (int64_t n = 0; n < s.N; ++n) {
        float* first = data + c * plane + (1 + n * period) * Wp;
        float* rows = first + s.pad_h * Wp;
        std::fill(first, rows, 0.0f);
        for (int64_t h = 0; h < s.H; ++h) {
          std::memcpy(rows + h * Wp, x + ((n * s.C + c) * s.H + h) * s.W, sizeof(float) * s.W);
          std::fill_n(rows + h * Wp + s.W, s.pad_w, 0.0f);
        }
        if (n == 0) std::fill_n(data + c * plane, Wp, 0.0f);
        if (n == s.N - 1) std::fill(rows + s.H * Wp, data + (c + 1) * plane, 0.0f);
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

// op(B) = col (CRS x N.PQ) read from a PaddedBatch: the NR output positions of a panel are a
// few runs along image rows, and each tap copies each run from one fixed offset, unclipped.
struct PaddedColumns {
  const PaddedBatch& batch;
  void pack(int64_t k0, int64_t kc, int64_t j0, int64_t cols, float* dst) const {
    Run runs[NR];
    int64_t start[NR];  // virtual column of each run's first position
    const int count = runs_of(batch.s, j0, cols, runs);
    for (int i = 0; i < count; ++i)
      start[i] = (runs[i].n * batch.period + runs[i].p) * batch.Wp + runs[i].q;
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = batch.data + batch.tap_offset[k0 + k];
      float* d = dst + k * NR;
      for (int i = 0; i < count; ++i) {
        copy_floats(d, src + start[i], runs[i].len);
        d += runs[i].len;
      }
      std::fill(d, dst + (k + 1) * NR, 0.0f);
    }
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

// op(B) = col^T (N.PQ x CRS) read from a PaddedBatch, for grad_weight: a panel is kc output
// positions by NR taps; along each run of positions, every tap is one unclipped row of the
// batch, so blocks of 16 taps x 16 positions are AVX-512 transposes, the rest scalar.
struct PaddedColumnsT {
  const PaddedBatch& batch;
  void pack(int64_t k0, int64_t kc, int64_t j0, int64_t cols, float* dst) const {
    constexpr int64_t max_runs = 512;
    Run runs[max_runs];
    for (int64_t kk = 0; kk < kc;) {  // runs along the depth, in chunks that fit the buffer
      const int64_t span = std::min<int64_t>(kc - kk, max_runs);
      const int count = runs_of(batch.s, k0 + kk, span, runs);
      float* d = dst + kk * NR;
      for (int i = 0; i < count; ++i) {
        const Run& run = runs[i];
        const int64_t start = (run.n * batch.period + run.p) * batch.Wp + run.q;
        int64_t m_done = 0;
#if defined(__AVX512F__)
        m_done = run.len / 16 * 16;
        const int64_t full_cols = cols / 16 * 16;
        for (int64_t c0 = 0; c0 < full_cols; c0 += 16) {
          const float* row[16];
          for (int j = 0; j < 16; ++j) row[j] = batch.data + batch.tap_offset[j0 + c0 + j] + start;
          for (int64_t m = 0; m < m_done; m += 16) {
            const float* at[16];
            for (int j = 0; j < 16; ++j) at[j] = row[j] + m;
            transpose_16x16(at, d + m * NR + c0, NR);
          }
        }
        for (int64_t c = full_cols; c < NR; ++c) {
          const float* src = c < cols ? batch.data + batch.tap_offset[j0 + c] + start : nullptr;
          for (int64_t m = 0; m < m_done; ++m) d[m * NR + c] = src ? src[m] : 0.0f;
        }
#endif
        for (int64_t c = 0; c < NR; ++c) {
          const float* src = c < cols ? batch.data + batch.tap_offset[j0 + c] + start : nullptr;
          for (int64_t m = m_done; m < run.len; ++m) d[m * NR + c] = src ? src[m] : 0.0f;
        }
        d += run.len * NR;
      }
      kk += span;
    }
  }
};

// C = y (N, K, P, Q) addressed by the virtual columns of a PaddedBatch.
struct PaddedOutput {
  const Conv2dShape& s;
  float* y;
  std::vector<int64_t> offset;  // of each virtual column's (n, 0, p, q) in y, -1 if not stored

  PaddedOutput(const Conv2dShape& shape, const PaddedBatch& batch, float* out)
      : s(shape), y(out), offset(batch.virtual_cols) {
    int64_t* u = offset.data();
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t p = 0; p < batch.period; ++p)
        for (int64_t q = 0; q < batch.Wp; ++q)
          *u++ = p < s.P && q < s.Q ? (n * s.K * s.P + p) * s.Q + q : -1;
  }
  float* at(int64_t i, int64_t j) const {
    return offset[j] < 0 ? nullptr : y + offset[j] + i * s.P * s.Q;
  }
  int64_t ld() const { return s.P * s.Q; }
  float* direct(int64_t i, int64_t j0, int64_t cols) const {
    const int64_t first = offset[j0], last = offset[j0 + cols - 1];
    return first >= 0 && last == first + cols - 1 ? y + first + i * s.P * s.Q : nullptr;
  }
};

// grad_weight of a convolution that fits a PaddedBatch, as dot products along the virtual
// columns, where both operands are contiguous: dW[k, tap] = sum over u of dy'[k, u] *
// batch[tap_offset[tap] + u], with dy' = grad_y spread over the virtual columns (zero on the
// ones not stored). No packing or transposing (blocked::gemm_dot).
void grad_weight_dot(const Conv2dShape& s, const PaddedBatch& batch, const float* grad_y,
                     float* grad_weight) {
  const int64_t crs = s.C * s.R * s.S, pq = s.P * s.Q;
  const int64_t len = (batch.virtual_cols + kVecWidth - 1) / kVecWidth * kVecWidth;
  float* dy = scratch(kGradSlot, s.K * len);
#pragma omp parallel for schedule(static) num_threads(num_threads())
  for (int64_t k = 0; k < s.K; ++k) {  // every float written once: a copy or a zero
    float* row = dy + k * len;
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t p = 0; p < batch.period; ++p, row += batch.Wp) {
        if (p < s.P) std::memcpy(row, grad_y + (n * s.K + k) * pq + p * s.Q, sizeof(float) * s.Q);
        std::fill(row + (p < s.P ? s.Q : 0), row + batch.Wp, 0.0f);
      }
    std::fill(row, dy + (k + 1) * len, 0.0f);
  }
  blocked::gemm_dot(
      s.K, crs, len, [&](int64_t k) { return dy + k * len; },
      [&](int64_t tap) { return batch.data + batch.tap_offset[tap]; }, 1.0f, 0.0f,
      grad_weight, crs, num_threads());
}

// Adjoint of im2col for output positions [j0, j1) of one image (j = p * Q + q), added to x:
// x[c, ih, iw] += col[(c, r, t), j - j0] over all taps that read (ih, iw); rows of col are ld
// apart.
void col2im_add(const Conv2dShape& s, const float* col, int64_t ld, int64_t j0, int64_t j1,
                float* x) {
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t r = 0; r < s.R; ++r)
      for (int64_t t = 0; t < s.S; ++t) {
        const float* row = col + ((c * s.R + r) * s.S + t) * ld - j0;
        for (int64_t p = j0 / s.Q; p * s.Q < j1; ++p) {
          const int64_t ih = p * s.stride_h - s.pad_h + r;
          if (ih < 0 || ih >= s.H) continue;
          float* out = x + (c * s.H + ih) * s.W;
          const float* in = row + p * s.Q;
          const int64_t q_end = std::min(s.Q, j1 - p * s.Q);
          for (int64_t q = std::max<int64_t>(0, j0 - p * s.Q); q < q_end; ++q) {
            const int64_t iw = q * s.stride_w - s.pad_w + t;
            if (iw >= 0 && iw < s.W) out[iw] += in[q];
          }
        }
      }
}

// Forward convolution with fewer output channels (K <= kMaxFewChannels) than the GEMM's
// micro-tile has rows, straight from a PaddedBatch: each task is a block of virtual columns, all
// K rows of which stay in registers (K x 24/K vectors) while the taps stream past; no packing.
constexpr int64_t kMaxFewChannels = 4;

template <int K>
void few_channel_block(const PaddedBatch& batch, const blocked::MatrixA& weight, const float* bias,
                       const PaddedOutput& out, int64_t u0, int64_t crs) {
  constexpr int NVEC = std::min(8, 24 / K), WIDTH = NVEC * kVecWidth;
  static_assert(WIDTH <= kReadSlack, "the last block's loads must stay in the plane's slack");
  vfloat acc[K][NVEC] = {};
  for (int64_t tap = 0; tap < crs; ++tap) {
    const float* src = batch.data + batch.tap_offset[tap] + u0;
    vfloat b[NVEC];
#pragma GCC unroll 8
    for (int v = 0; v < NVEC; ++v) b[v] = vload(src + v * kVecWidth);
#pragma GCC unroll 4
    for (int i = 0; i < K; ++i) {
      const vfloat a = vbroadcast(weight.value(i, tap));
#pragma GCC unroll 8
      for (int v = 0; v < NVEC; ++v) acc[i][v] += a * b[v];
    }
  }
  alignas(64) float tile[K][WIDTH];
  for (int i = 0; i < K; ++i)
    for (int v = 0; v < NVEC; ++v) vstore(&tile[i][v * kVecWidth], acc[i][v]);
  const int64_t cols = std::min<int64_t>(WIDTH, batch.virtual_cols - u0);
  for (int64_t c = 0; c < cols; ++c) {
    float* dst = out.at(0, u0 + c);
    if (!dst)
      continue;
    for (int i = 0; i < K; ++i) dst[i * out.ld()] = tile[i][c] + (bias ? bias[i] : 0.0f);
  }
}

template <int K>
void few_channel_conv(const Conv2dShape& s, const PaddedBatch& batch,
                      const blocked::MatrixA& weight, const float* bias, float* y) {
  const PaddedOutput out{s, batch, y};
  constexpr int64_t width = std::min(8, 24 / K) * kVecWidth;
  const int64_t blocks = (batch.virtual_cols + width - 1) / width, crs = s.C * s.R * s.S;
#pragma omp parallel for schedule(static) num_threads(num_threads())
  for (int64_t blk = 0; blk < blocks; ++blk)
    few_channel_block<K>(batch, weight, bias, out, blk * width, crs);
}

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

bool direct_conv_pays_off(const Conv2dShape& s) {
  return PaddedBatch::fits(s) && s.K % kDirectGroup == 0 && s.K <= 64 && s.Q >= 8 &&
         s.C * s.R * s.S >= 256;
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

void direct_conv(const Conv2dShape& s, const PaddedBatch& batch, const float* weight,
                 const float* bias, float* y) {
  const int64_t crs = s.C * s.R * s.S;
  float* wt = scratch(kTransposedSlot, crs * s.K);  // wt[tap][k] = weight[k][tap]
  for (int64_t k = 0; k < s.K; ++k)
    for (int64_t tap = 0; tap < crs; ++tap) wt[tap * s.K + k] = weight[k * crs + tap];
#if defined(__AVX512F__)  // narrower vectors have 16 registers: too few to keep the inputs
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
// Input layers up to this many taps (C*R*S: 4 channels of 5x5) take the direct kernel on any
// image size; the dot products of grad_weight_dot are faster on more.
constexpr int64_t kMaxInputLayerTaps = 100;

bool direct_grad_weight_pays_off(const Conv2dShape& s) {
  return PaddedBatch::fits(s) && s.K % kDirectGroup == 0 && s.K <= 64 && s.Q >= 8 &&
         (s.P * s.Q <= 256 || s.C * s.R * s.S <= kMaxInputLayerTaps);
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
void transpose_output_rows(const Conv2dShape& s, const float* grad_y, int64_t k0, int64_t row0,
                           int64_t row1, float* dyt, double* bias_sums) {
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

void forward_gemm(const Conv2dShape& s, const float* x, const float* weight, const float* bias,
                  float* y) {
  const int64_t crs = s.C * s.R * s.S;
  const blocked::MatrixA w{weight, crs, false};
  if (PaddedBatch::fits(s)) {
    const PaddedBatch batch(s, x);
    if (direct_conv_pays_off(s)) return direct_conv(s, batch, weight, bias, y);
    if (PaddedBatch::dense(s)) {
      switch (s.K) {
        case 1: return few_channel_conv<1>(s, batch, w, bias, y);
        case 2: return few_channel_conv<2>(s, batch, w, bias, y);
        case 3: return few_channel_conv<3>(s, batch, w, bias, y);
        case 4: return few_channel_conv<4>(s, batch, w, bias, y);
      }
    }
    blocked::gemm(s.K, s.N * s.P * s.Q, crs, 1.0f, w, PaddedColumns{batch}, 0.0f,
                  BatchOutput{s, y}, bias, num_threads());
  } else {
    blocked::gemm(s.K, s.N * s.P * s.Q, crs, 1.0f, w, ImageColumns{s, x}, 0.0f,
                  BatchOutput{s, y}, bias, num_threads());
  }
}

// grad_x of a stride-1 convolution: the forward convolution of grad_y with the weights
// transposed and rotated by 180 degrees, weight'[c, k, r, t] = weight[k, c, R-1-r, S-1-t],
// padded by R-1-pad.
void grad_x_stride1(const Conv2dShape& s, const float* grad_y, const float* weight,
                    float* grad_x) {
  const int64_t rs = s.R * s.S;
  float* flipped = scratch(kWeightSlot, s.C * s.K * rs);
  constexpr int64_t kBlock = 16;  // square blocks of (c, k): both sides read and write runs
#pragma omp parallel for schedule(static) num_threads(num_threads())
  for (int64_t c0 = 0; c0 < s.C; c0 += kBlock)
    for (int64_t k0 = 0; k0 < s.K; k0 += kBlock)
      for (int64_t c = c0; c < std::min(s.C, c0 + kBlock); ++c)
        for (int64_t k = k0; k < std::min(s.K, k0 + kBlock); ++k)
          for (int64_t i = 0; i < rs; ++i)
            flipped[(c * s.K + k) * rs + rs - 1 - i] = weight[(k * s.C + c) * rs + i];
  const Conv2dShape adjoint{s.N, s.K, s.P, s.Q, s.C, s.R, s.S, 1, 1,
                            s.R - 1 - s.pad_h, s.S - 1 - s.pad_w, s.H, s.W};
  forward_gemm(adjoint, grad_y, flipped, nullptr, grad_x);
}

// grad_x for any geometry: dcol = W^T . dy over a chunk of images at a time, then col2im of
// each image; where one image's dcol alone is over the chunk size (a large kernel and a large
// padding: 3.6 GB for a 64x64 kernel padded by 500 on an 8x8 image), over chunks of one image's
// positions, so memory stays bounded whatever the geometry.
void grad_x_col2im(const Conv2dShape& s, const float* grad_y, const float* weight,
                   float* grad_x) {
  const int64_t crs = s.C * s.R * s.S, pq = s.P * s.Q;
  constexpr int64_t kChunkFloats = 1 << 22;  // 16 MB of col buffer at most, when images allow
  if (crs * pq > kChunkFloats) {
    const int64_t positions = std::max<int64_t>(kChunkFloats / crs, 1);
    std::vector<float> col(crs * positions);
    Conv2dShape one = s;
    one.N = 1;
    for (int64_t n = 0; n < s.N; ++n) {
      float* x = grad_x + n * s.C * s.H * s.W;
      std::memset(x, 0, sizeof(float) * s.C * s.H * s.W);
      for (int64_t j0 = 0; j0 < pq; j0 += positions) {
        const int64_t cols = std::min(positions, pq - j0);
        // OutputColumns reads column j of image 0 at dy + k * pq + j: offset by j0
        blocked::gemm(crs, cols, s.K, 1.0f, blocked::MatrixA{weight, crs, true},
                      OutputColumns{one, grad_y + n * s.K * pq + j0}, 0.0f,
                      blocked::MatrixC{col.data(), cols}, nullptr, num_threads());
        col2im_add(s, col.data(), cols, j0, j0 + cols, x);
      }
    }
    return;
  }
  const int64_t images = std::clamp<int64_t>(kChunkFloats / (crs * pq), 1, s.N);
  std::vector<float> col(crs * images * pq);
  for (int64_t n0 = 0; n0 < s.N; n0 += images) {
    Conv2dShape chunk = s;
    chunk.N = std::min(images, s.N - n0);
    const int64_t ld = chunk.N * pq;
    blocked::gemm(crs, ld, s.K, 1.0f, blocked::MatrixA{weight, crs, true},
                  OutputColumns{chunk, grad_y + n0 * s.K * pq}, 0.0f,
                  blocked::MatrixC{col.data(), ld}, nullptr, num_threads());
#pragma omp parallel for schedule(static) num_threads(num_threads())
    for (int64_t n = 0; n < chunk.N; ++n) {
      float* x = grad_x + (n0 + n) * s.C * s.H * s.W;
      std::memset(x, 0, sizeof(float) * s.C * s.H * s.W);
      col2im_add(s, col.data() + n * pq, ld, 0, pq, x);
    }
  }
}

// The flipped forward convolution wastes work where most of its taps read padding (a large
// kernel on a small output) or where few input channels leave its micro-tiles mostly empty.
bool flipped_conv_pays_off(const Conv2dShape& s) {
  return s.stride_h == 1 && s.stride_w == 1 && (s.C >= MR || s.C <= kMaxFewChannels) &&
         s.H * s.W <= 2 * s.P * s.Q;
}

// A kernel as large as the unpadded image (CIFAR-10's 4x4 and 1x1 layers) is a fully connected
// layer: col is x itself seen as N x CRS, so every product is one plain row-major sgemm.
bool whole_image(const Conv2dShape& s) {
  return s.pad_h == 0 && s.pad_w == 0 && s.R == s.H && s.S == s.W;
}

// Winograd where asked for and possible, or where it pays off unless direct is asked for.
bool use_winograd(const Conv2dShape& s, ConvAlgo algo, bool pays_off) {
  return algo == ConvAlgo::kWinograd ? winograd_applies(s) : algo == ConvAlgo::kAuto && pays_off;
}

}  // namespace

void conv2d_forward(const Conv2dShape& s, const float* x, const float* weight, const float* bias,
                    float* y, ConvAlgo algo) {
  if (s.N == 0 || s.K == 0) return;  // an empty result (the GEMMs' blocking divides by these)
  if (s.C == 0) {  // a sum over no input channels: the bias alone
    for (int64_t nk = 0; nk < s.N * s.K; ++nk)
      std::fill_n(y + nk * s.P * s.Q, s.P * s.Q, bias ? bias[nk % s.K] : 0.0f);
    return;
  }
  if (use_winograd(s, algo, winograd_pays_off_forward(s)))
    return winograd_forward(s, x, weight, bias, y);
  if (!whole_image(s)) return forward_gemm(s, x, weight, bias, y);
  const int64_t crs = s.C * s.R * s.S;  // y (N x K) = x (N x CRS) . W^T + bias
  sgemm(false, true, s.N, s.K, crs, 1.0f, x, crs, weight, crs, 0.0f, y, s.K);
  if (bias)
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t k = 0; k < s.K; ++k) y[n * s.K + k] += bias[k];
}

void conv2d_backward(const Conv2dShape& s, const float* grad_y, const float* x,
                     const float* weight, float* grad_x, float* grad_weight, float* grad_bias,
                     ConvAlgo algo) {
  const int64_t crs = s.C * s.R * s.S, pq = s.P * s.Q;
  if (s.N == 0) {  // an empty batch: zero gradients (the GEMMs below need a nonempty sum)
    if (grad_weight) std::fill(grad_weight, grad_weight + s.K * crs, 0.0f);
    if (grad_bias) std::fill(grad_bias, grad_bias + s.K, 0.0f);
    return;
  }
  // The direct grad_weight sums grad_bias too (the separate pass over grad_y below otherwise).
  const bool direct_weight = grad_weight && s.C > 0 && direct_grad_weight_pays_off(s);
  if (s.K == 0 || s.C == 0) {  // nothing flows between x and y: grad_x is zero, grad_weight empty
    if (grad_x) std::fill_n(grad_x, s.N * s.C * s.H * s.W, 0.0f);
  } else if (whole_image(s)) {
    if (grad_x)  // N x CRS = dy (N x K) . W
      sgemm(false, false, s.N, crs, s.K, 1.0f, grad_y, s.K, weight, crs, 0.0f, grad_x, crs);
    if (grad_weight)  // K x CRS = dy^T . x
      sgemm(true, false, s.K, crs, s.N, 1.0f, grad_y, s.K, x, crs, 0.0f, grad_weight, crs);
  } else {
    if (grad_x) {
      if (use_winograd(s, algo, winograd_pays_off_grad_x(s)))
        winograd_grad_x(s, grad_y, weight, grad_x);
      else if (flipped_conv_pays_off(s))
        grad_x_stride1(s, grad_y, weight, grad_x);
      else
        grad_x_col2im(s, grad_y, weight, grad_x);
    }
    // The dot form pays where few output channels leave the packed GEMM's transposing packs
    // poorly amortised; it needs long enough rows to fill its vectors.
    if (direct_weight)
      direct_grad_weight(s, PaddedBatch(s, x), grad_y, grad_weight, grad_bias);
    else if (grad_weight && s.K <= 64 && PaddedBatch::fits(s) && PaddedBatch::dense(s) &&
             s.N * (s.H + s.pad_h) * (s.W + s.pad_w) >= 1024)
      grad_weight_dot(s, PaddedBatch(s, x), grad_y, grad_weight);
    else if (grad_weight && PaddedBatch::fits(s))
      blocked::gemm(s.K, crs, s.N * pq, 1.0f, OutputRows{s, grad_y},
                    PaddedColumnsT{PaddedBatch(s, x)}, 0.0f, blocked::MatrixC{grad_weight, crs},
                    nullptr, num_threads());
    else if (grad_weight)
      blocked::gemm(s.K, crs, s.N * pq, 1.0f, OutputRows{s, grad_y}, ImageColumnsT{s, x}, 0.0f,
                    blocked::MatrixC{grad_weight, crs}, nullptr, num_threads());
  }
  if (grad_bias && !direct_weight) {
#pragma omp parallel for schedule(static) num_threads(num_threads())
    for (int64_t k = 0; k < s.K; ++k) {
      // 16 interleaved double sums (one long chain would wait on every add), combined in order.
      constexpr int kLanes = 16;
      double lanes[kLanes] = {};
      for (int64_t n = 0; n < s.N; ++n) {
        const float* g = grad_y + (n * s.K + k) * pq;
        int64_t i = 0;
        for (; i + kLanes <= pq; i += kLanes)
          for (int l = 0; l < kLanes; ++l) lanes[l] += g[i + l];
        for (; i < pq; ++i) lanes[i % kLanes] += g[i];
      }
      double sum = 0.0;
      for (double lane : lanes) sum += lane;
      grad_bias[k] = static_cast<float>(sum);
    }
  }
}

}  // namespace ds::cpu

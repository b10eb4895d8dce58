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
// lanes, and input layers of 64-100 taps, with output positions in the lanes; grad_weight of
// small images and of input layers with 32 or 64 output channels likewise. A kernel covering the
// whole unpadded image is a fully connected layer: plain sgemm calls. Every output element is
// summed in a fixed order whatever the thread count (grad_bias: in double per channel, from
// float row sums where the direct grad_weight makes it), so results are bitwise identical from
// run to run. The direct kernels are in conv_direct.cpp, what they share with this file
// (PaddedBatch, scratch buffers) in conv_padded.h.
#include "conv.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "conv_padded.h"
#include "gemm.h"
#include "gemm_blocked.h"
#include "threads.h"
#include "winograd.h"

namespace ds::cpu {

float* conv_detail::scratch(ScratchSlot slot, int64_t n) {
  static thread_local blocked::Scratch buffers[kSlots];
  return buffers[slot].get(n);
}

namespace {

using namespace conv_detail;
using blocked::MR;
using blocked::NR;

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
  // The direct grad_weight sums grad_bias too (the separate pass over grad_y below otherwise);
  // the whole-image branch below leaves grad_bias to that pass, so it must not count as direct.
  const bool direct_weight =
      grad_weight && s.C > 0 && !whole_image(s) && direct_grad_weight_pays_off(s);
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

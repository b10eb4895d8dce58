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
// run to run. The GEMMs' operand views are in conv_operands.h, the direct kernels in
// conv_direct.cpp, what they share with this file (PaddedBatch, scratch buffers) in
// conv_padded.h.
#include "conv.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "conv_operands.h"
#include "conv_padded.h"
#include "gemm.h"
#include "gemm_blocked.h"
#include "gemm_dot.h"
#include "threads.h"
#include "winograd.h"

namespace ds::cpu {

float* conv_detail::scratch(ScratchSlot slot, int64_t n) {
  static thread_local blocked::Scratch buffers[kSlots];
  return buffers[slot].get(n);
}

namespace {

using namespace conv_detail;

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
      direct_grad_weight(s, x, grad_y, grad_weight, grad_bias);
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

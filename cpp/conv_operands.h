// The operands of conv.cpp's implicit GEMMs, as the blocked GEMM (gemm_blocked.h) takes them:
// views that pack its panels straight from the images (ImageColumns, ImageColumnsT), from a
// PaddedBatch (PaddedColumns, PaddedColumnsT) or from grad_y (OutputRows, OutputColumns), and
// the outputs its tiles are stored into (BatchOutput, PaddedOutput). No im2col matrix is ever
// stored: a panel of col is gathered from runs of output positions along image rows.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "conv_padded.h"
#include "gemm_blocked.h"
#include "shapes.h"

namespace ds::cpu::conv_detail {

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

// fn(n, j, len, at) for the pieces of columns [j0, j0 + count) of dy viewed as K x N.PQ that lie
// in one image: positions [j, j + len) of image n, at offset `at` of the range. (A row of dy is
// contiguous only within an image: the next image's row of the same channel is K.PQ further.)
template <class Fn>
inline void for_each_image_piece(int64_t pq, int64_t j0, int64_t count, Fn fn) {
  for (int64_t at = 0, n = j0 / pq, j = j0 % pq; at < count; j = 0, ++n) {
    const int64_t len = std::min(count - at, pq - j);
    fn(n, j, len, at);
    at += len;
  }
}

// op(A) = dy viewed as K x N.PQ, for grad_weight: each piece is a block of rows (channels)
// pq apart, transposed into the panel.
struct OutputRows {
  const Conv2dShape& s;
  const float* dy;
  void pack(int64_t i0, int64_t rows, int64_t k0, int64_t kc, float* dst) const {
    const int64_t pq = s.P * s.Q;
    for_each_image_piece(pq, k0, kc, [&](int64_t n, int64_t j, int64_t len, int64_t k) {
      const float* src = dy + (n * s.K + i0) * pq + j;
      int64_t done = 0;
#if defined(__AVX512F__)
      if (rows == MR && MR == 8)
        done = blocked::MatrixA::transpose_rows_8x16(src, pq, len, dst + k * MR);
#endif
      for (int64_t r = 0; r < MR; ++r)
        for (int64_t m = done; m < len; ++m)
          dst[(k + m) * MR + r] = r < rows ? src[r * pq + m] : 0.0f;
    });
  }
};

// op(B) = dy viewed as K x N.PQ, for the col2im form of grad_x: each piece of a row is copied.
struct OutputColumns {
  const Conv2dShape& s;
  const float* dy;
  void pack(int64_t k0, int64_t kc, int64_t j0, int64_t cols, float* dst) const {
    const int64_t pq = s.P * s.Q;
    for (int64_t k = 0; k < kc; ++k) {
      float* d = dst + k * NR;
      for_each_image_piece(pq, j0, cols, [&](int64_t n, int64_t j, int64_t len, int64_t at) {
        std::memcpy(d + at, dy + (n * s.K + k0 + k) * pq + j, sizeof(float) * len);
      });
      std::fill(d + cols, d + NR, 0.0f);
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

}  // namespace ds::cpu::conv_detail

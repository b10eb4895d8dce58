// SGEMM for a shallow sum (K <= kMaxDepth) over few rows of row-major A (M x K) and many columns
// of row-major B (K x N): C = alpha A B + beta C, by the tiles of gemm_small.h (up to 8 rows x 3
// vectors of C in registers, A's elements broadcast) on column panels of B (K x kPanel), every
// row tile of a panel before the next panel.
//
// What limits such a product is memory, not arithmetic (32x65536x75: 20 MB of B and 8 MB of C for
// 0.16 G multiply-adds, ~2.7 ms of FMAs on a Zen 4 core), and how B's rows lie: they are 4 N bytes
// apart, so for N a multiple of 1024 a panel's K rows all fall in the same few sets of the 8-way
// L1 and L2, and evict each other before the next row tile comes back to them. Hence, when B and C
// come from memory (below):
// - a panel is copied into one of two small buffers, which stay in L1, while the previous panel's
//   tiles run, a row every few steps of their sums, each row prefetched kCopyAhead rows before it
//   is copied: the reads from memory overlap the FMAs, and only a few rows of B are in the caches
//   at a time;
// - a large C (beta == 0) is written with streaming stores, which do not read each line of C in
//   first; the panels are then shifted so that C's rows are written in whole aligned vectors.
// Zen 4, 1 thread, 32x65536x75 (B and C at NumPy's usual 16 bytes past a 64-byte line): B's rows
// read in place 7.0 ms (5.2 with B aligned); panels copied up front 5.1; with prefetches, 4.2
// with streaming stores; copied during the previous panel, 3.2 (5.3 without streaming stores);
// OpenBLAS 6.6. Bench ratios, NumPy / ours: 1 thread 0.86 -> 1.86, 2 threads (wall) 0.8 -> 1.75.
//
// Threads take contiguous ranges of panels; every element is summed in the same order (k = 0,
// 1, ...) whichever thread, panel or tile computes it, so results do not depend on the count.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "gemm_small.h"

namespace ds::small_gemm {

constexpr int64_t kMaxDepth = 80;  // rows of a panel buffer
// Rows of B prefetched ahead of the copy (a row every few steps of a tile's sum), and ahead of a
// tile that reads them in place (a row a step). 1 thread, 32x65536x75: 4, 8 and 16 rows ahead of
// the copy within 3%; 8x65536x64: 4, 8, 16 and 32 rows ahead of the reads 1.8, 1.5, 1.2, 1.5 ms.
constexpr int64_t kCopyAhead = 8, kReadAhead = 16;
// Streaming stores for outputs of at least this many floats (4 MB; 1 thread, 32x32736x75: 0.82x
// the time with cached stores; at 2 MB, where C stays in cache between calls, 0.97x).
constexpr int64_t kStreamFloats = int64_t{1} << 20;

// B and C too large to stay in L3 between calls (10 MB together, a third of Zen 4's L3) come from
// memory: then several row tiles copy the panels, and a single one (which uses each row of B
// once, so a copy would not pay) reads B's rows in place, prefetched ahead. Else the rows come
// from L3, aliased or not, and are read in place without prefetches, which only cost
// instructions. 1 thread, copied / in place: 0.61-0.77 for 32 x 24000 - 49152 x 75 and
// 64x24000x64 (10-19 MB); but 1.1-1.3 for 32x20000x75 (8.6 MB), 32 x 8192 - 16384 x 75,
// 16x16384x64, 16x30000x40 and 64x8192x80 (3.8-7 MB), 1.03-1.08 below 2 MB. Prefetched / not:
// 0.65-0.89 for 3 and 8 x 60000x64, 8x65536x64, 3x65536x75 and 8x40000x75 (12-17 MB), 1.02-1.09
// for 5-7 x 45000 - 60000 x 40 - 50 (10-11 MB); 1.1-1.5 for 3-8 x 30001x50 and 4x65536x32 (6-9 MB).
// Nor is a panel copied that is no deeper than the L1 is associative: its rows stay in L1 where
// they lie (1.2-1.4 for 64x70001x2 and x4 copied, 0.96 for x8, 0.93 for x16). On machines with
// other cache sizes these thresholds and kStreamFloats only cost speed: every path computes the
// same sums.
constexpr int64_t kFromMemoryFloats = int64_t{10} << 18, kInPlaceDepth = 8;

// Copies rows [row, end) of a panel of B (columns [j, j + width)) into its buffer dst (nothing
// where dst is null), a row every `every` steps of the tile that it runs beside, and prefetches
// the row `ahead` further on in that order (in the panel after, `after` columns on, if that one is
// this thread's too).
struct PanelCopy {
  const float* b;
  int64_t ldb, K, j, width, after;  // after < 0: no panel after
  float* dst;
  int64_t ahead, row, end, every, due;

  void operator()(int64_t k) {
    if (k != due || row >= end) return;
    if (dst) {
      const float* src = b + row * ldb + j;
      float* d = dst + row * kPanel;
      for (int v = 0; v < kMaxVectors; ++v) {
        const int64_t lanes = std::min<int64_t>(kVecWidth, width - v * kVecWidth);
        if (lanes == kVecWidth)
          vstore(d + v * kVecWidth, vload(src + v * kVecWidth));
        else if (lanes > 0)
          store_first(d + v * kVecWidth, load_first(src + v * kVecWidth, (int)lanes), (int)lanes);
      }
    }
    const int64_t later = row + ahead;
    const float* next = later < K                    ? b + later * ldb + j
                        : after >= 0 && later < 2 * K ? b + (later - K) * ldb + j + after
                                                      : nullptr;
    if (next) {  // the lines of a panel's row, wherever it starts (a prefetch never faults)
      for (int64_t x = 0; x < kPanel; x += kVecWidth) __builtin_prefetch(next + x);
      __builtin_prefetch(next + kPanel - 1);
    }
    ++row;
    due += every;
  }
};

// K <= kMaxDepth (the rows of the panel buffers; sgemm sends only such sums here).
inline void gemm_shallow(int64_t M, int64_t N, int64_t K, float alpha, const float* a,
                         int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                         int64_t ldc, int threads) {
  const auto address = reinterpret_cast<uintptr_t>(c);
  const bool stream = beta == 0.0f && M * N >= kStreamFloats && ldc % kVecWidth == 0 &&
                      address % sizeof(float) == 0;
  // Panel p covers columns [first + p kPanel, first + (p + 1) kPanel), clipped to [0, N): with
  // streaming stores the first one ends where C's rows reach a whole vector.
  const int64_t lead =
      stream ? (kVecWidth - address % sizeof(vfloat) / sizeof(float)) % kVecWidth : 0;
  const int64_t first = lead > 0 ? lead - kPanel : 0;
  const int64_t panels = (N - first + kPanel - 1) / kPanel;
  const auto start = [&](int64_t p) { return std::clamp<int64_t>(first + p * kPanel, 0, N); };
  const int64_t row_tiles = (M + kMaxRows - 1) / kMaxRows;
  const bool from_memory = (K + M) * N >= kFromMemoryFloats;
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    alignas(64) float buffers[2][kMaxDepth * kPanel];
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t p_lo = panels * t / nt, p_hi = panels * (t + 1) / nt;
    const bool copied = from_memory && row_tiles > 1 && K > kInPlaceDepth;
    if (p_lo < p_hi && copied) {
      PanelCopy copy{b, ldb, K, start(p_lo), start(p_lo + 1) - start(p_lo), -1,
                     buffers[p_lo & 1], kCopyAhead, 0, K, 1, 0};
      for (int64_t k = 0; k < K; ++k) copy(k);
    }
    for (int64_t p = p_lo; p < p_hi; ++p) {
      const int64_t j0 = start(p), width = start(p + 1) - j0;
      const int vectors = static_cast<int>((width + kVecWidth - 1) / kVecWidth);
      const int last = static_cast<int>(width - (vectors - 1) * kVecWidth);
      if (!copied) {  // B's rows read where they lie, prefetched ahead of the first row tile
        PanelCopy ahead{b, ldb, K, j0, width, p + 1 < p_hi ? start(p + 1) - j0 : -1, nullptr,
                        kReadAhead, 0, K, 1, 0};
        NoSideWork none;
        for (int64_t rt = 0; rt < row_tiles; ++rt) {
          const int64_t r0 = M * rt / row_tiles, r1 = M * (rt + 1) / row_tiles;
          const int rows = static_cast<int>(r1 - r0);
          if (from_memory && rt == 0)
            tile_any(rows, vectors, K, a, lda, 1, b + j0, ldb, last, alpha, beta, c + j0, ldc, 1,
                     stream, ahead);
          else
            tile_any(rows, vectors, K, a + r0 * lda, lda, 1, b + j0, ldb, last, alpha, beta,
                     c + r0 * ldc + j0, ldc, 1, stream, none);
        }
        continue;
      }
      const bool more = p + 1 < p_hi;  // the next panel is this thread's: copy it meanwhile
      PanelCopy copy{b, ldb, K, start(p + 1), start(p + 2) - start(p + 1),
                     p + 2 < p_hi ? start(p + 2) - start(p + 1) : -1, buffers[(p + 1) & 1],
                     kCopyAhead, 0, 0, 1, 0};
      for (int64_t rt = 0; rt < row_tiles; ++rt) {
        const int64_t r0 = M * rt / row_tiles, r1 = M * (rt + 1) / row_tiles;
        copy.row = more ? K * rt / row_tiles : 0;
        copy.end = more ? K * (rt + 1) / row_tiles : 0;
        copy.every = copy.end > copy.row ? K / (copy.end - copy.row) : 1;
        copy.due = 0;
        tile_any(static_cast<int>(r1 - r0), vectors, K, a + r0 * lda, lda, 1, buffers[p & 1],
                 kPanel, last, alpha, beta, c + r0 * ldc + j0, ldc, 1, stream, copy);
      }
    }
    if (stream) _mm_sfence();  // streaming stores are not ordered: finish them before returning
  }
}

}  // namespace ds::small_gemm

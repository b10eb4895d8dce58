// The blocked SGEMM driver, generic over where op(A) and op(B) come from and where C goes, so
// that convolutions can pack their im2col panels straight from the image (implicit GEMM) and write
// a batch of images' outputs in NCHW without an intermediate matrix.
//
// C (M x N) = alpha * op(A) (M x K) * op(B) (K x N) + beta * C (+ a per-row bias).
//
// Each thread owns a slice of C (a range of columns or of rows) and runs the serial algorithm on
// it. Loops, outermost first (BLIS/GotoBLAS order): jc over NC-wide column blocks; pc over
// KC-deep slices of K, with the KC x NC block of op(B) packed into NR-wide panels (in L3); ic
// over MC-tall row blocks, with the MC x KC block of op(A) packed into MR-tall panels (in L2);
// then the register-blocked micro-kernel on every (MR x NR) tile: one B panel stays in L1/L2
// while the A panels stream past it, and the MR x NR accumulators stay in registers. Packing
// pads edges with zeros, so the micro-kernel never branches on size; partial tiles and tiles
// whose columns are not contiguous in C go through a small buffer.
//
// Every element of C is summed by one thread in the same fixed order whatever the partition, so
// results are bitwise identical from run to run and across thread counts.
//
// Here: the cache blocking, the packing buffers, the micro-kernel and its tiles, the serial
// algorithm (gemm_part) and the threaded driver (gemm), with the streaming stores of large
// shallow outputs. The register tile (MR x NR) and the plain-matrix operands (MatrixA, MatrixB,
// MatrixC) are in gemm_operands.h; the dot-product kernel for long sums in gemm_dot.h.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>

#include "gemm_operands.h"
#include "simd.h"

namespace ds {
namespace blocked {

// Deep K slices (fewer passes over C): the MC x KC block of A takes 768 KB of the 1 MB L2, the
// KC x NC block of B 9 MB of L3.
constexpr int64_t KC = 768;
constexpr int64_t MC = MR * 32;
constexpr int64_t NC = NR * 64;

// A growable 64-byte-aligned scratch buffer that lives as long as its (thread_local) owner, so
// that repeated calls do not allocate.
class Scratch {
 public:
  ~Scratch() { std::free(data_); }
  // Throws std::bad_alloc (a MemoryError in Python) rather than return null; a caller inside an
  // OpenMP region must catch it there (an exception leaving the region is std::terminate).
  float* get(int64_t n) {
    if (n > size_) {
      std::free(data_);
      data_ = nullptr;
      size_ = 0;
      if (n < 0 || n > (int64_t{1} << 60) / 4) throw std::bad_alloc();
      data_ = static_cast<float*>(std::aligned_alloc(64, ((size_t)n * 4 + 63) / 64 * 64));
      if (!data_) throw std::bad_alloc();
      size_ = n;
    }
    return data_;
  }

 private:
  float* data_ = nullptr;
  int64_t size_ = 0;
};

// acc (MR x NVU vectors) = sum over k of a[k, :]^T b[k, :NVU*kVecWidth], stored to c (row
// stride ldc) as alpha * acc + beta * c + bias[row]; beta == 0 never reads c, bias may be null.
// NVU < NV serves a last panel of at most NVU vectors: its zero padding is not multiplied.
// With Stream (beta == 0; c and ldc whole vectors), c is written around the caches.
template <int NVU, bool Stream = false>
inline void micro_kernel(int64_t kc, const float* __restrict a, const float* __restrict b,
                         float alpha, float beta, const float* bias, float* c, int64_t ldc) {
  vfloat acc[MR][NVU];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NVU; ++v) acc[r][v] = vfloat{};
  if (beta != 0.0f)  // C comes from L3 or memory: fetch it while the sums run
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < NVU; ++v) __builtin_prefetch(c + r * ldc + v * kVecWidth, 1);
  for (int64_t k = 0; k < kc; ++k) {
    vfloat bv[NVU];
#pragma GCC unroll 4
    for (int v = 0; v < NVU; ++v) bv[v] = vload(b + k * NR + v * kVecWidth);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const vfloat ar = vbroadcast(a[k * MR + r]);
#pragma GCC unroll 4
      for (int v = 0; v < NVU; ++v) acc[r][v] += ar * bv[v];
    }
  }
  const vfloat va = vbroadcast(alpha), vb = vbroadcast(beta);
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    float* cr = c + r * ldc;
    const vfloat vbias = vbroadcast(bias ? bias[r] : 0.0f);
#pragma GCC unroll 4
    for (int v = 0; v < NVU; ++v) {
      vfloat out = va * acc[r][v] + vbias;
      if (beta != 0.0f) out += vb * vload(cr + v * kVecWidth);
      if (Stream)
        store_streaming(cr + v * kVecWidth, out);
      else
        vstore(cr + v * kVecWidth, out);
    }
  }
}

// One (rows x cols) tile of C at (i0, j0), by the micro-kernel of NVU vectors: straight into C
// when it is a full tile with adjacent columns (with `stream`, by streaming stores where its rows
// start on whole vectors), else through a buffer, column by column.
template <int NVU, typename CDst>
inline void tile_of(int64_t kc, const float* a, const float* b, float alpha, float beta,
                    const float* bias, const CDst& C, int64_t i0, int64_t j0, int64_t rows,
                    int64_t cols, bool stream) {
  float* direct = rows == MR && cols == NVU * kVecWidth ? C.direct(i0, j0, cols) : nullptr;
  if (direct) {
    const float* row_bias = bias ? bias + i0 : nullptr;
    if (stream && reinterpret_cast<uintptr_t>(direct) % sizeof(vfloat) == 0 &&
        C.ld() % kVecWidth == 0)
      micro_kernel<NVU, true>(kc, a, b, alpha, beta, row_bias, direct, C.ld());
    else
      micro_kernel<NVU>(kc, a, b, alpha, beta, row_bias, direct, C.ld());
    return;
  }
  alignas(64) float buf[MR * NR];
  micro_kernel<NVU>(kc, a, b, alpha, 0.0f, nullptr, buf, NR);
  const int64_t ld = C.ld();
  for (int64_t c = 0; c < cols;) {  // runs of columns adjacent in memory
    float* dst = C.at(i0, j0 + c);
    if (!dst) {
      ++c;
      continue;
    }
    int64_t len = 1;
    while (c + len < cols && C.at(i0, j0 + c + len) == dst + len) ++len;
    for (int64_t r = 0; r < rows; ++r) {
      const float* src = buf + r * NR + c;
      float* d = dst + r * ld;
      const float add = bias ? bias[i0 + r] : 0.0f;
      if (beta == 0.0f) {
        for (int64_t m = 0; m < len; ++m) d[m] = src[m] + add;
      } else {
        for (int64_t m = 0; m < len; ++m) d[m] = src[m] + beta * d[m] + add;
      }
    }
    c += len;
  }
}

// A tile of at most NR columns, by the narrowest micro-kernel that covers them (a tile's width
// depends only on N and the panel it is in, so the summation order is the same in any partition).
template <typename CDst>
inline void tile(int64_t kc, const float* a, const float* b, float alpha, float beta,
                 const float* bias, const CDst& C, int64_t i0, int64_t j0, int64_t rows,
                 int64_t cols, bool stream = false) {
  const int64_t vectors = (cols + kVecWidth - 1) / kVecWidth;
  if (vectors == 1)
    tile_of<1>(kc, a, b, alpha, beta, bias, C, i0, j0, rows, cols, stream);
  else if (vectors == 2)
    tile_of<2>(kc, a, b, alpha, beta, bias, C, i0, j0, rows, cols, stream);
  else
    tile_of<NV>(kc, a, b, alpha, beta, bias, C, i0, j0, rows, cols, stream);
}

inline Scratch& packed_b_scratch() {
  static thread_local Scratch s;
  return s;
}
inline Scratch& packed_a_scratch() {
  static thread_local Scratch s;
  return s;
}

// Even split of [0, n) into `parts` contiguous ranges; returns range `i`.
inline void split_range(int64_t n, int parts, int i, int64_t& lo, int64_t& hi) {
  lo = n * i / parts;
  hi = n * (i + 1) / parts;
}

// Depth of the K slices for an M-row product: equal slices of at most KC (a thin last slice
// would pay the C updates for little work), or deeper for few rows, as long as their A block
// stays a quarter of L2 (64x16384x800: one slice instead of two passes over C).
inline int64_t depth_slice(int64_t M, int64_t K) {
  const int64_t rows = std::min(MC, (M + MR - 1) / MR * MR);
  const int64_t most = std::max(KC, std::min<int64_t>(2048, (int64_t{1} << 16) / rows));
  const int64_t slices = (K + most - 1) / most;
  return (K + slices - 1) / slices;
}

// The serial blocked algorithm on rows [i_lo, i_hi) and columns [j_lo, j_hi) of C, in K slices
// of kc_max; with `upper`, only the tiles that reach C's upper triangle (j >= i). B panels are
// packed a group at a time, the group used by every row block before the next is packed. When
// the rows are one MC block nothing else reuses a panel, so a group is only as large as keeps it
// in L2 (512 KB; 64x16384x800: 3 panels, where a whole NC block would make a round trip through
// L3), and packing a group back to back keeps the memory reads overlapped (a panel at a time,
// 32x65536x75 is 2x slower). With `stream` (one K slice, beta == 0), full tiles are written
// around the caches.
template <typename ASrc, typename BSrc, typename CDst>
void gemm_part(int64_t i_lo, int64_t i_hi, int64_t j_lo, int64_t j_hi, int64_t K, int64_t kc_max,
               float alpha, const ASrc& A, const BSrc& B, float beta, const CDst& C,
               const float* bias, bool upper = false, bool stream = false) {
  if (i_lo >= i_hi || j_lo >= j_hi) return;
  constexpr int64_t kGroupFloats = int64_t{1} << 17;
  const int64_t block_panels = std::min(NC, j_hi - j_lo + NR - 1) / NR;
  const int64_t group = i_hi - i_lo <= MC
                            ? std::max<int64_t>(1, std::min(block_panels, kGroupFloats / (kc_max * NR)))
                            : block_panels;
  float* packed_b = packed_b_scratch().get(kc_max * group * NR);
  float* packed_a = packed_a_scratch().get(kc_max * std::min(MC, (i_hi - i_lo + MR - 1) / MR * MR));
  for (int64_t j0 = j_lo; j0 < j_hi; j0 += NC) {
    const int64_t nc = std::min(NC, j_hi - j0), panels = (nc + NR - 1) / NR;
    const int64_t i_end = upper ? std::min(i_hi, j0 + nc) : i_hi;
    for (int64_t k0 = 0; k0 < K; k0 += kc_max) {
      const int64_t kc = std::min(kc_max, K - k0);
      const float beta_here = k0 == 0 ? beta : 1.0f;
      const float* bias_here = k0 == 0 ? bias : nullptr;
      for (int64_t p0 = 0; p0 < panels; p0 += group) {
        const int64_t p1 = std::min(panels, p0 + group);
        for (int64_t p = p0; p < p1; ++p)
          B.pack(k0, kc, j0 + p * NR, std::min<int64_t>(NR, nc - p * NR),
                 packed_b + (p - p0) * NR * kc);
        for (int64_t i0 = i_lo; i0 < i_end; i0 += MC) {
          const int64_t mc = std::min(MC, i_end - i0), tiles = (mc + MR - 1) / MR;
          if (p0 == 0)  // groups of fewer panels come with a single row block: packed once
            for (int64_t t = 0; t < tiles; ++t)
              A.pack(i0 + t * MR, std::min<int64_t>(MR, mc - t * MR), k0, kc,
                     packed_a + t * MR * kc);
          for (int64_t p = p0; p < p1; ++p) {
            const int64_t cols = std::min<int64_t>(NR, nc - p * NR);
            for (int64_t t = 0; t < tiles; ++t) {
              if (upper && j0 + p * NR + cols <= i0 + t * MR) continue;  // below the diagonal
              tile(kc, packed_a + t * MR * kc, packed_b + (p - p0) * NR * kc, alpha, beta_here,
                   bias_here, C, i0 + t * MR, j0 + p * NR, std::min<int64_t>(MR, mc - t * MR),
                   cols, stream);
            }
          }
        }
      }
    }
  }
  if (stream) _mm_sfence();  // streaming stores are not ordered: finish them before returning
}

// Streaming stores pay where the sums are shallow and C is far larger than this core's share of
// the caches: the tiles are then bound by writing C, and a cached store first reads each line
// in (conv1_1's forward pass, 64 x 65536 x 27, 16 MB of C: its 2-thread scaling is bound by it).
// 4 MB of C, as in gemm_shallow.h (tuned on a Zen 4 with 32 MB of L3); with other cache sizes
// only the speed depends on it. A depth of at most 80 is a single K slice (KC or more),
// so no later slice reads the streamed C back.
constexpr int64_t kStreamMaxDepth = 80, kStreamFloats = int64_t{1} << 20;

// op(B) and C seen with `shift` unstored leading columns, so that panels, which start every NR
// columns, start where C's rows reach a whole vector: streaming stores need aligned tiles. Only
// the first panel (j0 == 0; the others start at NR or more, past the shift) holds shifted-in
// columns, zeros of B never stored to C.
template <typename BSrc>
struct ShiftedB {
  const BSrc& B;
  int64_t shift;
  void pack(int64_t k0, int64_t kc, int64_t j0, int64_t cols, float* dst) const {
    if (j0 > 0 || shift == 0) return B.pack(k0, kc, j0 - shift, cols, dst);
    B.pack(k0, kc, 0, cols - shift, dst);
    for (int64_t k = 0; k < kc; ++k) {  // the padding B.pack put past its columns moves out
      float* d = dst + k * NR;
      std::memmove(d + shift, d, sizeof(float) * (NR - shift));
      std::fill_n(d, shift, 0.0f);
    }
  }
};
template <typename CDst>
struct ShiftedC {
  const CDst& C;
  int64_t shift;
  float* at(int64_t i, int64_t j) const { return j < shift ? nullptr : C.at(i, j - shift); }
  int64_t ld() const { return C.ld(); }
  float* direct(int64_t i, int64_t j0, int64_t cols) const {
    return j0 < shift ? nullptr : C.direct(i, j0 - shift, cols);
  }
};

// C = alpha * op(A) op(B) + beta * C, plus bias[i] on row i when bias is not null. K must be > 0.
// Threads take disjoint slices of C, by columns or by rows, whichever costs the busiest thread
// less: its share of the multiply-adds plus the floats it packs, and run the serial
// algorithm on them independently, with no barriers: a descheduled thread on a busy machine
// delays only its own slice. With `upper` (M == N), only the tiles that reach the upper triangle
// are computed (the caller mirrors them); threads then take column slices of equal area.
// A shallow product with a large C (beta == 0) streams its stores, its columns shifted so that
// tiles start on whole vectors of C; a tile's sums do not depend on where its panel starts, and
// alpha == 1 makes the buffered edge tiles round as the direct ones do.
template <typename ASrc, typename BSrc, typename CDst>
void gemm(int64_t M, int64_t N, int64_t K, float alpha, const ASrc& A, const BSrc& B_in,
          float beta, const CDst& C_in, const float* bias, int threads, bool upper = false) {
  if (M <= 0 || N <= 0) return;
  const float* origin = C_in.at(0, 0);
  const bool stream = beta == 0.0f && alpha == 1.0f && !upper && K <= kStreamMaxDepth &&
                      M * N >= kStreamFloats && C_in.ld() % kVecWidth == 0 && origin &&
                      reinterpret_cast<uintptr_t>(origin) % sizeof(float) == 0;
  const int64_t shift =
      stream ? reinterpret_cast<uintptr_t>(origin) % sizeof(vfloat) / sizeof(float) : 0;
  const ShiftedB<BSrc> B{B_in, shift};
  const ShiftedC<CDst> C{C_in, shift};
  N += shift;
  const int64_t m_tiles = (M + MR - 1) / MR, panels = (N + NR - 1) / NR;
  threads = (int)std::max<int64_t>(1, std::min<int64_t>(threads, std::max(m_tiles, panels)));
  if (upper) threads = (int)std::min<int64_t>(threads, panels);
  const int64_t kc = depth_slice(M, K);  // of the whole product: the same sums in any partition
  if (threads == 1)
    return gemm_part(0, M, 0, N, K, kc, alpha, A, B, beta, C, bias, upper, stream);
  // Fraction of the ideal even share that the busiest thread gets, splitting by columns or rows.
  const auto balance = [threads](int64_t units, int64_t unit, int64_t total) {
    return (double)total / (threads * std::min(total, (units + threads - 1) / threads * unit));
  };
  const double by_cols = balance(panels, NR, N), by_rows = balance(m_tiles, MR, M);
  // Splitting by columns, every thread packs all of op(A) and its part of op(B); by rows, the
  // reverse. A packed float costs about kPackCost multiply-adds (one read from where the operand
  // lies and one write, against 16 multiply-adds per cycle). With even shares this prefers the
  // split that copies the smaller operand; cifar-cnn's 4x4 grad_weight (64 x 1024 x 100) split
  // its 8 row tiles evenly but packed all of B (100 x 1024) twice: 1.6x at 2 threads.
  constexpr double kPackCost = 8.0;
  const double share = (double)M * N * K / threads, a = (double)M * K, b = (double)K * N;
  const bool split_cols = upper || share / by_cols + kPackCost * (a + b / threads) <=
                                       share / by_rows + kPackCost * (a / threads + b);
  // An exception must not leave the parallel region (std::terminate): a thread's failure to get
  // its packing buffers (std::bad_alloc) is rethrown once the region ends.
  std::exception_ptr error;
#pragma omp parallel num_threads(threads)
  {
    int64_t lo, hi;
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    split_range(split_cols ? panels : m_tiles, nt, t, lo, hi);
    if (upper) {  // the columns up to j hold ~j^2 / 2 of the triangle
      lo = (int64_t)(panels * std::sqrt((double)t / nt));
      hi = t + 1 == nt ? panels : (int64_t)(panels * std::sqrt((double)(t + 1) / nt));
    }
    try {
      if (split_cols)
        gemm_part(0, M, lo * NR, std::min(N, hi * NR), K, kc, alpha, A, B, beta, C, bias, upper,
                  stream);
      else
        gemm_part(lo * MR, std::min(M, hi * MR), 0, N, K, kc, alpha, A, B, beta, C, bias, false,
                  stream);
    } catch (...) {
#pragma omp critical(ds_blocked_gemm_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace blocked
}  // namespace ds

// 3x3 stride-1 convolutions by Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray 2016):
// each 4x4 output tile is A^T [ (G g G^T) ⊙ (B^T d B) ] A, where d is the 6x6 input patch under
// the tile and g the 3x3 filter, so the 9 * 16 multiplications of a tile per (input, output)
// channel pair become 36, and the sum over input channels becomes 36 independent GEMMs in the
// transformed domain (one per element ξ of the 6x6 tile):
//
//   U[ξ] (O x I)  = G g G^T for every filter               (filter transform, once per call)
//   V[ξ] (I x T)  = B^T d B for every input channel and tile (input transform)
//   M[ξ] (O x T)  = U[ξ] . V[ξ]                              (36 GEMMs)
//   y   (4x4 per tile and output channel) = A^T M A + bias   (output transform)
//
// The interpolation points are 0, -1, 1, 1/2, -2 and infinity: their transforms stay small in
// float32 (measured maximum error about 10x that of direct summation, see bench/README.md),
// where the common 0, ±1, ±2 give about 3x more.
//
// Blocking: tiles are numbered (n, tile row, tile column) and processed in blocks of NR-wide
// panels. For a block, the input transform writes V straight in the GEMM's packed B layout
// (V[ξ][panel][i][NR], vector lanes = consecutive tiles; a tile row is loaded, clipped to the
// image, and split into the six columns of the patches by shuffles); the filter transform wrote
// U in the packed A layout (U[ξ][row panel][i][MR]) once; then the micro-kernel of
// gemm_blocked.h runs on every (row panel, tile panel) of every ξ into M, and the output
// transform reads the 36 values of a tile from M and writes 4x4 outputs into y (clipped at the
// image's edge). Threads split the input transform by input channel and the GEMMs and output
// transform by output-channel panel, so a block needs one barrier (V is double-buffered: a
// thread may start the next block's input transform while the other still reads this one's).
// Every output is summed in a fixed order whatever the thread count (bitwise reproducible).
//
// grad_x of a 3x3 stride-1 convolution is the convolution of grad_y with the weights flipped
// and transposed, padding 2 - pad: the same kernel with the filter read the other way.
#include "winograd.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

#include "gemm_blocked.h"
#include "simd.h"
#include "threads.h"

namespace ds::cpu {
namespace {

using blocked::MR;
using blocked::NR;
constexpr int kLanes = kVecWidth;  // tiles per vector
constexpr int kXi = 36;            // elements of the 6x6 transformed tile
constexpr int64_t kSkew = 16;      // floats: one cache line

constexpr float kBT[6][6] = {{1, -1.5f, -2, 1.5f, 1, 0},    {0, 1, -2.5f, 0.5f, 1, 0},
                             {0, -1, 0.5f, 2.5f, 1, 0},     {0, -2, -1, 2, 1, 0},
                             {0, 0.5f, -1, -0.5f, 1, 0},    {0, 1, -1.5f, -2, 1.5f, 1}};
constexpr float kG[6][3] = {{1, 0, 0},
                            {-1.0f / 3, 1.0f / 3, -1.0f / 3},
                            {1.0f / 3, 1.0f / 3, 1.0f / 3},
                            {-16.0f / 15, -8.0f / 15, -4.0f / 15},
                            {1.0f / 15, -2.0f / 15, 4.0f / 15},
                            {0, 0, 1}};
constexpr float kAT[4][6] = {{1, 1, 1, 1, 1, 0},
                             {0, -1, 1, 0.5f, -2, 0},
                             {0, 1, 1, 0.25f, 4, 0},
                             {0, -1, 1, 0.125f, -8, 1}};

// out[r * out_step] = sum over c of m[r][c] * in[c * in_step]; after inlining and unrolling the
// coefficients are constants, so zero terms vanish and ±1 become adds.
template <int Rows, int Cols>
inline void combine(const float (&m)[Rows][Cols], const vfloat* in, int in_step, vfloat* out,
                    int out_step) {
#pragma GCC unroll 6
  for (int r = 0; r < Rows; ++r) {
    vfloat sum = vfloat{};
    bool started = false;  // the first term starts the sum (0 + v is not free without fast-math)
#pragma GCC unroll 6
    for (int c = 0; c < Cols; ++c) {
      const float coef = m[r][c];
      const vfloat v = in[c * in_step];
      if (coef == 0.0f) continue;
      if (!started)
        sum = coef == 1.0f ? v : coef == -1.0f ? -v : vbroadcast(coef) * v;
      else if (coef == 1.0f)
        sum += v;
      else if (coef == -1.0f)
        sum -= v;
      else
        sum += vbroadcast(coef) * v;
      started = true;
    }
    out[r * out_step] = sum;
  }
}

// out (Rows x Rows) = m . in (Cols x Cols) . m^T, row-major arrays of vectors.
template <int Rows, int Cols>
inline void transform_2d(const float (&m)[Rows][Cols], const vfloat* in, vfloat* out) {
  vfloat half[Rows * Cols];
#pragma GCC unroll 6
  for (int c = 0; c < Cols; ++c) combine(m, in + c, Cols, half + c, Cols);
#pragma GCC unroll 6
  for (int r = 0; r < Rows; ++r) combine(m, half + r * Cols, 1, out + r * Rows, 1);
}

// A convolution with a 3x3 kernel, stride 1: in (N, I, H, W) -> out (N, O, P, Q).
struct Geometry {
  int64_t N, I, H, W, O, pad_h, pad_w, P, Q;
  int64_t TY, TX, T;  // tile rows and columns per image, tiles in all
  Geometry(int64_t n, int64_t i, int64_t h, int64_t w, int64_t o, int64_t ph, int64_t pw)
      : N(n), I(i), H(h), W(w), O(o), pad_h(ph), pad_w(pw), P(h + 2 * ph - 2),
        Q(w + 2 * pw - 2), TY((P + 3) / 4), TX((Q + 3) / 4), T(n * TY * TX) {}
};

// The filters as (output channel o, input channel i, tap): forward reads weight[o][i][r][s];
// grad_x reads weight[i][o][2-r][2-s].
struct Filters {
  const float* w;
  int64_t o_stride, i_stride;
  bool flip;
};

// Lane l = element l * stride of base, for the first `count` lanes (zero beyond).
inline vfloat gather(const float* base, int64_t stride, int count) {
#if defined(__AVX512F__)
  if (count == kLanes && stride <= INT32_MAX / kLanes) {
    const __m512i index = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32((int)stride));
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), 0xFFFF, index, base, 4);  // (no -Wmaybe-uninitialized)
  }
#endif
  alignas(64) float lanes[kLanes] = {};
  for (int l = 0; l < count; ++l) lanes[l] = base[l * stride];
  return vload(lanes);
}

// U[ξ][panel][i][MR] for output channels [o0, o0 + count) (whole panels but the last) and
// every input channel; rows past O are zero.
// The 36 transformed filters of output channels o0 + lanes and input channel i.
inline void filter_transform(const Filters& f, int64_t o0, int64_t i, int count, vfloat* u) {
  vfloat taps[9];
  const float* base = f.w + o0 * f.o_stride + i * f.i_stride;
  for (int r = 0; r < 3; ++r)
    for (int s = 0; s < 3; ++s)
      taps[r * 3 + s] =
          gather(base + (f.flip ? (2 - r) * 3 + 2 - s : r * 3 + s), f.o_stride, count);
  transform_2d(kG, taps, u);
}

void transform_filters(const Geometry& g, const Filters& f, int64_t o_panels, int64_t o0,
                       int count, float* U, int64_t u_xi_stride) {
  int64_t i = 0;
#if defined(__AVX512F__)
  // Two whole panels and an even I: input channels i, i+1 fill whole 64-byte lines of U, which
  // go out by streaming stores (U is tens of MB, read back once per block: filling it through
  // the cache read every line first).
  if (MR == 8 && o0 % 16 == 0 && (o0 + 8) / MR < o_panels && g.I % 2 == 0) {
    for (; i < g.I; i += 2) {
      vfloat u0[kXi], u1[kXi];
      filter_transform(f, o0, i, count, u0);
      filter_transform(f, o0, i + 1, count, u1);
      for (int xi = 0; xi < kXi; ++xi) {
        float* dst = U + xi * u_xi_stride + (o0 / MR * g.I + i) * MR;
        _mm512_stream_ps(dst, __builtin_shufflevector(u0[xi], u1[xi], 0, 1, 2, 3, 4, 5, 6, 7,
                                                      16, 17, 18, 19, 20, 21, 22, 23));
        _mm512_stream_ps(dst + g.I * MR,
                         __builtin_shufflevector(u0[xi], u1[xi], 8, 9, 10, 11, 12, 13, 14, 15,
                                                 24, 25, 26, 27, 28, 29, 30, 31));
      }
    }
    _mm_sfence();  // the streamed lines before the barrier that hands U to the other threads
  }
#endif
  for (; i < g.I; ++i) {
    vfloat u[kXi];
    filter_transform(f, o0, i, count, u);
    for (int xi = 0; xi < kXi; ++xi) {
      alignas(64) float lanes[kLanes];
      vstore(lanes, u[xi]);
      for (int l = 0; l < kLanes && (o0 + l) / MR < o_panels; ++l)
        U[xi * u_xi_stride + ((o0 + l) / MR * g.I + i) * MR + (o0 + l) % MR] = lanes[l];
    }
  }
}

// row[4l + j] for the lanes l: the j-th column of the patches of kLanes adjacent tiles.
template <int J>
inline vfloat patch_column(const float* row) {
#if defined(__AVX512F__)
  constexpr int s = J & 3;
  const float* src = row + (J >= 4 ? 4 : 0);
  const vfloat a = vload(src), b = vload(src + 16), c = vload(src + 32), e = vload(src + 48);
  const vfloat lo = __builtin_shufflevector(a, b, s, s + 4, s + 8, s + 12, s + 16, s + 20, s + 24,
                                            s + 28, s, s, s, s, s, s, s, s);
  const vfloat hi = __builtin_shufflevector(c, e, s, s + 4, s + 8, s + 12, s + 16, s + 20, s + 24,
                                            s + 28, s, s, s, s, s, s, s, s);
  return __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
#else
  alignas(64) float lanes[kLanes];
  for (int l = 0; l < kLanes; ++l) lanes[l] = row[4 * l + J];
  return vload(lanes);
#endif
}

// d[r * 6 + j] = the j-th column of row r of the patches of kLanes adjacent tiles.
inline void patch_columns(const float* const rows[6], vfloat* d) {
  for (int r = 0; r < 6; ++r) {
    d[r * 6 + 0] = patch_column<0>(rows[r]);
    d[r * 6 + 1] = patch_column<1>(rows[r]);
    d[r * 6 + 2] = patch_column<2>(rows[r]);
    d[r * 6 + 3] = patch_column<3>(rows[r]);
    d[r * 6 + 4] = patch_column<4>(rows[r]);
    d[r * 6 + 5] = patch_column<5>(rows[r]);
  }
}

typedef int vint __attribute__((vector_size(kVecWidth * sizeof(int))));

inline vint lane_index() {
  vint v;
  for (int l = 0; l < kLanes; ++l) v[l] = l;
  return v;
}

// A run of `len` tiles in one tile row (n, ty), the first at column tx, starting at lane `lane`
// of a group of kLanes consecutive tiles.
struct Segment {
  int64_t n, ty, tx, len, lane;
};

// Splits the tiles [t_begin, t_end) into runs within tile rows; returns their number.
inline int segments_of(const Geometry& g, int64_t t_begin, int64_t t_end, Segment* out) {
  int count = 0;
  for (int64_t t = t_begin; t < t_end;) {
    const int64_t n = t / (g.TY * g.TX), rest = t % (g.TY * g.TX), ty = rest / g.TX,
                  tx = rest % g.TX, len = std::min(t_end - t, g.TX - tx);
    out[count++] = {n, ty, tx, len, t - t_begin};
    t += len;
  }
  return count;
}

// Row-major buffer of the 6 input rows under kLanes tiles: 4 * kLanes + 2 columns used.
constexpr int kRowFloats = 4 * kLanes + 4;

// dst[u] = row[x0 + u] for u in [lo, hi), zero elsewhere in [0, kRowFloats).
inline void clipped_row(float* dst, const float* row, int64_t x0, int64_t lo, int64_t hi) {
#if defined(__AVX512F__)
  // Masked loads (a library memcpy per row would cost more than the transform).
  for (int64_t u = 0; u < kRowFloats; u += 16) {
    const int64_t a = std::clamp<int64_t>(lo - u, 0, 16), b = std::clamp<int64_t>(hi - u, a, 16);
    const __mmask16 mask = (__mmask16)(((1u << b) - 1) & ~((1u << a) - 1));
    const int width = (int)std::min<int64_t>(16, kRowFloats - u);
    const __m512 v = mask ? _mm512_maskz_loadu_ps(mask, row + x0 + u) : _mm512_setzero_ps();
    _mm512_mask_storeu_ps(dst + u, (__mmask16)((1u << width) - 1), v);
  }
#else
  for (int64_t u = 0; u < kRowFloats; ++u) dst[u] = u >= lo && u < hi ? row[x0 + u] : 0.0f;
#endif
}

// V for input channel i and the kLanes tiles from t_begin (fewer at the end), stored at dst
// (element ξ at dst + ξ * xi_stride).
void transform_input_group(const Geometry& g, const float* x, int64_t i, int64_t t_begin,
                           float* dst, int64_t xi_stride) {
  Segment segments[kLanes];
  const int64_t t_end = std::min(g.T, t_begin + kLanes);
  const int count = segments_of(g, t_begin, t_end, segments);
  vfloat d[kXi];
  if (count > 1 || t_end - t_begin < kLanes)
    for (auto& v : d) v = vfloat{};
  for (int k = 0; k < count; ++k) {
    const Segment& seg = segments[k];
    alignas(64) float buffer[6][kRowFloats];
    const float* rows[6];  // in x where the whole row is, else a zero-padded copy
    const int64_t x0 = 4 * (seg.tx - seg.lane) - g.pad_w;  // column under lane 0's patch
    const int64_t lo = std::clamp<int64_t>(-x0, 0, kRowFloats),
                  hi = std::clamp<int64_t>(g.W - x0, lo, kRowFloats);
    for (int r = 0; r < 6; ++r) {
      const int64_t iy = 4 * seg.ty - g.pad_h + r;
      const float* src = x + ((seg.n * g.I + i) * g.H + std::clamp<int64_t>(iy, 0, g.H - 1)) * g.W;
      if (iy >= 0 && iy < g.H && lo == 0 && hi == kRowFloats) {
        rows[r] = src + x0;
      } else {
        rows[r] = buffer[r];
        clipped_row(buffer[r], src, x0, iy >= 0 && iy < g.H ? lo : 0, iy >= 0 && iy < g.H ? hi : 0);
      }
    }
    if (seg.len == kLanes) {  // one segment fills the group
      patch_columns(rows, d);
    } else {
      vfloat part[kXi];
      patch_columns(rows, part);
      const vint lane = lane_index();
      const vint mine = (lane >= (int)seg.lane) & (lane < (int)(seg.lane + seg.len));
      for (int e = 0; e < kXi; ++e) d[e] = mine ? part[e] : d[e];
    }
  }
  vfloat v[kXi];
  transform_2d(kBT, d, v);
  for (int xi = 0; xi < kXi; ++xi) vstore(dst + xi * xi_stride, v[xi]);
}

// rows[i][4l + j] = y[i * 4 + j] lane l: the 4 output rows of kLanes adjacent tiles.
inline void interleave_tiles(const vfloat* y, float (*rows)[4 * kLanes]) {
  for (int i = 0; i < 4; ++i) {
    const vfloat* c = y + 4 * i;
#if defined(__AVX512F__)
    const vfloat a_lo = __builtin_shufflevector(c[0], c[1], 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5,
                                                21, 6, 22, 7, 23);
    const vfloat a_hi = __builtin_shufflevector(c[0], c[1], 8, 24, 9, 25, 10, 26, 11, 27, 12, 28,
                                                13, 29, 14, 30, 15, 31);
    const vfloat b_lo = __builtin_shufflevector(c[2], c[3], 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5,
                                                21, 6, 22, 7, 23);
    const vfloat b_hi = __builtin_shufflevector(c[2], c[3], 8, 24, 9, 25, 10, 26, 11, 27, 12, 28,
                                                13, 29, 14, 30, 15, 31);
    vstore(rows[i], __builtin_shufflevector(a_lo, b_lo, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21,
                                            6, 7, 22, 23));
    vstore(rows[i] + 16, __builtin_shufflevector(a_lo, b_lo, 8, 9, 24, 25, 10, 11, 26, 27, 12,
                                                 13, 28, 29, 14, 15, 30, 31));
    vstore(rows[i] + 32, __builtin_shufflevector(a_hi, b_hi, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5,
                                                 20, 21, 6, 7, 22, 23));
    vstore(rows[i] + 48, __builtin_shufflevector(a_hi, b_hi, 8, 9, 24, 25, 10, 11, 26, 27, 12,
                                                 13, 28, 29, 14, 15, 30, 31));
#else
    alignas(64) float lanes[4][kLanes];
    for (int j = 0; j < 4; ++j) vstore(lanes[j], c[j]);
    for (int l = 0; l < kLanes; ++l)
      for (int j = 0; j < 4; ++j) rows[i][4 * l + j] = lanes[j][l];
#endif
  }
}

// Output channel o of the kLanes tiles from t_begin (fewer at the end) from m (element ξ at
// m + ξ * xi_stride) into y, clipped to the image.
void transform_output_group(const Geometry& g, const float* m, int64_t xi_stride, int64_t o,
                            int64_t t_begin, float bias, float* y) {
  vfloat in[kXi], out[16];
  for (int xi = 0; xi < kXi; ++xi) in[xi] = vload(m + xi * xi_stride);
  transform_2d(kAT, in, out);
  const vfloat b = vbroadcast(bias);
  for (auto& v : out) v += b;
  alignas(64) float rows[4][4 * kLanes];
  interleave_tiles(out, rows);
  Segment segments[kLanes];
  const int count = segments_of(g, t_begin, std::min(g.T, t_begin + kLanes), segments);
  for (int k = 0; k < count; ++k) {
    const Segment& seg = segments[k];
    const int64_t q0 = 4 * seg.tx, cols = std::min(4 * seg.len, g.Q - q0);
    for (int i = 0; i < 4 && 4 * seg.ty + i < g.P; ++i)
      copy_floats(y + ((seg.n * g.O + o) * g.P + 4 * seg.ty + i) * g.Q + q0,
                  rows[i] + 4 * seg.lane, cols);
  }
}

// c (MR x cols, row stride ldc) = a (MR x depth panel) . b (depth x NR panel), cols <= NR.
inline void panel_product(int64_t depth, const float* a, const float* b, float* c, int64_t ldc,
                          int64_t cols) {
  const int64_t vectors = (cols + kVecWidth - 1) / kVecWidth;
  if (vectors == 1)
    blocked::micro_kernel<1>(depth, a, b, 1.0f, 0.0f, nullptr, c, ldc);
  else if (vectors == 2)
    blocked::micro_kernel<2>(depth, a, b, 1.0f, 0.0f, nullptr, c, ldc);
  else
    blocked::micro_kernel<blocked::NV>(depth, a, b, 1.0f, 0.0f, nullptr, c, ldc);
}

enum ScratchSlot { kFilterSlot, kInputSlot, kProductSlot, kSlots };
float* scratch(ScratchSlot slot, int64_t n) {
  static thread_local blocked::Scratch buffers[kSlots];
  return buffers[slot].get(n);
}

// Tile panels per block: the block's V and M within about the size of L2 (measured best on
// VGG's layers; 16 MB blocks were 1.2-1.5x slower), at least one panel.
int64_t block_panels(const Geometry& g, int64_t o_pad) {
  constexpr int64_t kBlockBytes = 2 << 20;
  const int64_t by_block = kBlockBytes / (kXi * 4 * (g.I + o_pad) * NR);
  return std::clamp<int64_t>(by_block, 1, (g.T + NR - 1) / NR);
}


// The buffers of one call and where each ξ's slice starts in them. Each slice begins one cache
// line past a multiple of its size: slices of a power-of-two size would all map to the same
// cache sets, and the transforms touch all 36 at once.
struct Plan {
  const Geometry& g;
  int64_t o_panels, o_pad, panels, tb, blocks;  // tb: tiles per block, in `panels` NR-panels
  int64_t u_xi_stride, v_xi_stride, m_xi_stride;
  Plan(const Geometry& geometry)
      : g(geometry), o_panels((g.O + MR - 1) / MR), o_pad(o_panels * MR),
        panels(block_panels(g, o_pad)), tb(panels * NR), blocks((g.T + tb - 1) / tb),
        u_xi_stride(o_pad * g.I + kSkew), v_xi_stride(panels * g.I * NR + kSkew),
        m_xi_stride(o_pad * tb + kSkew) {}
  int64_t v_size() const { return kXi * v_xi_stride; }
  int64_t m_size() const { return kXi * m_xi_stride; }
  int64_t tiles(int64_t block) const { return std::min(tb, g.T - block * tb); }
};

// V of block b for input channels [i_lo, i_hi).
void input_phase(const Plan& plan, const float* x, int64_t b, int64_t i_lo, int64_t i_hi,
                 float* V) {
  const int64_t groups = (plan.tiles(b) + kLanes - 1) / kLanes;
  for (int64_t i = i_lo; i < i_hi; ++i)
    for (int64_t k = 0; k < groups; ++k) {
      const int64_t t = k * kLanes;
      transform_input_group(plan.g, x, i, b * plan.tb + t,
                            V + (t / NR * plan.g.I + i) * NR + t % NR, plan.v_xi_stride);
    }
}

// The GEMMs of block b for output-channel panels [p_lo, p_hi), then their output transform.
void product_phase(const Plan& plan, const float* U, const float* V, int64_t b, int64_t p_lo,
                   int64_t p_hi, float* M, const float* bias, float* y) {
  const Geometry& g = plan.g;
  const int64_t tiles = plan.tiles(b), tile_panels = (tiles + NR - 1) / NR;
  for (int64_t xi = 0; xi < kXi; ++xi)
    for (int64_t op = p_lo; op < p_hi; ++op) {
      const float* a = U + xi * plan.u_xi_stride + op * g.I * MR;
      for (int64_t p = 0; p < tile_panels; ++p)
        panel_product(g.I, a, V + xi * plan.v_xi_stride + p * g.I * NR,
                      M + xi * plan.m_xi_stride + op * MR * plan.tb + p * NR, plan.tb,
                      std::min<int64_t>(NR, tiles - p * NR));
    }
  const int64_t groups = (tiles + kLanes - 1) / kLanes;
  for (int64_t o = p_lo * MR; o < std::min(g.O, p_hi * MR); ++o)
    for (int64_t k = 0; k < groups; ++k)
      transform_output_group(g, M + o * plan.tb + k * kLanes, plan.m_xi_stride, o,
                             b * plan.tb + k * kLanes, bias ? bias[o] : 0.0f, y);
}

// With many blocks, each thread takes whole blocks with buffers of its own: no barrier after
// the filter transform (a descheduled thread on a busy machine delays only its own blocks).
// With few, the threads share each block: the input transform split by input channel, then,
// after a barrier, the GEMMs and output transform by output-channel panel (V double-buffered so
// that one barrier per block suffices).
void winograd_conv(const Geometry& g, const float* x, const Filters& f, const float* bias,
                   float* y) {
  const Plan plan(g);
  const int threads = (int)std::max<int64_t>(
      1, std::min<int64_t>(num_threads(), std::max(plan.o_panels, g.I)));
  const bool whole_blocks = plan.blocks >= 4 * threads;
  float* U = scratch(kFilterSlot, kXi * plan.u_xi_stride);
  float* V = whole_blocks ? nullptr : scratch(kInputSlot, 2 * plan.v_size());
  float* M = whole_blocks ? nullptr : scratch(kProductSlot, plan.m_size());
  const int64_t filter_groups = (plan.o_pad + kLanes - 1) / kLanes;
#pragma omp parallel num_threads(threads)
  {
#pragma omp for schedule(static)
    for (int64_t fg = 0; fg < filter_groups; ++fg) {
      const int64_t o0 = fg * kLanes;
      transform_filters(g, f, plan.o_panels, o0, (int)std::min<int64_t>(kLanes, g.O - o0), U,
                        plan.u_xi_stride);
    }
    if (whole_blocks) {
      float* my_v = scratch(kInputSlot, plan.v_size());
      float* my_m = scratch(kProductSlot, plan.m_size());
#pragma omp for schedule(static)
      for (int64_t b = 0; b < plan.blocks; ++b) {
        input_phase(plan, x, b, 0, g.I, my_v);
        product_phase(plan, U, my_v, b, 0, plan.o_panels, my_m, bias, y);
      }
    } else {
      int64_t p_lo, p_hi;  // this thread's output-channel panels
      blocked::split_range(plan.o_panels, omp_get_num_threads(), omp_get_thread_num(), p_lo,
                           p_hi);
      for (int64_t b = 0; b < plan.blocks; ++b) {
        float* Vb = V + (b & 1) * plan.v_size();
        int64_t i_lo, i_hi;
        blocked::split_range(g.I, omp_get_num_threads(), omp_get_thread_num(), i_lo, i_hi);
        input_phase(plan, x, b, i_lo, i_hi, Vb);
#pragma omp barrier
        product_phase(plan, U, Vb, b, p_lo, p_hi, M, bias, y);
      }
    }
  }
}

}  // namespace

bool winograd_applies(const Conv2dShape& s) {
  return s.R == 3 && s.S == 3 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h >= 0 &&
         s.pad_h <= 2 && s.pad_w >= 0 && s.pad_w <= 2 && s.N > 0 && s.C > 0 && s.K > 0 &&
         s.P > 0 && s.Q > 0 && s.H > 0 && s.W > 0;  // grad_x's tiles cover H x W: none divide by 0
}

namespace {

// With few channels the transforms outweigh the GEMMs; with few tiles the filter transform
// (36 floats per filter, written and read once: 38 MB for 512 x 512 channels) does. Measured
// (Xeon, one thread): 256 or 512 channels break even at 16 tiles (a 16x16 image) and run 1.5x
// faster than direct at 36; 64 channels (filters in cache) 2.2x faster at 16 tiles.
bool winograd_pays_off(const Conv2dShape& s, int64_t out_h, int64_t out_w) {
  const int64_t tiles = s.N * ((out_h + 3) / 4) * ((out_w + 3) / 4);
  const int64_t filter_bytes = kXi * 4 * s.C * s.K;
  return winograd_applies(s) && s.C >= 16 && s.K >= 16 &&
         (tiles >= 20 || (tiles >= 16 && filter_bytes <= (1 << 20)));
}

}  // namespace

bool winograd_pays_off_forward(const Conv2dShape& s) { return winograd_pays_off(s, s.P, s.Q); }

bool winograd_pays_off_grad_x(const Conv2dShape& s) { return winograd_pays_off(s, s.H, s.W); }

void winograd_forward(const Conv2dShape& s, const float* x, const float* weight, const float* bias,
                      float* y) {
  const Geometry g(s.N, s.C, s.H, s.W, s.K, s.pad_h, s.pad_w);
  winograd_conv(g, x, Filters{weight, s.C * 9, 9, false}, bias, y);
}

void winograd_grad_x(const Conv2dShape& s, const float* grad_y, const float* weight,
                     float* grad_x) {
  const Geometry g(s.N, s.K, s.P, s.Q, s.C, 2 - s.pad_h, 2 - s.pad_w);
  winograd_conv(g, grad_y, Filters{weight, 9, s.C * 9, true}, nullptr, grad_x);
}

}  // namespace ds::cpu

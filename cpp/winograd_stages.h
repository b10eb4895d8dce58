// The three transform stages of the Winograd convolutions of winograd.cpp, each on kLanes tiles
// at a time (one tile per vector lane; winograd_transforms.h holds the per-tile arithmetic):
//
//   transform_filters       U[ξ] = G g G^T, written in the GEMM's packed A layout
//                           (U[ξ][row panel][i][MR]; rows past O zero), kLanes filters a call;
//   transform_input_group   V[ξ] = B^T d B for one input channel and kLanes consecutive tiles,
//                           written in the packed B layout (V[ξ][panel][i][NR], lanes = tiles);
//   transform_output_group  y = A^T M A + bias for one output channel and kLanes tiles.
//
// Tiles are numbered (n, tile row, tile column); kLanes consecutive ones may span several tile
// rows (small images), so the input and output stages walk a group as runs within tile rows
// (Segment). An input row under a run is loaded once, clipped to the image by masked loads
// (padding reads as zero), and split into the six columns of the patches by shuffles; outputs
// are clipped to P x Q.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "gemm_blocked.h"
#include "simd.h"
#include "winograd_transforms.h"

namespace ds::cpu::winograd {

using blocked::MR;
using blocked::NR;

// A convolution with an r x r kernel, stride 1, in m x m output tiles (those of the transform
// Tf): in (N, I, H, W) -> out (N, O, P, Q), the whole output (conv_geometry_error refuses a
// shorter P or Q, which the tiles here would overrun).
struct Geometry {
  int64_t N, I, H, W, O, pad_h, pad_w, P, Q;
  int64_t TY, TX, T;  // tile rows and columns per image, tiles in all
  template <class Tf>
  Geometry(Tf, int64_t n, int64_t i, int64_t h, int64_t w, int64_t o, int64_t ph, int64_t pw)
      : N(n), I(i), H(h), W(w), O(o), pad_h(ph), pad_w(pw), P(h + 2 * ph - (Tf::r - 1)),
        Q(w + 2 * pw - (Tf::r - 1)), TY((P + Tf::m - 1) / Tf::m), TX((Q + Tf::m - 1) / Tf::m),
        T(n * TY * TX) {}
};

// The filters as (output channel o, input channel i, tap): forward reads weight[o][i][a][b];
// grad_x reads weight[i][o][r-1-a][r-1-b].
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
    // The masked form: the plain gather warns -Wmaybe-uninitialized.
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), 0xFFFF, index, base, 4);
  }
#endif
  alignas(64) float lanes[kLanes] = {};
  for (int l = 0; l < count; ++l) lanes[l] = base[l * stride];
  return vload(lanes);
}

// The 36 transformed filters of output channels o0 + lanes and input channel i.
template <class Tf>
inline void filter_transform(const Filters& f, int64_t o0, int64_t i, int count, vfloat* u) {
  constexpr int r = Tf::r;
  vfloat taps[r * r];
  const float* base = f.w + o0 * f.o_stride + i * f.i_stride;
  for (int a = 0; a < r; ++a)
    for (int b = 0; b < r; ++b)
      taps[a * r + b] = gather(base + (f.flip ? (r - 1 - a) * r + r - 1 - b : a * r + b),
                               f.o_stride, count);
  transform_2d(Tf::G, taps, u);
}

// U[ξ][panel][i][MR] for output channels [o0, o0 + count) (whole panels but the last) and
// every input channel; rows past O are zero.
template <class Tf>
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
      filter_transform<Tf>(f, o0, i, count, u0);
      filter_transform<Tf>(f, o0, i + 1, count, u1);
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
    filter_transform<Tf>(f, o0, i, count, u);
    for (int xi = 0; xi < kXi; ++xi) {
      alignas(64) float lanes[kLanes];
      vstore(lanes, u[xi]);
      for (int l = 0; l < kLanes && (o0 + l) / MR < o_panels; ++l)
        U[xi * u_xi_stride + ((o0 + l) / MR * g.I + i) * MR + (o0 + l) % MR] = lanes[l];
    }
  }
}

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
  const int64_t rest = t_begin % (g.TY * g.TX);  // divisions once: small images have many runs
  int64_t n = t_begin / (g.TY * g.TX), ty = rest / g.TX, tx = rest % g.TX;
  for (int64_t t = t_begin; t < t_end;) {
    const int64_t len = std::min(t_end - t, g.TX - tx);
    out[count++] = {n, ty, tx, len, t - t_begin};
    t += len;
    tx = 0;
    if (++ty == g.TY) ty = 0, ++n;
  }
  return count;
}

// v = row[u] for u in [lo, hi), zero elsewhere in [0, kRowFloats<M>), as kRowVectors<M>
// vectors: masked loads straight into registers (rows clipped at the image's edge once went
// through a stack buffer, and reading it back at other offsets stalled store forwarding).
template <int M>
inline void load_row(const float* row, int64_t lo, int64_t hi, vfloat* v) {
#if defined(__AVX512F__)
  for (int k = 0; k < kRowVectors<M>; ++k) {
    const int64_t u = 16 * k, a = std::clamp<int64_t>(lo - u, 0, 16),
                  b = std::clamp<int64_t>(hi - u, a, 16);
    const __mmask16 mask = (__mmask16)(((1u << b) - 1) & ~((1u << a) - 1));
    v[k] = mask == 0xFFFF ? vload(row + u)
           : mask         ? _mm512_maskz_loadu_ps(mask, row + u)
                          : _mm512_setzero_ps();
  }
#else
  alignas(64) float lanes[kRowVectors<M> * kLanes];
  for (int64_t u = 0; u < kRowVectors<M> * kLanes; ++u)
    lanes[u] = u >= lo && u < hi ? row[u] : 0.0f;
  for (int k = 0; k < kRowVectors<M>; ++k) v[k] = vload(lanes + k * kLanes);
#endif
}

// The 6 input rows (input channel i) under the patches of segment `seg`, zero outside x.
template <int M>
inline void segment_rows(const Geometry& g, const float* x, int64_t i, const Segment& seg,
                         vfloat (*rows)[kRowVectors<M>]) {
  const int64_t x0 = M * (seg.tx - seg.lane) - g.pad_w;  // column under lane 0's patch
  const int64_t lo = std::clamp<int64_t>(-x0, 0, kRowFloats<M>),
                hi = std::clamp<int64_t>(g.W - x0, lo, kRowFloats<M>);
  for (int r = 0; r < kAlpha; ++r) {
    const int64_t iy = M * seg.ty - g.pad_h + r;
    const bool inside = iy >= 0 && iy < g.H;
    const float* src = x + ((seg.n * g.I + i) * g.H + (inside ? iy : 0)) * g.W + x0;
    load_row<M>(src, inside ? lo : 0, inside ? hi : 0, rows[r]);
  }
}

#if defined(__AVX512F__)
// Lanes L of a and b's rows: lane L from a (even L / TX) or b (odd), element L % TX + Off.
template <int TX, int Off, size_t... L>
inline vfloat pick_rows(vfloat a, vfloat b, std::index_sequence<L...>) {
  return __builtin_shufflevector(a, b, ((L / TX) % 2 ? 16 : 0) + (int)(L % TX) + Off...);
}

// The patches d of F(2x2, 5x5) for kLanes tiles that are whole tile rows of one image, TX = 4 or
// 8 tiles a row (8x8 and 16x16 outputs: cifar-cnn's conv2 and conv3, and their grad_x). Each of
// the 2 kLanes / TX + 4 input rows under them is loaded once and split into its even and odd
// columns; column j of the patches of a tile row is then a window of one of those, so every d
// vector is one two-source shuffle (TX = 8) or three (TX = 4). The runs-of-a-row path below
// loads and splits the shared rows once per tile row, 2-4x the shuffles (Zen 4: the input
// transform of cifar-cnn's conv3 grad_x was 40% of its time). The same values, so the same V.
template <int TX>
inline void whole_rows_patches(const Geometry& g, const float* x, int64_t i, int64_t t_begin,
                               vfloat* d) {
  constexpr int kTileRows = kLanes / TX, kRows = 2 * kTileRows + 4;
  const int64_t per_image = g.TY * g.TX, n = t_begin / per_image,
                iy0 = 2 * (t_begin % per_image / TX) - g.pad_h, x0 = -g.pad_w;
  const int64_t lo = std::clamp<int64_t>(-x0, 0, kRowFloats<2>),
                hi = std::clamp<int64_t>(g.W - x0, lo, kRowFloats<2>);
  vfloat even[kRows], odd[kRows];
  for (int k = 0; k < kRows; ++k) {
    const int64_t iy = iy0 + k;
    const bool inside = iy >= 0 && iy < g.H;
    vfloat v[kRowVectors<2>];
    load_row<2>(x + ((n * g.I + i) * g.H + (inside ? iy : 0)) * g.W + x0, inside ? lo : 0,
                inside ? hi : 0, v);
    even[k] = __builtin_shufflevector(v[0], v[1], 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24,
                                      26, 28, 30);
    odd[k] = __builtin_shufflevector(v[0], v[1], 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25,
                                     27, 29, 31);
  }
  constexpr auto lanes = std::make_index_sequence<kLanes>{};
  const auto column = [&](auto j, int r) {  // column j of row r of the patches, every lane
    const vfloat* half = j() % 2 ? odd : even;
    constexpr int off = j() / 2;
    if constexpr (TX == 8) return pick_rows<8, off>(half[r], half[r + 2], lanes);
    const vfloat top = pick_rows<4, off>(half[r], half[r + 2], lanes),
                 bottom = pick_rows<4, off>(half[r + 4], half[r + 6], lanes);
    return __builtin_shufflevector(top, bottom, 0, 1, 2, 3, 4, 5, 6, 7, 24, 25, 26, 27, 28, 29,
                                   30, 31);
  };
  for (int r = 0; r < kAlpha; ++r) {
    d[r * kAlpha + 0] = column(std::integral_constant<int, 0>{}, r);
    d[r * kAlpha + 1] = column(std::integral_constant<int, 1>{}, r);
    d[r * kAlpha + 2] = column(std::integral_constant<int, 2>{}, r);
    d[r * kAlpha + 3] = column(std::integral_constant<int, 3>{}, r);
    d[r * kAlpha + 4] = column(std::integral_constant<int, 4>{}, r);
    d[r * kAlpha + 5] = column(std::integral_constant<int, 5>{}, r);
  }
}
#endif

// V for input channel i and the kLanes tiles from t_begin (fewer at the end), stored at dst
// (element ξ at dst + ξ * xi_stride). A group that spans several tile rows (small images)
// takes each row's lanes from that row's patches (whole tile rows of 4 or 8 tiles of F(2x2, 5x5)
// with AVX-512: all at once, whole_rows_patches); lanes past the last tile are zero.
template <class Tf>
void transform_input_group(const Geometry& g, const float* x, int64_t i, int64_t t_begin,
                           float* dst, int64_t xi_stride) {
  constexpr int M = Tf::m;
  const int64_t tiles = std::min(g.T - t_begin, int64_t{kLanes});
  vfloat d[kXi];
#if defined(__AVX512F__)
  if (M == 2 && tiles == kLanes && (g.TX == 4 || g.TX == 8) && g.TY * g.TX % kLanes == 0) {
    if (g.TX == 4)
      whole_rows_patches<4>(g, x, i, t_begin, d);
    else
      whole_rows_patches<8>(g, x, i, t_begin, d);
  } else  // the runs of tile rows below
#endif
  {
    Segment segments[kLanes];
    const int count = segments_of(g, t_begin, t_begin + tiles, segments);
    vfloat rows[kAlpha][kRowVectors<M>];
    segment_rows<M>(g, x, i, segments[0], rows);
    patch_columns<M>(rows, d);  // every lane: the other segments overwrite theirs
    const vint lane = lane_index();
    for (int k = 1; k < count; ++k) {
      const Segment& seg = segments[k];
      segment_rows<M>(g, x, i, seg, rows);
      patch_columns<M>(rows, d, (lane >= (int)seg.lane) & (lane < (int)(seg.lane + seg.len)));
    }
    if (tiles < kLanes)
      for (auto& v : d) v = lane < (int)tiles ? v : vfloat{};
  }
  vfloat v[kXi];
  transform_2d(kBT, d, v);
  for (int xi = 0; xi < kXi; ++xi) vstore(dst + xi * xi_stride, v[xi]);
}

// Output channel o of the kLanes tiles from t_begin (fewer at the end) from m (element ξ at
// m + ξ * xi_stride) into y, clipped to the image.
template <class Tf>
void transform_output_group(const Geometry& g, const float* m, int64_t xi_stride, int64_t o,
                            int64_t t_begin, float bias, float* y) {
  constexpr int M = Tf::m;
  vfloat in[kXi], out[M * M];
  for (int xi = 0; xi < kXi; ++xi) in[xi] = vload(m + xi * xi_stride);
  transform_2d(Tf::AT, in, out);
  const vfloat b = vbroadcast(bias);
  for (auto& v : out) v += b;
  alignas(64) float rows[M][M * kLanes];
  interleave_tiles<M>(out, rows);
  Segment segments[kLanes];
  const int count = segments_of(g, t_begin, std::min(g.T, t_begin + kLanes), segments);
  for (int k = 0; k < count; ++k) {
    const Segment& seg = segments[k];
    const int64_t q0 = M * seg.tx, cols = std::min(M * seg.len, g.Q - q0);
    for (int i = 0; i < M && M * seg.ty + i < g.P; ++i)
      copy_floats(y + ((seg.n * g.O + o) * g.P + M * seg.ty + i) * g.Q + q0,
                  rows[i] + M * seg.lane, cols);
  }
}

}  // namespace ds::cpu::winograd

// Stride-1 convolutions by Winograd's minimal filtering (Lavin & Gray 2016): F(4x4, 3x3) for 3x3
// kernels and F(2x2, 5x5) for 5x5 ones, both on 6x6 transformed tiles (winograd_transforms.h).
// Each m x m output tile is A^T [ (G g G^T) ⊙ (B^T d B) ] A, where d is the 6x6 input patch under
// the tile and g the r x r filter, so the r^2 m^2 multiplications of a tile per (input, output)
// channel pair become 36 (144 -> 36 for 3x3, 100 -> 36 for 5x5), and the sum over input channels
// becomes 36 independent GEMMs in the transformed domain (one per element ξ of the 6x6 tile):
//
//   U[ξ] (O x I)  = G g G^T for every filter               (filter transform, once per call)
//   V[ξ] (I x T)  = B^T d B for every input channel and tile (input transform)
//   M[ξ] (O x T)  = U[ξ] . V[ξ]                              (36 GEMMs)
//   y   (m x m per tile and output channel) = A^T M A + bias (output transform)
//
// Blocking: tiles are numbered (n, tile row, tile column) and processed in blocks of NR-wide
// panels. For a block, the input transform writes V straight in the GEMM's packed B layout
// (V[ξ][panel][i][NR], vector lanes = consecutive tiles; a tile row is loaded, clipped to the
// image, and split into the six columns of the patches by shuffles); the filter transform wrote
// U in the packed A layout (U[ξ][row panel][i][MR]) once; then the micro-kernel of
// gemm_blocked.h runs on every (row panel, tile panel) of every ξ into M, and the output
// transform reads the 36 values of a tile from M and writes m x m outputs into y (clipped at the
// image's edge). Threads split the input transform by input channel and the GEMMs and output
// transform by output-channel panel, so a block needs one barrier (V is double-buffered: a
// thread may start the next block's input transform while the other still reads this one's).
// Every output is summed in a fixed order whatever the thread count (bitwise reproducible).
//
// grad_x of an r x r stride-1 convolution is the convolution of grad_y with the weights flipped
// and transposed, padding r - 1 - pad: the same kernel with the filter read the other way.
#include "winograd.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

#include "gemm_blocked.h"
#include "simd.h"
#include "threads.h"
#include "winograd_transforms.h"

namespace ds::cpu {
namespace {

using blocked::MR;
using blocked::NR;
using namespace winograd;
constexpr int64_t kSkew = 16;  // floats: one cache line

// A convolution with an r x r kernel, stride 1, in m x m output tiles (those of the transform
// Tf): in (N, I, H, W) -> out (N, O, P, Q).
struct Geometry {
  int64_t N, I, H, W, O, pad_h, pad_w, P, Q;
  int64_t TY, TX, T;  // tile rows and columns per image, tiles in all
  template <class Tf>
  Geometry(Tf, int64_t n, int64_t i, int64_t h, int64_t w, int64_t o, int64_t ph, int64_t pw)
      : N(n), I(i), H(h), W(w), O(o), pad_h(ph), pad_w(pw), P(h + 2 * ph - (Tf::r - 1)),
        Q(w + 2 * pw - (Tf::r - 1)), TY((P + Tf::m - 1) / Tf::m), TX((Q + Tf::m - 1) / Tf::m),
        T(n * TY * TX) {}
};

// fn(Tf{}) for Tf the transform of s's kernel, F(4x4, 3x3) or F(2x2, 5x5): the one place that
// picks it (and so the tile size).
template <class Fn>
auto with_transform(const Conv2dShape& s, Fn fn) {
  return s.R == 3 ? fn(F4x4_3x3{}) : fn(F2x2_5x5{});
}

// The convolutions that the forward pass and grad_x run (grad_x: grad_y (N, K, P, Q) with the
// flipped filters and padding r - 1 - pad, back to (N, C, H, W)).
template <class Tf>
Geometry forward_geometry(Tf tf, const Conv2dShape& s) {
  return Geometry(tf, s.N, s.C, s.H, s.W, s.K, s.pad_h, s.pad_w);
}
template <class Tf>
Geometry grad_x_geometry(Tf tf, const Conv2dShape& s) {
  return Geometry(tf, s.N, s.K, s.P, s.Q, s.C, s.R - 1 - s.pad_h, s.R - 1 - s.pad_w);
}

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

// V for input channel i and the kLanes tiles from t_begin (fewer at the end), stored at dst
// (element ξ at dst + ξ * xi_stride). A group that spans several tile rows (small images)
// takes each row's lanes from that row's patches; lanes past the last tile are zero.
template <class Tf>
void transform_input_group(const Geometry& g, const float* x, int64_t i, int64_t t_begin,
                           float* dst, int64_t xi_stride) {
  constexpr int M = Tf::m;
  Segment segments[kLanes];
  const int64_t tiles = std::min(g.T - t_begin, int64_t{kLanes});
  const int count = segments_of(g, t_begin, t_begin + tiles, segments);
  vfloat rows[kAlpha][kRowVectors<M>], d[kXi];
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

// A block: `tiles` tiles (at most plan.tb) from tile t0.
struct Block {
  int64_t t0, tiles;
};

// V of a block for input channels [i_lo, i_hi).
template <class Tf>
void input_phase(const Plan& plan, const float* x, Block blk, int64_t i_lo, int64_t i_hi,
                 float* V) {
  const int64_t groups = (blk.tiles + kLanes - 1) / kLanes;
  for (int64_t i = i_lo; i < i_hi; ++i)
    for (int64_t k = 0; k < groups; ++k) {
      const int64_t t = k * kLanes;
      transform_input_group<Tf>(plan.g, x, i, blk.t0 + t,
                            V + (t / NR * plan.g.I + i) * NR + t % NR, plan.v_xi_stride);
    }
}

// The GEMMs of a block for output-channel panels [p_lo, p_hi), then their output transform.
template <class Tf>
void product_phase(const Plan& plan, const float* U, const float* V, Block blk, int64_t p_lo,
                   int64_t p_hi, float* M, const float* bias, float* y) {
  const Geometry& g = plan.g;
  const int64_t tiles = blk.tiles, tile_panels = (tiles + NR - 1) / NR;
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
      transform_output_group<Tf>(g, M + o * plan.tb + k * kLanes, plan.m_xi_stride, o,
                             blk.t0 + k * kLanes, bias ? bias[o] : 0.0f, y);
}

// With two blocks per thread or more, each thread takes an equal share of the tiles in blocks
// with buffers of its own: no barrier after the filter transform (a descheduled thread on a
// busy machine delays only its own blocks), and no V written by one core and read by the other
// (sharing the 6 blocks of VGG's conv3_1 that way cost 20% at 2 threads on the Xeon).
// With fewer, the threads share each block: the input transform split by input channel, then,
// after a barrier, the GEMMs and output transform by output-channel panel (V double-buffered so
// that one barrier per block suffices); each thread then reads only half of U, which wins when
// U outweighs V (conv4_1's 2 blocks: 3% faster than whole shares).
template <class Tf>
void winograd_conv(const Geometry& g, const float* x, const Filters& f, const float* bias,
                   float* y) {
  const Plan plan(g);
  const int threads = (int)std::max<int64_t>(
      1, std::min<int64_t>(num_threads(), std::max(plan.o_panels, g.I)));
  const bool whole_blocks = plan.blocks >= std::max(4, 2 * threads);
  // Every buffer is allocated here: a std::bad_alloc thrown inside the parallel region would end
  // the process instead of reaching Python as a MemoryError. Whole blocks: a V and an M per
  // thread (slices of whole cache lines); shared blocks: V double-buffered, one M.
  const int64_t v_slice = (plan.v_size() + 15) / 16 * 16,
                m_slice = (plan.m_size() + 15) / 16 * 16;
  float* U = scratch(kFilterSlot, kXi * plan.u_xi_stride);
  float* V = scratch(kInputSlot, (whole_blocks ? threads : 2) * v_slice);
  float* M = scratch(kProductSlot, (whole_blocks ? threads : 1) * m_slice);
  const int64_t filter_groups = (plan.o_pad + kLanes - 1) / kLanes;
#pragma omp parallel num_threads(threads)
  {
#pragma omp for schedule(static)
    for (int64_t fg = 0; fg < filter_groups; ++fg) {
      const int64_t o0 = fg * kLanes;
      transform_filters<Tf>(g, f, plan.o_panels, o0, (int)std::min<int64_t>(kLanes, g.O - o0), U,
                        plan.u_xi_stride);
    }
    if (whole_blocks) {
      float* my_v = V + omp_get_thread_num() * v_slice;
      float* my_m = M + omp_get_thread_num() * m_slice;
      // Equal shares of kLanes-tile groups, in blocks from the share's start (whole blocks
      // each gave one thread 864 of cifar-cnn's 1600 tiles: 6 blocks against 5 and a short one).
      int64_t g_lo, g_hi;
      blocked::split_range((g.T + kLanes - 1) / kLanes, omp_get_num_threads(),
                           omp_get_thread_num(), g_lo, g_hi);
      const int64_t t_end = std::min(g.T, g_hi * kLanes);
      for (int64_t t0 = g_lo * kLanes; t0 < t_end; t0 += plan.tb) {
        const Block blk{t0, std::min(plan.tb, t_end - t0)};
        input_phase<Tf>(plan, x, blk, 0, g.I, my_v);
        product_phase<Tf>(plan, U, my_v, blk, 0, plan.o_panels, my_m, bias, y);
      }
    } else {
      int64_t p_lo, p_hi;  // this thread's output-channel panels
      blocked::split_range(plan.o_panels, omp_get_num_threads(), omp_get_thread_num(), p_lo,
                           p_hi);
      for (int64_t b = 0; b < plan.blocks; ++b) {
        float* Vb = V + (b & 1) * v_slice;
        int64_t i_lo, i_hi;
        blocked::split_range(g.I, omp_get_num_threads(), omp_get_thread_num(), i_lo, i_hi);
        const Block blk{b * plan.tb, plan.tiles(b)};
        input_phase<Tf>(plan, x, blk, i_lo, i_hi, Vb);
#pragma omp barrier
        product_phase<Tf>(plan, U, Vb, blk, p_lo, p_hi, M, bias, y);
      }
    }
  }
}

}  // namespace

bool winograd_applies(const Conv2dShape& s) {
  const int64_t max_pad = s.R - 1;  // grad_x's padding r - 1 - pad must not be negative
  return (s.R == 3 || s.R == 5) && s.S == s.R && s.stride_h == 1 && s.stride_w == 1 &&
         s.pad_h >= 0 && s.pad_h <= max_pad && s.pad_w >= 0 && s.pad_w <= max_pad && s.N > 0 &&
         s.C > 0 && s.K > 0 && s.P > 0 && s.Q > 0 && s.H > 0 &&
         s.W > 0;  // grad_x's tiles cover H x W: none divide by 0
}

namespace {

// With few channels the transforms outweigh the GEMMs; with few tiles the filter transform
// (36 floats per filter, written and read once: 38 MB for 512 x 512 channels) does. Measured
// (Xeon, one thread): 256 or 512 channels break even at 16 tiles (a 16x16 image) and run 1.5x
// faster than direct at 36; 64 channels (filters in cache) 2.2x faster at 16 tiles.
// F(2x2, 5x5) saves 64 of 100 multiplications per tile (F(4x4, 3x3): 108 of 144), so it needs
// about twice the tiles to repay a large filter transform; against the direct 5x5 kernels it
// pays from 8 channels: 1.3-1.9x faster on 8-256 channels and 4x4 to 32x32 images, 0.4-0.6x
// on 3 input channels (cifar-cnn's first layer) or 1-8 tiles.
bool winograd_pays_off(const Conv2dShape& s, const Geometry& g) {
  const int64_t filter_bytes = kXi * 4 * s.C * s.K, min_channels = s.R == 5 ? 8 : 16,
                enough_tiles = s.R == 5 ? 32 : 20;
  return winograd_applies(s) && s.C >= min_channels && s.K >= min_channels &&
         (g.T >= enough_tiles || (g.T >= 16 && filter_bytes <= (1 << 20)));
}

}  // namespace

bool winograd_pays_off_forward(const Conv2dShape& s) {
  return with_transform(s, [&](auto tf) { return winograd_pays_off(s, forward_geometry(tf, s)); });
}

bool winograd_pays_off_grad_x(const Conv2dShape& s) {
  return with_transform(s, [&](auto tf) { return winograd_pays_off(s, grad_x_geometry(tf, s)); });
}

void winograd_forward(const Conv2dShape& s, const float* x, const float* weight, const float* bias,
                      float* y) {
  with_transform(s, [&](auto tf) {
    winograd_conv<decltype(tf)>(forward_geometry(tf, s), x,
                                Filters{weight, s.C * s.R * s.S, s.R * s.S, false}, bias, y);
  });
}

void winograd_grad_x(const Conv2dShape& s, const float* grad_y, const float* weight,
                     float* grad_x) {
  with_transform(s, [&](auto tf) {
    winograd_conv<decltype(tf)>(grad_x_geometry(tf, s), grad_y,
                                Filters{weight, s.R * s.S, s.C * s.R * s.S, true}, nullptr,
                                grad_x);
  });
}

}  // namespace ds::cpu

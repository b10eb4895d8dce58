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
// The transforms, kLanes tiles at a time, are winograd_stages.h's; this file plans the call and
// runs them. Blocking: tiles are taken in blocks of NR-wide panels, sized so that a block's V
// and M stay within about L2. The filter transform writes U once per call in the GEMM's packed A
// layout; for each block the input transform writes V straight in the packed B layout, the
// micro-kernel of gemm_blocked.h runs on every (row panel, tile panel) of every ξ into M (no
// packing: U and V are the panels), and the output transform reads M into y. Threads take
// whole blocks each when there are enough (winograd_conv says how), else share each block: the
// input transform split by input channel, the GEMMs and output transform by output-channel
// panel, one barrier per block (V double-buffered). Every output is summed in a fixed order
// whatever the thread count (bitwise reproducible).
//
// grad_x of an r x r stride-1 convolution is the convolution of grad_y with the weights flipped
// and transposed, padding r - 1 - pad: the same kernel with the filter read the other way.
#include "winograd.h"

#include <omp.h>

#include <algorithm>

#include "gemm_blocked.h"
#include "simd.h"
#include "threads.h"
#include "winograd_stages.h"

namespace ds::cpu {
namespace {

using namespace winograd;
constexpr int64_t kSkew = 16;  // floats: one cache line

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
// (36 floats per filter, written and read once: 38 MB for 512 x 512 channels) does. F(4x4, 3x3)
// from 16 tiles (a 16x16 image) whatever the filters' size: 16 tiles ran in 0.53-0.78x direct's
// time on 128-512 channels (64: 0.72-0.98x) at 1 thread and 0.42-0.77x at 2 (Zen 4, Dec 2026;
// VGG's conv5_1 at 256x256: 11.4 -> 7.4 ms), 9 tiles 0.8-1.0x on 64-256 channels but up to 1.5x
// on 512 (bench/README.md, session 7); an older Xeon broke even at 16 tiles with 256-512
// channels, where filters of 64 channels (in cache) ran 2.2x faster.
// F(2x2, 5x5) saves 64 of 100 multiplications per tile (F(4x4, 3x3): 108 of 144), so it needs
// about twice the tiles to repay a large filter transform; against the direct 5x5 kernels it
// pays from 8 channels: 1.3-1.9x faster on 8-256 channels and 4x4 to 32x32 images, 0.4-0.6x
// on 3 input channels (cifar-cnn's first layer) or 1-8 tiles.
bool winograd_pays_off(const Conv2dShape& s, const Geometry& g) {
  if (!winograd_applies(s)) return false;
  if (s.R == 3) return s.C >= 16 && s.K >= 16 && g.T >= 16;
  const bool filters_in_cache = kXi * 4 * s.C * s.K <= (1 << 20);
  return s.C >= 8 && s.K >= 8 && (g.T >= 32 || (g.T >= 16 && filters_in_cache));
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

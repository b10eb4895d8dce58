// Geometry structs shared by every backend (ds::cpu, ds::cuda). deepstyle.ops computes all of
// their fields, output sizes included, once; the bindings only check that the geometry keeps
// every window inside its buffers (so a direct call can never read or write out of bounds).
#pragma once

#include <cstdint>

namespace ds {

// 2-D convolution in PyTorch's conventions: x (N, C, H, W), weight (K, C, R, S),
// y (N, K, P, Q) with P = (H + 2*pad_h - R) / stride_h + 1 and Q likewise.
struct Conv2dShape {
  int64_t N, C, H, W;
  int64_t K, R, S;
  int64_t stride_h, stride_w, pad_h, pad_w;
  int64_t P, Q;
};

// Which algorithm computes a convolution's forward pass and grad_x (deepstyle.ops' algo=):
// kAuto lets the backend pick; kWinograd asks for Winograd F(4x4, 3x3) or F(2x2, 5x5) where
// the geometry allows it (3x3 or 5x5, stride 1, padding < kernel), direct otherwise; a backend
// with one algorithm runs it for every value. grad_weight is always direct.
enum class ConvAlgo { kAuto, kDirect, kWinograd };

// 2-D pooling: x (N, C, H, W) -> y (N, C, P, Q), ceil_mode already applied to P and Q.
struct Pool2dShape {
  int64_t N, C, H, W;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
  int64_t P, Q;
};

// Null when every window of the geometry lies inside the (padded) input and P x Q is the whole
// output, else why not. A shorter P or Q would keep the windows inside x too, but the kernels
// that run grad_x as a convolution of grad_y (Winograd, the flipped stride-1 one) and Winograd's
// forward tiles size their images from H, W and the padding.
inline const char* conv_geometry_error(const Conv2dShape& s) {
  if (s.N < 0 || s.C < 0 || s.K < 0 || s.H < 0 || s.W < 0 || s.R < 1 || s.S < 1 || s.P < 1 ||
      s.Q < 1 || s.stride_h < 1 || s.stride_w < 1 || s.pad_h < 0 || s.pad_w < 0)
    return "conv2d: sizes and strides must be positive, padding non-negative";
  if ((s.P - 1) * s.stride_h + s.R > s.H + 2 * s.pad_h ||
      (s.Q - 1) * s.stride_w + s.S > s.W + 2 * s.pad_w)
    return "conv2d: output size too large for the padded input";
  if (s.P * s.stride_h + s.R <= s.H + 2 * s.pad_h || s.Q * s.stride_w + s.S <= s.W + 2 * s.pad_w)
    return "conv2d: output size short of the padded input's (P, Q must be the whole output)";
  return nullptr;
}

// Pooling windows may run past the padded input in ceil mode (they are clipped) but must start
// inside it.
inline const char* pool_geometry_error(const Pool2dShape& s) {
  if (s.N < 0 || s.C < 0 || s.H < 1 || s.W < 1 || s.kernel_h < 1 || s.kernel_w < 1 ||
      s.stride_h < 1 || s.stride_w < 1 || s.pad_h < 0 || s.pad_w < 0 || s.P < 1 || s.Q < 1 ||
      2 * s.pad_h > s.kernel_h || 2 * s.pad_w > s.kernel_w)
    return "pool2d: bad kernel/stride/padding/output size";
  if ((s.P - 1) * s.stride_h >= s.H + s.pad_h || (s.Q - 1) * s.stride_w >= s.W + s.pad_w)
    return "pool2d: output size too large for the input";
  return nullptr;
}

}  // namespace ds

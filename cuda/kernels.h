// The CUDA backend's function table: the signatures of the CPU kernels (cpp/*.h) in namespace
// ds::cuda, on device pointers, run on current_stream(). Host-only header (no CUDA types), so
// the pybind11 bindings compile with the host compiler.
#pragma once

#include <cstdint>

#include "../cpp/shapes.h"
#include "../cpp/updates.h"

namespace ds::cuda {

void set_stream_handle(void* stream);

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc);

// One algorithm (implicit GEMM) for every ConvAlgo value.
void conv2d_forward(const Conv2dShape& s, const float* x, const float* weight, const float* bias,
                    float* y, ConvAlgo algo = ConvAlgo::kAuto);
void conv2d_backward(const Conv2dShape& s, const float* grad_y, const float* x,
                     const float* weight, float* grad_x, float* grad_weight, float* grad_bias,
                     ConvAlgo algo = ConvAlgo::kAuto);

void max_pool2d_forward(const Pool2dShape& s, bool relu_after, const float* x, float* y);
void max_pool2d_backward(const Pool2dShape& s, bool relu_after, const float* grad_y,
                         const float* x, float* grad_x);
void avg_pool2d_forward(const Pool2dShape& s, bool count_include_pad, bool relu_before,
                        const float* x, float* y);
void avg_pool2d_backward(const Pool2dShape& s, bool count_include_pad, const float* grad_y,
                         const float* relu_x, float* grad_x);

void gram_forward(int64_t N, int64_t C, int64_t HW, const float* x, float* g);
void gram_backward(int64_t N, int64_t C, int64_t HW, const float* grad_g, const float* x,
                   float* grad_x);

void relu_forward(int64_t n, const float* x, float* y);
void relu_backward(int64_t n, const float* grad_y, const float* x, float* grad_x);
void leaky_relu_forward(int64_t n, float slope, const float* x, float* y);
void leaky_relu_backward(int64_t n, float slope, const float* grad_y, const float* x,
                         float* grad_x);
void sigmoid_forward(int64_t n, const float* x, float* y);
void sigmoid_backward(int64_t n, const float* grad_y, const float* y, float* grad_x);
void tanh_forward(int64_t n, const float* x, float* y);
void tanh_backward(int64_t n, const float* grad_y, const float* y, float* grad_x);

void sgd_update(int64_t n, const SgdUpdate& update, float* param, const float* grad,
                float* velocity);
void adam_update(int64_t n, const AdamUpdate& update, float* param, const float* grad, float* m,
                 float* v);

double softmax_cross_entropy(int64_t N, int64_t K, const float* logits, const int64_t* labels,
                             float* grad_logits);

}  // namespace ds::cuda

// Host launchers of the CUDA kernels: ds::cuda's function table (kernels.h). Compiled by nvcc for
// deepstyle._cuda, and as C++20 over emulation.h for deepstyle._cuda_emulated (emulated.cpp).
#include "conv.cuh"
#include "elementwise.cuh"
#include "gemm.cuh"
#include "kernels.h"
#include "pool.cuh"

namespace ds::cuda {

namespace {
thread_local cudaStream_t stream_of_this_thread = nullptr;

template <class F>
void unary(const char* name, int64_t n, F f, const float* x, float* y) {
  launch(name, map_unary<F>, dim3(elementwise_blocks(n)), dim3(kBlock), n, f, x, y);
}

template <class F>
void binary(const char* name, int64_t n, F f, const float* grad_y, const float* saved,
            float* grad_x) {
  launch(name, map_binary<F>, dim3(elementwise_blocks(n)), dim3(kBlock), n, f, grad_y, saved,
         grad_x);
}
}  // namespace

cudaStream_t current_stream() { return stream_of_this_thread; }
void set_stream(cudaStream_t stream) { stream_of_this_thread = stream; }
void set_stream_handle(void* stream) { set_stream(static_cast<cudaStream_t>(stream)); }

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc) {
  run_gemm("sgemm", MatrixProduct{M, N, K, A, lda, trans_a, B, ldb, trans_b, alpha, beta, C, ldc});
}

void conv2d_forward(const Conv2dShape& s, const float* x, const float* weight, const float* bias,
                    float* y, ConvAlgo) {
  run_gemm("conv2d_forward",
           ConvForward{s.K, s.N * s.P * s.Q, s.C * s.R * s.S, s, x, weight, bias, y});
}

void conv2d_backward(const Conv2dShape& s, const float* grad_y, const float* x,
                     const float* weight, float* grad_x, float* grad_weight, float* grad_bias,
                     ConvAlgo) {
  if (grad_x)
    run_gemm("conv2d_backward (grad_x)",
             ConvGradInput{s.C, s.N * s.H * s.W, s.K * s.R * s.S, s, grad_y, weight, grad_x});
  if (grad_weight)
    run_gemm("conv2d_backward (grad_weight)",
             ConvGradWeight{s.K, s.C * s.R * s.S, s.N * s.P * s.Q, s, grad_y, x, grad_weight});
  if (grad_bias)
    launch("conv2d_backward (grad_bias)", conv_grad_bias, dim3(static_cast<unsigned>(s.K)),
           dim3(kBlock), s, grad_y, grad_bias);
}

void max_pool2d_forward(const Pool2dShape& s, bool relu_after, const float* x, float* y) {
  launch("max_pool2d_forward", pool_forward, dim3(elementwise_blocks(s.N * s.C * s.P * s.Q)),
         dim3(kBlock), s, true, false, relu_after, x, y);
}

void max_pool2d_backward(const Pool2dShape& s, bool relu_after, const float* grad_y,
                         const float* x, float* grad_x) {
  launch("max_pool2d_backward", pool_backward, dim3(elementwise_blocks(s.N * s.C * s.H * s.W)),
         dim3(kBlock), s, true, false, relu_after, grad_y, x, grad_x);
}

void avg_pool2d_forward(const Pool2dShape& s, bool count_include_pad, bool relu_before,
                        const float* x, float* y) {
  launch("avg_pool2d_forward", pool_forward, dim3(elementwise_blocks(s.N * s.C * s.P * s.Q)),
         dim3(kBlock), s, false, count_include_pad, relu_before, x, y);
}

void avg_pool2d_backward(const Pool2dShape& s, bool count_include_pad, const float* grad_y,
                         const float* relu_x, float* grad_x) {
  launch("avg_pool2d_backward", pool_backward, dim3(elementwise_blocks(s.N * s.C * s.H * s.W)),
         dim3(kBlock), s, false, count_include_pad, relu_x != nullptr, grad_y, relu_x, grad_x);
}

void gram_forward(int64_t N, int64_t C, int64_t HW, const float* x, float* g) {
  run_gemm("gram_forward", GramForward{C, C, HW, x, g, 1.0f / static_cast<float>(HW)}, N);
}

void gram_backward(int64_t N, int64_t C, int64_t HW, const float* grad_g, const float* x,
                   float* grad_x) {
  run_gemm("gram_backward",
           GramBackward{C, HW, C, grad_g, x, grad_x, 1.0f / static_cast<float>(HW)}, N);
}

void relu_forward(int64_t n, const float* x, float* y) { unary("relu_forward", n, Relu{}, x, y); }
void relu_backward(int64_t n, const float* grad_y, const float* x, float* grad_x) {
  binary("relu_backward", n, ReluGrad{}, grad_y, x, grad_x);
}
void leaky_relu_forward(int64_t n, float slope, const float* x, float* y) {
  unary("leaky_relu_forward", n, LeakyRelu{slope}, x, y);
}
void leaky_relu_backward(int64_t n, float slope, const float* grad_y, const float* x,
                         float* grad_x) {
  binary("leaky_relu_backward", n, LeakyReluGrad{slope}, grad_y, x, grad_x);
}
void sigmoid_forward(int64_t n, const float* x, float* y) {
  unary("sigmoid_forward", n, Sigmoid{}, x, y);
}
void sigmoid_backward(int64_t n, const float* grad_y, const float* y, float* grad_x) {
  binary("sigmoid_backward", n, SigmoidGrad{}, grad_y, y, grad_x);
}
void tanh_forward(int64_t n, const float* x, float* y) { unary("tanh_forward", n, Tanh{}, x, y); }
void tanh_backward(int64_t n, const float* grad_y, const float* y, float* grad_x) {
  binary("tanh_backward", n, TanhGrad{}, grad_y, y, grad_x);
}

void sgd_update(int64_t n, const SgdUpdate& update, float* param, const float* grad,
                float* velocity) {
  launch("sgd_update", sgd_update_kernel, dim3(elementwise_blocks(n)), dim3(kBlock), n, update,
         param, grad, velocity);
}

void adam_update(int64_t n, const AdamUpdate& update, float* param, const float* grad, float* m,
                 float* v) {
  launch("adam_update", adam_update_kernel, dim3(elementwise_blocks(n)), dim3(kBlock), n, update,
         param, grad, m, v);
}

double softmax_cross_entropy(int64_t N, int64_t K, const float* logits, const int64_t* labels,
                             float* grad_logits) {
  launch("softmax_cross_entropy", softmax_cross_entropy_kernel, dim3(1), dim3(kBlock), N, K,
         logits, labels, grad_logits);
  double loss = 0.0;
  check(cudaMemcpyFromSymbolAsync(&loss, softmax_loss, sizeof loss, 0, cudaMemcpyDeviceToHost,
                                  current_stream()),
        "softmax_cross_entropy (copying the loss)");
  check(cudaStreamSynchronize(current_stream()), "softmax_cross_entropy (synchronising)");
  return loss;
}

}  // namespace ds::cuda

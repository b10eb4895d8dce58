// Native benchmark of the CPU kernels: prints the best time and GFLOP/s (or GB/s for pooling) of
// each kernel on the shapes the issue cares about. Build with -DDEEPSTYLE_BENCH=ON and run
//   build/dev/bench_kernels [--quick] [--threads N] [gemm|conv|pool|gram ...]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "conv.h"
#include "gemm.h"
#include "gram.h"
#include "pool.h"
#include "threads.h"

namespace {

bool g_quick = false;

std::vector<float> random_floats(int64_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& f : v) f = dist(gen);
  return v;
}

// Best wall time in seconds over repeats of fn, after one warm-up call; repeats until at least
// min_total seconds have passed (fewer with --quick).
double best_seconds(const std::function<void()>& fn) {
  fn();
  const double min_total = g_quick ? 0.1 : 0.5;
  const int min_reps = g_quick ? 2 : 5;
  double best = 1e30, total = 0.0;
  for (int rep = 0; rep < min_reps || total < min_total; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, dt);
    total += dt;
    if (rep > 1000) break;
  }
  return best;
}

void report(const char* kernel, const std::string& shape, double seconds, double flops) {
  std::printf("%-22s %-40s %10.3f ms %8.1f GFLOP/s\n", kernel, shape.c_str(), seconds * 1e3,
              flops / seconds * 1e-9);
  std::fflush(stdout);
}

void bench_gemm() {
  struct Case { int64_t M, N, K; };
  std::vector<Case> cases = {{64, 64, 64},      {128, 128, 128},   {256, 256, 256},
                             {512, 512, 512},   {1024, 1024, 1024}, {2048, 2048, 2048},
                             {32, 102400, 75},  {64, 4096, 800},    {64, 65536, 576},
                             {512, 1024, 4608}, {10, 100, 64}};
  for (const Case& c : cases) {
    if (g_quick && c.M * c.N * c.K > (int64_t)1 << 31) continue;
    auto a = random_floats(c.M * c.K, 1), b = random_floats(c.K * c.N, 2);
    std::vector<float> out(c.M * c.N);
    const double t = best_seconds([&] {
      ds::cpu::sgemm(false, false, c.M, c.N, c.K, 1.0f, a.data(), c.K, b.data(), c.N, 0.0f,
                out.data(), c.N);
    });
    report("sgemm", std::to_string(c.M) + "x" + std::to_string(c.N) + "x" + std::to_string(c.K),
           t, 2.0 * c.M * c.N * c.K);
  }
}

struct ConvCase {
  const char* name;
  int64_t N, C, H, W, K, R, S, pad;
};

const std::vector<ConvCase>& conv_cases() {
  static const std::vector<ConvCase> cases = {
      {"cifar1 5x5 3->32", 100, 3, 32, 32, 32, 5, 5, 2},
      {"cifar2 5x5 32->32", 100, 32, 16, 16, 32, 5, 5, 2},
      {"cifar3 5x5 32->64", 100, 32, 8, 8, 64, 5, 5, 2},
      {"cifar4 4x4 64->64", 100, 64, 4, 4, 64, 4, 4, 0},
      {"cifar5 1x1 64->10", 100, 64, 1, 1, 10, 1, 1, 0},
      {"vgg conv1_1", 1, 3, 256, 256, 64, 3, 3, 1},
      {"vgg conv2_1", 1, 64, 128, 128, 128, 3, 3, 1},
      {"vgg conv3_1", 1, 128, 64, 64, 256, 3, 3, 1},
      {"vgg conv4_1", 1, 256, 32, 32, 512, 3, 3, 1},
      {"vgg conv5_1", 1, 512, 16, 16, 512, 3, 3, 1},
  };
  return cases;
}

void bench_conv() {
  for (const ConvCase& c : conv_cases()) {
    ds::Conv2dShape s{c.N, c.C, c.H, c.W, c.K, c.R, c.S, 1, 1, c.pad, c.pad, 0, 0};
    s.P = c.H + 2 * c.pad - c.R + 1;
    s.Q = c.W + 2 * c.pad - c.S + 1;
    auto x = random_floats(s.N * s.C * s.H * s.W, 1), w = random_floats(s.K * s.C * s.R * s.S, 2);
    auto bias = random_floats(s.K, 3), dy = random_floats(s.N * s.K * s.P * s.Q, 4);
    std::vector<float> y(dy.size()), dx(x.size()), dw(w.size()), db(s.K);
    const double flops = 2.0 * s.N * s.K * s.P * s.Q * s.C * s.R * s.S;
    report("conv2d forward", c.name,
           best_seconds([&] { ds::cpu::conv2d_forward(s, x.data(), w.data(), bias.data(), y.data()); }),
           flops);
    report("conv2d grad_x", c.name, best_seconds([&] {
             ds::cpu::conv2d_backward(s, dy.data(), x.data(), w.data(), dx.data(), nullptr, nullptr);
           }),
           flops);
    report("conv2d grad_w+b", c.name, best_seconds([&] {
             ds::cpu::conv2d_backward(s, dy.data(), x.data(), w.data(), nullptr, dw.data(), db.data());
           }),
           flops);
  }
}

void bench_pool() {
  struct Case { const char* name; int64_t N, C, H, W, k, stride, pad; bool ceil; };
  const std::vector<Case> cases = {{"3x3/2 (100,32,32,32) ceil", 100, 32, 32, 32, 3, 2, 0, true},
                                   {"2x2/2 (1,64,256,256)", 1, 64, 256, 256, 2, 2, 0, false},
                                   {"2x2/2 (1,512,32,32)", 1, 512, 32, 32, 2, 2, 0, false}};
  for (const Case& c : cases) {
    ds::Pool2dShape s{c.N, c.C, c.H, c.W, c.k, c.k, c.stride, c.stride, c.pad, c.pad, 0, 0};
    auto out_size = [&](int64_t in) {
      const int64_t span = in + 2 * c.pad - c.k;
      int64_t out = (c.ceil ? (span + c.stride - 1) / c.stride : span / c.stride) + 1;
      if (c.ceil && (out - 1) * c.stride >= in + c.pad) --out;
      return out;
    };
    s.P = out_size(c.H);
    s.Q = out_size(c.W);
    auto x = random_floats(s.N * s.C * s.H * s.W, 1), dy = random_floats(s.N * s.C * s.P * s.Q, 2);
    std::vector<float> y(dy.size()), dx(x.size());
    // Pooling is memory-bound: report bytes moved (read x, write y) as "GB/s" in the GFLOP column.
    const double bytes = 4.0 * (x.size() + y.size());
    report("max_pool2d forward", c.name,
           best_seconds([&] { ds::cpu::max_pool2d_forward(s, false, x.data(), y.data()); }),
           bytes);
    report("max_pool2d backward", c.name,
           best_seconds(
               [&] { ds::cpu::max_pool2d_backward(s, false, dy.data(), x.data(), dx.data()); }),
           bytes + 4.0 * x.size());
    report("avg_pool2d forward", c.name,
           best_seconds([&] { ds::cpu::avg_pool2d_forward(s, true, false, x.data(), y.data()); }),
           bytes);
    report("avg_pool2d backward", c.name,
           best_seconds(
               [&] { ds::cpu::avg_pool2d_backward(s, true, dy.data(), nullptr, dx.data()); }),
           bytes);
  }
  std::printf("(pooling rows show GB/s of x and y traffic, not GFLOP/s)\n");
}

void bench_gram() {
  struct Case { const char* name; int64_t C, HW; };
  const std::vector<Case> cases = {{"vgg relu1_1 64x65536", 64, 65536},
                                   {"vgg relu3_1 256x4096", 256, 4096},
                                   {"vgg relu5_1 512x256", 512, 256}};
  for (const Case& c : cases) {
    auto x = random_floats(c.C * c.HW, 1), gg = random_floats(c.C * c.C, 2);
    std::vector<float> g(c.C * c.C), dx(x.size());
    const double flops = 2.0 * c.C * c.C * c.HW;
    report("gram forward", c.name,
           best_seconds([&] { ds::cpu::gram_forward(1, c.C, c.HW, x.data(), g.data()); }), flops);
    report("gram backward", c.name,
           best_seconds([&] { ds::cpu::gram_backward(1, c.C, c.HW, gg.data(), x.data(), dx.data()); }),
           flops);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> which;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) {
      g_quick = true;
    } else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) {
      ds::set_num_threads(std::atoi(argv[++i]));
    } else {
      which.push_back(argv[i]);
    }
  }
  auto wanted = [&](const char* name) {
    return which.empty() || std::find(which.begin(), which.end(), name) != which.end();
  };
  std::printf("deepstyle kernels: SIMD %s, %d threads\n", ds::simd_level(), ds::num_threads());
  if (wanted("gemm")) bench_gemm();
  if (wanted("conv")) bench_conv();
  if (wanted("pool")) bench_pool();
  if (wanted("gram")) bench_gram();
  return 0;
}

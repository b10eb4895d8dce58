// The CUDA launchers and kernels compiled as C++20 over emulation.h: deepstyle._cuda_emulated
// runs the CUDA backend's own source on the CPU, on NumPy arrays, for the test suite.
#include "launchers.cu"

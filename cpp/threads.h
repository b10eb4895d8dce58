// Thread count shared by every CPU kernel. Each parallel region passes num_threads()
// explicitly, so the setting holds whichever Python thread calls the kernel.
#pragma once

namespace ds {

void set_num_threads(int n);
int num_threads();
int max_hardware_threads();

// Name of the SIMD instruction set the kernels were compiled for.
const char* simd_level();

}  // namespace ds

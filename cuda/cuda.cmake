# The CUDA backend (deepstyle._cuda) when nvcc is found, and the emulated module
# (deepstyle._cuda_emulated: the same kernel source compiled for the CPU, for the tests), which
# needs no CUDA toolkit at all.
option(DEEPSTYLE_CUDA "Build the CUDA backend when nvcc is found" ON)
option(DEEPSTYLE_CUDA_EMULATION "Build deepstyle._cuda_emulated for the tests" ON)
# Real sm_80 (A100, RTX 30/40, L4) and sm_90 (H100) code plus sm_90 PTX for newer GPUs.
# Overridable with -DCMAKE_CUDA_ARCHITECTURES=... or the DEEPSTYLE_CUDA_ARCHITECTURES variable.
set(DEEPSTYLE_CUDA_ARCHITECTURES "80-real;90" CACHE STRING "GPU architectures of deepstyle._cuda")
if(DEFINED ENV{DEEPSTYLE_CUDA_ARCHITECTURES})
  set(DEEPSTYLE_CUDA_ARCHITECTURES "$ENV{DEEPSTYLE_CUDA_ARCHITECTURES}")
endif()

if(DEEPSTYLE_CUDA)
  include(CheckLanguage)
  # CMake looks for nvcc on PATH only; the toolkit's standard place is a good second guess.
  if(NOT DEFINED CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
    find_program(DEEPSTYLE_NVCC nvcc HINTS ENV CUDA_HOME ENV CUDA_PATH PATH_SUFFIXES bin
                 PATHS /usr/local/cuda/bin)
    if(DEEPSTYLE_NVCC)
      set(CMAKE_CUDA_COMPILER "${DEEPSTYLE_NVCC}")
    endif()
  endif()
  check_language(CUDA)
endif()

if(DEEPSTYLE_CUDA AND CMAKE_CUDA_COMPILER)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES "${DEEPSTYLE_CUDA_ARCHITECTURES}")
  endif()
  # Static cudart: the module imports on machines without a driver (cuda_available() then
  # reports no device instead of the import failing).
  set(CMAKE_CUDA_RUNTIME_LIBRARY Static)
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  message(STATUS "deepstyle: building the CUDA backend with ${CMAKE_CUDA_COMPILER} for "
                 "architectures ${CMAKE_CUDA_ARCHITECTURES}")
  add_library(deepstyle_cuda_kernels STATIC cuda/launchers.cu)
  set_target_properties(deepstyle_cuda_kernels PROPERTIES POSITION_INDEPENDENT_CODE ON
                        CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON)
  target_compile_options(deepstyle_cuda_kernels PRIVATE -O3)
  pybind11_add_module(_cuda cuda/bindings.cpp)
  target_link_libraries(_cuda PRIVATE deepstyle_cuda_kernels CUDA::cudart_static)
  list(APPEND DEEPSTYLE_MODULES _cuda)
else()
  message(STATUS "deepstyle: nvcc not found (or DEEPSTYLE_CUDA=OFF): building the CPU backend "
                 "only; set CUDACXX to nvcc's path to build the CUDA one")
endif()

if(DEEPSTYLE_CUDA_EMULATION)
  find_package(Threads REQUIRED)
  pybind11_add_module(_cuda_emulated cuda/bindings.cpp cuda/emulated.cpp)
  set_target_properties(_cuda_emulated PROPERTIES CXX_STANDARD 20 CXX_STANDARD_REQUIRED ON)
  target_compile_definitions(_cuda_emulated PRIVATE DS_CUDA_EMULATED)
  # -O1: the emulated kernels only have to be checked, not fast, and build time counts in CI.
  target_compile_options(_cuda_emulated PRIVATE -O1 -Wall -Wextra -Wno-unknown-pragmas)
  target_link_libraries(_cuda_emulated PRIVATE Threads::Threads)
  list(APPEND DEEPSTYLE_MODULES _cuda_emulated)
endif()

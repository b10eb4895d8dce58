#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run of the kernels: builds the extension with
# -fsanitize=address,undefined into build/sanitize (a copy of the Python package with its own
# _cpu module, so the developer build is untouched) and runs the kernel tests against it, any
# sanitizer report failing the run. Extra arguments replace the default test selection
# (another suite that drives the C++ kernels can be added to SANITIZED_TESTS below).
#   scripts/sanitize.sh                       # tests/test_ops_*.py, the emulated CUDA kernels
#   scripts/sanitize.sh tests/test_ops_conv.py -k few
set -euo pipefail
cd "$(dirname "$0")/.."
SANITIZED_TESTS=(tests/test_ops_*.py tests/test_cuda_emulated.py)
asan="$(gcc -print-file-name=libasan.so)" ubsan="$(gcc -print-file-name=libubsan.so)"
if [ ! -f "$asan" ] || [ ! -f "$ubsan" ]; then  # a gcc without its sanitizer runtimes
  echo "warning: libasan/libubsan not found; sanitizer run skipped" >&2
  exit 0
fi
build=build/sanitize
package="$build/package"
for tool in cmake ninja; do
  command -v "$tool" >/dev/null || python -m pip install -q "$tool"
done
python -c "import pybind11" 2>/dev/null || python -m pip install -q pybind11
rm -rf "$package" && mkdir -p "$package"
cp -r python/deepstyle "$package/deepstyle"
find "$package/deepstyle" \( -name '_cpu*.so' -o -name '_cuda*.so' \) -delete
flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
cmake -S . -B "$build/cmake" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_MODULE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DDEEPSTYLE_MODULE_DIR="$PWD/$package/deepstyle" -DDEEPSTYLE_CUDA=OFF \
  -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" >/dev/null
cmake --build "$build/cmake" -j 2 >/dev/null
# Python itself is not instrumented: the ASan runtime must be loaded first. Leak checking is off
# (the interpreter's own allocations at exit are not ours); any error ends the process. pytest
# captures the test's stderr, which an abort loses: the reports go to files, shown on failure.
rm -f "$build"/sanitizer-report.*
status=0
LD_PRELOAD="$asan $ubsan" \
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1:log_path="$PWD/$build/sanitizer-report" \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path="$PWD/$build/sanitizer-report" \
PYTHONPATH="$PWD/$package" \
  python -m pytest -p no:cacheprovider "${@:-${SANITIZED_TESTS[@]}}" || status=$?
if [ "$status" -ne 0 ]; then
  cat "$build"/sanitizer-report.* >&2 2>/dev/null || true
fi
exit "$status"

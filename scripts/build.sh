#!/usr/bin/env bash
# Developer build: compiles the extension in place (python/deepstyle/_cpu*.so) so that
# `PYTHONPATH=python pytest` runs against the working tree. A lock keeps concurrent
# builds from tripping over each other on this 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
exec 9>/tmp/deepstyle-build.lock
flock 9
if [ ! -f build/dev/build.ninja ]; then
  cmake -S . -B build/dev -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" "$@"
fi
cmake --build build/dev -j 2

#!/usr/bin/env bash
# Configures and builds blocklab (Release) into build/. Extra arguments go to CMake's
# configure step, e.g. scripts/build.sh -DBLOCKLAB_TESTS=OFF.
set -euo pipefail
cd "$(dirname "$0")/.."
# nvcc from the CUDA toolkit, when it is installed but not on PATH: the CUDA path is built.
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDACXX=/usr/local/cuda/bin/nvcc; fi
generator=(); command -v ninja >/dev/null && generator=(-G Ninja)
if [ ! -f build/CMakeCache.txt ]; then
  cmake -S . -B build "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "$@"
elif (($#)); then
  cmake -S . -B build "$@"
fi
cmake --build build --parallel "$(nproc)"

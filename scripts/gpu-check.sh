#!/usr/bin/env bash
# Runs THERE, on a GPU machine (PyTorch 2.11 + CUDA 13, nvcc, CMake, ninja, 16 cores), in the repo
# root, as one command within ~9 minutes; scripts/gpu-prepare.sh has put the Debian packages it
# lacks into .gpu-debs/ (carried with the tree). Steps, each logged and timed, a failure noted and
# the next step run anyway:
#   1. the machine: GPU, driver, OS, glibc, compilers, Python, torch
#   2. unpack .gpu-debs/*.deb with dpkg -x into $BLOCKLAB_DEPS (default /opt/blocklab-deps)
#   3. configure build-gpu/ against the machine's own LibTorch (python3's torch), CUDA arch 90
#   4. build blocklab and blocklab_tests
#   5. blocklab_tests "[cuda]": every mixer on CUDA vs its CPU run, bf16 autocast, training
#   6. blocklab bench vit on cuda (fp32 and bf16) against the same ViT in PyTorch Python
#   7. blocklab bench mixers on cuda with --peer (PyTorch SDPA and FlexAttention)
# Writes to $OUT (the device tool's folder; ./gpu-out without it), at most 8 files:
#   gpu-check.log, nvidia-smi.txt, cuda-tests.txt, bench-vit.md, bench-mixers.md, bench-mixers.png
# GPU_CHECK_SECONDS (default 540) is the whole budget; each step's timeout fits in what is left.
# A second run on the same machine reuses build-gpu/ and the unpacked prefix.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
START=$(date +%s)
BUDGET=${GPU_CHECK_SECONDS:-540}
OUT=${OUT:-$PWD/gpu-out}
DEPS=${BLOCKLAB_DEPS:-/opt/blocklab-deps}
BUILD=build-gpu
JOBS=$(nproc)
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu-check.log") 2>&1
TEE_PID=$!
SUMMARY=$(mktemp)  # a file: steps inside pipelines run in subshells

section() { printf '\n===== %s (at %d s) =====\n' "$*" $(($(date +%s) - START)); }
left() { echo $((START + BUDGET - $(date +%s))); }
# step NAME CAP RESERVE CMD...: runs CMD under a timeout of CAP seconds, or less so that RESERVE
# seconds stay for the steps after it; records NAME's outcome; never stops the script.
step() {
  local name=$1 cap=$2 reserve=$3 limit rc t0
  shift 3
  limit=$(($(left) - reserve))
  ((limit > cap)) && limit=$cap
  if ((limit < 15)); then
    echo "SKIPPED $name: only $(left) s of the budget left"
    echo "$name: skipped (no time left)" >>"$SUMMARY"
    return 124
  fi
  echo "+ [timeout ${limit}s] $*"
  t0=$(date +%s)
  timeout -k 10 "$limit" "$@"
  rc=$?
  local took=$(($(date +%s) - t0))
  local what="exit $rc"
  ((rc == 0)) && what="ok"
  ((rc == 124 || rc == 137)) && what="TIMED OUT after ${limit}s"
  echo "--- $name: $what (${took} s)"
  echo "$name: $what (${took} s)" >>"$SUMMARY"
  return $rc
}

section "1. machine"
nvidia-smi 2>&1 | tee "$OUT/nvidia-smi.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>&1 |
  tee -a "$OUT/nvidia-smi.txt"
echo "host $(hostname), $(nproc) cores, $(uname -r)"
grep -E '^(PRETTY_NAME|VERSION_ID)=' /etc/os-release 2>/dev/null
ldd --version 2>&1 | head -1
PY=$(command -v python3)
echo "python3: $PY ($($PY --version 2>&1))"
$PY -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'cuDNN', torch.backends.cudnn.version(),
'available', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '');
print('cmake_prefix_path', torch.utils.cmake_prefix_path)" 2>&1
NVCC=$(command -v nvcc || true)
for candidate in /usr/local/cuda/bin/nvcc /usr/local/cuda-13*/bin/nvcc; do
  [ -z "$NVCC" ] && [ -x "$candidate" ] && NVCC=$candidate
done
echo "nvcc: ${NVCC:-not found}"; [ -n "$NVCC" ] && "$NVCC" --version | tail -2
for tool in cmake ninja g++ pkg-config; do
  printf '%s: %s %s\n' "$tool" "$(command -v $tool || echo 'not found')" "$($tool --version 2>/dev/null | head -1)"
done
echo "budget ${BUDGET} s; OUT=$OUT; deps prefix $DEPS"

section "2. unpack the carried Debian packages"
unpack() {
  local debs=(.gpu-debs/*.deb)
  [ -e "${debs[0]}" ] || { echo "no .gpu-debs/*.deb: run scripts/gpu-prepare.sh here and carry .gpu-debs"; return 1; }
  mkdir -p "$DEPS"
  for f in "${debs[@]}"; do dpkg -x "$f" "$DEPS" || return 1; done
  echo "${#debs[@]} packages unpacked into $DEPS"
  # Absolute links inside the packages (libz.so -> /lib/...) point into the prefix instead.
  find "$DEPS" -type l | while read -r link; do
    target=$(readlink "$link")
    [[ $target == /* && -e $DEPS$target ]] && ln -sfn "$DEPS$target" "$link"
  done
  local lib=$DEPS/usr/lib/x86_64-linux-gnu
  # cairo.pc without Requires.private (their -dev packages are not carried; cairo.h needs none).
  cat >"$lib/pkgconfig/cairo.pc" <<EOF
prefix=$DEPS/usr
libdir=\${prefix}/lib/x86_64-linux-gnu
includedir=\${prefix}/include
Name: cairo
Description: cairo from Debian 12, unpacked by scripts/gpu-check.sh
Version: 1.16.0
Libs: -L\${libdir} -lcairo
Cflags: -I\${includedir}/cairo
EOF
  # Only the libraries this machine lacks go on LD_LIBRARY_PATH (its own newer ones stay in use).
  mkdir -p "$DEPS/runtime-lib"
  local known
  known=$( (ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null) | awk 'NR > 1 {print $1}')
  find "$lib" "$DEPS/lib/x86_64-linux-gnu" -maxdepth 1 -name 'lib*.so.*' 2>/dev/null | while read -r f; do
    name=$(basename "$f")
    grep -qxF "$name" <<<"$known" || ln -sfn "$f" "$DEPS/runtime-lib/$name"
  done
  echo "libraries the machine lacks: $(ls "$DEPS/runtime-lib" | tr '\n' ' ')"
  cat >"$DEPS/fonts.conf" <<EOF
<?xml version="1.0"?>
<fontconfig><dir>$DEPS/usr/share/fonts</dir><dir>/usr/share/fonts</dir><cachedir>/tmp/blocklab-fontconfig</cachedir></fontconfig>
EOF
}
step unpack 120 300 bash -c "$(declare -f unpack); DEPS='$DEPS'; unpack"
export LD_LIBRARY_PATH="$DEPS/runtime-lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CPLUS_INCLUDE_PATH="$DEPS/usr/include${CPLUS_INCLUDE_PATH:+:$CPLUS_INCLUDE_PATH}"  # gloo/ for c10d
export FONTCONFIG_FILE="$DEPS/fonts.conf"
PKG_CONFIG=$(command -v pkg-config || echo "$DEPS/usr/bin/pkgconf")
export PKG_CONFIG_PATH="$DEPS/usr/lib/x86_64-linux-gnu/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"

section "3. configure ($BUILD, against python3's torch)"
TORCH_PREFIX=$($PY -c "import torch.utils; print(torch.utils.cmake_prefix_path)" 2>/dev/null)
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cuda_args=(-DCMAKE_CUDA_ARCHITECTURES=90 -DTORCH_CUDA_ARCH_LIST=9.0)
if [ -n "$NVCC" ]; then
  # LibTorch's CMake config asks the legacy FindCUDA (nvcc on PATH) and FindCUDAToolkit: one toolkit for both.
  CUDA_ROOT=$(dirname "$(dirname "$NVCC")")
  export PATH="$CUDA_ROOT/bin:$PATH" CUDACXX="$NVCC" CUDA_HOME="$CUDA_ROOT"
  cuda_args+=(-DCMAKE_CUDA_COMPILER="$NVCC" -DCUDAToolkit_ROOT="$CUDA_ROOT" -DCUDA_TOOLKIT_ROOT_DIR="$CUDA_ROOT")
fi
step configure 180 240 cmake -S . -B "$BUILD" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_POLICY_VERSION_MINIMUM=3.5 -DBLOCKLAB_PYTHON="$PY" -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$DEPS/usr" -DPKG_CONFIG_EXECUTABLE="$PKG_CONFIG" \
  -DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath-link,$DEPS/usr/lib/x86_64-linux-gnu" "${cuda_args[@]}"

section "4. build blocklab and blocklab_tests (-j$JOBS)"
step build 400 150 cmake --build "$BUILD" --target blocklab blocklab_tests --parallel "$JOBS"

section "5. blocklab_tests [cuda]"
if [ -x "$BUILD/blocklab_tests" ]; then
  step cuda-tests 150 100 "$BUILD/blocklab_tests" "[cuda]" --durations yes 2>&1 | tee "$OUT/cuda-tests.txt"
else
  echo "no $BUILD/blocklab_tests: the build failed (see above)" | tee "$OUT/cuda-tests.txt"
fi

GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
section "6. bench vit on cuda"
if [ -x "$BUILD/blocklab" ]; then
  {
    echo "## bench vit on ${GPU_NAME:-cuda} ($(date -u +%F))"
    echo
    for precision in fp32 bf16; do
      echo '```'
      echo "\$ blocklab bench vit --device cuda --precision $precision --rounds 3"
      step "bench-vit-$precision" 60 60 "$BUILD/blocklab" bench vit --device cuda --precision $precision --rounds 3 2>&1
      echo '```'
    done
    echo '```'
    echo "\$ blocklab bench vit --device cuda --precision bf16 --batch 1024 --dim 192 --depth 6 --heads 3 --rounds 3"
    step bench-vit-large 60 60 "$BUILD/blocklab" bench vit --device cuda --precision bf16 --batch 1024 --dim 192 \
      --depth 6 --heads 3 --rounds 3 2>&1
    echo '```'
  } | tee "$OUT/bench-vit.md"
fi

section "7. bench mixers on cuda, with PyTorch SDPA / FlexAttention peers"
if [ -x "$BUILD/blocklab" ]; then
  mixers=attention/softmax:mask.type=mask/alibi,linear/elu,linear/lightning,retention/retnet
  bench_mixers() {
    echo '```'
    echo "\$ blocklab bench mixers --device cuda --peer --mixers $1 --lengths 1024,4096,16384 --rounds 3 --min-time 0.1"
    step "bench-mixers" 150 0 "$BUILD/blocklab" bench mixers --device cuda --peer --mixers "$1" \
      --lengths 1024,4096,16384 --rounds 3 --min-time 0.1 --out "$BUILD/bench" 2>&1
    local rc=$?
    echo '```'
    return $rc
  }
  {
    echo "## bench mixers on ${GPU_NAME:-cuda} ($(date -u +%F))"
    echo
    # Without the ALiBi entry if that one is refused (an exit 2 comes before any timing).
    bench_mixers "$mixers" || { [ $? -eq 2 ] && bench_mixers linear/elu,linear/lightning,retention/retnet; }
  } | tee "$OUT/bench-mixers.md"
  cp "$BUILD/bench/bench_mixers.png" "$OUT/bench-mixers.png" 2>/dev/null
fi

section "summary"
cat "$SUMMARY"
echo "GPU: ${GPU_NAME:-unknown}; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
echo "total $(($(date +%s) - START)) s of a ${BUDGET} s budget"
exec >&- 2>&-
wait "$TEE_PID" 2>/dev/null  # the log is complete before the command returns

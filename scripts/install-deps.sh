#!/usr/bin/env bash
# Installs everything blocklab needs on Debian 12, idempotently:
#   - Debian packages: compiler, CMake/Ninja, yaml-cpp, Boost.Program_options, Catch2, datasets
#   - LibTorch from the pinned PyPI `torch` wheel (CUDA 13 build) in the project venv .venv,
#     with the three CUDA libraries the machine's toolkit lacks, plus the Python peers used by
#     tests and benchmarks (hydra-core, omegaconf, numpy).
# A second run checks what is there and installs nothing. See README.md ("Set-up").
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.11.0          # built for CUDA 13.0 (matches nvcc 13.0 and the GPU machines)
APT_PACKAGES=(
  cmake ninja-build g++ pkg-config python3 python3-venv python3-pip
  libyaml-cpp-dev libboost-program-options-dev catch2 zlib1g-dev
  libcairo2-dev fonts-dejavu-core slurm-wlm munge
  libgloo-dev nlohmann-json3-dev  # Gloo headers for LibTorch's c10d (the wheel ships none); JSON
  dataset-fashion-mnist python3-vega-datasets
  bible-kjv bible-kjv-text  # text/kjv: the `bible` program and the text it decodes
)
# Libraries libtorch_cuda.so links that the machine's CUDA 13 toolkit does not ship.
CUDA_EXTRA_WHEELS=("nvidia-cufile==1.15.1.6.*" "nvidia-cusparselt-cu13==0.8.0" "nvidia-nvshmem-cu13==3.4.5")
# torch's own pure-Python requirements (its nvidia-* requirements are covered above and by
# the toolkit), and the peers for tests and benchmarks.
PY_PACKAGES=(filelock "typing-extensions>=4.10.0" "sympy>=1.13.3" "networkx>=2.5.1" jinja2 "fsspec>=0.8.5"
             numpy hydra-core==1.3.2 omegaconf==2.3.0)

start=$(date +%s)
say() { printf '[install-deps] %s\n' "$*"; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  say "apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "Debian packages: all present"
fi

# Debian's Python 3.11 (the torch wheel is cp311); fall back to whatever python3 is first.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $PY"
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
if "$VPY" - "$TORCH_VERSION" <<'PYEOF' 2>/dev/null; then
import sys, importlib.metadata as md
assert md.version("torch") == sys.argv[1]
for p in ("hydra-core", "omegaconf", "numpy", "nvidia-cusparselt-cu13", "nvidia-nvshmem-cu13", "nvidia-cufile"):
    md.version(p)
import torch  # loads libtorch with its CUDA libraries
PYEOF
  say "venv: torch $TORCH_VERSION and peers present"
else
  say "pip install torch==$TORCH_VERSION (no nvidia-* dependencies) and peers"
  "$VPY" -m pip install -q --disable-pip-version-check --no-deps "torch==$TORCH_VERSION" "${CUDA_EXTRA_WHEELS[@]}"
  # pip then complains that torch's nvidia-* requirements are missing: left out on purpose
  # (the CUDA toolkit provides them), so those lines are filtered.
  out=$("$VPY" -m pip install -q --disable-pip-version-check "${PY_PACKAGES[@]}" 2>&1) || { echo "$out"; exit 1; }
  echo "$out" | grep -v -E "dependency resolver|^torch .* requires|behaviour is the source" || true
  "$VPY" -c "import torch; print('[install-deps] torch', torch.__version__, 'CUDA', torch.version.cuda)"
fi
# Test-only references for the differential tests (tests/diff/): timm, the torchvision built for
# the pinned torch, and timm's import-time peers; flash-linear-attention (fla-core holds the
# pure-PyTorch naive.py cores tests/diff/linear_fla.py loads by path, without triton) and einops;
# torchscale (Microsoft's official RetNet; tests/diff/retnet_torchscale.py); mambapy (a pure-PyTorch
# Mamba; tests/diff/mamba_ref.py); scipy (cont2discrete, the LMU codes' discretisation;
# tests/diff/lmu_scipy.py); --no-deps keeps torch as pinned (~15 s).
REFERENCE_WHEELS=(timm==1.0.31 torchvision==0.26.0 pillow==13.0.0 pyyaml==6.0.4 safetensors==0.8.0 huggingface_hub==2.4.0
                  fla-core==0.6.0 flash-linear-attention==0.6.0 einops==0.8.2 torchscale==0.3.0 mambapy==1.2.0
                  scipy==1.17.1)
if "$VPY" - "${REFERENCE_WHEELS[@]}" <<'PYEOF' 2>/dev/null; then
import sys, importlib.metadata as md
for pin in sys.argv[1:]:
    name, version = pin.split("==")
    assert md.version(name) == version
PYEOF
  say "venv: timm, flash-linear-attention, torchscale, mambapy and scipy (test-only references) present"
else
  say "pip install timm, flash-linear-attention, torchscale, mambapy and scipy (test-only references for tests/diff/)"
  "$VPY" -m pip install -q --disable-pip-version-check --no-deps "${REFERENCE_WHEELS[@]}"
fi
# TensorBoard (test-only): tests/interop/tensorboard_roundtrip.py reads the event files of `blocklab
# export --tensorboard` back with TensorBoard's own reader. Pinned with its requirements (numpy,
# pillow and setuptools are there already); --no-deps keeps torch as pinned.
TENSORBOARD_WHEELS=(tensorboard==2.21.0 tensorboard-data-server==0.7.2 absl-py==2.5.1 grpcio==1.85.4 markdown==3.11.3
                    protobuf==7.36.2 werkzeug==3.1.9 markupsafe==3.0.4 packaging==26.4)
if "$VPY" - "${TENSORBOARD_WHEELS[@]}" <<'PYEOF' 2>/dev/null; then
import sys, importlib.metadata as md
for pin in sys.argv[1:]:
    name, version = pin.split("==")
    assert md.version(name) == version
PYEOF
  say "venv: tensorboard (test-only) present"
else
  say "pip install tensorboard (test-only, for tests/interop/tensorboard_roundtrip.py)"
  "$VPY" -m pip install -q --disable-pip-version-check --no-deps "${TENSORBOARD_WHEELS[@]}"
fi
# The official mamba-ssm as its source archive, not built (its CUDA kernels need a GPU):
# tests/diff/mamba_ref.py reads Mamba-2's pure-PyTorch ssd_minimal.py from it (~5 s).
MAMBA_SDIST=.venv/share/blocklab-references/mamba_ssm-2.3.2.post1.tar.gz
if [ ! -f "$MAMBA_SDIST" ]; then
  say "pip download mamba-ssm 2.3.2.post1 (the source archive only, test-only reference)"
  tools=$(mktemp -d)
  out=$("$VPY" -m pip install -q --disable-pip-version-check --target "$tools" wheel 2>&1) || { echo "$out"; exit 1; }
  PYTHONPATH="$tools" MAMBA_SKIP_CUDA_BUILD=TRUE "$VPY" -m pip download -q --disable-pip-version-check \
    mamba-ssm==2.3.2.post1 --no-deps --no-binary :all: --no-build-isolation -d "$(dirname "$MAMBA_SDIST")"
  rm -rf "$tools"
fi
say "done in $(( $(date +%s) - start )) s"

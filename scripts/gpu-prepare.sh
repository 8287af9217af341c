#!/usr/bin/env bash
# Runs HERE (Debian 12, with apt), before a GPU session: downloads into .gpu-debs/ the Debian
# packages that blocklab's build needs and the GPU machine lacks (it has PyTorch 2.11 + CUDA 13,
# nvcc, CMake, ninja and g++, but no yaml-cpp, Boost.Program_options, Catch2, cairo, Gloo headers
# or nlohmann-json, and it reaches no registry). scripts/gpu-check.sh unpacks them there with
# `dpkg -x` into a prefix. Prints the device call to make: the folder to carry and its size.
#
# The list follows the find_package / pkg_check_modules calls (CMakeLists.txt, tests/,
# analysis/) and the headers the sources include (gloo/ through LibTorch's c10d headers):
#   - headers and CMake configs: the -dev packages below;
#   - shared libraries blocklab links: yaml-cpp, Boost.Program_options, cairo, zlib;
#   - what libcairo2 loads (its Depends, recursively, without libc6/libgcc-s1/libstdc++6,
#     which every Linux machine has in a newer version); gpu-check.sh puts only the libraries
#     the machine lacks on LD_LIBRARY_PATH;
#   - pkgconf (CMake's pkg_check_modules needs a pkg-config) and DejaVu fonts for the plots.
# The -dev packages' own dependencies (libglib2.0-dev, libx11-dev, ...) are left out: gpu-check.sh
# writes a cairo.pc without Requires.private, and cairo.h needs none of their headers.
# Idempotent: a package already downloaded (any version) is not fetched again.
set -euo pipefail
cd "$(dirname "$0")/.."

DEV_PACKAGES=(
  libyaml-cpp-dev libyaml-cpp0.7
  libboost-program-options1.74-dev libboost1.74-dev libboost-program-options1.74.0
  catch2 nlohmann-json3-dev libgloo-dev zlib1g-dev zlib1g
  libcairo2-dev libcairo2
)
CAIRO_RUNTIME=(
  libfontconfig1 libfreetype6 libpixman-1-0 libpng16-16 libx11-6 libx11-data libxcb-render0 libxcb-shm0
  libxcb1 libxext6 libxrender1 libexpat1 libbrotli1 libxau6 libxdmcp6 libbsd0 libmd0 fontconfig-config
  fonts-dejavu-core
)
TOOLS=(pkgconf pkgconf-bin libpkgconf3)
DIR=.gpu-debs

say() { printf '[gpu-prepare] %s\n' "$*"; }
mkdir -p "$DIR"
missing=()
for p in "${DEV_PACKAGES[@]}" "${CAIRO_RUNTIME[@]}" "${TOOLS[@]}"; do
  compgen -G "$DIR/${p}_*.deb" >/dev/null || missing+=("$p")
done
if ((${#missing[@]})); then
  say "apt-get download ${missing[*]}"
  # apt-get download needs current package lists; when a package is not found: sudo apt-get update.
  (cd "$DIR" && apt-get download "${missing[@]}" 2>&1 | grep -v "Download is performed unsandboxed" || true)
  for p in "${missing[@]}"; do
    compgen -G "$DIR/${p}_*.deb" >/dev/null || { say "FAILED to download $p (try: sudo apt-get update)"; exit 1; }
  done
else
  say "all $((${#DEV_PACKAGES[@]} + ${#CAIRO_RUNTIME[@]} + ${#TOOLS[@]})) packages already in $DIR"
fi

# Self-check: every shared library the unpacked packages need is in them or is a base library.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for f in "$DIR"/*.deb; do dpkg -x "$f" "$tmp"; done
have=$(find "$tmp" -name 'lib*.so*' -printf '%f\n' | sort -u)
base='^(libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|ld-linux-x86-64|libresolv)\.so'
unresolved=$(find "$tmp" -name 'lib*.so.*' -type f -exec readelf -d {} + 2>/dev/null |
  sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort -u | grep -v -E "$base" | grep -v -x -F "$have" || true)
if [ -n "$unresolved" ]; then
  say "note: needed by the unpacked libraries but not downloaded (expected on the GPU machine): $(echo $unresolved)"
fi

size=$(du -sm "$DIR" | cut -f1)
say "$DIR: $(ls "$DIR"/*.deb | wc -l) packages, ${size} MiB (the device call carries at most 64 MiB with the tree)"
say "device call (from the main checkout, where .gpu-debs/ is):"
say "  run(command='bash scripts/gpu-check.sh', carry=['.gpu-debs'], timeout_s=600)"

#!/usr/bin/env bash
# Builds the libFuzzer target for the config parsers (clang, ASan + UBSan) and runs it for
# the given number of seconds (default 60). Needs clang and libclang-rt-dev.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
mkdir -p build/fuzz/corpus
printf '\0trainer.lr=3e-4' > build/fuzz/corpus/override
printf '\0zip(a,b)=[1,x],[2,y]' > build/fuzz/corpus/zip
printf '\1a: 1\nb: ${a}\nc: [1, {d: e}]\n' > build/fuzz/corpus/yaml
clang++ -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -I. \
  -DBLOCKLAB_VERSION='"fuzz"' -DBLOCKLAB_SOURCE_DIR='"."' \
  tests/fuzz/fuzz_config.cpp registry/config_error.cpp registry/config_node.cpp registry/interpolate.cpp \
  registry/override.cpp registry/schema.cpp registry/suggest.cpp registry/yaml_io.cpp \
  -lyaml-cpp -o build/fuzz/fuzz_config
build/fuzz/fuzz_config -max_total_time="$seconds" -max_len=512 build/fuzz/corpus

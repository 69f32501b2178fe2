#!/usr/bin/env bash
# Build the coverage-guided C++ fuzzers of the native decoders with libFuzzer + ASan + UBSan.
# Needs clang (Debian: apt-get install clang). Output: fuzz/native/build/fuzz_{rans,bitpack}.
# The fuzzers link the core only (csrc/core, no Python or pybind11 headers): the same sources
# the CMake target golfpack_core builds.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="$here/build"
mkdir -p "$out"
flags=(-std=c++17 -O1 -g -fno-omit-frame-pointer
       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -I"$repo/csrc/core")
core=("$repo"/csrc/core/*.cpp)
# fuzz_rans: the scalar, AVX2 and AVX-512 decoders (target attributes, runtime dispatch).
clang++ "${flags[@]}" "$here/fuzz_rans.cpp" "${core[@]}" -o "$out/fuzz_rans"
clang++ "${flags[@]}" "$here/fuzz_bitpack.cpp" "${core[@]}" -o "$out/fuzz_bitpack"
echo "built $out/fuzz_rans $out/fuzz_bitpack"

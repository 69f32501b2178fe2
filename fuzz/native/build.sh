#!/usr/bin/env bash
# Build the coverage-guided C++ fuzzers of the native decoders with libFuzzer + ASan + UBSan.
# Needs clang (Debian: apt-get install clang). Output: fuzz/native/build/fuzz_{rans,bitpack}.
# The decoders' translation units also hold their pybind11 bindings, so they compile against
# the Python and pybind11 headers and link libpython; the bindings are never called.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
py="${PYTHON:-python3}"
out="$here/build"
mkdir -p "$out"
inc="$($py -c 'import sysconfig, pybind11; print("-I" + sysconfig.get_paths()["include"], "-I" + pybind11.get_include())')"
libdir="$($py -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')"
ver="$($py -c 'import sysconfig; print(sysconfig.get_config_var("LDVERSION"))')"
flags=(-std=c++17 -O1 -g -fno-omit-frame-pointer
       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -I"$repo/csrc" $inc)
link=(-L"$libdir" -Wl,-rpath,"$libdir" -lpython"$ver")
# fuzz_rans: the scalar and AVX2 decoders (rans_avx2.cpp: target attribute, runtime dispatch).
clang++ "${flags[@]}" "$here/fuzz_rans.cpp" "$repo/csrc/rans.cpp" "$repo/csrc/rans_avx2.cpp" "${link[@]}" \
  -o "$out/fuzz_rans"
clang++ "${flags[@]}" "$here/fuzz_bitpack.cpp" "$repo/csrc/bitpack.cpp" "${link[@]}" -o "$out/fuzz_bitpack"
echo "built $out/fuzz_rans $out/fuzz_bitpack"

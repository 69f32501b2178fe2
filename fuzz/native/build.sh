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
for t in rans bitpack; do
  clang++ "${flags[@]}" "$here/fuzz_$t.cpp" "$repo/csrc/$t.cpp" "${link[@]}" -o "$out/fuzz_$t"
  echo "built $out/fuzz_$t"
done

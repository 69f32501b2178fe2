#!/usr/bin/env bash
# Build and run the plain C++ tests of the core (csrc/tests/) with CMake, without Python.
#
#   tools/cpp_tests.sh                 optimized build (build/cpp), run every test
#   tools/cpp_tests.sh --sanitize      ASan + UBSan build (build/cpp-asan), run every test
#   tools/cpp_tests.sh [--sanitize] NAME...   only tests whose name contains a NAME
#
# The configure step turns the Python extension off (GOLFPACK_BUILD_PYTHON=OFF: Python and
# pybind11 are never looked up), and the script then checks compile_commands.json: every include
# directory of every core and test source must be csrc/core. So this proves the core builds
# without Python headers on the include path. Under --sanitize any ASan error or UBSan report
# aborts the run (-fno-sanitize-recover, halt_on_error), so the script fails instead of passing.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
sanitize=OFF
build="$repo/build/cpp"
if [[ "${1:-}" == "--sanitize" ]]; then
  sanitize=ON
  build="$repo/build/cpp-asan"
  shift
fi
jobs="${GOLFPACK_CPP_JOBS:-2}"
if ! command -v cmake >/dev/null; then python3 -m pip install -q cmake; fi
mkdir -p "$build"
log="$build/build.log"
# The build's output (GCC's AVX-512 header warnings at -O1 included) goes to a log, shown on failure.
if ! { cmake -S "$repo" -B "$build" -DGOLFPACK_BUILD_PYTHON=OFF -DGOLFPACK_BUILD_TESTS=ON -DGOLFPACK_CUDA=OFF \
         -DGOLFPACK_SANITIZE="$sanitize" -DCMAKE_BUILD_TYPE=Release -DCMAKE_EXPORT_COMPILE_COMMANDS=ON &&
       cmake --build "$build" --target golfpack_core_tests -j "$jobs"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "error: building the C++ core tests failed (log: $log)" >&2
  exit 1
fi
python3 - "$build/compile_commands.json" "$repo/csrc/core" <<'PY'
import json, shlex, sys
cmds, core = json.load(open(sys.argv[1])), sys.argv[2]
bad = []
for c in cmds:
    args = shlex.split(c["command"])
    incs = [a[2:] or args[i + 1] for i, a in enumerate(args) if a.startswith("-I") or a == "-isystem"]
    bad += [(c["file"], d) for d in incs if d != core]
if bad or not cmds:
    sys.exit(f"include directories other than csrc/core: {bad[:5]}" if bad else "no compile commands")
print(f"{len(cmds)} translation units, include path: csrc/core only")
PY
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}"
"$build/golfpack_core_tests" "$@"

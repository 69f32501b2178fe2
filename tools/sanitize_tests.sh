#!/usr/bin/env bash
# Run golfpack's test suite against an ASan + UBSan build of golfpack._C (SECURITY.md).
#
#   tools/sanitize_tests.sh [pytest args]          e.g. tools/sanitize_tests.sh -m "not slow" -x
#   tools/sanitize_tests.sh -m slow tests/test_hostile_artifacts.py
#
# Builds the extension with GOLFPACK_SANITIZE=ON (CMakeLists.txt: -fsanitize=address,undefined,
# -fno-sanitize-recover=undefined) into its own virtual environment, $GOLFPACK_ASAN_VENV
# (default /tmp/golfpack-asan-venv), so a development install is never replaced. That venv
# reuses the packages (torch, numpy, pytest, pybind11, scikit-build-core, cmake) of $PYTHON's
# environment through a .pth file instead of downloading them again.
#
# Python itself is not instrumented, so the gcc ASan runtime must be loaded first (LD_PRELOAD).
# Leak checking is off: CPython and torch keep allocations alive until exit by design, and
# those reports would bury real ones. Any ASan error or UBSan report aborts the process, so
# the test run fails (pytest never reaches its summary) instead of passing with a finding.
# GOLFPACK_ASAN_REBUILD=0 skips the (slow, ~5 min on 2 cores) rebuild when the venv exists.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
py="${PYTHON:-python3}"
venv="${GOLFPACK_ASAN_VENV:-/tmp/golfpack-asan-venv}"
site="$($py -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')"
base="$($py -c 'import sys; print(sys._base_executable)')"
bindir="$(dirname "$($py -c 'import sys; print(sys.executable)')")"

if [[ ! -x "$venv/bin/python" ]]; then
  "$base" -m venv "$venv"
  echo "$site" > "$venv/lib/python$($py -c 'import sys; print("%d.%d" % sys.version_info[:2])')/site-packages/zz_base_packages.pth"
fi
if [[ "${GOLFPACK_ASAN_REBUILD:-1}" != 0 || ! -d "$venv/build" ]]; then
  (cd "$repo" && PATH="$bindir:$PATH" GOLFPACK_SANITIZE=ON GOLFPACK_CUDA=OFF \
     "$venv/bin/pip" install -q . --no-build-isolation --no-deps -C build-dir="$venv/build")
fi
preload="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:print_summary=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}"
so="$(LD_PRELOAD="$preload" "$venv/bin/python" -c 'import golfpack._C as C; print(C.__file__)')"
if ! nm -D "$so" | grep __asan_report >/dev/null; then
  echo "error: $so is not ASan-instrumented" >&2
  exit 1
fi
export LD_PRELOAD="$preload"
echo "golfpack._C under test: $so (ASan + UBSan)"
cd "$repo"
# No path given: pytest's testpaths (tests/). Paths may be given: tests/test_rans.py -m slow
exec "$venv/bin/python" -m pytest -p no:cacheprovider "$@"

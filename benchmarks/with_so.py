"""Run a benchmark script against another build of golfpack._C (before/after comparisons).

    python benchmarks/with_so.py OLD_C.so benchmarks/rans_rc_decode.py --reps 15

Loads OLD_C.so as golfpack._C before golfpack is imported, then runs the script as __main__
with the remaining arguments, so the same process measures the old kernels with today's Python.
Copy the installed _C*.so aside before rebuilding to keep a "before" build.
"""
import importlib.util
import runpy
import sys

if len(sys.argv) < 3:
    sys.exit("usage: python benchmarks/with_so.py _C.so SCRIPT [ARGS...]")
so, script = sys.argv[1], sys.argv[2]
spec = importlib.util.spec_from_file_location("golfpack._C", so)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
sys.modules["golfpack._C"] = mod
import golfpack  # noqa: E402

golfpack._C = mod
print(f"golfpack._C from {so}", file=sys.stderr)
sys.argv = [script] + sys.argv[3:]
runpy.run_path(script, run_name="__main__")

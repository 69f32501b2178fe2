"""Decode time of the exported script's two rANS paths on one artifact, round-robin.

    python benchmarks/export_decode_speed.py ART [--reps 3]

Runs the runtime's decode_tensors (every stream: CRC, rANS / rans_rc / raw, scheme arrays) with the
C loop it compiles at run time and with its numpy fallback (EVAL_NATIVE=0), alternating, and
prints the best wall time of each and their ratio; the decoded arrays must be identical. The
machine is shared: read the ratio, not the seconds.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from golfpack.export.record import plan_record
from golfpack.export.script import script_source


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("artifact")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    data, _, flags, st = plan_record(Path(a.artifact).read_bytes())
    ns = {"__name__": "bench"}
    exec(compile(script_source(flags | {"native"}, st), "runtime", "exec"), ns)
    with tempfile.NamedTemporaryFile(suffix=".gp") as f:
        f.write(data)
        f.flush()
        man, pay = ns["read_artifact"](f.name)
    t0 = time.perf_counter()
    f = ns["native"]()  # compiles the C loop (None: no compiler)
    compile_s = time.perf_counter() - t0
    have_cc = f is not None
    best, outs = {"native": 1e9, "numpy": 1e9}, {}
    for _ in range(a.reps):
        for path in ("native", "numpy") if have_cc else ("numpy",):
            ns["NATIVE"][:] = [f if path == "native" else None]
            t0 = time.perf_counter()
            outs[path] = ns["decode_tensors"](man, pay)
            best[path] = min(best[path], time.perf_counter() - t0)
    if have_cc:
        same = all(np.array_equal(outs["native"][k][1][r], outs["numpy"][k][1][r]) for k in outs["numpy"]
                   for r in outs["numpy"][k][1])
        print(f"{len(data):,}-byte artifact: C loop {best['native']:.2f} s (+ {compile_s:.2f} s to compile), numpy "
              f"{best['numpy']:.2f} s, numpy/C = {best['numpy'] / best['native']:.1f}x; identical output: {same}")
    else:
        print(f"no C compiler: numpy {best['numpy']:.2f} s")


if __name__ == "__main__":
    main()

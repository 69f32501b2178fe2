"""Fast-decode artifacts at every width, before/after a change of the native extension and the
loader, alternating in one run (issue 19, "Decode at every width: arena, fused hash, packers").

    python benchmarks/decode_arena_before_after.py --before-rev REV --before-so OLD_C.so \\
        [--dir DIR] [--widths 4,5,6,7,8] [--extra ART ...] [--rounds 3] [--reps 5] [--max-load 2.5] [--json OUT]

Before = REV's Python (`git archive REV`, laid out as the installed package) with OLD_C.so (a
golfpack._C built at REV, copied aside before rebuilding); after = this checkout and its installed
build. The artifacts are benchmarks/decode_widths.py's fast-decode twins in DIR
(`synth_int{W}_raw-rans_x32.gp`, built there with `decode_widths.py --fast-decode`), plus any
--extra artifact. Per round, artifact and side, two fresh processes:

  bench   `golfpack bench decode ART --reps N --json`: load_packed CPU ms (median of N loads in one
          process, fused path, 1 thread), its stage profile, and the rows kernels' MB/s (10^6
          symbols per second of thread CPU, best of N) per ISA;
  first   one load_packed(ART) in a new process (what `golfpack eval` does): CPU ms, the symbol
          stage (crc+rans+pack) and the page faults of the load.

Rounds start only while the 1-minute load average is below --max-load (waiting up to 5 minutes,
then going on and saying so); each round records the load. Medians over the rounds.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from load_before_after import rev_package  # noqa: E402  (REV's package tree with a chosen _C)
SYMBOLS = "crc+rans+pack"

# argv: TREE (a package tree to import golfpack from, or "-" for the installed one), FIRST_PY,
# then "--first ART" (one load, first.py) or golfpack CLI arguments.
_RUNNER = """
import sys
tree, first = sys.argv[1], sys.argv[2]
if tree != "-":  # drop the editable install's finder, then import the tree's golfpack
    sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("_editable")]
    sys.path.insert(0, tree)
    import golfpack._C as native
    assert native.__file__.startswith(tree), native.__file__
if sys.argv[3] == "--first":
    sys.argv = [first] + sys.argv[4:]
    exec(compile(open(first).read(), first, "exec"))
else:
    from golfpack.cli import main
    sys.exit(main(sys.argv[3:]))
"""

_FIRST = """
import json, resource, sys, time
import torch
torch.set_num_threads(1)
from golfpack.bench.decode import StageTimer
from golfpack.evaluate.packed_model import load_packed
path = sys.argv[1]
ru = lambda: resource.getrusage(resource.RUSAGE_SELF)
t = StageTimer(); f0 = ru().ru_minflt; c0 = time.process_time()
m = load_packed(path, timer=t)
c = (time.process_time() - c0) * 1e3
print(json.dumps({"load_ms": c, "symbols_ms": t.ms.get("crc+rans+pack", 0.0), "faults": ru().ru_minflt - f0}))
"""


def wait_load(limit: float) -> float:
    t0 = time.time()
    while True:
        load = os.getloadavg()[0]
        if load < limit or time.time() - t0 > 300:
            return load
        time.sleep(10)


def run_json(cmd: list[str]) -> dict:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)}: exit {r.returncode}\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before-rev", required=True)
    ap.add_argument("--before-so", required=True, type=Path)
    ap.add_argument("--dir", default="/tmp/golfpack_decode_widths", type=Path)
    ap.add_argument("--widths", default="4,5,6,7,8")
    ap.add_argument("--extra", nargs="*", default=[])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--max-load", type=float, default=2.5)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    arts = [a.dir / f"synth_int{w}_raw-rans_x32.gp" for w in a.widths.split(",")] + [Path(p) for p in a.extra]
    for p in arts:
        if not p.is_file():
            raise SystemExit(f"{p}: missing (build it with benchmarks/decode_widths.py --fast-decode --dir {a.dir})")
    res: dict = {str(p): {"before": [], "after": []} for p in arts}
    loads = []
    with tempfile.TemporaryDirectory(prefix="golfpack_before_") as tmp:
        tmp = Path(tmp)
        pkg = rev_package(a.before_rev, tmp, a.before_so)
        (tmp / "first.py").write_text(_FIRST)
        (tmp / "runner.py").write_text(_RUNNER)
        run = [sys.executable, str(tmp / "runner.py")]
        sides = {"before": run + [str(pkg), str(tmp / "first.py")], "after": run + ["-", str(tmp / "first.py")]}
        for rnd in range(a.rounds):
            loads.append(wait_load(a.max_load))
            for p in arts:
                for side, cmd in sides.items():
                    bench = run_json(cmd + ["bench", "decode", str(p), "--reps", str(a.reps), "--json"])
                    first = run_json(cmd + ["--first", str(p)])
                    res[str(p)][side].append({"bench": bench, "first": first})
            print(f"round {rnd + 1}/{a.rounds} done (load average at its start {loads[-1]:.2f})", file=sys.stderr)
    print(f"before = {a.before_rev} + {a.before_so.name}, after = this checkout; {a.rounds} rounds alternating "
          f"before/after per artifact; 1-min load average at the rounds' starts: "
          f"{', '.join(f'{x:.2f}' for x in loads)}")
    print("| artifact | bytes | symbols | coders | load ms (bench, median) before / after | first load in a new process: "
          "ms before / after | symbol stage first load before / after | page faults first load before / after | "
          "rows MB/s what a load runs: before / after | after: stage profile (bench, CPU ms) |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---|")
    for p in arts:
        r = res[str(p)]
        med = lambda side, f: statistics.median(f(x) for x in r[side])  # noqa: E731
        b0 = r["after"][0]["bench"]
        kb = lambda x: x["bench"]["kernel"].get("rans_x32_rows_auto_MBps") or x["bench"]["kernel"].get(  # noqa: E731
            f"rans_x32_rows_{x['bench']['isa']}_MBps", 0.0)
        stages = {k: statistics.median(x["bench"]["stages_cpu_ms"].get(k, 0.0) for x in r["after"])
                  for k in b0["stages_cpu_ms"]}
        print(f"| {p.name} | {b0['artifact_bytes']:,} | {b0['symbols']:,} | {b0['kernel'].get('rans_x32_streams', 0)} rans_x32 "
              f"| {med('before', lambda x: x['bench']['decode_cpu_ms_median']):.1f} / "
              f"**{med('after', lambda x: x['bench']['decode_cpu_ms_median']):.1f}** "
              f"| {med('before', lambda x: x['first']['load_ms']):.1f} / {med('after', lambda x: x['first']['load_ms']):.1f} "
              f"| {med('before', lambda x: x['first']['symbols_ms']):.1f} / {med('after', lambda x: x['first']['symbols_ms']):.1f} "
              f"| {med('before', lambda x: x['first']['faults']):.0f} / {med('after', lambda x: x['first']['faults']):.0f} "
              f"| {med('before', kb):.0f} / **{med('after', kb):.0f}** "
              f"| {', '.join(f'{k} {v:.1f}' for k, v in stages.items())} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"loads": loads, "results": res}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

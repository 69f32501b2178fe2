"""Load to packed weights before and after a change of the Python side, same artifacts, interleaved.

    python benchmarks/load_before_after.py --before REV [--dir DIR] [--widths 4,5,6,7,8]
        [--real-9x512 PATH/model.safetensors.index.json] [--rounds 3] [--reps 5] [--fresh-memory] [--json OUT]

REV's Python code (`git archive REV`, its package folders laid out as the installed `golfpack`
package per pyproject's wheel.packages, with this checkout's built golfpack._C copied in) runs
`golfpack bench decode ART --reps N --json --no-baseline` in one subprocess, this checkout's code in
the next, round after round, so that the other tenants of a shared machine hit both sides alike.
The artifacts are benchmarks/decode_widths.py's (built in DIR if missing). Only Python differs
between the sides: both load the same native extension (so REV must not need another one).

Per artifact and side, the median over rounds of: the load's CPU ms (bench decode's median of N
reps, fused path, 1 decode thread), its symbol stage (crc+rans+pack: CRC, rANS decode and packing,
native), the rest of the load (CPU ms less the symbol stage), and the rest's stages: read,
manifest, model skeleton, packed layers, scales, and other (every other stage and the untimed
remainder: names and config, other tensors, model assign; REV's stage names where they differ).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SYMBOLS = "crc+rans+pack"
SHOWN = ("read", "manifest", "model skeleton", "packed layers", "scales")

_RUNNER = """
import sys
tree = sys.argv[1]
# Drop the editable install's finder (it maps golfpack.* to this checkout's files), then import REV's.
sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("_editable")]
sys.path.insert(0, tree)
import golfpack.evaluate.packed_model as pm
assert pm.__file__.startswith(tree), pm.__file__
from golfpack.cli import main
sys.exit(main(sys.argv[2:]))
"""


def rev_tree(rev: str, out: Path) -> Path:
    """REV's Python package under out/pkg/golfpack (plus this checkout's golfpack._C) and the runner;
    returns out/pkg."""
    pkg = rev_package(rev, out)
    (out / "runner.py").write_text(_RUNNER)
    return pkg


def rev_package(rev: str, out: Path, so: Path | None = None) -> Path:
    """REV's Python package under out/pkg/golfpack with the native extension `so` (None: this
    checkout's golfpack._C) under the file name this Python imports; returns out/pkg."""
    import golfpack._C as native

    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    src = out / "src"
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(src, filter="data")
    packages = tomllib.loads((src / "pyproject.toml").read_text())["tool"]["scikit-build"]["wheel"]["packages"]
    pkg = out / "pkg"
    for dest, folder in sorted(packages.items()):  # "golfpack" first, then its subpackages
        shutil.copytree(src / folder, pkg / dest, dirs_exist_ok=True)
    shutil.copy(native.__file__ if so is None else so, pkg / "golfpack" / Path(native.__file__).name)
    return pkg


def bench(cmd_prefix: list[str], art: Path, reps: int, env: dict | None = None) -> dict:
    r = subprocess.run(cmd_prefix + ["bench", "decode", str(art), "--reps", str(reps), "--json", "--no-baseline"],
                       check=True, capture_output=True, text=True, env=env)
    res = json.loads(r.stdout)
    st = res["stages_cpu_ms"]
    cpu = res["decode_cpu_ms_median"]
    rest = res.get("rest_cpu_ms_median", cpu - st.get(SYMBOLS, 0.0))  # REV may predate the key
    shown = {k: st.get(k, 0.0) for k in SHOWN}
    return {"cpu": cpu, "symbols": st.get(SYMBOLS, 0.0), "rest": rest, **shown,
            "other": rest - sum(shown.values()), "stages": st}


def main(argv=None) -> int:
    sys.path.insert(0, str(HERE))
    from decode_widths import build

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="git revision whose Python code is the 'before' side")
    ap.add_argument("--dir", default="/tmp/golfpack_decode_widths")
    ap.add_argument("--widths", default="4,5,6,7,8")
    ap.add_argument("--real-9x512", default=None)
    ap.add_argument("--coders", default="raw,rans")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", default=None)
    ap.add_argument("--fresh-memory", action="store_true",
                    help="glibc's mmap threshold fixed at 128 KiB in the benchmark processes (MALLOC_MMAP_THRESHOLD_), "
                         "so that every load writes its packed rows into new pages, as a process's one load does; "
                         "by default glibc raises the threshold after a large free and later reps may reuse the "
                         "previous rep's pages, which favours whichever side frees a large buffer per load")
    a = ap.parse_args(argv)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"} if a.fresh_memory else None
    d = Path(a.dir)
    d.mkdir(parents=True, exist_ok=True)
    arts = [(w, label, p) for w in [int(x) for x in a.widths.split(",")] for label, p in build(d, w, a.real_9x512, a.coders)]
    with tempfile.TemporaryDirectory(prefix="golfpack_before_") as tmp:
        pkg = rev_tree(a.before, Path(tmp))
        sides = {"before": [sys.executable, str(Path(tmp) / "runner.py"), str(pkg)],
                 "after": [sys.executable, "-m", "golfpack"]}
        runs = {(str(p), s): [] for _, _, p in arts for s in sides}
        for _ in range(a.rounds):
            for _, _, p in arts:
                for side, cmd in sides.items():
                    runs[(str(p), side)].append(bench(cmd, p, a.reps, env))
    med = {k: {f: statistics.median(r[f] for r in v) for f in ("cpu", "symbols", "rest", *SHOWN, "other")}
           for k, v in runs.items()}
    print(f"before = {a.before}, after = this checkout; CPU ms, medians of {a.rounds} interleaved rounds "
          f"(each the median of {a.reps} loads){'; fresh memory' if a.fresh_memory else ''}")
    print("| width | artifact | bytes | load before | load after | symbols before / after | rest of the load before "
          "| rest after | read | manifest | skeleton | layers | scales | other (before -> after) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---|---|---|---|---|---|")
    for w, label, p in arts:
        b, f = med[(str(p), "before")], med[(str(p), "after")]
        parts = " | ".join(f"{b[k]:.1f} -> {f[k]:.1f}" for k in (*SHOWN, "other"))
        print(f"| {w} | {label} | {p.stat().st_size:,} | {b['cpu']:.1f} | {f['cpu']:.1f} | {b['symbols']:.1f} / "
              f"{f['symbols']:.1f} | {b['rest']:.1f} | {f['rest']:.1f} | {parts} |")
    if a.json:
        Path(a.json).write_text(json.dumps([{"width": w, "label": l, "path": str(p),
                                             "runs": {s: runs[(str(p), s)] for s in sides}} for w, l, p in arts],
                                           indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

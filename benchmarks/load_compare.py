"""Whole-load CPU time of several artifacts, timed round-robin in one process.

    python benchmarks/load_compare.py BASE.gp OTHER.gp [...] [--reps 15] [--threads 1]

Prints CPU ms (process time, all threads) and the median wall ms. Each rep loads every artifact once with `load_packed` (artifact file -> GPT on packed weights),
in turn, so load changes on a shared machine hit all of them alike; the ratios are against
the first artifact. Used to compare the same model coded two ways, e.g. `golfpack recode
ART --coders raw,rans` against the default (rans_rc where smaller).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifacts", nargs="+")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1, help="decode threads of load_packed")
    a = ap.parse_args()

    from golfpack.evaluate.packed_model import load_packed

    for p in a.artifacts:
        load_packed(p, threads=a.threads)  # warm: imports, page cache
    ts: dict[str, list[float]] = {p: [] for p in a.artifacts}
    wall: dict[str, list[float]] = {p: [] for p in a.artifacts}
    for _ in range(a.reps):
        for p in a.artifacts:
            w, t = time.perf_counter(), time.process_time()
            load_packed(p, threads=a.threads)
            ts[p].append((time.process_time() - t) * 1e3)
            wall[p].append((time.perf_counter() - w) * 1e3)
    base = a.artifacts[0]
    b_med, b_min = statistics.median(ts[base]), min(ts[base])
    print(f"load_packed CPU ms (process time, all threads), {a.reps} reps round-robin, {a.threads} decode thread(s)")
    print(f"{'artifact':<40} {'bytes':>12} {'median':>8} {'min':>8} {'median ratio':>13} {'min ratio':>10} "
          f"{'wall median':>12}")
    for p in a.artifacts:
        med, lo = statistics.median(ts[p]), min(ts[p])
        print(f"{os.path.basename(p):<40} {os.path.getsize(p):>12,} {med:>8.1f} {lo:>8.1f} {med / b_med:>12.2f}x "
              f"{lo / b_min:>9.2f}x {statistics.median(wall[p]):>12.1f}")


if __name__ == "__main__":
    main()

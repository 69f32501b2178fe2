"""Does the planner land every budget? Total bytes vs budget from a floor up to the lossless size.

    python benchmarks/planner_budgets.py [--ckpt PTZ] [--calib SHARD] [--budgets 1e6,1.1e6,...]
                                         [--code-bytes N|auto] [--method gptq|rtn] [--json OUT]

Candidates are built once (one calibration), then `codec.planner.plan` runs per budget exactly
as `golfpack encode --budget` does. The default budgets run from 1,000,000 bytes to the
checkpoint's lossless artifact size (`golfpack encode --lossless`) in 100,000-byte steps, plus
the lossless size itself. For each: total = artifact + code bytes, whether it is <= budget,
and how far below (the planner's tolerance is 0.5%). Defaults read ../shared/data.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from golfpack.bench import paths



def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    paths.add_data_arguments(ap, "ckpt", "calib")
    ap.add_argument("--calib-seqs", type=int, default=32)
    ap.add_argument("--calib-len", type=int, default=512)
    ap.add_argument("--budgets", default=None, help="comma list (default: 1e6 .. lossless, 1e5 steps)")
    ap.add_argument("--code-bytes", default="0")
    ap.add_argument("--method", default="gptq", choices=("gptq", "rtn"))
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args(argv)

    import torch

    from golfpack.checkpoint import read_checkpoint
    from golfpack.codec import calib as C
    from golfpack.codec.cli import parse_bytes
    from golfpack.codec.encode import encode_lossless
    from golfpack.codec.planner import PlannerConfig, build_items, plan
    from golfpack.model.load import from_state_dict

    torch.set_num_threads(2)
    ck = read_checkpoint(args.ckpt)
    lossless = len(encode_lossless(ck))
    if args.code_bytes == "auto":
        from golfpack.codec.code_bytes import code_bytes_auto

        code = code_bytes_auto().total
    else:
        code = parse_bytes(args.code_bytes, "--code-bytes")
    if args.budgets:
        budgets = [parse_bytes(b, "--budgets") for b in args.budgets.split(",")]
    else:
        budgets = list(range(1_000_000, lossless + code, 100_000)) + [lossless + code]
    t0 = time.perf_counter()
    model = from_state_dict(ck.state_dict(), ck.config)
    cal = C.calibrate(model, shard=args.calib, n_seqs=args.calib_seqs, seq_len=args.calib_len)
    cfg = PlannerConfig(method=args.method)
    items = build_items(ck, cal, cfg)
    t_build = time.perf_counter() - t0
    print(f"checkpoint {Path(args.ckpt).name}: lossless artifact {lossless:,} bytes; code bytes {code:,}; "
          f"calibration + candidates {t_build:.0f} s ({args.method})", file=sys.stderr)
    rows = []
    print("| budget | total bytes | artifact | within budget | below budget by | predicted dloss | iterations | s |")
    print("|---:|---:|---:|:---:|---:|---:|---:|---:|")
    for b in budgets:
        t = time.perf_counter()
        r = plan(ck, b, cal, cfg, (), code, items=items).report
        row = {"budget": b, "total_bytes": r["total_bytes"], "artifact_bytes": r["artifact_bytes"],
               "within_budget": r["within_budget"], "gap": 1 - r["total_bytes"] / b,
               "predicted_dloss": r["predicted_dloss"], "iterations": len(r["iterations"]),
               "budget_exceeds_need": r["budget_exceeds_need"], "within_tolerance": r["within_tolerance"], "seconds": round(time.perf_counter() - t, 1)}
        rows.append(row)
        print(f"| {b:,} | {row['total_bytes']:,} | {row['artifact_bytes']:,} | {'yes' if row['within_budget'] else 'NO'} "
              f"| {row['gap']:.3%} | {row['predicted_dloss']:.3e} | {row['iterations']} | {row['seconds']} |", flush=True)
    ok = all(r["within_budget"] and r["gap"] <= 0.005 for r in rows)
    print(f"\nall {len(rows)} budgets: total <= budget and within 0.5% of it: {'yes' if ok else 'NO'}; "
          f"largest gap {max(r['gap'] for r in rows):.3%}")
    if args.json:
        Path(args.json).write_text(json.dumps({"lossless_bytes": lossless, "code_bytes": code, "rows": rows}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Rate-aware rounding on the real checkpoint: RD before/after at equal budgets.

    python benchmarks/rate_rd.py [--ckpt PTZ] [--calib SHARD] [--val SHARD] [--budgets 40%,50%,60%]
                                 [--rate-mults 1] [--max-tokens N] [--json OUT]

One calibration serves both arms. "before" builds the planner's candidates as
`golfpack encode --budget ...` does by default; "after" adds rate-aware
rounding (codec.rate) of each hull candidate at its local hull slope times each
--rate-mults value, as `golfpack encode --budget ... --rate-mults 0.5,1,2` does. Each budget
is planned in both arms (the planner lands each within 0.5% under the budget),
and both artifacts are scored on the same validation tokens (seq 512, plain).
Budgets given as percentages are of the source file's size. Defaults read
../shared/data.
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
    paths.add_data_arguments(ap, "ckpt", "calib", "val", "tokenizer")
    ap.add_argument("--budgets", default="40%,50%,60%")
    ap.add_argument("--rate-mults", default="0.5,1,2")
    ap.add_argument("--method", default="gptq", choices=("gptq", "rtn"))
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--max-tokens", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args(argv)

    import torch

    from golfpack.checkpoint import read_checkpoint
    from golfpack.codec import calib as C
    from golfpack.codec.cli import parse_rate_mults
    from golfpack.codec.container import parse_artifact
    from golfpack.codec.planner import PlannerConfig, build_items, plan
    from golfpack.codec.rd import parse_budgets
    from golfpack.data.bytes import build_byte_tables, load_sentencepiece
    from golfpack.data.shards import read_shards
    from golfpack.evaluate.bpb import evaluate
    from golfpack.model.load import from_state_dict

    torch.set_num_threads(args.threads)
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    ck = read_checkpoint(args.ckpt)
    budgets = parse_budgets(args.budgets, Path(args.ckpt).stat().st_size)
    tokens = read_shards(args.val)
    model = from_state_dict(ck.state_dict(), ck.config)
    tables = build_byte_tables(load_sentencepiece(args.tokenizer), vocab_size=int(model.config.vocab_size))
    t0 = time.perf_counter()
    cal = C.calibrate(model, shard=args.calib, n_seqs=32, seq_len=512)
    say(f"calibration {time.perf_counter() - t0:.0f} s")
    arms = {}
    for arm, mults in (("before", ()), ("after", parse_rate_mults(args.rate_mults))):
        t = time.perf_counter()
        cfg = PlannerConfig(method=args.method, rate_mults=mults)
        items = build_items(ck, cal, cfg)
        n_rate = sum(1 for it in items for c in it.cands if c.choice.rate_lam)
        arms[arm] = (cfg, items)
        say(f"{arm}: candidates in {time.perf_counter() - t:.0f} s ({n_rate} rate-aware)")

    def score(data: bytes) -> float:
        art = parse_artifact(data)
        m = from_state_dict(art.state_dict(), art.config or ck.config)
        return evaluate(m, tokens, tables, seq_len=args.seq_len, device="cpu", max_tokens=args.max_tokens).val_bpb

    rows = []
    print("| budget | arm | total bytes | predicted dloss | tensors with a rate-aware choice | val_bpb |")
    print("|---:|---|---:|---:|---:|---:|")
    for b in budgets:
        for arm, (cfg, items) in arms.items():
            res = plan(ck, b, cal, cfg, (), 0, items=items)
            rep = res.report
            n_rate = sum(1 for r in rep["tensors"] if r["choice"].get("rate_lam"))
            bpb = score(res.artifact)
            row = {"budget": b, "arm": arm, "total_bytes": rep["total_bytes"], "predicted_dloss": rep["predicted_dloss"],
                   "rate_tensors": n_rate, "val_bpb": bpb}
            rows.append(row)
            print(f"| {b:,} | {arm} | {row['total_bytes']:,} | {row['predicted_dloss']:.4e} | {n_rate} | {bpb:.6f} |",
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "max_tokens": args.max_tokens,
                                               "rate_mults": args.rate_mults}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Eval throughput: dense fp32 torch model vs the packed CPU path (PackedLinear), same tokens.

    golfpack bench eval [--json] [--ckpt PATH] [--val SHARD] [--tokenizer SP.model]
        [--seq-len 512] [--max-tokens 8192] [--batches 1,16] [--reps 2] [--threads 2]

Both models come from the same source (default: the real 7x384 baseline .ptz in
../shared/data; an artifact works too): golfpack.model.load (dense float
weights) and golfpack.evaluate.packed_model.load_packed (bit-packed linears).
Each configuration runs `reps` times, interleaved dense/packed so that load on
a shared machine hits both alike; the best time of each is kept and the ratio
packed/dense tokens-per-second is printed together with both bpb values (which
must agree: same weights, different matmul kernels).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from golfpack.bench import paths
from golfpack.errors import GolfpackError


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--ckpt", default=paths.default(paths.CHECKPOINT), help="checkpoint or artifact")
    ap.add_argument("--val", default=paths.default(paths.VAL))
    ap.add_argument("--tokenizer", default=paths.default(paths.TOKENIZER))
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--max-tokens", type=int, default=8192)
    ap.add_argument("--batches", default="1,16", help="comma-separated windows per forward")
    ap.add_argument("--stride", type=int, default=None)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="print one JSON object")


def main(argv=None) -> int:
    """Script entry point: the same command as `golfpack bench eval` (one-line errors, exit 2)."""
    from golfpack.cli import main as gp_main

    return gp_main(["bench", "eval", *(sys.argv[1:] if argv is None else argv)])


def run(args) -> int:
    for p, what in ((args.ckpt, "checkpoint"), (args.val, "val shard"), (args.tokenizer, "tokenizer")):
        if not Path(p).exists():
            raise GolfpackError(f"{what} not found: {p} (needs ../shared/data or an explicit path)")
    try:
        batches = [int(x) for x in str(args.batches).split(",") if x.strip()]
    except ValueError:
        raise GolfpackError(f"--batches: {args.batches!r} is not a comma list of integers") from None
    if not batches or min(batches) < 1:
        raise GolfpackError(f"--batches must list positive integers, got {args.batches!r}")
    for v, what in ((args.reps, "--reps"), (args.threads, "--threads"), (args.max_tokens, "--max-tokens"),
                    (args.seq_len, "--seq-len")):
        if v < 1:
            raise GolfpackError(f"{what} must be >= 1, got {v}")
    torch.set_num_threads(args.threads)

    from golfpack.data.bytes import build_byte_tables
    from golfpack.data.shards import read_shard
    from golfpack.evaluate import evaluate
    from golfpack.evaluate.packed_model import load_packed, packed_summary
    from golfpack.model import load
    from golfpack.model.packed import _native

    dense = load(args.ckpt)
    packed = load_packed(args.ckpt)
    tables = build_byte_tables(args.tokenizer, dense.config.vocab_size)
    tokens = read_shard(args.val)
    s = packed_summary(packed)
    dense_bytes = sum(t.numel() * t.element_size() for t in dense.parameters())
    rows = []
    for b in batches:
        best = {"dense": None, "packed": None}
        for _ in range(args.reps):  # interleaved, so load on a shared machine hits both alike
            for name, model in (("dense", dense), ("packed", packed)):
                r = evaluate(model, tokens, tables, seq_len=args.seq_len, stride=args.stride, batch=b,
                             device="cpu", max_tokens=args.max_tokens)
                if best[name] is None or r.seconds < best[name].seconds:
                    best[name] = r
        d, p = best["dense"], best["packed"]
        rows.append({"batch": b, "dense_tokens_per_s": d.tokens_per_s, "packed_tokens_per_s": p.tokens_per_s,
                     "packed_over_dense": p.tokens_per_s / d.tokens_per_s, "dense_bpb": d.val_bpb,
                     "packed_bpb": p.val_bpb, "tokens": d.tokens})
    result = {"source": str(args.ckpt), "dense_weight_bytes": dense_bytes, "packed_layers": s["packed_layers"],
              "packed_bytes": s["packed_bytes"], "packed_dense_bytes": s["dense_bytes"],
              "qmatmul_isa": _native().qmatmul_cpu_isa(), "seq_len": args.seq_len, "stride": args.stride,
              "max_tokens": args.max_tokens, "threads": args.threads, "reps": args.reps, "rows": rows}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"source {args.ckpt}")
    print(f"dense model: {dense_bytes:,} bytes of fp32 weights; packed model: {s['packed_layers']} PackedLinear "
          f"({s['packed_bytes']:,} bytes) + {s['dense_bytes']:,} dense bytes; qmatmul ISA {result['qmatmul_isa']}")
    print(f"plain eval, seq_len {args.seq_len}, {args.max_tokens} tokens, {args.threads} threads, best of {args.reps}")
    print(f"{'batch':>5} {'dense tok/s':>12} {'packed tok/s':>13} {'packed/dense':>13} {'dense bpb':>11} {'packed bpb':>11}")
    for r in rows:
        print(f"{r['batch']:>5} {r['dense_tokens_per_s']:>12,.0f} {r['packed_tokens_per_s']:>13,.0f} "
              f"{r['packed_over_dense']:>13.3f} {r['dense_bpb']:>11.6f} {r['packed_bpb']:>11.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Eval throughput: dense fp32 torch model vs the packed CPU path (PackedLinear), same tokens.

    python benchmarks/eval_throughput.py [--ckpt PATH] [--val SHARD] [--tokenizer SP.model]
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
import sys
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default=str(SHARED / "checkpoints/pg_baseline_7x384_sp1024.int8.ptz"))
    ap.add_argument("--val", default=str(SHARED / "shards/c4_val_sp1024.bin"))
    ap.add_argument("--tokenizer", default=str(SHARED / "tokenizers/fineweb_1024_bpe.model"))
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--max-tokens", type=int, default=8192)
    ap.add_argument("--batches", default="1,16", help="comma-separated windows per forward")
    ap.add_argument("--stride", type=int, default=None)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    for p in (args.ckpt, args.val, args.tokenizer):
        if not Path(p).exists():
            print(f"missing input {p} (needs ../shared/data or explicit paths)", file=sys.stderr)
            return 2
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
    print(f"source {args.ckpt}")
    print(f"dense model: {dense_bytes:,} bytes of fp32 weights; packed model: {s['packed_layers']} PackedLinear "
          f"({s['packed_bytes']:,} bytes) + {s['dense_bytes']:,} dense bytes; qmatmul ISA {_native().qmatmul_cpu_isa()}")
    print(f"plain eval, seq_len {args.seq_len}, {args.max_tokens} tokens, {args.threads} threads, best of {args.reps}")
    print(f"{'batch':>5} {'dense tok/s':>12} {'packed tok/s':>13} {'packed/dense':>13} {'dense bpb':>11} {'packed bpb':>11}")
    for b in [int(x) for x in args.batches.split(",")]:
        best = {"dense": None, "packed": None}
        for _ in range(args.reps):
            for name, model in (("dense", dense), ("packed", packed)):
                r = evaluate(model, tokens, tables, seq_len=args.seq_len, stride=args.stride, batch=b,
                             device="cpu", max_tokens=args.max_tokens)
                if best[name] is None or r.seconds < best[name].seconds:
                    best[name] = r
        d, p = best["dense"], best["packed"]
        print(f"{b:>5} {d.tokens_per_s:>12,.0f} {p.tokens_per_s:>13,.0f} {p.tokens_per_s / d.tokens_per_s:>13.3f} "
              f"{d.val_bpb:>11.6f} {p.val_bpb:>11.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""CPU training demo: a small GPT on enwiki_train_sp1024 for a few minutes, scored on enwiki_val.

Prints the model's val bpb next to the unigram-entropy bpb of the same val
targets (the entropy of the val token distribution itself, in bits/token, times
tokens/bytes): a model that learned anything beyond token frequencies must be
well below it.

    python benchmarks/train_cpu_enwiki.py --minutes 4 --out /tmp/gp_cpu_enwiki

Needs ../shared/data (shards + sp1024 tokenizer). Not a unit test: the number
depends on the machine's speed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

SHARED = Path(os.environ.get("GOLFPACK_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data"

CONFIG = {
    "vocab_size": 1024, "num_layers": 4, "model_dim": 128, "num_heads": 4, "num_kv_heads": 2,
    "train": {"batch_tokens": 8192, "seq_len": 256, "warmdown_frac": 0.3, "matrix_lr": 0.04,
              "tied_embed_lr": 0.05, "scalar_lr": 0.04, "muon_momentum_warmup_steps": 100,
              "ema_decay": 0.0, "log_every": 10, "final_val_tokens": 262144},
}


def unigram_bpb(tokens: np.ndarray, tables, seq_len: int, max_tokens: int) -> dict:
    """Unigram entropy of the scored val targets, in bits/token and bits/byte."""
    from golfpack.data.bytes import count_bytes

    n_win = (tokens.size - 1) // seq_len
    if max_tokens:
        n_win = min(n_win, max_tokens // seq_len)
    n = n_win * seq_len
    prev, tgt = tokens[:n].astype(np.int64), tokens[1 : n + 1].astype(np.int64)
    counts = np.bincount(tgt, minlength=tables.vocab_size).astype(np.float64)
    p = counts[counts > 0] / n
    h = float(-(p * np.log2(p)).sum())
    nbytes = count_bytes(prev, tgt, tables)
    return {"targets": n, "bytes": nbytes, "bits_per_token": h, "bpb": h * n / nbytes}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=4.0)
    ap.add_argument("--out", default="/tmp/gp_cpu_enwiki")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared, loaded CPU)")
    args = ap.parse_args()
    train_shard = SHARED / "shards/enwiki_train_sp1024.bin"
    val_shard = SHARED / "shards/enwiki_val_sp1024.bin"
    tok = SHARED / "tokenizers/fineweb_1024_bpe.model"
    for p in (train_shard, val_shard, tok):
        if not p.exists():
            print(f"missing {p}; this demo needs ../shared/data", file=sys.stderr)
            return 1
    import torch

    torch.set_num_threads(args.threads)
    from golfpack.data.bytes import build_byte_tables
    from golfpack.data.shards import read_shard
    from golfpack.model import GPTConfig
    from golfpack.train.config import TrainConfig
    from golfpack.train.trainer import train

    tables = build_byte_tables(tok)
    val = read_shard(val_shard)
    t = dict(CONFIG["train"], minutes=args.minutes, steps=0)
    uni = unigram_bpb(val, tables, t["seq_len"], t["final_val_tokens"])
    cfg = GPTConfig.from_dict({k: v for k, v in CONFIG.items() if k != "train"})
    log = train(cfg, TrainConfig(**t), train_shard, args.out, val=val_shard, tokenizer=tok, device="cpu")
    f = log["final"]
    res = {"model_bpb": f["val_bpb"], "model_val_loss": f["val_loss"], "val_targets": f["val_tokens"],
           "val_bytes": f["val_bytes"], "unigram_bits_per_token": uni["bits_per_token"], "unigram_bpb": uni["bpb"],
           "unigram_targets": uni["targets"], "unigram_bytes": uni["bytes"], "steps": log["steps"],
           "tokens_seen": log["tokens_seen"], "train_seconds": log["train_seconds"],
           "params": log["num_params"]}
    print(json.dumps(res, indent=2))
    assert res["val_targets"] == uni["targets"] and res["val_bytes"] == uni["bytes"]
    print(f"val bpb {res['model_bpb']:.4f} vs unigram entropy {res['unigram_bpb']:.4f} bpb "
          f"({res['steps']} steps, {res['tokens_seen']:,} tokens, {res['train_seconds']:.0f}s)")
    return 0 if math.isfinite(res["model_bpb"]) else 1


if __name__ == "__main__":
    sys.exit(main())

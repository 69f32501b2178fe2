"""Test-time training on the packed 7x384 checkpoint: bpb and tokens/s per variant.

Evaluates a prefix of whole documents of a shard (the same prefix for every
arm) with the packed model: first the document-aware baseline with exactly the
TTT contexts (evaluate(doc_aware=True, seq_len=context, stride=chunk)), then
each TTT variant, and prints a Markdown table (Δ bpb vs that baseline, tokens/s
measured in the same run).

    python benchmarks/ttt_bench.py --shard c4_val --docs 50 --variants lora sgd phased q \
        [--skip-docs 0] [--common '{"context": 256, "chunk": 128}'] \
        [--set 'lora={"lr": 0.01}' ...] [--threads 2]

--common overrides apply to every variant (and set the baseline's geometry);
--set NAME=JSON overrides one variant. A variant name may carry a tag,
e.g. --variants lora lora:r16 --set 'lora:r16={"rank": 16}'.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch

from golfpack.bench import paths
from golfpack.data.bytes import build_byte_tables, load_sentencepiece
from golfpack.data.shards import read_shards
from golfpack.evaluate import evaluate
from golfpack.evaluate.packed_model import load_packed
from golfpack.evaluate.ttt import TTTConfig, evaluate_ttt
from golfpack.evaluate.windows import document_spans



def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(paths.shared_data()))
    ap.add_argument("--shard", default="c4_val")
    ap.add_argument("--docs", type=int, default=50, help="number of whole documents")
    ap.add_argument("--skip-docs", type=int, default=0, help="start after this many documents")
    ap.add_argument("--variants", nargs="+", default=["lora", "sgd", "phased", "q"])
    ap.add_argument("--common", default="{}", help="JSON overrides for every variant")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=JSON")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--no-base", action="store_true", help="skip the no-TTT baseline")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    data = Path(a.data)
    model = load_packed(data / "checkpoints/pg_baseline_7x384_sp1024.int8.ptz")
    tables = build_byte_tables(load_sentencepiece(data / "tokenizers/fineweb_1024_bpe.model"), vocab_size=1024)
    tok = read_shards([str(data / f"shards/{a.shard}_sp1024.bin")])
    st, _ = document_spans(tok, 1)
    lo, hi = a.skip_docs, a.skip_docs + a.docs
    tok = tok[st[lo]: (st[hi] + 1 if hi < len(st) else len(tok))]  # whole documents + the next BOS
    common = json.loads(a.common)
    per = {}
    for s in a.set:
        name, _, js = s.partition("=")
        per[name] = json.loads(js)
    geo = TTTConfig.for_method("lora", common)
    print(f"# {a.shard} documents {lo}..{hi - 1}: {tok.size - 1:,} targets; threads {a.threads}; "
          f"torch {torch.__version__}", flush=True)
    rows = []
    base_bpb = None
    if not a.no_base:
        r = evaluate(model, tok, tables, seq_len=geo.context, stride=geo.chunk, doc_aware=True)
        base_bpb = r.val_bpb
        rows.append(("none (doc-aware)", r.val_bpb, r.tokens, r.tokens_per_s,
                     f"seq_len {geo.context}, stride {geo.chunk}, packed"))
        print(f"base: bpb {r.val_bpb:.6f} tokens {r.tokens} {r.tokens_per_s:.1f} tok/s", flush=True)
    for name in a.variants:
        method = name.split(":")[0]
        cfg = TTTConfig.for_method(method, {**common, **per.get(name, {})})
        t = time.perf_counter()
        r = evaluate_ttt(model, tok, tables, cfg)
        d = cfg.to_dict()
        if method in ("lora", "phased"):
            keys = ["rank", "alpha", "targets", "lr", "betas", "weight_decay", "epochs", "keep_a_warm", "doc_batch"]
        else:
            keys = []
        if method in ("sgd", "q", "phased"):
            keys += ["sgd_targets", "sgd_controls", "sgd_lr", "sgd_momentum", "sgd_epochs", "sgd_batch"]
            keys += ["sgd_chunk_tokens"] if method != "phased" else ["phases", "prefix_docs"]
        settings = ", ".join(f"{k} {json.dumps(d[k]).replace(' ', '')}" for k in keys)
        settings = f"context {cfg.context}, chunk {cfg.chunk}, " + settings
        rows.append((name, r.val_bpb, r.tokens, r.tokens_per_s, settings))
        print(f"{name}: bpb {r.val_bpb:.6f} ({r.val_bpb - (base_bpb or r.val_bpb):+.6f}) {r.tokens_per_s:.1f} tok/s "
              f"{time.perf_counter() - t:.0f} s; adapted {r.documents_adapted}/{r.documents}", flush=True)
    print()
    print("| TTT | val_bpb | Δ vs none | targets | tokens/s | settings |")
    print("|---|---|---|---|---|---|")
    for name, bpb, n, tps, s in rows:
        delta = "" if base_bpb is None else f"{bpb - base_bpb:+.5f}"
        print(f"| {name} | {bpb:.6f} | {delta} | {n:,} | {tps:,.0f} | {s} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Measurements of issue 21 (seed recipes): see benchmarks/RESULTS.md, "Seed recipes".

    python benchmarks/recipes_bench.py sp8192 OUT_DIR
        enwiki sp8192 shards for PR 2163: train = the first 4,000 documents of
        ../shared/data/corpora/enwiki.jsonl.xz, val = documents 24,671.. (the same documents the
        shared enwiki_val_sp1024.bin starts with), 300 of them
    python benchmarks/recipes_bench.py full NAME TRAIN_SHARD OUT_DIR [--planner fast|default] [--steps N]
            [--batch-tokens B]
        the recipe's full-scale model, freshly initialised (the trainer's init, seed 1337) and trained
        N steps (default 8) of B tokens (default 2,048: four sequences of 512) on TRAIN_SHARD with the
        recipe's optimizer settings (no EMA/SWA/QAT, no warmdown: a freshly initialised model has zero
        output projections, so every gradient and every predicted loss change is 0 and any encoding
        is "free"; Muon's and Adam's steps have a size set by the learning rate, not by the batch, so
        a small batch moves the weights from their init as far as a large one, at a quarter of the
        8,192-token batch's CPU time), encoded with the seed's own recipe and with golfpack's planner
        at min(seed total, 16,000,000) bytes (code bytes included); prints one JSON line (stage
        progress on stderr)
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

SHARED = Path(os.environ.get("GOLFPACK_SHARED", Path(__file__).resolve().parents[1].parent / "shared")) / "data"
CAP = 16_000_000


def make_sp8192(out: Path) -> None:
    import numpy as np

    from golfpack.data.bytes import load_sentencepiece
    from golfpack.data.corpus import iter_documents
    from golfpack.data.shards import write_shard

    sp = load_sentencepiece(SHARED / "tokenizers" / "fineweb_8192_bpe.model")
    out.mkdir(parents=True, exist_ok=True)
    train, val = [], []
    for i, doc in enumerate(iter_documents(SHARED / "corpora" / "enwiki.jsonl.xz")):
        if i < 4000:
            train += [1] + sp.encode(doc, out_type=int)
        elif 24_671 <= i < 24_971:
            val += [1] + sp.encode(doc, out_type=int)
        elif i >= 24_971:
            break
    write_shard(out / "enwiki_train_sp8192.bin", np.asarray(train, dtype=np.uint16))
    write_shard(out / "enwiki_val_sp8192.bin", np.asarray(val, dtype=np.uint16))
    print(json.dumps({"train_tokens": len(train), "val_tokens": len(val)}))


def full(name: str, calib_shard: str, out: Path, planner: str, steps: int, batch_tokens: int = 2048) -> None:
    import torch

    from golfpack import recipes
    from golfpack.checkpoint import read_checkpoint
    from golfpack.codec.calib import calibrate
    from golfpack.codec.planner import plan
    from golfpack.model.load import from_state_dict
    from golfpack.recipes.runner import code_bytes_for, planner_config
    from golfpack.recipes.seed_codec import encode_seed
    from golfpack.train.trainer import build_model, save_checkpoint

    r = recipes.get(name).at_scale("full")
    cfg = r.model_config()
    t = {}
    t_start = t0 = time.perf_counter()

    def say(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f} s] {name}: {msg}", file=sys.stderr, flush=True)
    say(f"train {steps} steps of {batch_tokens:,} tokens")
    if steps > 0:
        from golfpack.train.trainer import train

        tcfg = r.train_config(steps=steps, minutes=0.0, batch_tokens=batch_tokens, seq_len=512, ema_decay=0.0,
                              swa_every=0, qat_bits={}, warmdown_steps=0, lr_warmup_steps=0,
                              muon_momentum_warmup_steps=0)
        train(cfg, tcfg, calib_shard, out / name, show_progress=False)
    else:
        m = build_model(cfg, r.train_config().seed)
        save_checkpoint(out / name, m, cfg, {"weights": "init"})
        del m
    ck = read_checkpoint(out / name)
    t["init"] = time.perf_counter() - t0
    say("calibrate")
    t0 = time.perf_counter()
    cal = calibrate(from_state_dict(ck.state_dict(), cfg), shard=calib_shard, n_seqs=8, seq_len=512)
    t["calibrate"] = time.perf_counter() - t0
    code = code_bytes_for(r, ck)
    say("encode with the seed's recipe")
    t0 = time.perf_counter()
    seed = encode_seed(ck, r.codec, cal, code)
    t["encode_seed"] = time.perf_counter() - t0
    budget = min(seed.report["total_bytes"], CAP)
    say(f"seed recipe: {seed.report['total_bytes']:,} B total; planner at {budget:,} B")
    t0 = time.perf_counter()
    planned = plan(ck, budget, cal, planner_config(planner, None, r.codec.min_numel), (), code, log=say)
    t["encode_planner"] = time.perf_counter() - t0
    say(f"planner: {planned.report['total_bytes']:,} B total")
    params = ck.num_params()
    rows = {}
    for k, res in (("seed", seed), ("planner", planned)):
        rep = res.report
        rows[k] = {"artifact_bytes": rep["artifact_bytes"], "code_bytes": rep["code_bytes"],
                   "total_bytes": rep["total_bytes"], "bits_per_param": 8 * rep["total_bytes"] / params,
                   "predicted_dloss": rep["predicted_dloss"], "within_cap": rep["total_bytes"] <= CAP}
    print(json.dumps({"recipe": name, "params": params, "budget": budget, "planner": planner, "steps": steps,
                      "batch_tokens": batch_tokens, "calib_tokens": cal.tokens, "rows": rows,
                      "seconds": {k: round(v, 1) for k, v in t.items()},
                      "planner_stage_seconds": planned.report.get("stage_seconds"),
                      "planner_iterations": len(planned.report["iterations"]), "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[:1] == ["sp8192"]:
        make_sp8192(Path(a[1]))
    elif a[:1] == ["full"]:
        opt = dict(zip(a[4::2], a[5::2]))
        full(a[1], a[2], Path(a[3]), opt.get("--planner", "fast"), int(opt.get("--steps", 8)),
             int(opt.get("--batch-tokens", 2048)))
    else:
        sys.exit(__doc__)

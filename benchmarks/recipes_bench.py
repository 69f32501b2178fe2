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
    python benchmarks/recipes_bench.py transfer NAME TRAINED_CHECKPOINT TRAIN_SHARD OUT_DIR [--steps N]
        how much training moves a seed recipe's bytes at a fixed architecture: the recipe's own codec
        (recipes.get(NAME).codec, no search) applied to TRAINED_CHECKPOINT (the GPU-trained 9x512) and to
        the same architecture freshly initialised and trained N steps (default 8) exactly as `full` does;
        prints one JSON line: model bytes and bits/param of both, and their ratio
    python benchmarks/recipes_bench.py tensors NAME CHECKPOINT TRAIN_SHARD VAL_SHARD OUT_JSON
        per tensor of a tiny-scale checkpoint (what `recipe run --scale tiny` trained): the seed
        recipe's and the default planner's choice at the seed's total bytes, its bytes, predicted
        dloss, first-order term, and the measured loss change of that tensor alone swapped into the
        float model, on 32 val sequences of 128 and on the calibration sequences
    python benchmarks/recipes_bench.py zscore CHECKPOINT SHARD N_SEQS SEQ_LEN
        the first-order terms of RTN candidates (int2/3/4/6, mse clip, and the tensor zeroed) of
        every quantizable matrix in units of their calibration noise sqrt(2 dloss / T)
        (codec.calib.TensorStats.planning_cost): |z| quantiles per width
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


def _config(ck):
    from golfpack.model import GPTConfig

    if ck.config is None:
        return None
    return ck.config if isinstance(ck.config, GPTConfig) else GPTConfig.from_dict(dict(ck.config))


def tensors(name: str, ckpt: str, train: str, val: str, out: Path) -> None:
    import torch

    from golfpack import recipes
    from golfpack.checkpoint import read_checkpoint
    from golfpack.codec.calib import calibrate, measure_loss, measure_with, sequences_from_shard
    from golfpack.codec.container import parse_artifact
    from golfpack.codec.planner import plan
    from golfpack.model.load import from_state_dict
    from golfpack.recipes.runner import SCALE_DEFAULTS, code_bytes_for, planner_config
    from golfpack.recipes.seed_codec import encode_seed

    torch.set_num_threads(1)
    ck = read_checkpoint(ckpt)
    cfg = _config(ck)
    r = recipes.get(name).at_scale("tiny", vocab_size=cfg.vocab_size)
    fm = from_state_dict(ck.state_dict(), cfg)
    d = SCALE_DEFAULTS["tiny"]
    cal = calibrate(fm, shard=train, n_seqs=d["calib_seqs"], seq_len=d["calib_len"])
    code = code_bytes_for(r, ck)
    res = {"seed": encode_seed(ck, r.codec, cal, code)}
    res["planner"] = plan(ck, res["seed"].report["total_bytes"], cal, planner_config("default", None, r.codec.min_numel),
                          (), code)
    vseq = sequences_from_shard(val, 32, 128, seed=1)
    base = {"val": measure_loss(fm, vseq), "cal": measure_loss(fm, cal.seqs)}
    seqs = {"val": vseq, "cal": cal.seqs}
    summary, rows = {}, {}
    sd = ck.state_dict()
    for k, x in res.items():
        art = parse_artifact(x.artifact).state_dict()
        m = from_state_dict({n: v.float() for n, v in art.items()}, cfg)
        summary[k] = {"total_bytes": x.report["total_bytes"], "predicted_dloss": x.report["predicted_dloss"],
                      **{f"measured_{s}": measure_loss(m, seqs[s]) - base[s] for s in seqs}}
        for t in x.report["tensors"]:
            n, w = t["name"], art[t["name"]].float()
            same = torch.equal(w, sd[n].float())
            rows.setdefault(n, {})[k] = {
                "label": t["label"], "bytes": t["bytes"], "dloss": t["dloss"], "first_order": t["first_order"],
                **{f"measured_{s}": 0.0 if same else measure_with(fm, seqs[s], {n: w}) - base[s] for s in seqs}}
    out.write_text(json.dumps({"recipe": name, "checkpoint": ckpt, "summary": summary, "tensors": rows}, indent=1))
    print(json.dumps(summary))
    for n, rec in rows.items():
        print(n, " | ".join(f"{k}: {v['label']} {v['bytes']:,} B pred {v['dloss']:.2e} first {v['first_order']:+.2e} "
                             f"val {v['measured_val']:+.2e}" for k, v in rec.items()))


def zscore(ckpt: str, shard: str, n_seqs: int, seq_len: int) -> None:
    import math

    import numpy as np
    import torch

    from golfpack.checkpoint import read_checkpoint
    from golfpack.codec import spec
    from golfpack.codec.calib import calibrate
    from golfpack.codec.candidates import TensorCandidates
    from golfpack.codec.planner import _source_tensor
    from golfpack.model.load import from_state_dict

    torch.set_num_threads(1)
    ck = read_checkpoint(ckpt)
    cal = calibrate(from_state_dict(ck.state_dict(), _config(ck)), shard=shard, n_seqs=n_seqs, seq_len=seq_len)
    zs: dict = {}
    for name in ck.order:
        w = _source_tensor(ck, name)
        if name not in cal.stats or not (w.is_floating_point() and spec.quantizable(name, tuple(w.shape), 4096)):
            continue
        s = cal.stats[name]
        g = TensorCandidates(name, w, s)
        errs = {f"int{b}": g.add_quantized("rtn", b, "mse").q.dequantize() - g.w for b in (2, 3, 4, 6)}
        errs["zeroed"] = -g.w
        for k, d in errs.items():
            dl = s.predict(d)
            zs.setdefault(k, []).append(s.first_order(d) / math.sqrt(max(2 * dl / cal.tokens, 1e-30)))
    out = {"checkpoint": ckpt, "calib_tokens": cal.tokens}
    for k, v in zs.items():
        a = np.abs(np.asarray(v))
        out[k] = {"n": len(v), "median_abs_z": round(float(np.median(a)), 2),
                  "p90_abs_z": round(float(np.percentile(a, 90)), 2), "max_abs_z": round(float(a.max()), 2),
                  "mean_z": round(float(np.mean(v)), 2)}
    print(json.dumps(out))


def transfer(name: str, trained: str, train_shard: str, out: Path, steps: int) -> None:
    """See the module docstring (`transfer`)."""
    from golfpack import recipes
    from golfpack.checkpoint import read_checkpoint
    from golfpack.codec.calib import calibrate
    from golfpack.model.load import from_state_dict
    from golfpack.recipes.seed_codec import encode_seed
    from golfpack.train.config import TrainConfig
    from golfpack.train.trainer import train

    r = recipes.get(name)
    from golfpack.model.load import infer_config

    trained_ck = read_checkpoint(trained)
    cfg = _config(trained_ck) or infer_config(trained_ck.state_dict())
    tcfg = TrainConfig(steps=steps, batch_tokens=2048, seq_len=512, warmdown_steps=0,
                       muon_momentum_warmup_steps=0)
    train(cfg, tcfg, train_shard, out / "near_init", show_progress=False)
    rows = {}
    for k, ck in (("trained", trained_ck), ("near_init", read_checkpoint(out / "near_init"))):
        cal = calibrate(from_state_dict(ck.state_dict(), cfg), shard=train_shard, n_seqs=8, seq_len=512)
        rep = encode_seed(ck, r.codec, cal, 0).report
        params = ck.num_params()
        rows[k] = {"params": params, "model_bytes": rep["artifact_bytes"],
                   "bits_per_param": round(8 * rep["artifact_bytes"] / params, 4)}
        print(f"{name} codec on {k}: {rep['artifact_bytes']:,} B", file=sys.stderr, flush=True)
    print(json.dumps({"recipe": name, "codec": str(r.codec), "trained": trained, "steps": steps, "rows": rows,
                      "ratio_trained_to_near_init": round(rows["trained"]["model_bytes"]
                                                          / rows["near_init"]["model_bytes"], 4)}))


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[:1] == ["sp8192"]:
        make_sp8192(Path(a[1]))
    elif a[:1] == ["full"]:
        opt = dict(zip(a[4::2], a[5::2]))
        full(a[1], a[2], Path(a[3]), opt.get("--planner", "fast"), int(opt.get("--steps", 8)),
             int(opt.get("--batch-tokens", 2048)))
    elif a[:1] == ["transfer"] and len(a) in (5, 7):
        transfer(a[1], a[2], a[3], Path(a[4]), int(dict(zip(a[5::2], a[6::2])).get("--steps", 8)))
    elif a[:1] == ["tensors"] and len(a) == 6:
        tensors(a[1], a[2], a[3], a[4], Path(a[5]))
    elif a[:1] == ["zscore"] and len(a) == 5:
        zscore(a[1], a[2], int(a[3]), int(a[4]))
    else:
        sys.exit(__doc__)

"""`golfpack recipe run`: one seed system end to end.

    data -> train (or --checkpoint) -> calibrate -> encode with the seed's recipe
         -> encode with golfpack's planner at the same total bytes -> evaluate both
         (the seed's eval mode, then its TTT) -> one table (results.json, results.md)

Bytes: every total is artifact bytes + code bytes, and the code bytes are the same for both
artifacts: the size of the record script `golfpack export` writes for this model, eval mode and
TTT (golfpack.export.plan.reserve, what `encode --code-bytes auto` reserves). The planner's
budget is the seed artifact's total, so both rows spend the same bytes (the planner lands in
[budget * (1 - tolerance), budget]).

Data: --train/--val shards with --tokenizer, or (no data flags) the demo's built-in corpus (the
Python standard library's sources, golfpack.data.corpus.stdlib_corpus) tokenized with --tokenizer
or with a SentencePiece BPE trained here (vocab 1024 at tiny scale, the seed's vocab at full scale).
Calibration reads the train shard, never the val shard.

Under torchrun the run joins one process group for its whole life (run_recipe): rank 0 alone
prepares the demo data (tokenizer and shards: two ranks writing the same files raced, and a
2-rank run hung), training is distributed (golfpack.train.trainer, which keeps a group it did not
create), every rank then encodes the same artifacts (deterministic) and the evals split their
batches over the ranks; rank 0 writes.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from golfpack.errors import GolfpackError

SCALE_DEFAULTS = {  # per scale: eval targets, calibration sequences x length, demo corpus bytes
    "tiny": {"eval_tokens": 4096, "calib_seqs": 8, "calib_len": 128, "corpus_bytes": 1_500_000,
             "tok_bytes": 400_000, "val_docs": 6},
    "full": {"eval_tokens": 65_536, "calib_seqs": 16, "calib_len": 512, "corpus_bytes": 8_000_000,
             "tok_bytes": 3_000_000, "val_docs": 20},
}


@dataclass
class RunOptions:
    scale: str = "tiny"
    train: list | None = None
    val: str | None = None
    tokenizer: str | None = None
    minutes: float | None = None
    steps: int | None = None
    checkpoint: str | None = None
    out: str = "golfpack-recipe"
    eval_tokens: int | None = None
    planner: str = "default"  # "default" | "fast" (the demo's lean candidate set)
    device: str = "cpu"
    threads: int | None = None  # torch CPU threads (default: 1 at tiny scale, torch's own at full)
    quiet: bool = False
    stages: dict = field(default_factory=dict)


class _Clock:
    def __init__(self, stages: dict):
        self.stages = stages

    def run(self, name, fn, *a, **kw):
        t = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            self.stages[name] = round(self.stages.get(name, 0.0) + time.perf_counter() - t, 2)


def _check_options(o: RunOptions) -> None:
    from golfpack.recipes.base import SCALES

    if o.scale not in SCALES:
        raise GolfpackError(f"--scale must be one of {', '.join(SCALES)}, got {o.scale!r}")
    if bool(o.train) != bool(o.val):
        raise GolfpackError("--train and --val go together (training shards and a validation shard)")
    if o.train and not o.tokenizer:
        raise GolfpackError("--train/--val need --tokenizer (the tokenizer the shards were made with)")
    for p in (o.train or []) + ([o.val] if o.val else []):
        if not Path(p).exists():
            raise GolfpackError(f"shard not found: {p}")
    if o.tokenizer and not Path(o.tokenizer).is_file():
        raise GolfpackError(f"tokenizer not found: {o.tokenizer}")
    if o.checkpoint and not Path(o.checkpoint).exists():
        raise GolfpackError(f"checkpoint not found: {o.checkpoint}")
    if o.checkpoint and not o.tokenizer:
        raise GolfpackError("--checkpoint needs --tokenizer (the checkpoint's own vocabulary)")
    if o.minutes is not None and not o.minutes > 0:
        raise GolfpackError(f"--minutes must be positive, got {o.minutes}")
    if o.steps is not None and o.steps < 0:
        raise GolfpackError(f"--steps must be >= 0, got {o.steps}")
    if o.eval_tokens is not None and o.eval_tokens < 1:
        raise GolfpackError(f"--eval-tokens must be >= 1, got {o.eval_tokens}")
    if o.threads is not None and o.threads < 1:
        raise GolfpackError(f"--threads must be >= 1, got {o.threads}")
    if o.planner not in ("default", "fast"):
        raise GolfpackError(f"--planner must be default or fast, got {o.planner!r}")
    out = Path(o.out)
    if out.exists() and not out.is_dir():
        raise GolfpackError(f"--out {out} exists and is not a folder")


def _data(recipe, o: RunOptions, out: Path, clock: _Clock, say) -> tuple[str, list[str], str]:
    """(tokenizer, train shards, val shard)."""
    if o.train:
        return o.tokenizer, [str(p) for p in o.train], o.val
    from golfpack.data.corpus import stdlib_corpus
    from golfpack.data.tokenize import tokenize_documents
    from golfpack.recipes.base import TOKENIZERS

    d = SCALE_DEFAULTS[o.scale]
    tok = o.tokenizer
    if tok is None:
        from golfpack.data.tokenizer_train import train_tokenizer

        vocab = 1024 if o.scale == "tiny" else TOKENIZERS[recipe.tokenizer][1]
        tok = str(out / f"stdlib_sp{vocab}.model")
        if not Path(tok).is_file():
            say(f"tokenizer: SentencePiece BPE, {vocab} pieces, on the standard library's text")
            clock.run("data", train_tokenizer, stdlib_corpus(max_bytes=d["tok_bytes"]), tok, vocab_size=vocab,
                      max_bytes=d["tok_bytes"])
    say("data: the standard library's sources (the demo corpus), tokenized")
    res = clock.run("data", tokenize_documents, stdlib_corpus(max_bytes=d["corpus_bytes"]), tok, out / "data",
                    "stdlib", val_docs=d["val_docs"])
    if res["train"]["path"] is None or res["val"]["path"] is None:
        raise GolfpackError("the built-in corpus gave no train or no val split")
    return tok, [res["train"]["path"]], res["val"]["path"]


def run_recipe(name: str, o: RunOptions) -> dict:
    import torch

    from golfpack import recipes

    _check_options(o)
    base = recipes.get(name)
    # Tiny models: one thread. On a shared CPU an OpenMP pool makes their small ops several times
    # slower (a 232k-param training step: 2.0 s with 2 threads on a loaded 2-core machine, 0.28 s
    # with one; tests/conftest.py says the same).
    threads = o.threads or (1 if o.scale == "tiny" else None)
    if threads:
        torch.set_num_threads(threads)
    out = Path(o.out)
    out.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ.get("RANK", "0") or 0)
    show = not o.quiet and rank == 0
    say = (lambda m: print(f"[{name}] {m}", file=sys.stderr, flush=True)) if show else (lambda m: None)
    clock = _Clock(o.stages)
    t_all = time.perf_counter()

    from golfpack.evaluate.distributed import init_if_needed

    group_here = not (torch.distributed.is_available() and torch.distributed.is_initialized())
    world = init_if_needed(torch.device(o.device)).world
    # after an error there is no meeting: the other ranks may never arrive
    result = _run(name, base, o, out, rank, world, show, say, clock, t_all)
    if world > 1 and group_here:
        torch.distributed.barrier()  # leave together (train.distributed.teardown says why)
        torch.distributed.destroy_process_group()
    return result


def _run(name, base, o: RunOptions, out: Path, rank: int, world: int, show: bool, say, clock: _Clock,
         t_all: float) -> dict:
    import torch

    from golfpack.data.bytes import build_byte_tables, load_sentencepiece

    if world > 1:  # rank 0 prepares the data, the others take its paths
        box = [_data(base, o, out, clock, say) if rank == 0 else None]
        torch.distributed.broadcast_object_list(box, src=0)
        tok, train_shards, val_shard = box[0]
    else:
        tok, train_shards, val_shard = _data(base, o, out, clock, say)
    vocab = int(load_sentencepiece(tok).get_piece_size())
    recipe = base.at_scale(o.scale, vocab_size=vocab)
    recipe.validate()
    tables = build_byte_tables(tok, vocab_size=vocab)

    # ---- train (or take a checkpoint)
    from golfpack.checkpoint import read_checkpoint

    if o.checkpoint:
        src = o.checkpoint
        train_log = None
    else:
        from golfpack.train.trainer import train

        over = {}
        if o.minutes is not None:
            over.update(minutes=float(o.minutes), steps=0 if o.steps is None else o.steps)
        elif o.steps is not None:
            over.update(steps=o.steps, minutes=0.0)
        mcfg, tcfg = recipe.model_config(), None
        if over.get("steps") == 0 and not over.get("minutes"):  # --steps 0: the freshly initialised model
            from golfpack.train.trainer import build_model, save_checkpoint

            tcfg = recipe.train_config(steps=1)
            say("train: --steps 0, the freshly initialised model")
            m = clock.run("train", build_model, mcfg, tcfg.seed)
            train_log = {"steps": 0, "train_seconds": 0.0, "weights": "init", "num_params": m.num_params()}
            if rank == 0:
                save_checkpoint(out / "ckpt", m, mcfg, dict(train_log))
        else:
            tcfg = recipe.train_config(**over)
            budget = f"{tcfg.minutes:g} min" if tcfg.minutes else f"{tcfg.steps} steps"
            say(f"train: {recipe.name} at {o.scale} scale, {budget}")
            train_log = clock.run("train", train, mcfg, tcfg, train_shards, out / "ckpt", device=o.device,
                                  show_progress=show)
        src = str(out / "ckpt")
        if world > 1:  # none reads the checkpoint before rank 0 has written it
            torch.distributed.barrier()
    ck = read_checkpoint(src)
    if ck.config is None:
        raise GolfpackError(f"checkpoint {src} carries no model config")
    from golfpack.model import GPTConfig

    cfg = ck.config if isinstance(ck.config, GPTConfig) else GPTConfig.from_dict(dict(ck.config))
    if cfg.vocab_size != vocab:
        raise GolfpackError(f"checkpoint vocab {cfg.vocab_size} != tokenizer vocab {vocab}")

    result = run_codec_and_eval(recipe, ck, cfg, train_shards[0], val_shard, tables, o, clock, say)
    result.update({
        "recipe": recipe.name, "pr": recipe.pr, "scale": o.scale, "tokenizer": tok, "vocab_size": vocab,
        "train_shards": train_shards, "val_shard": val_shard, "checkpoint": src,
        "train": None if train_log is None else {k: train_log.get(k) for k in
                                                 ("steps", "train_seconds", "weights", "num_params")},
        "stage_seconds": dict(o.stages), "seconds": round(time.perf_counter() - t_all, 1),
        "differences": list(recipe.differences),
    })
    if rank == 0:
        (out / "results.json").write_text(json.dumps(result, indent=1))
        (out / "results.md").write_text(format_table(result) + "\n")
    return result


def code_bytes_for(recipe, ck) -> int:
    """Size of the record script golfpack export writes for this model, eval mode and TTT."""
    from golfpack.export.needs import RUNTIME_CODERS
    from golfpack.export.plan import reserve

    mode = {"doc_aware": "doc-aware"}.get(recipe.eval.mode, recipe.eval.mode)
    return reserve(ck, RUNTIME_CODERS, True, eval_mode=mode, ttt=recipe.eval.ttt,
                   seq_len=recipe.eval.seq_len, stride=recipe.eval.stride).code_bytes


def planner_config(kind: str, device: str | None, min_numel: int):
    """golfpack's planner: its defaults, or (fast) the demo's lean set: no LQER, two clip multipliers.
    min_numel is the seed recipe's, so both encodings quantize the same tensors."""
    from golfpack.codec.planner import PlannerConfig

    if kind == "fast":
        return PlannerConfig(lqer_ranks=(), rate_mults=(), clip_mults=(1.0, 2 ** (1 / 3)), device=device,
                             min_numel=min_numel)
    return PlannerConfig(device=device, min_numel=min_numel)


def encode_both(recipe, ck, cal, o: RunOptions, clock: _Clock, say) -> dict:
    """{"seed": PlanResult, "planner": PlanResult, "code_bytes": int}."""
    from golfpack.codec.planner import plan
    from golfpack.recipes.seed_codec import encode_seed

    dev = None if o.device == "cpu" else o.device
    code = code_bytes_for(recipe, ck)
    seed = clock.run("encode_seed", encode_seed, ck, recipe.codec, cal, code, dev)
    budget = seed.report["total_bytes"]
    say(f"encode: seed recipe {len(seed.artifact):,} B + code {code:,} B = {budget:,} B; planner at that budget")
    try:
        planned = clock.run("encode_planner", plan, ck, budget, cal, planner_config(o.planner, dev, recipe.codec.min_numel), (), code)
    except GolfpackError as e:
        raise GolfpackError(f"planner at the seed's {budget:,} bytes: {e}") from None
    return {"seed": seed, "planner": planned, "code_bytes": code}


def run_codec_and_eval(recipe, ck, cfg, calib_shard, val_shard, tables, o: RunOptions, clock: _Clock, say) -> dict:
    from golfpack.codec.calib import calibrate
    from golfpack.codec.container import parse_artifact
    from golfpack.data.shards import read_shards
    from golfpack.model.load import from_state_dict

    d = SCALE_DEFAULTS[o.scale]
    float_model = from_state_dict(ck.state_dict(), cfg)
    params = ck.num_params()
    calib_len = min(d["calib_len"], recipe.train.get("seq_len", d["calib_len"]))
    cal = clock.run("calibrate", calibrate, float_model, shard=calib_shard, n_seqs=d["calib_seqs"],
                    seq_len=calib_len, device=None if o.device == "cpu" else o.device)
    enc = encode_both(recipe, ck, cal, o, clock, say)
    tokens = read_shards(val_shard)
    n_eval = min(o.eval_tokens or d["eval_tokens"], int(tokens.size) - 1)
    if n_eval < recipe.eval.seq_len:
        raise GolfpackError(f"the val shard has {tokens.size:,} tokens, fewer than the eval length "
                            f"{recipe.eval.seq_len} + 1")
    say(f"eval: {recipe.eval.mode} (seq {recipe.eval.seq_len}, stride {recipe.eval.stride}) + TTT "
        f"{recipe.eval.ttt} on the first {n_eval:,} targets of {Path(val_shard).name}")
    f_bpb = clock.run("eval_float", eval_mode, float_model, tokens, tables, recipe, n_eval, o.device)
    rows = []
    for which in ("seed", "planner"):
        res = enc[which]
        rep = res.report
        m = from_state_dict({k: v.float() for k, v in parse_artifact(res.artifact).state_dict().items()}, cfg)
        q = clock.run(f"eval_{which}", eval_mode, m, tokens, tables, recipe, n_eval, o.device)
        t = clock.run(f"ttt_{which}", eval_ttt, m, tokens, tables, recipe, n_eval, o.device)
        rows.append({
            "encoding": "seed recipe" if which == "seed" else "golfpack planner",
            "params": params, "artifact_bytes": rep["artifact_bytes"], "code_bytes": rep["code_bytes"],
            "total_bytes": rep["total_bytes"], "bits_per_param": 8 * rep["total_bytes"] / params,
            "bpb_float": f_bpb, "bpb_quant": q, "bpb_ttt": t,
            "predicted_dloss": rep["predicted_dloss"], "budget": rep.get("budget"),
            "encode_seconds": o.stages.get(f"encode_{which}"), "eval_seconds": o.stages.get(f"eval_{which}"),
            "ttt_seconds": o.stages.get(f"ttt_{which}"),
        })
    return {"params": params, "rows": rows, "eval_tokens": n_eval, "eval": {
        "mode": recipe.eval.mode, "seq_len": recipe.eval.seq_len, "stride": recipe.eval.stride,
        "ttt": recipe.eval.ttt, "ttt_config": recipe.ttt_config().to_dict() if recipe.eval.ttt else None},
        "codec": recipe.to_dict()["codec"], "planner": o.planner, "model": cfg.to_dict()}


def eval_mode(model, tokens, tables, recipe, n: int, device: str) -> float:
    from golfpack.evaluate.bpb import evaluate

    e = recipe.eval
    kw = {}
    if e.mode in ("sliding", "doc_aware") and e.stride is not None:
        kw["stride"] = e.stride
    r = evaluate(model, tokens, tables, seq_len=e.seq_len, doc_aware=e.mode == "doc_aware", batch=8,
                 device=device, max_tokens=n, **kw)
    return float(r.val_bpb)


def eval_ttt(model, tokens, tables, recipe, n: int, device: str) -> float | None:
    from golfpack.evaluate.ttt import evaluate_ttt

    cfg = recipe.ttt_config()
    if cfg is None:
        return None
    return float(evaluate_ttt(model, tokens, tables, cfg, device=device, max_tokens=n).val_bpb)


def format_table(r: dict) -> str:
    e = r["eval"]
    ttt = f"{e['ttt']} TTT" if e["ttt"] else "no TTT"
    lines = [f"recipe {r['recipe']} (PR {r['pr']}), {r['scale']} scale: {r['params']:,} params; eval {e['mode']} "
             f"seq {e['seq_len']} stride {e['stride']} + {ttt}, first {r['eval_tokens']:,} targets of "
             f"{Path(r['val_shard']).name}", "",
             "| encoding | params | bytes (code + model) | bits/param | bpb float | bpb quant | bpb TTT | "
             "s encode | s eval | s TTT |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def f(x, p=4):
        return "-" if x is None else f"{x:.{p}f}"
    for row in r["rows"]:
        lines.append(f"| {row['encoding']} | {row['params']:,} | {row['total_bytes']:,} ({row['code_bytes']:,} + "
                     f"{row['artifact_bytes']:,}) | {row['bits_per_param']:.3f} | {f(row['bpb_float'])} | "
                     f"{f(row['bpb_quant'])} | {f(row['bpb_ttt'])} | {f(row['encode_seconds'], 1)} | "
                     f"{f(row['eval_seconds'], 1)} | {f(row['ttt_seconds'], 1)} |")
    st = r["stage_seconds"]
    lines += ["", "stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in st.items()) + f"; total {r['seconds']:.0f} s"]
    return "\n".join(lines)

"""`golfpack demo`: the whole pipeline on a fresh machine, in one command.

    golfpack demo [--out DIR] [--quick] [--train-minutes M] [--budget BYTES|N%]
                  [--data CORPUS|SHARD_DIR] [--tokenizer SP.model] [--checkpoint SRC]

With no options it needs nothing but this Python installation:
  1. corpus:    the standard library's own sources (code, comments and docstrings), one document
                per .py file (golfpack.data.corpus.stdlib_corpus);
  2. tokenizer: a SentencePiece BPE with the challenge's conventions, trained on that text;
  3. data:      train / val shards (the last documents are the val split);
  4. train:     a small GPT for a few CPU minutes with golfpack's trainer (Muon + Adam);
  5. encode:    the byte-budget planner with calibration on the train shard (never the val shard);
  6. decode:    the artifact back to tensors, timed;
  7. eval:      the float checkpoint and the artifact, plain and sliding window (and LoRA TTT
                when golfpack.evaluate.ttt is installed), on the same val prefix;
  8. RD plot:   the planner at several budgets, val_bpb against bytes.
It prints a table and writes everything under --out (default ./golfpack-demo):
    sp1024.model, data/*.bin, ckpt/ (model.safetensors, config.json), model.gp (the artifact),
    rd/rd_<budget>.gp, rd.png, results.json, results.md.

--tokenizer, --data and --checkpoint replace stages with real material: a tokenizer; a corpus
file (.jsonl/.txt, optionally compressed) or a folder holding one *train*.bin and one *val*.bin
shard; a trained checkpoint (any source `golfpack encode` reads; training is skipped).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from pathlib import Path

from golfpack.errors import GolfpackError
from golfpack.output import write_text

# A small GPT that learns something in a few CPU minutes (examples/tiny.json's shape).
DEMO_MODEL = {"vocab_size": 1024, "num_layers": 4, "model_dim": 128, "num_heads": 4, "num_kv_heads": 2,
              "mlp_mult": 2.0}
DEMO_TRAIN = {"batch_tokens": 4096, "seq_len": 256, "matrix_lr": 0.04, "tied_embed_lr": 0.05, "scalar_lr": 0.04,
              "warmdown_frac": 0.3, "log_every": 10}
DEFAULTS = {  # (full, --quick)
    "train_minutes": (3.5, 0.15),
    "corpus_bytes": (6_000_000, 600_000),
    "tokenizer_bytes": (2_000_000, 400_000),
    "val_docs": (20, 4),
    "eval_tokens": (32_768, 2_048),
    "calib_seqs": (16, 4),
    "rd_budgets": ("10%,15%,30%", "15%"),
    "budget": ("20%", "20%"),
}


def add_subcommands(sub) -> None:
    p = sub.add_parser("demo", help="the whole pipeline on stdlib text: tokenizer, train, encode, decode, eval, plot",
                       description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="golfpack-demo", help="output folder (default ./golfpack-demo)")
    p.add_argument("--quick", action="store_true", help="tiny sizes everywhere: a smoke test of the chain (~1 min)")
    p.add_argument("--data", default=None, metavar="CORPUS|DIR",
                   help="a corpus file (.jsonl/.txt[.xz|.gz|.bz2]) or a folder with one *train*.bin and one *val*.bin")
    p.add_argument("--tokenizer", default=None, metavar="SP.model", help="use this tokenizer instead of training one")
    p.add_argument("--checkpoint", default=None, metavar="SRC", help="encode this checkpoint instead of training one")
    p.add_argument("--train-minutes", type=float, default=None, help="training time budget (default 3.5; --quick 0.15)")
    p.add_argument("--budget", default=None, metavar="BYTES|N%",
                   help="artifact budget: bytes or a percentage of the lossless artifact (default 20%%)")
    p.add_argument("--rd-budgets", default=None, metavar="LIST",
                   help="extra budgets for the RD plot (default 10%%,15%%,30%%; the main budget is always a point)")
    p.add_argument("--eval-tokens", type=int, default=None, help="val targets scored by every eval (default 32768)")
    p.add_argument("--seq-len", type=int, default=256, help="eval sequence length (default 256)")
    p.add_argument("--stride", type=int, default=None, help="sliding-window stride (default seq-len / 4)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads for training (default 2; later stages use 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print results.json instead of the table")
    p.set_defaults(func=run_demo)


# ----------------------------------------------------------------------------- helpers


def _pick(args, name: str):
    v = getattr(args, name, None)
    return v if v is not None else DEFAULTS[name][1 if args.quick else 0]


def _budget_bytes(text: str, lossless: int, what: str) -> int:
    from golfpack.codec.cli import parse_bytes

    t = str(text).strip()
    if t.endswith("%"):
        try:
            frac = float(t[:-1]) / 100
        except ValueError:
            raise GolfpackError(f"{what}: {text!r} is not a percentage") from None
        if not 0 < frac <= 10:
            raise GolfpackError(f"{what}: {text!r} must be a positive percentage")
        return max(1, int(lossless * frac))
    b = parse_bytes(t, what)
    if b < 1:
        raise GolfpackError(f"{what} must be at least 1 byte")
    return b


class _Clock:
    """Wall seconds per stage, for the timing line of the report."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.stages: dict[str, float] = {}

    def run(self, name: str, fn, *a, **kw):
        t = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            self.stages[name] = round(self.stages.get(name, 0.0) + time.perf_counter() - t, 2)


def _timed_bar(seconds: float | None, desc: str, enabled: bool):
    """A bar over a stage bounded by wall time (the trainer stops at its time budget), moved once a
    second by a thread; seconds None: elapsed seconds only (a stage with no progress callback of its
    own). Returns stop(), which the caller runs when the stage ends."""
    from golfpack.progress import bar

    done = threading.Event()
    b = bar(None if seconds is None else int(math.ceil(seconds)), desc, enabled, unit="s")
    t0 = time.perf_counter()

    def tick():
        while not done.wait(1.0):
            el = int(time.perf_counter() - t0)
            b.update((el if b.total is None else min(b.total, el)) - b.n)

    th = threading.Thread(target=tick, daemon=True)
    th.start()

    def stop():
        done.set()
        th.join()
        if b.total is not None:
            b.update(b.total - b.n)
        b.close()
    return stop


def _find_shards(folder: Path) -> tuple[Path, Path]:
    train = sorted(folder.glob("*train*.bin"))
    val = sorted(folder.glob("*val*.bin"))
    if len(train) != 1 or len(val) != 1:
        raise GolfpackError(f"--data {folder}: expected exactly one *train*.bin and one *val*.bin shard, "
                            f"found {len(train)} and {len(val)}")
    return train[0], val[0]


# ----------------------------------------------------------------------------- stages


def _tokenizer(args, out: Path, show: bool, clock: _Clock) -> Path:
    if args.tokenizer:
        p = Path(args.tokenizer)
        if not p.is_file():
            raise GolfpackError(f"tokenizer not found: {p}")
        return p
    from golfpack.data.tokenizer_train import train_tokenizer

    docs = _docs(args, _pick(args, "tokenizer_bytes"))
    path = out / "sp1024.model"
    stop = _timed_bar(None, "tokenizer (SentencePiece BPE, 1024 pieces)", show)
    try:
        clock.run("tokenizer", train_tokenizer, docs, path, vocab_size=1024, max_bytes=_pick(args, "tokenizer_bytes"))
    finally:
        stop()
    return path


def _docs(args, max_bytes: int):
    from golfpack.data import corpus

    if args.data and Path(args.data).is_file():
        return corpus.iter_documents(args.data)
    return corpus.stdlib_corpus(max_bytes=max_bytes)


def _shards(args, tokenizer: Path, out: Path, show: bool, clock: _Clock) -> tuple[Path, Path]:
    if args.data and Path(args.data).is_dir():
        return _find_shards(Path(args.data))
    if args.data and not Path(args.data).exists():
        raise GolfpackError(f"--data not found: {args.data}")
    from golfpack.data.corpus import corpus_kind_and_stem
    from golfpack.data.tokenize import tokenize_documents
    from golfpack.progress import bar

    stem = corpus_kind_and_stem(args.data)[1] if args.data else "stdlib"
    docs = _docs(args, _pick(args, "corpus_bytes"))
    pb = bar(None, "tokenize", show, unit="doc")

    def counted():
        for d in docs:
            pb.update(1)
            yield d
    try:
        res = clock.run("data", tokenize_documents, counted(), tokenizer, out / "data", stem,
                        val_docs=_pick(args, "val_docs"))
    finally:
        pb.close()
    if res["train"]["path"] is None or res["val"]["path"] is None:
        raise GolfpackError("the corpus is too small for a train and a val split")
    return Path(res["train"]["path"]), Path(res["val"]["path"])


def _train(args, train_shard: Path, out: Path, show: bool, clock: _Clock) -> Path:
    if args.checkpoint:
        p = Path(args.checkpoint)
        if not p.exists():
            raise GolfpackError(f"checkpoint not found: {p}")
        return p
    from golfpack.model import GPTConfig
    from golfpack.train.config import TrainConfig
    from golfpack.train.trainer import train

    minutes = _pick(args, "train_minutes")
    if not minutes > 0:
        raise GolfpackError(f"--train-minutes must be positive, got {minutes}")
    tcfg = TrainConfig.from_dict({**DEMO_TRAIN, "minutes": float(minutes), "steps": 0})
    stop = _timed_bar(60 * minutes, f"train {DEMO_MODEL['num_layers']}x{DEMO_MODEL['model_dim']} GPT "
                                    f"({minutes:g} min budget)", show)
    try:
        log = clock.run("train", train, GPTConfig.from_dict(dict(DEMO_MODEL)), tcfg, train_shard, out / "ckpt",
                        device="cpu", show_progress=False)
    finally:
        stop()
    if show:
        print(f"  trained {log['steps']} steps, {log['tokens_seen']:,} tokens, final train loss "
              f"{log['losses'][-1]:.3f}", file=sys.stderr)
    return out / "ckpt"


# ----------------------------------------------------------------------------- the run


def run_demo(args) -> int:
    import torch

    from golfpack.checkpoint import read_checkpoint
    from golfpack.codec.calib import calibrate
    from golfpack.codec.container import parse_artifact, write_artifact
    from golfpack.codec.encode import encode_lossless
    from golfpack.codec.planner import PlannerConfig, build_items, plan
    from golfpack.codec.rd import write_plot
    from golfpack.data.bytes import build_byte_tables, load_sentencepiece
    from golfpack.data.shards import read_shards
    from golfpack.evaluate.bpb import evaluate
    from golfpack.model.load import from_state_dict
    from golfpack.progress import counter, staged

    if args.threads < 1:
        raise GolfpackError(f"--threads must be >= 1, got {args.threads}")
    if args.seq_len < 8:
        raise GolfpackError(f"--seq-len must be >= 8, got {args.seq_len}")
    stride = args.stride if args.stride is not None else max(1, args.seq_len // 4)
    if not 0 < stride <= args.seq_len:
        raise GolfpackError(f"--stride must be in [1, --seq-len], got {stride}")
    eval_tokens = _pick(args, "eval_tokens")
    if eval_tokens < args.seq_len:
        raise GolfpackError(f"--eval-tokens must be at least --seq-len ({args.seq_len}), got {eval_tokens}")
    try:
        import matplotlib  # noqa: F401  (the plot is part of the demo: fail before minutes of work)
    except ImportError:
        raise GolfpackError("the demo's RD plot needs matplotlib: pip install 'golfpack[plot]'") from None
    if args.checkpoint and not args.tokenizer:
        raise GolfpackError("--checkpoint needs --tokenizer (the checkpoint's own): a tokenizer trained here "
                            "would not match its vocabulary")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise GolfpackError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    show = not args.quiet
    clock = _Clock()
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if show else (lambda m: None)

    say(f"golfpack demo -> {out}/")
    tok = _tokenizer(args, out, show, clock)
    train_shard, val_shard = _shards(args, tok, out, show, clock)
    src = _train(args, train_shard, out, show, clock)

    # ---- encode: calibration on the train shard, candidates once, the main budget.
    # One thread from here on: the demo's matrices are small, and on a shared, loaded CPU an
    # oversubscribed OpenMP pool makes small ops many times slower (tests/conftest.py).
    torch.set_num_threads(1)
    ck = read_checkpoint(src)
    sd = ck.state_dict()
    model = from_state_dict(sd, ck.config)
    lossless = clock.run("encode", lambda: len(encode_lossless(ck)))
    budget = _budget_bytes(args.budget or DEFAULTS["budget"][0], lossless, "--budget")
    rd_budgets = sorted({_budget_bytes(b, lossless, "--rd-budgets")
                         for b in str(_pick(args, "rd_budgets")).split(",") if b.strip()} | {budget})
    n_cal = _pick(args, "calib_seqs")
    say(f"encode: lossless size {lossless:,} bytes; budget {budget:,}; calibrating on {n_cal} x {args.seq_len} "
        f"tokens of {train_shard.name}")
    cal = clock.run("encode", calibrate, from_state_dict(sd, ck.config), shard=train_shard, n_seqs=n_cal,
                    seq_len=args.seq_len)
    # The planner's lean candidate set (`encode --budget --no-lqer`, two clip multipliers):
    # the full set is minutes of CPU even for this small model, and the budget below is generous.
    cfg = PlannerConfig(lqer_ranks=(), rate_mults=(), clip_mults=(1.0, 2 ** (1 / 3)))
    items = clock.run("encode", build_items, ck, cal, cfg, (), staged("encode candidates", show))
    res = {}

    def encode_at(b: int):
        if b not in res:
            try:
                res[b] = clock.run("encode", plan, ck, b, cal, cfg, (), 0, items=items)
            except GolfpackError as e:
                raise GolfpackError(f"budget {b:,} bytes: {e}") from None
        return res[b]

    main = encode_at(budget)
    art_path = out / "model.gp"
    write_artifact(art_path, main.artifact)

    # ---- decode
    t0 = time.perf_counter()
    art_sd = parse_artifact(art_path.read_bytes()).state_dict()
    decode_s = time.perf_counter() - t0
    clock.stages["decode"] = round(decode_s, 3)

    # ---- evals
    sp = load_sentencepiece(tok)
    tokens = read_shards(val_shard)
    tables = build_byte_tables(sp, vocab_size=int(model.config.vocab_size))
    if tokens.size < args.seq_len + 1:
        raise GolfpackError(f"the val shard has {tokens.size} tokens, fewer than --seq-len + 1")
    scored = min(eval_tokens, int(tokens.size) - 1)

    def ev(m, what, **kw):
        r = clock.run("eval", evaluate, m, tokens, tables, seq_len=args.seq_len, batch=8, device="cpu",
                      max_tokens=scored, progress=counter(f"eval {what}", show), **kw)
        return {"val_bpb": r.val_bpb, "val_loss": r.val_loss, "tokens": r.tokens, "seconds": round(r.seconds, 2)}

    art_model = from_state_dict(art_sd, ck.config)
    rows = [
        {"what": "float checkpoint", "mode": "plain", "bytes": lossless, **ev(model, "float plain")},
        {"what": "artifact", "mode": "plain", "bytes": len(main.artifact), **ev(art_model, "artifact plain")},
        {"what": "float checkpoint", "mode": f"sliding s{stride}", "bytes": lossless,
         **ev(model, "float sliding", stride=stride)},
        {"what": "artifact", "mode": f"sliding s{stride}", "bytes": len(main.artifact),
         **ev(art_model, "artifact sliding", stride=stride)},
    ]
    ttt_note = _ttt_rows(rows, art_model, tokens, tables, args, scored, show, clock)

    # ---- rate-distortion
    rd_rows = []
    for b in rd_budgets:
        r = encode_at(b)
        m = from_state_dict(parse_artifact(r.artifact).state_dict(), ck.config)
        (out / "rd").mkdir(exist_ok=True)
        write_artifact(out / "rd" / f"rd_{b}.gp", r.artifact)
        pt = ev(m, f"rd @ {b:,}") if b != budget else {k: rows[1][k] for k in ("val_bpb", "val_loss", "tokens")}
        rd_rows.append({"budget": b, "total_bytes": r.report["total_bytes"], "bits_per_param": r.report["bits_per_param"],
                        "val_bpb": pt["val_bpb"]})
    plot = out / "rd.png"
    write_plot(rd_rows, {"val_bpb": rows[0]["val_bpb"], "total_bytes": lossless}, plot,
               f"golfpack demo: val_bpb vs bytes ({scored:,} val tokens, seq {args.seq_len})")

    gap = rows[1]["val_bpb"] - rows[0]["val_bpb"]
    result = {
        "out": str(out), "tokenizer": str(tok), "train_shard": str(train_shard), "val_shard": str(val_shard),
        "checkpoint": str(src), "params": ck.num_params(), "lossless_bytes": lossless, "budget": budget,
        "artifact": str(art_path), "artifact_bytes": len(main.artifact),
        "bits_per_param": main.report["bits_per_param"], "decode_seconds": round(decode_s, 4),
        "calibration": {"shard": str(train_shard), "seqs": n_cal, "len": args.seq_len},
        "eval_tokens": scored, "seq_len": args.seq_len, "stride": stride, "evals": rows, "ttt": ttt_note,
        "artifact_minus_float_bpb": gap, "within_0.01": abs(gap) <= 0.01,
        "rd": rd_rows, "plot": str(plot), "stage_seconds": clock.stages,
        "seconds": round(time.perf_counter() - clock.t0, 1),
    }
    md = format_table(result)
    write_text(out / "results.json", json.dumps(result, indent=1))
    write_text(out / "results.md", md + "\n")
    if args.json:
        print(json.dumps(result))
    else:
        print(md)
    return 0


def _ttt_rows(rows, art_model, tokens, tables, args, scored, show, clock) -> str | None:
    from golfpack.evaluate.bpb import evaluate

    """LoRA TTT (score-first, per-document adapters) on the artifact, via golfpack.evaluate.ttt.
    Context = the eval seq_len, chunks of a quarter of it; the rest is TTTConfig's LoRA defaults."""
    try:
        from golfpack.evaluate.ttt import TTTConfig, evaluate_ttt
    except ImportError:
        return "LoRA TTT: not in this build (golfpack.evaluate.ttt is not installed)"
    from golfpack.progress import counter

    cfg = TTTConfig.for_method("lora", {"context": args.seq_len, "chunk": max(1, args.seq_len // 2)})
    # The same contexts without adaptation (evaluate_ttt's docstring: with adapters at zero it equals
    # the doc-aware sliding eval at seq_len=context, stride=chunk), so the TTT gain is read off alone.
    same = evaluate(art_model, tokens, tables, seq_len=cfg.context, stride=cfg.chunk, doc_aware=True, batch=8,
                    device="cpu", max_tokens=scored, progress=counter("eval artifact doc-aware", show))
    rows.append({"what": "artifact", "mode": f"doc-aware s{cfg.chunk}", "bytes": rows[1]["bytes"],
                 "val_bpb": same.val_bpb, "val_loss": same.val_loss, "tokens": same.tokens,
                 "seconds": round(same.seconds, 2)})
    r = clock.run("eval", evaluate_ttt, art_model, tokens, tables, cfg, device="cpu", max_tokens=scored,
                  progress=counter("eval artifact LoRA TTT", show, unit="token"))
    rows.append({"what": "artifact", "mode": f"LoRA TTT (rank {cfg.rank}, chunk {cfg.chunk}, doc-aware)",
                 "bytes": rows[1]["bytes"], "val_bpb": r.val_bpb, "val_loss": r.val_loss, "tokens": r.tokens,
                 "seconds": round(r.seconds, 2), "vs": f"doc-aware s{cfg.chunk}"})
    return None


def format_table(r: dict) -> str:
    lines = [f"golfpack demo: {r['params']:,}-param GPT, val = first {r['eval_tokens']:,} targets of "
             f"{Path(r['val_shard']).name}, seq {r['seq_len']}", "",
             "| model | eval | bytes | val_bpb | Δ | s |", "|---|---|---:|---:|---:|---:|"]
    base = {row["mode"]: row["val_bpb"] for row in r["evals"] if row["what"] == "float checkpoint"}
    art = {row["mode"]: row["val_bpb"] for row in r["evals"] if row["what"] == "artifact"}
    for row in r["evals"]:
        if row.get("vs"):  # TTT: against the artifact on the same contexts without adaptation
            d = f"{row['val_bpb'] - art[row['vs']]:+.4f} vs {row['vs']}"
        elif row["mode"] in base and row["what"] != "float checkpoint":
            d = f"{row['val_bpb'] - base[row['mode']]:+.4f} vs float"
        else:
            d = ""
        lines.append(f"| {row['what']} | {row['mode']} | {row['bytes']:,} | {row['val_bpb']:.4f} | {d} | "
                     f"{row['seconds']:.1f} |")
    if r.get("ttt"):
        lines.append(f"\n{r['ttt']}")
    lines += ["", f"artifact {r['artifact']}: {r['artifact_bytes']:,} bytes of the {r['budget']:,}-byte budget "
                  f"({r['bits_per_param']:.2f} bits/param; lossless {r['lossless_bytes']:,}); decoded in "
                  f"{r['decode_seconds']:.3f} s; bpb {r['artifact_minus_float_bpb']:+.4f} vs float "
                  f"({'within' if r['within_0.01'] else 'NOT within'} 0.01)",
              "RD: " + ", ".join(f"{x['total_bytes']:,} B -> {x['val_bpb']:.4f}" for x in r["rd"]) + f"; plot {r['plot']}",
              "stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in r["stage_seconds"].items())
              + f"; total {r['seconds']:.0f} s"]
    return "\n".join(lines)

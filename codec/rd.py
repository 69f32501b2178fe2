"""`golfpack rd`: rate-distortion of a checkpoint, val_bpb against total bytes, one planner run per budget.

    golfpack rd SRC --val SHARD --tokenizer SP.model --budgets 40%,50%,1.5e6,... [--plot rd.png] [--json]

Each budget is planned, quantized and encoded exactly as `golfpack encode --budget` does (one
calibration serves every budget), decoded, and scored with the evaluator (`golfpack eval`'s
rules: plain by default, --stride / --doc-aware as there). A budget written as a percentage is
a fraction of the source file's size. The source itself is scored too, as the reference row.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from golfpack.errors import GolfpackError


def parse_budgets(text: str, source_bytes: int | None) -> list[int]:
    from golfpack.codec.cli import parse_bytes

    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if part.endswith("%"):
            if source_bytes is None:
                raise GolfpackError(f"--budgets: {part!r} is relative, but the source is not a file with a size")
            try:
                frac = float(part[:-1]) / 100
            except ValueError:
                raise GolfpackError(f"--budgets: {part!r} is not a percentage") from None
            if not 0 < frac:
                raise GolfpackError(f"--budgets: {part!r} must be positive")
            out.append(int(source_bytes * frac))
        else:
            out.append(parse_bytes(part, "--budgets"))
    if not out:
        raise GolfpackError("--budgets: give at least one budget")
    if any(b < 1 for b in out):
        raise GolfpackError("--budgets: every budget must be at least 1 byte")
    return sorted(set(out))


def save_png(fig, path: Path) -> None:
    """tight_layout, then write the figure next to `path` and rename it into place (a reader never
    sees half a PNG), and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def write_plot(rows: list[dict], reference: dict | None, path: Path, title: str) -> None:
    """val_bpb against total bytes (PNG, matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise GolfpackError("--plot needs matplotlib: pip install 'golfpack[plot]' (or matplotlib)") from None
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    xs = [r["total_bytes"] / 1e6 for r in rows]
    ys = [r["val_bpb"] for r in rows]
    ax.plot(xs, ys, "o-", label="golfpack planner")
    for r, x, y in zip(rows, xs, ys):
        ax.annotate(f"{r['bits_per_param']:.2f} b/p", (x, y), textcoords="offset points", xytext=(4, 6), fontsize=7)
    if reference is not None:
        ax.axhline(reference["val_bpb"], color="gray", ls="--", lw=1)
        if reference.get("total_bytes"):
            ax.plot([reference["total_bytes"] / 1e6], [reference["val_bpb"]], "s", color="gray",
                    label=f"source ({reference['total_bytes'] / 1e6:.3f} MB)")
    ax.set_xlabel("total bytes (MB = 10^6; artifact + code)")
    ax.set_ylabel("val_bpb")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_png(fig, path)


def run_rd(args: argparse.Namespace) -> int:
    import torch

    from golfpack.checkpoint import read_checkpoint
    from golfpack.codec import spec
    from golfpack.codec.cli import _calibration, code_bytes_from_args, planner_config_from_args
    from golfpack.codec.container import parse_artifact, write_artifact
    from golfpack.codec.planner import build_items, plan
    from golfpack.data.bytes import build_byte_tables, load_sentencepiece
    from golfpack.data.shards import read_shards
    from golfpack.evaluate.bpb import evaluate
    from golfpack.model.load import from_state_dict
    from golfpack.progress import staged

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    src = Path(args.src)
    if not src.exists():
        raise GolfpackError(f"source not found: {src}")
    if args.plot and not args.plot.endswith(".png"):
        raise GolfpackError(f"--plot writes a PNG: give a path ending in .png, got {args.plot}")
    if args.plot:
        try:
            import matplotlib  # noqa: F401  (fail before hours of work, not after)
        except ImportError:
            raise GolfpackError("--plot needs matplotlib: pip install 'golfpack[plot]' (or matplotlib)") from None
    out_dir = Path(args.out_dir) if args.out_dir else None
    if out_dir is not None and not out_dir.is_dir():
        raise GolfpackError(f"--out-dir {out_dir} is not a directory")
    src_bytes = src.stat().st_size if src.is_file() else None
    budgets = parse_budgets(args.budgets, src_bytes)
    cfg = planner_config_from_args(args, budgeted=True)
    for p, what in ((args.tokenizer, "tokenizer"),):
        if not Path(p).is_file():
            raise GolfpackError(f"{what} not found: {p}")
    sp = load_sentencepiece(args.tokenizer)
    tokens = read_shards(args.val)
    ck = read_checkpoint(src)
    code_bytes = code_bytes_from_args(args, ck, cfg)
    rules = spec.parse_rules(args.bits)
    cal, ref_model = _calibration(args, ck, need=True)
    say = (lambda m: None) if args.json or args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))

    tables_by_vocab = {}  # every budget's model has the source's vocabulary: build the tables once

    def score(model) -> dict:
        vocab = int(model.config.vocab_size)
        if vocab not in tables_by_vocab:
            tables_by_vocab[vocab] = build_byte_tables(sp, vocab_size=vocab)
        tables = tables_by_vocab[vocab]
        r = evaluate(model, tokens, tables, seq_len=args.seq_len, stride=args.stride, doc_aware=args.doc_aware,
                     batch=args.batch, device="cpu", max_tokens=args.max_tokens)
        return {"val_bpb": r.val_bpb, "val_loss": r.val_loss, "tokens": r.tokens, "eval_seconds": round(r.seconds, 1)}

    t0 = time.perf_counter()
    if ref_model is None:  # --calib none
        ref_model = from_state_dict(ck.state_dict(), ck.config)
    say(f"scoring the source {src.name} ...")
    reference = {"source": str(src), "total_bytes": src_bytes, **score(ref_model)}
    rows = []
    say("building candidates (once for every budget) ...")
    items = build_items(ck, cal, cfg, rules, staged("candidates", not args.json and not args.quiet))
    for b in budgets:
        say(f"budget {b:,} bytes: planning ...")
        res = plan(ck, b, cal, cfg, rules, code_bytes, items=items)
        art = parse_artifact(res.artifact)
        if out_dir is not None:
            write_artifact(out_dir / f"rd_{b}.gp", res.artifact)
        model = from_state_dict(art.state_dict(), art.config or ck.config)
        rep = res.report
        row = {"budget": b, "artifact_bytes": rep["artifact_bytes"], "code_bytes": code_bytes,
               "total_bytes": rep["total_bytes"], "fill": rep["fill"], "bits_per_param": rep["bits_per_param"],
               "predicted_dloss": rep["predicted_dloss"], **score(model)}
        row["delta_bpb"] = row["val_bpb"] - reference["val_bpb"]
        rows.append(row)
        say(f"  total {row['total_bytes']:,} bytes ({row['fill']:.2%} of the budget), val_bpb {row['val_bpb']:.6f} "
            f"({row['delta_bpb']:+.6f} vs the source)")
    result = {"source": str(src), "source_bytes": src_bytes, "reference": reference, "rows": rows,
              "method": args.method, "calibration": None if cal is None else {"source": cal.source, "tokens": cal.tokens},
              "seq_len": args.seq_len, "stride": args.stride, "doc_aware": args.doc_aware,
              "max_tokens": args.max_tokens, "seconds": round(time.perf_counter() - t0, 1)}
    if args.plot:
        title = f"{src.name}: val_bpb vs bytes ({args.method}, seq {args.seq_len})"
        write_plot(rows, reference, Path(args.plot), title)
        result["plot"] = args.plot
    if args.json:
        print(json.dumps(result))
        return 0
    print(format_table(result))
    return 0


def format_table(result: dict) -> str:
    ref = result["reference"]
    lines = [f"{'budget':>12} {'total bytes':>12} {'fill':>7} {'bits/param':>10} {'val_bpb':>10} {'d bpb':>10}"]
    for r in result["rows"]:
        lines.append(f"{r['budget']:>12,} {r['total_bytes']:>12,} {r['fill']:>7.2%} {r['bits_per_param']:>10.3f} "
                     f"{r['val_bpb']:>10.6f} {r['delta_bpb']:>+10.6f}")
    src_b = f"{ref['total_bytes']:,}" if ref.get("total_bytes") else "-"
    lines.append(f"{'source':>12} {src_b:>12} {'':>7} {'':>10} {ref['val_bpb']:>10.6f}")
    if result.get("plot"):
        lines.append(f"plot: {result['plot']}")
    return "\n".join(lines)


def add_subcommands(sub) -> None:
    from golfpack.codec.cli import add_planner_arguments

    p = sub.add_parser("rd", help="rate-distortion: val_bpb vs bytes over several budgets",
                       description="Plan, encode, decode and score the checkpoint at each budget; print bpb vs "
                                   "bytes and optionally write a PNG plot.")
    p.add_argument("src", help="source checkpoint")
    p.add_argument("--val", nargs="+", required=True, metavar="SHARD", help="validation shard(s)")
    p.add_argument("--tokenizer", required=True, metavar="SP.model", help="SentencePiece model of the shards")
    p.add_argument("--budgets", required=True, metavar="LIST",
                   help="comma list of byte budgets; N%% is a fraction of the source file size (e.g. 40%%,60%%,2e6)")
    add_planner_arguments(p)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--stride", type=int, default=None)
    p.add_argument("--doc-aware", action="store_true")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--max-tokens", type=int, default=None, help="score only the first N targets")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out-dir", default=None, help="keep each budget's artifact here (rd_<budget>.gp)")
    p.add_argument("--plot", default=None, metavar="OUT.png", help="write val_bpb vs bytes as a PNG")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_rd)

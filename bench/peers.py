"""`golfpack bench peers`: competitors' export pipelines against golfpack on one checkpoint.

    golfpack bench peers SRC --val SHARD --tokenizer SP.model [--calib TRAIN_SHARD] [--seq-len 512]
                         [--max-tokens N] [--pipelines a,b,c,d,e,f] [--out-dir DIR] [--plot RD.png]
                         [--markdown OUT.md] [--json]

For each pipeline of golfpack.bench.peer_codecs (our implementations, from the public
descriptions, of the challenge baseline and the records' int6 / SDClip / GPTQ / lrzip exports):
the bytes it ships, the val_bpb of what it decodes to, its encode and decode seconds; then
golfpack's planner (`golfpack encode --budget`) at the same bytes and the smallest golfpack budget
that reaches the same bpb (bisection over budgets, one calibration and one candidate set for all).

SRC is dequantized first: when it is already quantized (the baseline .ptz), every peer
re-quantizes the dequantized weights, exactly as it would a float checkpoint. Bytes are the model
bytes only (no code, for either side). Calibration (GPTQ Hessians for peers d-f and golfpack's
planner statistics) comes from a training shard, never the validation set, and is timed
separately from the encoders. Decoded state dicts that are bit-identical (d, e and f ship the
same tensors) are scored once.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

from golfpack.bench import paths
from golfpack.errors import GolfpackError
from golfpack.output import write_bytes, write_text


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="source checkpoint (.ptz, .pt, .safetensors, trainer dir)")
    p.add_argument("--val", required=True, metavar="SHARD", help="validation shard")
    p.add_argument("--tokenizer", required=True, metavar="SP.model", help="SentencePiece model of the shard")
    p.add_argument("--calib", default=None, metavar="TRAIN_SHARD",
                   help="training shard for GPTQ Hessians and the planner (default: the shared enwiki_train)")
    p.add_argument("--calib-seqs", type=int, default=32)
    p.add_argument("--calib-len", type=int, default=512)
    p.add_argument("--pipelines", default="a,b,c,d,e,f", help="which peers (default all: a,b,c,d,e,f)")
    p.add_argument("--seq-len", type=int, default=512, help="eval sequence length (default 512)")
    p.add_argument("--max-tokens", type=int, default=None, help="score only the first N targets (a fixed prefix)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bisect-tol", type=float, default=0.04,
                   help="same-bpb search stops when the bracketing budgets differ by less than this fraction")
    p.add_argument("--planner", choices=("full", "fast"), default="full",
                   help="golfpack's candidate set: full (encode --budget's defaults) or fast (no LQER, no "
                        "rate-aware variants, one clip multiplier: a fraction of the candidates, for loaded machines)")
    p.add_argument("--peer-bits", default="6",
                   help="matrix bit widths for the SDClip/GPTQ peers c-f (comma list, 2..8; default 6, the records' "
                        "setting): each extra width is one more point on that peer's RD curve, k and the int8 "
                        "embedding unchanged; only the int6 points get golfpack's same-bytes/same-bpb columns")
    p.add_argument("--budget-fracs", default="",
                   help="golfpack budgets as fractions of pipeline a's (int8) bytes, e.g. 0.4,0.5,...,1.0: "
                        "golfpack's RD curve beside the peers' (needs pipeline a)")
    p.add_argument("--out-dir", default=None, help="keep every peer blob and golfpack artifact here")
    p.add_argument("--plot", default=None, metavar="OUT.png", help="write the RD plot (val_bpb vs bytes)")
    p.add_argument("--markdown", default=None, metavar="OUT.md", help="also write the table as Markdown")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _sd_hash(sd) -> str:
    h = hashlib.sha256()
    for name in sorted(sd):
        t = sd[name].contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(__import__("torch").uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _check_args(args):
    from golfpack.bench.peer_codecs import PIPELINES

    keys = [k.strip() for k in str(args.pipelines).split(",") if k.strip()]
    known = {p.key for p in PIPELINES}
    bad = [k for k in keys if k not in known]
    if not keys or bad:
        raise GolfpackError(f"--pipelines: unknown {bad or 'empty list'} (choose from {','.join(sorted(known))})")
    for v, what in ((args.seq_len, "--seq-len"), (args.batch, "--batch"), (args.threads, "--threads"),
                    (args.calib_seqs, "--calib-seqs"), (args.calib_len, "--calib-len")):
        if v < 1:
            raise GolfpackError(f"{what} must be >= 1, got {v}")
    if args.max_tokens is not None and args.max_tokens < args.seq_len:
        raise GolfpackError(f"--max-tokens must be at least --seq-len ({args.seq_len}), got {args.max_tokens}")
    try:
        args.peer_bits_list = sorted({int(b) for b in str(args.peer_bits).split(",") if b.strip()})
        args.budget_fracs_list = [float(f) for f in str(args.budget_fracs).split(",") if f.strip()]
    except ValueError:
        raise GolfpackError(f"--peer-bits takes integers and --budget-fracs fractions, got {args.peer_bits!r} "
                            f"and {args.budget_fracs!r}") from None
    if not args.peer_bits_list or not all(2 <= b <= 8 for b in args.peer_bits_list):
        raise GolfpackError(f"--peer-bits must list widths in 2..8, got {args.peer_bits!r}")
    if not all(0.05 <= f <= 2 for f in args.budget_fracs_list):
        raise GolfpackError(f"--budget-fracs must be fractions in [0.05, 2], got {args.budget_fracs!r}")
    if args.budget_fracs_list and "a" not in keys:
        raise GolfpackError("--budget-fracs are fractions of pipeline a's bytes: include a in --pipelines")
    if not 0 < args.bisect_tol < 1:
        raise GolfpackError(f"--bisect-tol must be a fraction in (0, 1), got {args.bisect_tol}")
    for pth, what in ((args.src, "source"), (args.tokenizer, "tokenizer")):
        if not Path(pth).exists():
            raise GolfpackError(f"{what} not found: {pth}")
    for pth, what in ((args.val, "validation shard"), (args.calib, "calibration shard")):
        from golfpack.data.shards import resolve_shards

        resolve_shards(pth)  # one clear error for a missing or malformed shard path
    if Path(args.calib).resolve() == Path(args.val).resolve():
        raise GolfpackError("--calib must be a training shard, not the validation shard")
    for pth, what in ((args.plot, "--plot"),):
        if pth and not pth.endswith(".png"):
            raise GolfpackError(f"{what} writes a PNG: give a path ending in .png, got {pth}")
    if args.plot:
        try:
            import matplotlib  # noqa: F401  (fail before the long run, not after)
        except ImportError:
            raise GolfpackError("--plot needs matplotlib: pip install 'golfpack[plot]'") from None
    if args.out_dir:
        # created here (with its parents), before the long run; an existing non-folder is refused
        out = Path(args.out_dir)
        if out.exists() and not out.is_dir():
            raise GolfpackError(f"--out-dir {args.out_dir} exists and is not a directory")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise GolfpackError(f"--out-dir {args.out_dir}: cannot create it ({e.strerror})") from None
    return keys


def run(args) -> int:
    import torch

    from golfpack import progress as P
    from golfpack.bench import peer_codecs as C
    from golfpack.checkpoint import read_checkpoint
    from golfpack.codec.calib import calibrate
    from golfpack.codec.container import parse_artifact
    from golfpack.codec.encode import encode_lossless
    from golfpack.codec.planner import PlannerConfig, build_items, plan
    from golfpack.data.bytes import build_byte_tables, load_sentencepiece
    from golfpack.data.shards import read_shards
    from golfpack.evaluate.bpb import evaluate
    from golfpack.model.load import from_state_dict

    if args.calib is None:
        args.calib = paths.default(paths.CALIB)
    keys = _check_args(args)
    torch.set_num_threads(args.threads)
    show = not args.quiet and not args.json
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if show else (lambda m: None)
    out_dir = Path(args.out_dir) if args.out_dir else None
    t_all = time.perf_counter()

    ck = read_checkpoint(args.src)
    sd = ck.state_dict()
    sp = load_sentencepiece(args.tokenizer)
    tokens = read_shards(args.val)
    model = from_state_dict(sd, ck.config)
    tables = build_byte_tables(sp, vocab_size=int(model.config.vocab_size))
    evals: dict[str, dict] = {}  # decoded-state-dict hash -> score

    def score(state, what: str) -> dict:
        key = _sd_hash(state)
        if key not in evals:
            m = from_state_dict(state, ck.config)
            r = evaluate(m, tokens, tables, seq_len=args.seq_len, batch=args.batch, device="cpu",
                         max_tokens=args.max_tokens, progress=P.counter(f"eval {what}", show))
            evals[key] = {"val_bpb": r.val_bpb, "val_loss": r.val_loss, "tokens": r.tokens,
                          "eval_seconds": round(r.seconds, 1)}
        return dict(evals[key])

    say(f"source {args.src}: {ck.num_params():,} params; scoring it ({args.max_tokens or 'all'} tokens, seq {args.seq_len})")
    reference = {"source": str(args.src), "bytes": Path(args.src).stat().st_size if Path(args.src).is_file() else None,
                 **score(sd, "source")}
    say(f"  source val_bpb {reference['val_bpb']:.6f}")

    # one calibration serves GPTQ peers and golfpack's planner
    say(f"calibrating on {args.calib_seqs} x {args.calib_len} tokens of {args.calib} ...")
    t0 = time.perf_counter()
    cal = calibrate(from_state_dict(sd, ck.config), shard=args.calib, n_seqs=args.calib_seqs,
                    seq_len=args.calib_len)
    calib_s = time.perf_counter() - t0
    hessians = {n: s.H for n, s in cal.stats.items() if s.H is not None}

    # ---- peers
    peers = []
    qcache: dict[str, tuple[dict, float]] = {}
    todo = []  # (pipeline, matrix bits): the records' own setting first, then the extra widths
    for p in C.PIPELINES:
        if p.key in keys:
            # the int6 point is always measured: golfpack's same-bytes and same-bpb columns compare to it
            for bits in ([6] + [b for b in args.peer_bits_list if b != 6] if p.quantize in ("sdclip", "gptq") else [6]):
                todo.append((p, bits))
    pb = P.bar(len(todo), "peer pipelines", show, unit="pipeline")
    for p, bits in todo:
        key = p.key if bits == 6 else f"{p.key}@int{bits}"
        row = {"key": key, "family": p.key, "bits": bits, "name": p.name if bits == 6 else p.name.replace("int6", f"int{bits}"),
               "description": p.description}
        pb.set_description(f"peer {key}: {row['name']}")
        if p.needs == "lrzip" and not C.lrzip_available():
            row["skipped"] = "lrzip is not installed (apt-get install lrzip)"
            peers.append(row)
            pb.update(1)
            continue
        if (p.quantize, bits) not in qcache:
            t0 = time.perf_counter()
            qcache[(p.quantize, bits)] = (C.quantized_dict(p.quantize, sd, hessians, bits), time.perf_counter() - t0)
        obj, quant_s = qcache[(p.quantize, bits)]
        t0 = time.perf_counter()
        blob = p.serialize(obj)
        ser_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        dec = C.dequantize_dict(p.deserialize(blob))
        dec_s = time.perf_counter() - t0
        if out_dir is not None:
            write_bytes(out_dir / f"peer_{key.replace('@', '_')}.bin", blob)
        row.update({"bytes": len(blob), "quantize_seconds": round(quant_s, 2), "serialize_seconds": round(ser_s, 2),
                    "encode_seconds": round(quant_s + ser_s, 2), "decode_seconds": round(dec_s, 2),
                    **score(dec, p.key)})
        row["delta_bpb"] = row["val_bpb"] - reference["val_bpb"]
        say(f"  {key} {row['name']}: {row['bytes']:,} bytes, val_bpb {row['val_bpb']:.6f}, "
            f"encode {row['encode_seconds']:.1f} s, decode {row['decode_seconds']:.2f} s")
        peers.append(row)
        pb.update(1)
    pb.close()

    # ---- golfpack: one candidate set, then one plan per budget
    cfg = PlannerConfig()
    if args.planner == "fast":  # `golfpack encode --budget B --no-lqer`, with one clip multiplier
        cfg.lqer_ranks, cfg.clip_mults, cfg.rate_mults = (), (1.0,), ()
    say("golfpack: building the planner's candidates (once for every budget) ...")
    t0 = time.perf_counter()
    items = build_items(ck, cal, cfg, (), P.staged("golfpack candidates", show))
    cand_s = time.perf_counter() - t0
    lossless_bytes = len(encode_lossless(ck))
    gp_points: dict[int, dict] = {}

    def gp(budget: int) -> dict:
        if budget not in gp_points:
            t0 = time.perf_counter()
            try:
                res = plan(ck, budget, cal, cfg, (), 0, items=items)
            except GolfpackError as e:  # below the smallest configuration: no point here
                gp_points[budget] = {"budget": budget, "error": str(e), "val_bpb": math.inf}
                return gp_points[budget]
            plan_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            art_sd = parse_artifact(res.artifact).state_dict()
            dec_s = time.perf_counter() - t0
            if out_dir is not None:
                write_bytes(out_dir / f"golfpack_{budget}.gp", res.artifact)
            gp_points[budget] = {"budget": budget, "bytes": len(res.artifact), "plan_seconds": round(plan_s, 2),
                                 "encode_seconds": round(cand_s + plan_s, 2), "decode_seconds": round(dec_s, 3),
                                 "bits_per_param": res.report["bits_per_param"],
                                 **score(art_sd, f"golfpack @ {budget:,}")}
            say(f"  golfpack budget {budget:,}: {gp_points[budget]['bytes']:,} bytes, "
                f"val_bpb {gp_points[budget]['val_bpb']:.6f}")
        return gp_points[budget]

    def same_bpb(target: float, start: int) -> dict | None:
        """The smallest budget (to --bisect-tol) whose artifact scores <= target, or None."""
        hi = start
        while gp(hi)["val_bpb"] > target:
            if hi >= lossless_bytes:
                return None
            hi = min(lossless_bytes, int(hi * 1.5))
        lo = int(hi * 0.35)
        while gp(lo)["val_bpb"] <= target:
            hi, lo = lo, int(lo * 0.5)
            if lo < 1000:
                return gp(hi)
        # tighten the bracket with points already scored (other targets share the curve)
        for b, pt in gp_points.items():
            if lo < b < hi:
                if pt["val_bpb"] <= target:
                    hi = b
                else:
                    lo = b
        while hi / lo > 1 + args.bisect_tol:
            mid = int(math.sqrt(lo * hi))
            if gp(mid)["val_bpb"] <= target:
                hi = mid
            else:
                lo = mid
        return gp(hi)

    # the RD curve first: the same-bpb searches below then start inside brackets it already scored
    a_row = next((r for r in peers if r["key"] == "a" and "bytes" in r), None)
    for f in args.budget_fracs_list:
        gp(int(round(f * a_row["bytes"])))
    gb = P.bar(len(peers), "golfpack at the peers' bytes and bpb", show, unit="peer")
    for row in peers:
        if "skipped" in row or row.get("bits", 6) != 6:
            gb.update(1)
            continue
        same_b = gp(row["bytes"])
        row["golfpack_same_bytes"] = {k: same_b.get(k) for k in ("budget", "bytes", "val_bpb", "encode_seconds",
                                                                  "decode_seconds")}
        row["golfpack_same_bytes"]["delta_bpb_vs_peer"] = same_b["val_bpb"] - row["val_bpb"]
        hit = same_bpb(row["val_bpb"], row["bytes"])
        if hit is None:
            row["golfpack_same_bpb"] = None
        else:
            row["golfpack_same_bpb"] = {k: hit.get(k) for k in ("budget", "bytes", "val_bpb")}
            row["golfpack_same_bpb"]["bytes_ratio_vs_peer"] = hit["bytes"] / row["bytes"]
        gb.update(1)
    gb.close()
    for row in peers:  # each peer point against golfpack's curve, interpolated at the peer's bytes
        if "bytes" in row and row.get("bits", 6) != 6:
            row["golfpack_interp_bpb"] = _interp_bpb([v for v in gp_points.values() if "error" not in v], row["bytes"])

    result = {
        "source": str(args.src), "params": ck.num_params(), "reference": reference,
        "val": str(args.val), "seq_len": args.seq_len, "max_tokens": args.max_tokens,
        "scored_tokens": reference["tokens"], "calibration": {"shard": str(args.calib), "seqs": args.calib_seqs,
                                                             "len": args.calib_len, "seconds": round(calib_s, 1)},
        "golfpack": {"candidate_seconds": round(cand_s, 1), "lossless_bytes": lossless_bytes,
                     "points": sorted((v for v in gp_points.values() if "error" not in v), key=lambda v: v["bytes"])},
        "planner": args.planner, "peers": peers, "peer_bits": args.peer_bits_list,
        "budget_fracs": args.budget_fracs_list, "bisect_tol": args.bisect_tol, "threads": args.threads,
        "seconds": round(time.perf_counter() - t_all, 1),
    }
    if out_dir is not None:  # saved before the plot and the table: a long run's numbers are never lost
        write_text(out_dir / "peers.json", json.dumps(result, indent=1))
    if args.plot:
        write_plot(result, Path(args.plot))
        result["plot"] = args.plot
    md = format_markdown(result)
    if args.markdown:
        write_text(args.markdown, md + "\n")
    if args.json:
        print(json.dumps(result))
    else:
        print(md)
    return 0


def _interp_bpb(points: list[dict], nbytes: int) -> float | None:
    """golfpack's bpb at `nbytes`, linear in log(bytes) between the two measured budgets around it
    (None outside the measured range): an estimate, marked as such wherever it is printed."""
    pts = sorted((p["bytes"], p["val_bpb"]) for p in points)
    for (b0, v0), (b1, v1) in zip(pts, pts[1:]):
        if b0 <= nbytes <= b1:
            t = 0.0 if b1 == b0 else (math.log(nbytes) - math.log(b0)) / (math.log(b1) - math.log(b0))
            return v0 + t * (v1 - v0)
    return None


def format_markdown(r: dict) -> str:
    ref = r["reference"]
    lines = [
        f"Source {Path(r['source']).name} ({r['params']:,} params, "
        + (f"{ref['bytes']:,} bytes" if ref.get("bytes") is not None else "a folder checkpoint") + "), val_bpb "
        f"{ref['val_bpb']:.6f} on {r['scored_tokens']:,} tokens of {Path(r['val']).name} at seq {r['seq_len']}. "
        "Peers re-quantize the source's dequantized weights. Bytes: model bytes only, no code.",
        "",
        "| peer pipeline | bytes | val_bpb | Δ vs source | encode s | decode s | golfpack @ same bytes: bpb (Δ vs peer) "
        "| golfpack @ same bpb: bytes (× peer) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in r["peers"]:
        if "skipped" in p:
            lines.append(f"| {p['key']}. {p['name']} | skipped: {p['skipped']} | | | | | | |")
            continue
        if "golfpack_same_bytes" not in p:  # an extra bit width: compared with golfpack's curve
            gi = p.get("golfpack_interp_bpb")
            gap = (f"{gi:.6f} (interpolated; gap ratio {(gi - ref['val_bpb']) / p['delta_bpb']:.2f})"
                   if gi is not None and p["delta_bpb"] > 0 else "outside golfpack's measured budgets")
            lines.append(f"| {p['key']}. {p['name']} | {p['bytes']:,} | {p['val_bpb']:.6f} | {p['delta_bpb']:+.6f} | "
                         f"{p['encode_seconds']:.1f} | {p['decode_seconds']:.2f} | {gap} | |")
            continue
        sb = p["golfpack_same_bytes"]
        sp = p["golfpack_same_bpb"]
        same_bpb = (f"{sp['bytes']:,} (×{sp['bytes_ratio_vs_peer']:.3f})" if sp
                    else "not reached up to the lossless size")
        lines.append(f"| {p['key']}. {p['name']} | {p['bytes']:,} | {p['val_bpb']:.6f} | {p['delta_bpb']:+.6f} | "
                     f"{p['encode_seconds']:.1f} | {p['decode_seconds']:.2f} | {sb['val_bpb']:.6f} "
                     f"({sb['delta_bpb_vs_peer']:+.6f}) | {same_bpb} |")
    g = r["golfpack"]
    lines += ["", f"golfpack planner ({r.get('planner', 'full')} candidate set): candidates {g['candidate_seconds']:.0f} s once, then per budget a plan of "
                  f"{min((pt['plan_seconds'] for pt in g['points']), default=0):.1f}-"
                  f"{max((pt['plan_seconds'] for pt in g['points']), default=0):.1f} s; decode "
                  f"{max((pt['decode_seconds'] for pt in g['points']), default=0):.3f} s at most; "
                  f"calibration {r['calibration']['seconds']:.0f} s (shared with the GPTQ peers, not in their "
                  f"encode s); {len(g['points'])} golfpack budgets scored; run {r['seconds']:.0f} s."]
    return "\n".join(lines)


def write_plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    pts = r["golfpack"]["points"]
    ax.plot([p["bytes"] / 1e6 for p in pts], [p["val_bpb"] for p in pts], "o-", ms=4, label="golfpack planner")
    fams: dict[str, list] = {}
    for p in r["peers"]:
        if "skipped" not in p:
            fams.setdefault(p.get("family", p["key"]), []).append(p)
    for fam, rows in fams.items():
        rows = sorted(rows, key=lambda p: p["bytes"])
        label = f"{fam}. {rows[0]['name']}" if len(rows) == 1 else \
            f"{fam}. {next((p['name'] for p in rows if p.get('bits', 6) == 6), rows[0]['name'])} (int{'/'.join(str(p['bits']) for p in rows)})"
        ax.plot([p["bytes"] / 1e6 for p in rows], [p["val_bpb"] for p in rows], "s--" if len(rows) > 1 else "s",
                ms=5, lw=1, label=label)
    ref = r["reference"]
    ax.axhline(ref["val_bpb"], color="gray", ls="--", lw=1, label="source (float)")
    ax.set_xlabel("model bytes (MB = 10^6)")
    ax.set_ylabel(f"val_bpb ({r['scored_tokens']:,} tokens, seq {r['seq_len']})")
    ax.set_title(f"{Path(r['source']).name}: competitors' exports vs golfpack", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    from golfpack.codec.rd import save_png

    save_png(fig, path)


def main(argv=None) -> int:
    from golfpack.cli import main as gp_main

    return gp_main(["bench", "peers", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

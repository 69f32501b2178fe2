"""Rate-aware rounding vs plain rounding at a fixed recipe: two RD curves, no planner in between.

    python benchmarks/rate_rd_fixed.py [--bits 6] [--mults 1.0,1.1,1.2] [--lams 0.5,1,2]
                                       [--max-tokens N] [--json OUT]

Every quantizable tensor of the real checkpoint gets GPTQ at --bits with the mse clip.
- "plain" points: the clip threshold times each --mults value (coarser steps: fewer bytes,
  more error): the RD curve plain rounding can reach with this recipe.
- "rate" points: the base clip (x1.0), re-rounded rate-aware (codec.rate, the rans_rc cell model's
  code lengths) at ONE price of a bit for the whole model, lam = --lams value x lam_ref. lam_ref
  is the median over tensors of the plain curve's own slope between its first two points
  (predicted dloss per bit), the price at which plain rounding trades.
Each point is encoded with the default coders (rans_rc included) and scored on the same
validation tokens (seq 512, plain). The table reports, for each rate point, the bytes the plain
curve needs for the same val_bpb (linear interpolation between plain points): positive savings
mean rate-aware rounding gives lower bytes at equal bpb. One calibration (32 x 512 tokens of
--calib) serves every point. Defaults read ../shared/data.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from golfpack.bench import paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    paths.add_data_arguments(ap, "ckpt", "calib", "val", "tokenizer")
    ap.add_argument("--bits", type=int, default=6)
    ap.add_argument("--mults", default="1.0,1.1,1.2")
    ap.add_argument("--lams", default="0.5,1,2")
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--max-tokens", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import torch

    from golfpack.checkpoint import read_checkpoint
    from golfpack.codec import calib as C
    from golfpack.codec.candidates import TensorCandidates
    from golfpack.codec.container import parse_artifact
    from golfpack.codec.planner import Item, PlannerConfig, build_items, plan
    from golfpack.data.bytes import build_byte_tables, load_sentencepiece
    from golfpack.data.shards import read_shards
    from golfpack.evaluate.bpb import evaluate
    from golfpack.model.load import from_state_dict

    torch.set_num_threads(args.threads)
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    mults = [float(x) for x in args.mults.split(",")]
    lams = [float(x) for x in args.lams.split(",")]
    ck = read_checkpoint(args.ckpt)
    tokens = read_shards(args.val)
    model = from_state_dict(ck.state_dict(), ck.config)
    tables = build_byte_tables(load_sentencepiece(args.tokenizer), vocab_size=int(model.config.vocab_size))
    t0 = time.perf_counter()
    cal = C.calibrate(model, shard=args.calib, n_seqs=32, seq_len=512)
    say(f"calibration {time.perf_counter() - t0:.0f} s")
    # the tensors and their fixed ("keep") entries as the planner sees them; RTN-only grid = fast
    cfg = PlannerConfig(method="gptq", bits=(args.bits,), clip_mults=(1.0,))
    base_items = build_items(ck, None, PlannerConfig(method="rtn", bits=(args.bits,), clip_mults=(1.0,)))
    gens = {it.name: TensorCandidates(it.name, ck.state_dict()[it.name].float(), cal.stats.get(it.name),
                                      gptq_cfg=cfg.gptq_config())
            for it in base_items if not it.fixed}

    def point(pick) -> tuple[int, float, float]:
        """Encode the model with pick(name, gen) -> Candidate per quantized tensor; (bytes, dloss, bpb)."""
        items, dl = [], 0.0
        for it in base_items:
            if it.fixed:
                items.append(it)
                continue
            c = pick(it.name, gens[it.name])
            dl += c.dloss
            items.append(Item(it.name, it.shape, it.dtype, [c], [c]))
        res = plan(ck, None, cal, cfg, (), 0, items=items)
        art = parse_artifact(res.artifact)
        m = from_state_dict(art.state_dict(), art.config or ck.config)
        bpb = evaluate(m, tokens, tables, seq_len=args.seq_len, device="cpu", max_tokens=args.max_tokens).val_bpb
        return len(res.artifact), dl, bpb

    rows = []
    plain = {}
    for mult in mults:
        t = time.perf_counter()
        cands = {n: g.add_quantized("gptq", args.bits, "mse", mult) for n, g in gens.items()}
        plain[mult] = cands
        nbytes, dl, bpb = point(lambda n, g: cands[n])
        rows.append({"arm": "plain", "clip_mult": mult, "lam": 0.0, "bytes": nbytes, "pred_dloss": dl, "val_bpb": bpb})
        say(f"plain x{mult}: {nbytes:,} B, pred dloss {dl:.3e}, bpb {bpb:.6f} ({time.perf_counter() - t:.0f} s)")
    # price of a bit where plain rounding trades: median per-tensor slope between the first two plain points
    a, b = plain[mults[0]], plain[mults[1]]
    slopes = [(b[n].dloss - a[n].dloss) / (8 * (a[n].est_bytes - b[n].est_bytes))
              for n in gens if a[n].est_bytes > b[n].est_bytes and b[n].dloss > a[n].dloss]
    lam_ref = statistics.median(slopes)
    say(f"lam_ref {lam_ref:.3e} nats/token per bit (median of {len(slopes)} tensors)")
    for lm in lams:
        t = time.perf_counter()
        lam = lm * lam_ref
        nbytes, dl, bpb = point(lambda n, g: g.add_rate_aware(plain[mults[0]][n], lam))
        rows.append({"arm": "rate", "clip_mult": mults[0], "lam": lam, "lam_mult": lm, "bytes": nbytes,
                     "pred_dloss": dl, "val_bpb": bpb})
        say(f"rate x{lm}: {nbytes:,} B, pred dloss {dl:.3e}, bpb {bpb:.6f} ({time.perf_counter() - t:.0f} s)")
    # plain bytes at each rate point's bpb (piecewise linear in bpb over the plain points)
    pts = sorted((r["val_bpb"], r["bytes"]) for r in rows if r["arm"] == "plain")
    for r in rows:
        if r["arm"] != "rate":
            continue
        x = r["val_bpb"]
        seg = next(((p, q) for p, q in zip(pts, pts[1:]) if p[0] <= x <= q[0]), None)
        if seg is None:
            r["plain_bytes_at_bpb"] = None  # outside the plain curve's bpb range: no interpolation
        else:
            (x0, y0), (x1, y1) = seg
            r["plain_bytes_at_bpb"] = y0 + (y1 - y0) * (x - x0) / (x1 - x0) if x1 > x0 else min(y0, y1)
            r["bytes_saved"] = r["plain_bytes_at_bpb"] - r["bytes"]
    print("| arm | clip x | lam (nats/token/bit) | bytes | predicted dloss | val_bpb | plain bytes at this bpb | saved |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        pb = r.get("plain_bytes_at_bpb")
        at = "-" if pb is None else f"{pb:,.0f}"
        saved = "-" if pb is None else f"{r['bytes_saved']:+,.0f} ({100 * r['bytes_saved'] / pb:+.2f}%)"
        print(f"| {r['arm']} | {r['clip_mult']} | {r['lam']:.3e} | {r['bytes']:,} | {r['pred_dloss']:.3e} | "
              f"{r['val_bpb']:.6f} | {at} | {saved} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "lam_ref": lam_ref, "max_tokens": args.max_tokens,
                                               "bits": args.bits}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

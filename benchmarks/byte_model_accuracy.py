"""How close codec.byte_model's estimate is to what the artifact writer stores, and how fast it is.

    python benchmarks/byte_model_accuracy.py SYMBOLS.npz [SYMBOLS2.npz ...] [--real EM.json ...]
        [--anchor ANCHOR.npz] [--reps 5] [--per-tensor] [--json OUT]

SYMBOLS.npz: `golfpack decode ART --symbols -o SYMBOLS.npz` (or the artifact .gp). For every
2-D symbol tensor of >= 10,000 symbols: the real bytes are what codec.coders.best_encoding
stores for its symbols (raw, rans, rans_rc, zstd, brotli: the smallest) plus its fp16 scales;
with --real, the per-tensor sizes recorded by `benchmarks/entropy_models.py --json` for the same
file are used instead of re-encoding (same encoders, so the same numbers). The estimate is
codec.byte_model.tensor_bytes; its time is the thread CPU time, min of --reps calls. With
--anchor, each tensor's classes come from the real rans_rc fit of the same tensor in ANCHOR.npz
(another candidate of it: another bit width or clip; codec.byte_model.fit_classes, not timed),
which is how the planner would use it: one fit per tensor, then an estimate per candidate.

Prints per tensor est / real and a summary per file: total error, mean and max |error| per
tensor, and the estimate's time per call for the largest tensors.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from entropy_models import load_with_scales  # noqa: E402


def real_bytes(mats, scales, real_json: str | None) -> tuple[dict, dict]:
    from golfpack.codec.coders import StreamType, best_encoding

    if real_json:
        d = json.loads(Path(real_json).read_text())["coders"]
        return d["per_tensor"]["golfpack"], d["scales"]["golfpack"]
    sym, sc = {}, {}
    for k, m in mats.items():
        q = m.astype(np.int8)
        sym[k] = len(best_encoding(q.reshape(-1), StreamType("int", q.size, 8, row_len=q.shape[1]))[2])
        s = scales[k]
        sc[k] = len(best_encoding(s, StreamType("float16" if s.dtype == np.float16 else "float32", s.size))[2])
    return sym, sc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("symbols", nargs="+")
    ap.add_argument("--real", nargs="*", default=None, help="entropy_models.py --json outputs, one per symbols file")
    ap.add_argument("--anchor", default=None, help="symbols whose per-tensor rans_rc classes price the others")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--per-tensor", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from golfpack.codec import byte_model

    anchors = {}
    if args.anchor:
        amats, _ = load_with_scales(args.anchor)
        anchors = {k: byte_model.fit_classes(m.astype(np.int8)) for k, m in amats.items()}
    out = {}
    print("| symbols | tensors | real bytes | est bytes | total err | mean abs err | max abs err (tensor) "
          "| est ms, largest tensors (min of reps, thread CPU) |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for i, path in enumerate(args.symbols):
        mats, scales = load_with_scales(path)
        rs, rsc = real_bytes(mats, scales, args.real[i] if args.real else None)
        rows = []
        big = max(m.size for m in mats.values())
        for k, m in mats.items():
            q = m.astype(np.int8)
            ts = []
            for _ in range(args.reps if m.size == big else 1):
                t = time.thread_time()
                est = byte_model.tensor_bytes(q, scales[k], anchors.get(k))
                ts.append(time.thread_time() - t)
            real = rs[k] + rsc[k]
            rows.append((k, m.shape, real, est, 100 * (est / real - 1), min(ts) * 1e3, m.size == big))
        if args.per_tensor:
            for k, shape, real, est, err, ms, _ in rows:
                print(f"    {k:32s} {str(shape):12s} real {real:>9,} est {est:>9,} {err:+.3f}% {ms:.1f} ms")
        tr, te = sum(r[2] for r in rows), sum(r[3] for r in rows)
        errs = [abs(r[4]) for r in rows]
        worst = max(rows, key=lambda r: abs(r[4]))
        ms = [r[5] for r in rows if r[6]]
        print(f"| {path} | {len(rows)} | {tr:,} | {te:,} | {100 * (te / tr - 1):+.3f}% | {np.mean(errs):.3f}% | "
              f"{worst[4]:+.3f}% ({worst[0]}) | median {np.median(ms):.1f}, max {max(ms):.1f} ({big:,} symbols) |")
        out[path] = {"tensors": {r[0]: {"real": r[2], "est": r[3], "err_pct": r[4], "ms": r[5]} for r in rows},
                     "total_real": tr, "total_est": te}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

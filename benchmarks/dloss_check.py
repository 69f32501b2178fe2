"""How well does the planner's predicted loss increase match the measured one?

    python benchmarks/dloss_check.py [--ckpt PTZ] [--calib SHARD] [--bits 3,4] [--seqs 8] [--len 512]

For every quantized tensor of the checkpoint and each bit width, one tensor at a time is replaced
by its RTN (Hessian-weighted MSE clip) quantization, and the loss change on the calibration
tokens is measured (codec.calib.measure_with) and compared with the prediction: the K-FAC
quadratic term the planner minimizes, and that term plus the first-order term <grad, dW>.
Prints one row per (tensor, bits) and summary statistics (Spearman rank correlation and the
median ratio predicted / measured where the measured change is clearly above noise).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from golfpack.bench import paths


def _rank(a):
    return np.argsort(np.argsort(a))


def spearman(x, y) -> float:
    if len(x) < 3:
        return float("nan")
    return float(np.corrcoef(_rank(np.asarray(x)), _rank(np.asarray(y)))[0, 1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    paths.add_data_arguments(ap, "ckpt", "calib")
    ap.add_argument("--bits", default="3,4")
    ap.add_argument("--seqs", type=int, default=8)
    ap.add_argument("--len", type=int, default=512)
    args = ap.parse_args(argv)

    import torch

    from golfpack.checkpoint import read_checkpoint
    from golfpack.codec import calib as C
    from golfpack.codec.candidates import TensorCandidates
    from golfpack.codec.spec import quantizable
    from golfpack.model.load import from_state_dict

    torch.set_num_threads(2)
    ck = read_checkpoint(args.ckpt)
    sd = ck.state_dict()
    model = from_state_dict(sd, ck.config)
    cal = C.calibrate(model, shard=args.calib, n_seqs=args.seqs, seq_len=args.len)
    print(f"calibration: {cal.tokens} tokens from {cal.source}, base loss {cal.base_loss:.5f}", file=sys.stderr)
    rows = []
    print("| tensor | bits | predicted (quadratic) | + first order | measured |")
    print("|---|---:|---:|---:|---:|")
    for name, w in sd.items():
        if not quantizable(name, tuple(w.shape)) or name not in cal.stats:
            continue
        g = TensorCandidates(name, w, cal.stats[name])
        for b in (int(x) for x in args.bits.split(",")):
            c = g.add_quantized("rtn", b, "mse", 1.0)
            w_hat = c.q.dequantize().reshape(w.shape)
            meas = C.measure_with(model, cal.seqs, {name: w_hat}) - cal.base_loss
            rows.append((name, b, c.dloss, c.dloss + c.first_order, meas))
            print(f"| {name} | {b} | {c.dloss:.3e} | {c.dloss + c.first_order:.3e} | {meas:.3e} |", flush=True)
    quad = np.array([r[2] for r in rows])
    full = np.array([r[3] for r in rows])
    meas = np.array([r[4] for r in rows])
    big = meas > 1e-4  # well above float32 noise in the loss (~1e-6) and the first-order scatter
    print(f"\n{len(rows)} rows; Spearman(quadratic, measured) = {spearman(quad, meas):.3f}; "
          f"Spearman(quadratic + first order, measured) = {spearman(full, meas):.3f}")
    if big.any():
        print(f"rows with measured > 1e-4: {int(big.sum())}; median predicted/measured: quadratic "
              f"{np.median(quad[big] / meas[big]):.3f}, + first order {np.median(full[big] / meas[big]):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

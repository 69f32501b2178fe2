"""What adaptive context models could reach on quantized symbols, with no side information (issue 19).

    python benchmarks/adaptive_bounds.py SYMBOLS.npz [--only SUBSTR,SUBSTR] [--per-tensor]

SYMBOLS.npz: `golfpack decode ART --symbols`. For every 2-D symbol tensor, the exact code length
of a sequential (adaptive) model that starts each context from the tensor's own order-0
distribution p0 with a Dirichlet prior of strength beta (KT-style estimator: the k-th symbol of a
context costs -log2((n_s + beta p0_s) / (n + beta))). For a fixed context assignment this
length does not depend on the coding order, so it is computed in closed form from the counts:

    bits = sum over contexts [ lgamma(n + beta) - lgamma(beta) - sum_s (lgamma(n_s + beta p0_s) - lgamma(beta p0_s)) ] / ln 2

Unlike per-context empirical entropies it pays for learning each context, so it is a code length a
real adaptive coder (no tables stored) could approach; only p0 (a table per tensor) is free here.
Contexts: H0 (order-0, the ideal of a static table), each column, each row (beta 16 and 64),
the magnitude of the left / upper neighbour (|q| capped at 6), column x left neighbour. Printed
against brotli-11 of the same symbols (one per byte), per tensor with --per-tensor and in total.
"""
from __future__ import annotations

import argparse
import sys

import brotli
import numpy as np
import torch


def gammaln(x) -> np.ndarray:
    return torch.special.gammaln(torch.as_tensor(x, dtype=torch.float64)).numpy()


def adaptive_bytes(ctx: np.ndarray, u: np.ndarray, p0: np.ndarray, beta: float) -> float:
    W = p0.size
    n = np.bincount((ctx.astype(np.int64) * W + u).ravel(), minlength=(int(ctx.max()) + 1) * W).reshape(-1, W)
    a = beta * p0[None, :]
    bits = -(gammaln(n + a) - gammaln(a)).sum(1) + gammaln(n.sum(1) + beta) - gammaln(beta)
    return float(bits.sum() / np.log(2) / 8)


def bounds(q: np.ndarray) -> dict[str, float]:
    q = q.astype(np.int64)
    u = q - q.min()
    W = int(u.max()) + 1
    rows, cols = u.shape
    h = np.bincount(u.ravel(), minlength=W).astype(np.float64)
    p0 = (h + 0.5) / (h.sum() + 0.5 * W)
    nz = h[h > 0]
    res = {"brotli-11": len(brotli.compress((q + 128).astype(np.uint8).tobytes(), quality=11)),
           "H0": float(-(nz * np.log2(nz / h.sum())).sum() / 8)}
    mag = np.minimum(np.abs(q), 6)
    left = np.zeros_like(mag)
    left[:, 1:] = mag[:, :-1]
    above = np.zeros_like(mag)
    above[1:] = mag[:-1]
    col = np.broadcast_to(np.arange(cols)[None, :], u.shape)
    row = np.broadcast_to(np.arange(rows)[:, None], u.shape)
    for beta in (16, 64):
        res[f"column, beta {beta}"] = adaptive_bytes(col, u, p0, beta)
        res[f"row, beta {beta}"] = adaptive_bytes(row, u, p0, beta)
    res["left |q|"] = adaptive_bytes(left, u, p0, 64)
    res["upper |q|"] = adaptive_bytes(above, u, p0, 64)
    res["column x left |q|"] = adaptive_bytes(col * 7 + left, u, p0, 64)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("symbols")
    ap.add_argument("--only", default=None, help="comma list of substrings of tensor names")
    ap.add_argument("--per-tensor", action="store_true")
    a = ap.parse_args(argv)
    z = np.load(a.symbols)
    names = [k[: -len(".symbols")] for k in z.keys() if k.endswith(".symbols") and z[k].ndim == 2 and z[k].size >= 10_000]
    if a.only:
        names = [n for n in names if any(s in n for s in a.only.split(","))]
    tot: dict[str, float] = {}
    for n in names:
        r = bounds(z[n + ".symbols"])
        for k, v in r.items():
            tot[k] = tot.get(k, 0.0) + v
        if a.per_tensor:
            print(f"{n:30s} " + " ".join(f"{k} {100 * (v / r['brotli-11'] - 1):+.2f}%" for k, v in r.items()
                                          if k != "brotli-11"))
    print(f"{a.symbols}: {len(names)} tensors\n\n| model (adaptive, no side information) | bytes | vs brotli-11 |\n|---|---:|---:|")
    for k, v in tot.items():
        print(f"| {k} | {v:,.0f} | {100 * (v / tot['brotli-11'] - 1):+.2f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

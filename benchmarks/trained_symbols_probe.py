"""Where rans_rc gains and loses against brotli-11, per tensor, and why (issue 8 analysis).

    python benchmarks/trained_symbols_probe.py SYMBOLS.npz [--table tok_emb.weight]
        [--contexts NAME,NAME,...]

SYMBOLS.npz is `golfpack decode ART --symbols -o SYMBOLS.npz`. Prints three things:

1. per tensor: brotli-11, order-0 rANS and rans_rc bytes (one symbol per byte, as
   benchmarks/entropy_models.py), the fitted R x C classes and T tables, and the share of the
   total bytes, sorted by rans_rc vs brotli;
2. for --table (default the token table): brotli-11 on the matrix as stored, with the rows
   permuted, with the columns permuted (one permutation for all rows), with every row permuted
   on its own, and fully shuffled; plus the columns' mean/std ratios and the ideal bytes a
   zero-mean model loses to them, sum over columns of rows * 0.5 * log2(1 + mean^2 / var);
3. for the --contexts tensors: the empirical entropy of the symbols given rans_rc's table, and
   given the table plus the magnitude (6 buckets) of the previous symbol in the row, of the
   symbol above, and of both. Table costs are NOT counted: these are bounds.
"""
from __future__ import annotations

import argparse

import brotli
import numpy as np

from golfpack import _C
from golfpack.codec import rans_rc

BUCKETS = [2, 5, 9, 14, 20]  # |q| bucket edges for the neighbour contexts


def load(path: str) -> dict[str, np.ndarray]:
    z = np.load(path)
    return {k[: -len(".symbols")]: z[k].astype(np.int64) for k in z.keys()
            if k.endswith(".symbols") and z[k].ndim == 2}


def to_u(q: np.ndarray) -> np.ndarray:
    return (q + 128).astype(np.uint8)


def brotli_bytes(u: np.ndarray) -> int:
    return len(brotli.compress(np.ascontiguousarray(u).tobytes(), quality=11))


def entropy_bits(counts: np.ndarray) -> float:
    c = counts[counts > 0].astype(np.float64)
    return float(-(c * np.log2(c / c.sum())).sum())


def conditional_bits(ctx: np.ndarray, sym: np.ndarray) -> float:
    _, inv = np.unique(ctx, return_inverse=True)
    joint = np.bincount(inv * 256 + sym, minlength=(inv.max() + 1) * 256).reshape(-1, 256)
    return sum(entropy_bits(r) for r in joint)


def per_tensor(mats: dict[str, np.ndarray]) -> None:
    rows = []
    for name, q in mats.items():
        u = to_u(q)
        data = rans_rc.encode(u)
        m, _ = rans_rc.parse(data, u.size)
        rows.append((name, q.shape, brotli_bytes(u), len(_C.rans_encode(u.reshape(-1))), len(data), m.R, m.C, m.T))
    total = sum(r[4] for r in rows)
    rows.sort(key=lambda r: r[4] / r[2], reverse=True)
    print(f"{'tensor':<28} {'shape':<12} {'brotli-11':>10} {'rans':>9} {'rans_rc':>9} {'rc/brotli':>9} "
          f"{'share':>6}  R  C  T")
    for name, shape, b, r0, rc, R, C, T in rows:
        print(f"{name:<28} {str(shape):<12} {b:>10,} {r0:>9,} {rc:>9,} {100 * (rc / b - 1):>+8.2f}% "
              f"{100 * rc / total:>5.1f}% {R:>2} {C:>2} {T:>2}")
    b_all, rc_all = sum(r[2] for r in rows), total
    print(f"{'total':<41} {b_all:>10,} {sum(r[3] for r in rows):>9,} {rc_all:>9,} {100 * (rc_all / b_all - 1):>+8.2f}%")


def table_structure(q: np.ndarray, name: str) -> None:
    rng = np.random.default_rng(0)
    u = to_u(q)
    print(f"\n{name}: brotli-11 bytes by what the permutation keeps")
    for label, v in (("as stored", u),
                     ("rows permuted", u[rng.permutation(u.shape[0])]),
                     ("columns permuted (one permutation)", u[:, rng.permutation(u.shape[1])]),
                     ("each row permuted on its own", np.array([r[rng.permutation(r.size)] for r in u])),
                     ("all symbols shuffled", rng.permutation(u.ravel()).reshape(u.shape))):
        print(f"  {label:<36} {brotli_bytes(v):>10,}")
    f = q.astype(np.float64)
    mean, var = f.mean(0), f.var(0)
    ratio = np.abs(mean) / np.sqrt(np.maximum(var, 1e-12))
    lost = float((f.shape[0] * 0.5 * np.log2(1 + mean ** 2 / np.maximum(var, 1e-12))).sum() / 8)
    print(f"  column |mean|/std: median {np.median(ratio):.3f}, 90% {np.quantile(ratio, 0.9):.3f}, "
          f"max {ratio.max():.3f}; bytes a zero-mean model loses to the means: {lost:,.0f}")


def contexts(q: np.ndarray, name: str) -> None:
    u = to_u(q).astype(np.int64)
    m = rans_rc.fit(to_u(q))
    tid = m.table_map[(m.row_class[:, None].astype(np.int64) * m.C + m.col_class[None, :]).ravel()]
    tid = tid.reshape(q.shape).astype(np.int64)[:, 1:].ravel()
    sym = u[:, 1:].ravel()
    prev = np.digitize(np.abs(q[:, :-1]).ravel(), BUCKETS)
    above = np.abs(q[:-1, 1:])
    above = np.digitize(np.vstack([np.zeros((1, above.shape[1]), np.int64), above]).ravel(), BUCKETS)
    base = conditional_bits(tid, sym)
    out = [f"{name:<28} table {base / 8:>9,.0f} B"]
    for label, ctx in (("+|prev|", tid * 8 + prev), ("+|above|", tid * 8 + above),
                       ("+both", (tid * 8 + prev) * 8 + above)):
        b = conditional_bits(ctx, sym)
        out.append(f"{label} {b / 8:>9,.0f} ({100 * (b / base - 1):+.2f}%)")
    print("  ".join(out) + f"  [{m.T} tables]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("symbols")
    ap.add_argument("--table", default="tok_emb.weight")
    ap.add_argument("--contexts", default="tok_emb.weight,blocks.5.mlp.proj.weight,blocks.0.mlp.fc.weight,"
                                          "blocks.2.attn.c_q.weight")
    a = ap.parse_args()
    mats = load(a.symbols)
    per_tensor(mats)
    if a.table in mats:
        table_structure(mats[a.table], a.table)
    print("\nempirical entropy given rans_rc's table (+ neighbour magnitudes), table costs not counted:")
    for name in a.contexts.split(","):
        if name in mats:
            contexts(mats[name], name)


if __name__ == "__main__":
    main()

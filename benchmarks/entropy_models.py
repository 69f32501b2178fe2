"""How many bits below order-0 do richer models buy on real quantized symbols? And the coders.

    python benchmarks/entropy_models.py SYMBOLS.npz [--nncodec-python PY] [--json OUT]

SYMBOLS.npz is `golfpack decode ART --symbols -o SYMBOLS.npz` of an artifact (e.g. a
`golfpack encode --bits 6 --method gptq --clip mse` one). Every 2-D symbol tensor with at
least 10,000 symbols is measured, each stored one symbol per byte (int8 + 128), which is the
competitors' layout. Two tables:

coders (real bytes, each tensor its own stream, summed):
    golfpack rans (order-0), golfpack rans_rc (codec/rans_rc.py: a table per row-class x
    column-class cell), golfpack's artifact choice (per tensor the smallest of raw, rans,
    rans_rc, zstd, brotli, as codec.coders.best_encoding picks), brotli-11, zstd-22, lzma-9 (extreme), lrzip -z (ZPAQ; the
    whole set as one file, as competitors run it per tensor group, when `lrzip` is on PATH),
    NNCodec (DeepCABAC, `nncodec.nnc.compression.compress` on the int32 symbols, in the
    Python given by --nncodec-python when it has nncodec installed; checked lossless).

models (ideal code lengths; "+cost" adds what a decoder would need to be told):
    H0                per-tensor order-0 entropy (what golfpack's rANS reaches within ~0.3%)
    row / col         per-row / per-column empirical entropy, model cost NOT counted (a bound)
    prev              conditioned on the previous symbol in the row (|q| capped at 7), no cost
    rank1 scale       sigma_ij = a_i * b_j fitted to E[q^2], bucketed in 1/8 octaves, one table
                      per bucket shared by all tensors; a, b and the tables counted
    row clusters K    every row of every tensor picks one of K tables shared by the whole
                      artifact (Lloyd iterations on code length); index + tables counted
    co-cluster        per tensor R row classes x C column classes (R, C in 1..16 x 1..8, the best
                      per tensor, never worse than H0 + its table), per-tensor tables + indices counted
Tables are costed at 3 + 1.2 bytes per present symbol (golfpack's dense rANS table format).
"""
from __future__ import annotations

import argparse
import json
import lzma
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

A, OFF = 256, 128


def H(counts) -> float:
    c = np.asarray(counts, np.float64)
    c = c[c > 0]
    return float(-(c * np.log2(c / c.sum())).sum()) if c.size else 0.0


def table_bytes(tables) -> float:
    return float(sum(3 + 1.2 * (t > 0).sum() for t in tables if t.sum() > 0))


def load(path: str) -> dict[str, np.ndarray]:
    z = np.load(path)
    out = {}
    for k in z.keys():
        if k.endswith(".symbols") and z[k].ndim == 2 and z[k].size >= 10_000:
            out[k[: -len(".symbols")]] = z[k].astype(np.int64)
    if not out:
        raise SystemExit(f"{path}: no 2-D symbol tensors of >= 10,000 symbols")
    return out


# ----------------------------------------------------------------------------- coders


def coder_sizes(mats: dict[str, np.ndarray], nncodec_python: str | None) -> dict[str, dict]:
    import brotli
    import zstandard

    from golfpack import _C

    from golfpack.codec import rans_rc

    out = {}
    per_tensor = {}  # coder -> [bytes per tensor], for golfpack's per-stream choice

    def run(name, fn):
        t = time.perf_counter()
        n = fn()
        if n is not None:
            out[name] = {"bytes": int(n), "seconds": round(time.perf_counter() - t, 2)}

    def each(name, fn):  # per-tensor sizes, summed
        def go():
            per_tensor[name] = [fn(k, b) for k, b in raw.items()]
            return sum(per_tensor[name])
        return go

    def rc(k, b):
        u = np.frombuffer(b, np.uint8).reshape(mats[k].shape)
        data = rans_rc.encode(u)
        if not np.array_equal(rans_rc.decode(data, u.size), u.reshape(-1)):
            raise SystemExit(f"{k}: rans_rc did not round-trip")
        return len(data)

    raw = {k: (m + OFF).astype(np.uint8).tobytes() for k, m in mats.items()}
    run("golfpack rans (order-0)", each("rans", lambda k, b: len(_C.rans_encode(np.frombuffer(b, np.uint8)))))
    run("golfpack rans_rc (row x column classes, lossless checked)", each("rans_rc", rc))
    run("brotli-11", each("brotli", lambda k, b: len(brotli.compress(b, quality=11))))
    run("zstd-22", each("zstd", lambda k, b: len(zstandard.ZstdCompressor(level=22, write_content_size=True).compress(b))))
    # What a golfpack artifact stores: per stream the smallest of its coders (codec.coders.best_encoding;
    # raw is bit-packed at the symbols' width). Same encoders as above, so the per-tensor minimum is exact.
    def width(m):  # the narrowest two's-complement width holding the symbols (>= 2, as the format allows)
        b = 2
        while int(m.min()) < -(1 << (b - 1)) or int(m.max()) > (1 << (b - 1)) - 1:
            b += 1
        return b

    bits = {k: width(m) for k, m in mats.items()}
    raw_bytes = [(m.size * bits[k] + 7) // 8 for k, m in mats.items()]
    best = [min(t) for t in zip(raw_bytes, *(per_tensor[c] for c in ("rans", "rans_rc", "zstd", "brotli")))]
    out["golfpack artifact streams (best per tensor)"] = {"bytes": int(sum(best)), "seconds": 0.0}
    run("lzma-9e", lambda: sum(len(lzma.compress(b, preset=9 | lzma.PRESET_EXTREME)) for b in raw.values()))
    if shutil.which("lrzip"):
        def lrz():
            with tempfile.TemporaryDirectory() as d:
                p = Path(d) / "all.bin"
                p.write_bytes(b"".join(raw.values()))
                subprocess.run(["lrzip", "-z", "-T", "-q", "-f", str(p)], check=True, capture_output=True)
                return (Path(d) / "all.bin.lrz").stat().st_size
        run("lrzip -z (one file)", lrz)
    if nncodec_python:
        code = (
            "import sys, numpy as np\n"
            "from nncodec.nnc import compression as cz\n"
            "z = np.load(sys.argv[1]); pd = {k: z[k].astype(np.int32) for k in z.keys()}\n"
            "bs = cz.compress(pd, bitstream_path=sys.argv[2], return_bitstream=True, int_quant_bw=8, verbose=False)\n"
            "rec = cz.decompress(bs)\n"
            "rec = rec[0] if isinstance(rec, tuple) else rec\n"
            "assert all(np.array_equal(np.asarray(rec[k]).astype(np.int64), pd[k].astype(np.int64)) for k in pd), 'lossy'\n"
            "print(len(bs))\n")

        def nnc():
            with tempfile.TemporaryDirectory() as d:
                np.savez(Path(d) / "s.npz", **{k.replace(".", "_"): m for k, m in mats.items()})
                p = subprocess.run([nncodec_python, "-c", code, str(Path(d) / "s.npz"), str(Path(d) / "b.nnc")],
                                   capture_output=True, text=True, cwd=d)
                if p.returncode != 0:
                    print(f"nncodec failed: {p.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                    return None
                return int(p.stdout.strip().splitlines()[-1])
        run("NNCodec (DeepCABAC)", nnc)
    return out


# ----------------------------------------------------------------------------- models


def model_sizes(mats: dict[str, np.ndarray]) -> dict[str, float]:
    res = {"H0": 0.0, "H0+table": 0.0, "row (no cost)": 0.0, "col (no cost)": 0.0, "prev (no cost)": 0.0}
    for m in mats.values():
        q = m + OFF
        n, k = q.shape
        h = np.bincount(q.ravel(), minlength=A)
        res["H0"] += H(h) / 8
        res["H0+table"] += H(h) / 8 + table_bytes([h])
        res["row (no cost)"] += sum(H(np.bincount(r, minlength=A)) for r in q) / 8
        res["col (no cost)"] += sum(H(np.bincount(c, minlength=A)) for c in q.T) / 8
        prev = np.zeros_like(m)
        prev[:, 1:] = np.minimum(np.abs(m[:, :-1]), 7)
        key = prev * A + q
        cnt = np.bincount(key.ravel(), minlength=8 * A).reshape(8, A)
        res["prev (no cost)"] += sum(H(r) for r in cnt) / 8
    res["rank1 scale, 1/8 octave (+cost)"] = rank1(mats)
    for K in (16, 64, 256):
        res[f"row clusters K={K} (+cost)"] = row_clusters(mats, K)
    res["co-cluster RxC per tensor (+cost)"] = sum(best_cocluster(m) for m in mats.values())
    return res


def rank1(mats, step=0.125, B=160) -> float:
    ctxs, syms, side = [], [], 0.0
    for m in mats.values():
        q2 = m.astype(np.float64) ** 2 + 0.25
        a = np.sqrt(q2.mean(1))
        for _ in range(10):
            b = np.sqrt((q2 / a[:, None] ** 2).mean(0))
            a = np.sqrt((q2 / b[None, :] ** 2).mean(1))
        la = np.rint(np.log2(a) / step).astype(np.int64)
        lb = np.rint(np.log2(b) / step).astype(np.int64)
        ctxs.append(np.clip(la[:, None] + lb[None, :] + B // 2, 0, B - 1).ravel())
        syms.append((m + OFF).ravel())
        side += (H(np.unique(la, return_counts=True)[1]) + H(np.unique(lb, return_counts=True)[1])) / 8 + 8
    cnt = np.bincount(np.concatenate(ctxs) * A + np.concatenate(syms), minlength=B * A).reshape(B, A)
    return sum(H(r) for r in cnt) / 8 + side + table_bytes(cnt)


def row_clusters(mats, K: int, iters: int = 20) -> float:
    hists = np.concatenate([np.stack([np.bincount(r + OFF, minlength=A) for r in m]) for m in mats.values()]).astype(float)
    spread = (hists * np.abs(np.arange(A) - OFF)).sum(1) / hists.sum(1)
    assign = np.searchsorted(np.quantile(spread, np.linspace(0, 1, K + 1)[1:-1]), spread)
    for _ in range(iters):
        T = np.stack([hists[assign == j].sum(0) for j in range(K)]) + 0.02
        cost = -(hists @ np.log2(T / T.sum(1, keepdims=True)).T)
        new = cost.argmin(1)
        if (new == assign).all():
            break
        assign = new
    T = np.stack([hists[assign == j].sum(0) for j in range(K)])
    payload = sum(H(hists[assign == j].sum(0)) for j in range(K)) / 8
    return payload + table_bytes(T) + len(assign) * np.log2(K) / 8


def _cocluster(q, R, C, iters=8) -> float:
    n, k = q.shape
    mag = np.abs(q - OFF)

    def init(v, m):
        return np.searchsorted(np.quantile(v, np.linspace(0, 1, m + 1)[1:-1]), v) if m > 1 else np.zeros(v.size, np.int64)

    rc, cc = init(mag.mean(1), R), init(mag.mean(0), C)

    def counts():
        key = (rc[:, None] * C + cc[None, :]) * A + q
        return np.bincount(key.ravel(), minlength=R * C * A).reshape(R, C, A)

    def log_probs():
        T = counts() + 0.05
        return np.log2(T / T.sum(2, keepdims=True))

    for _ in range(iters):
        LP = log_probs()
        if R > 1:
            rc = np.stack([-(LP[r][cc[None, :], q]).sum(1) for r in range(R)], 1).argmin(1)
        LP = log_probs()  # the row classes just moved
        if C > 1:
            cc = np.stack([-(LP[rc[:, None], c, q]).sum(0) for c in range(C)], 1).argmin(1)
    T = counts().reshape(R * C, A)
    return sum(H(t) for t in T) / 8 + table_bytes(T) + (n * np.log2(R) + k * np.log2(C)) / 8 + 4


def best_cocluster(m) -> float:
    q = m + OFF
    h = np.bincount(q.ravel(), minlength=A)
    best = H(h) / 8 + table_bytes([h])
    for R in (1, 2, 4, 8, 16):
        for C in (1, 2, 4, 8):
            if R * C > 1:
                best = min(best, _cocluster(q, R, C))
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("symbols")
    ap.add_argument("--nncodec-python", default=os.environ.get("NNCODEC_PYTHON"),
                    help="a Python with nncodec installed (default $NNCODEC_PYTHON; skipped when unset)")
    ap.add_argument("--no-models", action="store_true", help="only the coders table")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    mats = load(args.symbols)
    n_sym = sum(m.size for m in mats.values())
    coders = coder_sizes(mats, args.nncodec_python)
    ref = coders["brotli-11"]["bytes"]
    print(f"{args.symbols}: {len(mats)} tensors, {n_sym:,} symbols\n")
    print("| coder | bytes | vs brotli-11 | encode+decode s |\n|---|---:|---:|---:|")
    for k, v in coders.items():
        print(f"| {k} | {v['bytes']:,} | {100 * (v['bytes'] / ref - 1):+.2f}% | {v['seconds']} |")
    models = {} if args.no_models else model_sizes(mats)
    if models:
        h0 = models["H0"]
        print("\n| model | bytes | vs H0 | vs brotli-11 |\n|---|---:|---:|---:|")
        for k, v in models.items():
            print(f"| {k} | {v:,.0f} | {100 * (v / h0 - 1):+.2f}% | {100 * (v / ref - 1):+.2f}% |")
    if args.json:
        Path(args.json).write_text(json.dumps({"symbols": args.symbols, "tensors": len(mats), "n_symbols": n_sym,
                                               "coders": coders, "models": models}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How many bits below order-0 do richer models buy on real quantized symbols? And the coders.

    python benchmarks/entropy_models.py SYMBOLS.npz [--nncodec-python PY] [--json OUT]

SYMBOLS.npz is `golfpack decode ART --symbols -o SYMBOLS.npz` of an artifact (e.g. a
`golfpack encode --bits 6 --method gptq --clip mse` one), or the artifact .gp itself. Every 2-D
symbol tensor with at least 10,000 symbols is measured, each stored one symbol per byte
(int8 + 128), which is the competitors' layout, with its row scales (fp16 as stored).

coders (real bytes; each tensor its own stream unless said; tables per coder total and per
tensor class, the classes being the leaders' role groups tok_emb, attn.c_q/c_k/c_v/proj,
mlp.fc/proj):
    golfpack          what the artifact writer stores (codec.coders.best_encoding: per stream the
                      smallest of raw, rans, rans_rc, zstd, brotli) for the symbols AND the scales
    rans, rans_rc     golfpack's order-0 rANS and row x column-class rANS (lossless checked)
    brotli-11, zstd-22, lzma-9e
    lrzip pergroup    the leaders' recipe on the same symbols (bench/peer_codecs.py, PR #1855):
                      per role group, rows of tok_emb / c_q / mlp.fc in greedy L1 order,
                      column-major, one `lrzip -z -L 9` per group; its uint16 row permutations
                      (brotli-11) are added to its total
    NNCodec           DeepCABAC (`nncodec.nnc.compression.compress`, int32 symbols, each tensor
                      its own bitstream, checked lossless) in the Python given by --nncodec-python
Every coder but golfpack is charged brotli-11 of the fp16 scales (per tensor); golfpack is
charged what its writer stores for them.

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
    return load_with_scales(path)[0]


def load_with_scales(path: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(symbols, scales) of every 2-D symbol tensor of >= 10,000 symbols in an .npz of
    `golfpack decode ART --symbols` or in a golfpack artifact (.gp) itself. Scales are the
    stored fp16 values (an .npz holds them widened to float32; they round-trip exactly), or
    float32 where fp16 would not hold them exactly."""
    mats, scales = {}, {}
    if Path(path).suffix == ".gp":
        from golfpack.codec.container import read_artifact

        art = read_artifact(path)
        for name, t in art.tensors.items():
            if t.is_quantized and len(t.shape) == 2 and t.numel >= 10_000:
                mats[name] = t.symbols().astype(np.int64)
                scales[name] = t.scales().numpy()
    else:
        z = np.load(path)
        for k in z.keys():
            if k.endswith(".symbols") and z[k].ndim == 2 and z[k].size >= 10_000:
                name = k[: -len(".symbols")]
                mats[name] = z[k].astype(np.int64)
                if f"{name}.scales" in z:
                    scales[name] = z[f"{name}.scales"]
    for name, s in scales.items():
        s16 = np.asarray(s).astype(np.float16)
        scales[name] = s16 if np.array_equal(s16.astype(np.float32), np.asarray(s, np.float32)) else np.asarray(s, np.float32)
    if not mats:
        raise SystemExit(f"{path}: no 2-D symbol tensors of >= 10,000 symbols")
    return mats, scales


def tensor_class(name: str) -> str:
    """The leaders' role groups (bench/peer_codecs.ROLE_GROUPS), else 'other'."""
    from golfpack.bench.peer_codecs import _role

    return _role(name) or "other"


# ----------------------------------------------------------------------------- coders


def width(m: np.ndarray) -> int:
    """The narrowest two's-complement width holding the symbols (>= 2, as the format allows)."""
    b = 2
    while int(m.min()) < -(1 << (b - 1)) or int(m.max()) > (1 << (b - 1)) - 1:
        b += 1
    return b


def lrzip_pergroup(mats: dict[str, np.ndarray]) -> tuple[dict[str, int], int]:
    """The leaders' per-group lrzip of the same symbols (bench/peer_codecs.pergroup_bytes, PR #1855's
    layout): per role group the tensors concatenated over the layers, rows of tok_emb / c_q / mlp.fc
    put in greedy L1 nearest-neighbour order, each matrix column-major, each group one
    `lrzip -z -L 9` (ZPAQ). Returns ({group: bytes}, bytes of the uint16 row permutations brotli-11'd,
    which the leaders ship in their brotli'd remainder)."""
    import brotli

    from golfpack.bench import peer_codecs as pc

    groups: dict[str, list[np.ndarray]] = {}
    perms = []
    for name, q in mats.items():
        r = pc._role(name)
        if r is None:
            continue
        q8 = q.astype(np.int8)
        if r in pc.REORDERED_ROLES:
            perm = pc.greedy_l1_order(q8)
            q8 = q8[perm]
            perms.append(perm.astype(np.uint16).tobytes())
        groups.setdefault(r, []).append(np.ascontiguousarray(q8.T).reshape(-1))
    out = {r: len(pc._lrzip(np.concatenate(parts).tobytes(), decompress=False)) for r, parts in groups.items()}
    return out, (len(brotli.compress(b"".join(perms), quality=11)) if perms else 0)


NNCODEC_SCRIPT = (
    "import sys, json, numpy as np\n"
    "from nncodec.nnc import compression as cz\n"
    "z = np.load(sys.argv[1]); out = {}\n"
    "for k in z.keys():\n"
    "    pd = {k: z[k].astype(np.int32)}\n"
    "    bs = cz.compress(pd, bitstream_path=sys.argv[2], return_bitstream=True, int_quant_bw=8, verbose=False)\n"
    "    rec = cz.decompress(bs)\n"
    "    rec = rec[0] if isinstance(rec, tuple) else rec\n"
    "    assert np.array_equal(np.asarray(rec[k]).astype(np.int64), pd[k].astype(np.int64)), 'lossy'\n"
    "    out[k] = len(bs)\n"
    "print(json.dumps(out))\n")


def nncodec_sizes(mats: dict[str, np.ndarray], nncodec_python: str) -> dict[str, int] | None:
    """NNCodec (DeepCABAC) bytes per tensor, each tensor its own bitstream, checked lossless."""
    keys = {k.replace(".", "_"): k for k in mats}
    with tempfile.TemporaryDirectory() as d:
        np.savez(Path(d) / "s.npz", **{k: mats[v] for k, v in keys.items()})
        p = subprocess.run([nncodec_python, "-c", NNCODEC_SCRIPT, str(Path(d) / "s.npz"), str(Path(d) / "b.nnc")],
                           capture_output=True, text=True, cwd=d)
    if p.returncode != 0:
        print(f"nncodec failed: {p.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return {keys[k]: v for k, v in json.loads(p.stdout.strip().splitlines()[-1]).items()}


def coder_sizes(mats: dict[str, np.ndarray], nncodec_python: str | None, scales: dict | None = None,
                pergroup: bool = True) -> dict:
    """Bytes per tensor of every coder on the same symbols (one per byte, u = s + 128), and of the
    scales. Returns {"per_tensor": {coder: {name: bytes}}, "groups": {...}, "seconds": {coder: s}}."""
    import brotli
    import zstandard

    from golfpack import _C
    from golfpack.codec import rans_rc
    from golfpack.codec.coders import StreamType, best_encoding

    raw = {k: (m + OFF).astype(np.uint8).tobytes() for k, m in mats.items()}
    per: dict[str, dict[str, int]] = {}
    secs: dict[str, float] = {}

    def each(name, fn):
        t = time.perf_counter()
        per[name] = {k: int(fn(k, b)) for k, b in raw.items()}
        secs[name] = round(time.perf_counter() - t, 2)

    def rc(k, b):
        u = np.frombuffer(b, np.uint8).reshape(mats[k].shape)
        data = rans_rc.encode(u)
        if not np.array_equal(rans_rc.decode(data, u.size), u.reshape(-1)):
            raise SystemExit(f"{k}: rans_rc did not round-trip")
        return len(data)

    each("rans", lambda k, b: len(_C.rans_encode(np.frombuffer(b, np.uint8))))
    each("rans_rc", rc)
    each("brotli-11", lambda k, b: len(brotli.compress(b, quality=11)))
    each("zstd-22", lambda k, b: len(zstandard.ZstdCompressor(level=22, write_content_size=True).compress(b)))
    each("lzma-9e", lambda k, b: len(lzma.compress(b, preset=9 | lzma.PRESET_EXTREME)))
    # What a golfpack artifact stores: per stream the smallest of its coders (codec.coders.best_encoding;
    # raw is bit-packed at the symbols' width). Same encoders as above, so the per-tensor minimum is exact.
    per["golfpack"] = {k: min((m.size * width(m) + 7) // 8, *(per[c][k] for c in ("rans", "rans_rc", "brotli-11")),
                              per["zstd-22"][k]) for k, m in mats.items()}
    out = {"per_tensor": per, "seconds": secs, "groups": {}, "scales": {}}
    if scales:
        def scale_bytes(fn):
            return {k: int(fn(s)) for k, s in scales.items() if k in mats}
        out["scales"]["golfpack"] = scale_bytes(lambda s: len(best_encoding(
            s.view(np.uint16 if s.dtype == np.float16 else np.uint32).view(s.dtype),
            StreamType("float16" if s.dtype == np.float16 else "float32", s.size))[2]))
        out["scales"]["brotli-11"] = scale_bytes(lambda s: len(brotli.compress(s.tobytes(), quality=11)))
    if pergroup and shutil.which("lrzip"):
        t = time.perf_counter()
        g, perm_bytes = lrzip_pergroup(mats)
        out["groups"]["lrzip pergroup"] = g
        out["lrzip_perm_bytes"] = perm_bytes
        secs["lrzip pergroup"] = round(time.perf_counter() - t, 2)
    if nncodec_python:
        t = time.perf_counter()
        n = nncodec_sizes(mats, nncodec_python)
        if n is not None:
            per["NNCodec"] = n
            secs["NNCodec"] = round(time.perf_counter() - t, 2)
    return out


def report(path: str, mats: dict, res: dict) -> list[str]:
    """Markdown tables: per coder symbols + scales totals vs brotli-11, and per tensor class."""
    per, groups, sc = res["per_tensor"], res["groups"], res["scales"]
    classes = sorted({tensor_class(k) for k in mats}, key=lambda c: list(mats).index(
        next(k for k in mats if tensor_class(k) == c)))
    by_class = {c: [k for k in mats if tensor_class(k) == c] for c in classes}
    coders = list(per) + list(groups)

    def cls_bytes(coder, c):
        if coder in groups:
            return groups[coder].get(c, sum(per["brotli-11"][k] for k in by_class[c]) if c == "other" else 0)
        return sum(per[coder][k] for k in by_class[c])

    def total_sym(coder):
        return sum(cls_bytes(coder, c) for c in classes)

    sb = sum(sc.get("brotli-11", {}).values())
    sg = sum(sc.get("golfpack", {}).values()) if sc else 0
    ref = total_sym("brotli-11") + sb
    n_sym = sum(m.size for m in mats.values())
    lines = [f"{path}: {len(mats)} tensors, {n_sym:,} symbols, {len(sc.get('brotli-11', {}))} scale streams",
             "", "| coder | symbols | scales | total | vs brotli-11 | vs lrzip pergroup |", "|---|---:|---:|---:|---:|---:|"]
    extra = res.get("lrzip_perm_bytes", 0)
    totals = {}
    for coder in coders:
        s_sc = sg if coder == "golfpack" else sb
        tot = total_sym(coder) + s_sc + (extra if coder == "lrzip pergroup" else 0)
        totals[coder] = tot
    lz = totals.get("lrzip pergroup")
    for coder in coders:
        s_sc = sg if coder == "golfpack" else sb
        note = f" (+{extra:,} B row permutations)" if coder == "lrzip pergroup" else ""
        vs_lz = f"{100 * (totals[coder] / lz - 1):+.2f}%" if lz else "-"
        lines.append(f"| {coder}{note} | {total_sym(coder):,} | {s_sc:,} | {totals[coder]:,} | "
                     f"{100 * (totals[coder] / ref - 1):+.2f}% | {vs_lz} |")
    lines += ["", "Symbols only, per tensor class (vs brotli-11 of the same class):", "",
              "| class | symbols | " + " | ".join(coders) + " |", "|---|---:|" + "---:|" * len(coders)]
    for c in classes:
        b = cls_bytes("brotli-11", c)
        cells = [f"{cls_bytes(k, c):,} ({100 * (cls_bytes(k, c) / b - 1):+.2f}%)" for k in coders]
        lines.append(f"| {c} | {sum(mats[k].size for k in by_class[c]):,} | " + " | ".join(cells) + " |")
    res["totals"] = totals
    return lines


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
    ap.add_argument("symbols", help="symbols .npz (golfpack decode ART --symbols) or a golfpack artifact .gp")
    ap.add_argument("--nncodec-python", default=os.environ.get("NNCODEC_PYTHON"),
                    help="a Python with nncodec installed (default $NNCODEC_PYTHON; skipped when unset)")
    ap.add_argument("--no-models", action="store_true", help="only the coders table")
    ap.add_argument("--no-pergroup", action="store_true", help="skip lrzip pergroup")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    mats, scales = load_with_scales(args.symbols)
    n_sym = sum(m.size for m in mats.values())
    coders = coder_sizes(mats, args.nncodec_python, scales, pergroup=not args.no_pergroup)
    print("\n".join(report(args.symbols, mats, coders)))
    print("\nseconds (encode; rans_rc and NNCodec also decode):", coders["seconds"])
    ref = sum(coders["per_tensor"]["brotli-11"].values())
    models = {} if args.no_models else model_sizes(mats)
    if models:
        h0 = models["H0"]
        print("\n| model (symbols only) | bytes | vs H0 | vs brotli-11 |\n|---|---:|---:|---:|")
        for k, v in models.items():
            print(f"| {k} | {v:,.0f} | {100 * (v / h0 - 1):+.2f}% | {100 * (v / ref - 1):+.2f}% |")
    if args.json:
        Path(args.json).write_text(json.dumps({"symbols": args.symbols, "tensors": len(mats), "n_symbols": n_sym,
                                               "coders": coders, "models": models}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Decode speed of the rans_rc payload loop against the v1 rANS decoder on the same symbols.

    python benchmarks/rans_rc_decode.py [SYMBOLS.npz] [--tensor NAME] [--reps 20] [--json OUT]

Without SYMBOLS.npz (a `golfpack decode ART --symbols -o S.npz` file) the symbols are synthetic:
1536 x 512 int6 values, Laplace with a per-column scale spread over 2 octaves, so the fitter
finds column classes and the decoder switches tables. With it, the largest 2-D tensor (or
--tensor NAME) is used.

Only the payload decode is timed (the model is parsed and the tables built once, outside the
loop for the "payload" rows; the "stream" rows time the whole `decode` call, header parsing and
table rebuild included). Times are the median of --reps runs, in ns per symbol, with the ratio
to v1 rANS (auto ISA) measured in the same run, since these machines are noisy.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from golfpack import _C
from golfpack.codec import rans_rc


def synthetic(rows: int = 1536, cols: int = 512, bits: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    col_scale = 2.0 ** rng.uniform(0, 2, cols)
    v = rng.laplace(0, 1, (rows, cols)) * col_scale * 2.0
    lim = (1 << (bits - 1)) - 1
    return (np.clip(np.rint(v), -lim - 1, lim) + 128).astype(np.uint8)


def load(path: str, name: str | None) -> tuple[str, np.ndarray]:
    z = np.load(path)
    mats = {k[: -len(".symbols")]: z[k] for k in z.keys() if k.endswith(".symbols") and z[k].ndim == 2}
    if not mats:
        raise SystemExit(f"{path}: no 2-D symbol tensors")
    key = name or max(mats, key=lambda k: mats[k].size)
    if key not in mats:
        raise SystemExit(f"{path}: no tensor {key!r}; have {sorted(mats)}")
    return key, (mats[key].astype(np.int16) + 128).astype(np.uint8)


def medians_ns(fns: list, n_sym: int, reps: int) -> list[tuple[float, float]]:
    """(median, min) ns/symbol of each fn, timed round-robin (rep by rep) so that load changes
    on a shared machine hit every decoder alike. On a VM whose other core is busy the times are
    multimodal; the minimum is the stable figure, the median what a load sees."""
    for fn in fns:
        fn()  # warm caches and page in the output
    ts = [[] for _ in fns]
    for _ in range(reps):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            ts[k].append(time.perf_counter() - t0)
    return [(statistics.median(t) * 1e9 / n_sym, min(t) * 1e9 / n_sym) for t in ts]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("symbols", nargs="?")
    ap.add_argument("--tensor")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--json")
    a = ap.parse_args()
    name, q = load(a.symbols, a.tensor) if a.symbols else ("synthetic 1536x512 int6", synthetic())
    flat = np.ascontiguousarray(q.reshape(-1))
    n = flat.size
    s = q.astype(np.int16) - 128
    bits = next(b for b in range(2, 9) if s.min() >= -(1 << (b - 1)) and s.max() < (1 << (b - 1)))

    v1 = _C.rans_encode(flat)
    rc = rans_rc.encode(q)
    m, payload = rans_rc.parse(rc, n)
    freqs = m.freqs()
    payload = bytes(payload)
    assert np.array_equal(rans_rc.decode(rc, n), flat)

    def rc_payload():
        return _C.rans_ctx_decode(payload, n, m.cols, m.row_class, m.col_class, m.table_map, m.C, freqs, m.P,
                                  m.lanes)

    def rc_packed():
        return _C.rans_ctx_decode_packed(payload, n, m.cols, m.row_class, m.col_class, m.table_map, m.C, freqs,
                                         m.P, m.lanes, bits)

    def with_isa(isa: str, fn):
        def run():
            _C.rans_set_isa(isa)  # rans_rc's side streams and row packing follow the ISA too
            return fn()
        return run

    def v1_decode():
        return _C.rans_decode(v1, n)

    prev = _C.rans_isa()
    try:
        _C.rans_set_isa("auto")
        auto_isa = _C.rans_isa()
        labels = [f"v1 rans, auto ISA ({auto_isa})", "v1 rans, scalar",
                  f"rans_rc payload ({m.lanes} lanes, R={m.R} C={m.C} T={m.T})",
                  f"rans_rc payload -> packed int{bits} rows", "rans_rc stream (parse + tables + payload)"]
        fns = [with_isa("auto", v1_decode), with_isa("scalar", v1_decode), with_isa("auto", rc_payload),
               with_isa("auto", rc_packed), with_isa("auto", lambda: rans_rc.decode(rc, n))]
        times = medians_ns(fns, n, a.reps)
    finally:
        _C.rans_set_isa(prev)
    sizes = [len(v1), len(v1), len(rc), len(rc), len(rc)]
    rows = [(lab, size, med, lo) for lab, size, (med, lo) in zip(labels, sizes, times)]
    base, base_min = times[0]

    print(f"{name}: {q.shape[0]} x {q.shape[1]}, {n:,} symbols, median of {a.reps}")
    print(f"{'decoder':<48} {'bytes':>10} {'median ns/sym':>14} {'vs v1':>7} {'min ns/sym':>11} {'vs v1':>7}")
    for label, size, ns, lo in rows:
        print(f"{label:<48} {size:>10,} {ns:>14.2f} {ns / base:>6.2f}x {lo:>11.2f} {lo / base_min:>6.2f}x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"tensor": name, "shape": list(q.shape), "symbols": n, "reps": a.reps,
                       "rows": [{"decoder": r[0], "bytes": r[1], "ns_per_symbol_median": r[2], "vs_v1_median": r[2] / base,
                                 "ns_per_symbol_min": r[3], "vs_v1_min": r[3] / base_min} for r in rows]}, f, indent=1)


if __name__ == "__main__":
    main()

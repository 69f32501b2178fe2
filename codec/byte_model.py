"""What the artifact writer will store for a quantized tensor, estimated fast enough for the planner.

The writer (codec.coders.best_encoding) keeps, per stream, the smallest of raw, rans, rans_rc,
zstd and brotli. On quantized symbols it is almost always rans_rc (codec/rans_rc.py: one static
table per row-class x column-class cell), whose encoder searches classes and tables for seconds
per tensor: far too slow for thousands of planner candidates. This module prices a candidate
with the same stream arithmetic on a cheaply fitted model:

* order-0: the exact size of the v1 rANS stream (golfpack._C.rans_encode; milliseconds);
* classes: rows and columns in quantile classes of their mean |u - mean| (8 x 8 base cells from
  one histogram pass), every (R, C) in {1, 2, 4, 8}^2 aggregated from it, optionally one
  reassignment of the rows by code length (what captures the per-row int8 lattices of
  requantized checkpoints); cells merged and tables quantized as the encoder does
  (rans_rc.merge_cells, rans_rc.quantize_codes), and the stream priced by rans_rc's own size
  function (header, side streams encoded exactly, payload from the rebuilt integer tables);
* with `classes` (fit_classes: the writer's own rans_rc fit of one candidate of the tensor, run
  once), the rows and columns keep those classes and the cells that table sharing; only the
  tables are re-estimated from the candidate's symbols (one histogram pass);
* tiny streams (<= SMALL symbols): zstd-22 and brotli-11 for real as well;
* scales: exactly what the writer stores (codec.coders.best_encoding; milliseconds).

The estimate is min(raw, order-0, classes): the writer's full fit can only do better than the
model priced here, apart from table codes (quantize_codes here, the encoder's rd_codes there:
a few hundred bytes a tensor), so the estimate sits slightly above the stream it prices;
benchmarks/byte_model_accuracy.py reports est / real per tensor and the time per call.

Use: `tensor_bytes(symbols, scales, classes=None)` (int8 [N, K] or a torch tensor; scales
fp16/fp32 [N] as stored), or `symbol_bytes` / `scale_bytes`; `fit_classes(symbols)` once per
tensor (seconds) for the anchored estimate.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from golfpack import _C

BASE = 8  # quantile classes per side of the base histogram
GRID = (1, 2, 4, 8)
EXACT = 3  # (R, C) configurations priced exactly, the best by the approximate cost
SMALL = 4096  # symbols up to which zstd-22 and brotli-11 are tried for real


def _as_np(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _quantile_classes(v: np.ndarray, k: int) -> np.ndarray:
    if k <= 1:
        return np.zeros(v.size, np.int64)
    return np.searchsorted(np.quantile(v, np.linspace(0, 1, k + 1)[1:-1]), v, side="right").clip(0, k - 1)


def _raw_bytes(q: np.ndarray) -> int:
    lo, hi = int(q.min()), int(q.max())
    b = 2
    while lo < -(1 << (b - 1)) or hi > (1 << (b - 1)) - 1:
        b += 1
    return (q.size * b + 7) // 8


def order0_bytes(u: np.ndarray) -> int:
    """Exact bytes of the v1 rANS stream of uint8 symbols."""
    return len(_C.rans_encode(np.ascontiguousarray(u, np.uint8).reshape(-1), 0))


def classed_bytes(u: np.ndarray, reassign_rows: bool = True) -> float:
    """Estimated rans_rc stream bytes of a [rows, cols] uint8 symbol matrix (see module doc)."""
    from golfpack.codec import rans_rc

    rows, cols = u.shape
    lo, hi = int(u.min()), int(u.max())
    W = hi - lo + 1
    rb, cb = min(BASE, rows), min(BASE, cols)
    center = int(round(float(u.mean())))
    c8 = _quantile_classes(np.abs(u.astype(np.int16) - center).mean(0), cb)
    # one pass over the symbols: per row, the histogram over (column class, symbol)
    key = (np.arange(rows, dtype=np.int64) * (cb * W))[:, None] + (c8 * W - lo)[None, :] + u
    hrow = np.bincount(key.ravel(), minlength=rows * cb * W).reshape(rows, cb, W).astype(np.float64)
    dist = np.abs(np.arange(lo, hi + 1) - center)
    r8 = _quantile_classes(hrow.sum(1) @ dist / cols, rb)
    onehot = np.zeros((rb, rows))
    onehot[r8, np.arange(rows)] = 1.0
    base = (onehot @ hrow.reshape(rows, cb * W)).reshape(rb, cb, W)
    # rank every (R, C) by ideal payload + unmerged table cost, then price the best few exactly
    ranked = []
    for R in GRID:
        for C in GRID:
            if R > rb or C > cb:
                continue
            counts = base.reshape(R, rb // R, C, cb // C, W).sum((1, 3)).reshape(R * C, W)
            approx = (rans_rc._entropy_bits(counts).sum() + rans_rc.ENTRY_BITS * (counts > 0).sum()) / 8
            ranked.append((approx, R, C, counts))
    ranked.sort(key=lambda t: t[0])
    best = None
    for _, R, C, counts in ranked[:EXACT]:
        size = _priced(rans_rc, r8 // (rb // R), c8 // (cb // C), R, C, counts, lo, hi, cols)
        if best is None or size < best[0]:
            best = (size, R, C)
    size, R, C = best
    if reassign_rows and R > 1:
        # one reassignment of the rows by code length under the best model's cell tables
        cc = c8 // (cb // C)
        h = hrow.reshape(rows, C, cb // C, W).sum(2).reshape(rows, C * W)
        cell = base.reshape(R, rb // R, C, cb // C, W).sum((1, 3)) + rans_rc._SMOOTH
        lp = np.log2(cell / cell.sum(2, keepdims=True)).reshape(R, C * W)
        rc2 = (h @ -lp.T).argmin(1)
        onehot = np.zeros((R, rows))
        onehot[rc2, np.arange(rows)] = 1.0
        counts2 = (onehot @ h).reshape(R * C, W)
        size = min(size, _priced(rans_rc, rc2, cc, R, C, counts2, lo, hi, cols))
    return size


def _priced(rans_rc, rc, cc, R, C, counts, lo, hi, cols) -> float:
    """rans_rc's own size function on a model with these classes (cells merged, tables quantized)."""
    table_map, tables = rans_rc.merge_cells(counts)
    return _price_model(rans_rc, rc, cc, R, C, table_map, tables, lo, hi, cols)


def _price_model(rans_rc, rc, cc, R, C, table_map, tables, lo, hi, cols) -> float:
    codes = rans_rc.quantize_codes(tables, rans_rc.PRECISION)
    m = rans_rc.Model(rans_rc.PRECISION, 8, lo, hi, cols, rc.astype(np.uint8), cc.astype(np.uint8), table_map, R, C,
                      codes)
    return rans_rc._size(m, tables)


@dataclass
class Classes:
    """Row and column classes of one tensor, from the real rans_rc fit of an anchor candidate."""

    row_class: np.ndarray  # int64[rows]
    col_class: np.ndarray  # int64[cols]
    R: int
    C: int
    table_map: np.ndarray  # int64[R * C]: the table each (row class, column class) cell shares


def fit_classes(symbols) -> Classes:
    """The classes the writer's rans_rc encoder finds for these int8 symbols [rows, cols] (seconds).

    Which rows and columns belong together is a property of the weights more than of one
    candidate's bit width or clip (a row's int8 lattice, an input channel's scale), so the
    classes of one candidate price the tensor's other candidates (symbol_bytes(..., classes))."""
    from golfpack.codec import rans_rc

    q = _as_np(symbols).astype(np.int8, copy=False)
    m = rans_rc.fit((q.astype(np.int16) + 128).astype(np.uint8))
    return Classes(m.row_class.astype(np.int64), m.col_class.astype(np.int64), m.R, m.C, m.table_map.astype(np.int64))


def _with_classes(u: np.ndarray, cl: Classes, reassign_rows: bool = True) -> float:
    """rans_rc bytes of u with the anchor's classes (one histogram pass), after one reassignment
    of the rows by code length when that prices lower."""
    from golfpack.codec import rans_rc

    rows, cols = u.shape
    if cl.row_class.size != rows or cl.col_class.size != cols:
        raise ValueError(f"classes are for a {cl.row_class.size} x {cl.col_class.size} tensor, symbols are "
                         f"{rows} x {cols}")
    lo, hi = int(u.min()), int(u.max())
    W, R, C = hi - lo + 1, cl.R, cl.C
    key = (np.arange(rows, dtype=np.int64) * (C * W))[:, None] + (cl.col_class * W - lo)[None, :] + u
    h = np.bincount(key.ravel(), minlength=rows * C * W).reshape(rows, C * W).astype(np.float64)
    T = int(cl.table_map.max()) + 1
    cell_to_table = np.zeros((R * C, T))
    cell_to_table[np.arange(R * C), cl.table_map] = 1.0

    def priced(rc) -> float:  # the anchor's table sharing; tables re-estimated from these symbols
        onehot = np.zeros((R, rows))
        onehot[rc, np.arange(rows)] = 1.0
        counts = (onehot @ h).reshape(R * C, W)
        tables = cell_to_table.T @ counts
        used = tables.sum(1) > 0  # a table whose cells code nothing here is not stored
        tmap = np.cumsum(used)[cl.table_map] - 1
        tmap[~used[cl.table_map]] = 0
        return _price_model(rans_rc, rc, cl.col_class, R, C, tmap.astype(np.uint8), tables[used], lo, hi, cols), counts

    size, counts = priced(cl.row_class)
    if reassign_rows and R > 1:
        cell = counts.reshape(R, C, W) + rans_rc._SMOOTH
        lp = np.log2(cell / cell.sum(2, keepdims=True)).reshape(R, C * W)
        rc2 = (h @ -lp.T).argmin(1)
        if not np.array_equal(rc2, cl.row_class):
            size = min(size, priced(rc2)[0])
    return size


def symbol_bytes(symbols, classes: Classes | None = None, reassign_rows: bool = True) -> int:
    """Estimated bytes the writer stores for int8 symbols (2-D: rows x cols; other shapes:
    order-0). With `classes` (fit_classes of another candidate of the same tensor) the rans_rc
    estimate uses them; without, quantile classes (classed_bytes)."""
    q = _as_np(symbols).astype(np.int8, copy=False)
    if q.size == 0:
        return 0
    u = (q.astype(np.int16) + 128).astype(np.uint8)
    est = min(_raw_bytes(q), order0_bytes(u))
    if q.size <= SMALL:  # tiny streams: zstd / brotli often win, and cost nothing to try
        from golfpack.codec.coders import StreamType, encode_stream

        st = StreamType("int", q.size, 8)
        est = min(est, *(len(encode_stream(q.reshape(-1), st, c)) for c in ("zstd", "brotli")))
    if q.ndim == 2 and q.shape[0] > 1:
        rc = _with_classes(u, classes, reassign_rows) if classes is not None else classed_bytes(u, reassign_rows)
        est = min(est, int(np.ceil(rc)))
    return int(est)


def scale_bytes(scales) -> int:
    """Exact bytes of a scale stream as the writer stores it (codec.coders.best_encoding of the
    fp16 or fp32 values: a few milliseconds for a few thousand row scales)."""
    from golfpack.codec.coders import StreamType, best_encoding

    s = np.ascontiguousarray(_as_np(scales)).reshape(-1)
    if s.size == 0:
        return 0
    if s.dtype not in (np.float16, np.float32):
        raise ValueError(f"scales must be float16 or float32 (as stored), got {s.dtype}")
    return len(best_encoding(s, StreamType("float16" if s.dtype == np.float16 else "float32", s.size))[2])


def tensor_bytes(symbols, scales=None, classes: Classes | None = None) -> int:
    """Estimated bytes of a quantized tensor's symbols + scales streams."""
    return symbol_bytes(symbols, classes) + (scale_bytes(scales) if scales is not None else 0)

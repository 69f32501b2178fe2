"""The `rans_rc` stream coder: rANS with one static table per (row class, column class) cell.

Why this model (benchmarks/RESULTS.md, "Entropy models beyond order-0"): on GPTQ int6 symbols
the strongest cheap signals are per-row and per-column statistics -- a row's clip and the
baseline's int8 lattice, an input channel's scale. Co-clustering the rows into R classes and the
columns into C classes and giving each (row class, column class) cell its own table captures both
while the table a symbol uses stays a function of its position only, so decoding is static rANS
with a table switch (csrc/core/rans_ctx.cpp), not a sequential adaptive model.

Stream layout (all integers little-endian; byte-exact spec: csrc/RANS.md section 6):

    u8  version (1)        u8  P (probability bits, 10..15)     u8 lanes (1, 2, 4 or 8)
    u8  lo, u8 hi          the tables' alphabet: symbols u = s + 128 in lo..hi
    u32 cols               row length; rows = count / cols
    u16 R, u16 C, u16 T    row classes, column classes, tables (each 1..256; T <= R*C)
    u32 x 4                lengths of the four side streams below
    side streams           v1 rANS streams (csrc/RANS.md 1-4) of: row_class[rows],
                           col_class[cols], table_map[R*C], table codes[T*(hi-lo+1)]
    payload                lanes u64 states, then u32 words (csrc/core/rans_ctx.cpp)

A table is stored as quarter-bit code lengths (v: p ~ 2^(-v/4)), each table's codes
delta-coded along the alphabet and zigzagged: byte 0 = absent, byte z+1 = present with
zigzag(v - previous present v), previous starting at 0.

The encoder (`encode`) fits the classes by alternating minimisation of the coded size and grows
R and C while the exact stream size keeps falling; R = C = 1 is order-0 with cheaper tables.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from golfpack import _C
from golfpack.errors import FormatError

VERSION = 1
PRECISION = 12
MAX_CLASSES = 256  # class and table indices are bytes
HEADER = struct.Struct("<BBBBBIHHHIIII")
ABSENT = 0  # code byte of an absent symbol (README in csrc/core/rans_ctx.cpp: 255 there, 0 here)
_SMOOTH = 0.05  # pseudo-count for unseen symbols while fitting classes (never coded)
MAX_FIT_CELLS = 1 << 25  # largest histogram the fitter builds (rows x C x W or cols x R x W): 256 MB of int64


@dataclass
class Model:
    """What the decoder needs besides the payload."""

    P: int
    lanes: int
    lo: int
    hi: int
    cols: int
    row_class: np.ndarray  # uint8[rows]
    col_class: np.ndarray  # uint8[cols]
    table_map: np.ndarray  # uint8[R*C]
    R: int
    C: int
    codes: np.ndarray  # uint8[T, W]: quantized code lengths, 255 = absent (csrc form)

    @property
    def T(self) -> int:
        return int(self.codes.shape[0])

    def freqs(self) -> np.ndarray:
        return _C.rans_ctx_tables(np.ascontiguousarray(self.codes).reshape(-1), self.T, self.lo, self.P)


# ----------------------------------------------------------------------------- table codes


def quantize_codes(counts: np.ndarray, P: int) -> np.ndarray:
    """Quarter-bit code lengths of empirical counts (T x W): 255 where a count is 0."""
    counts = np.asarray(counts, np.float64)
    tot = counts.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.rint(-4.0 * np.log2(counts / np.maximum(tot, 1)))
    v = np.clip(np.nan_to_num(v, nan=0.0, posinf=4 * P), 0, 4 * P).astype(np.uint8)
    v[counts <= 0] = 255
    return v


def _zigzag_cost(byte_hist: np.ndarray) -> np.ndarray:
    """Code length in bits of each code byte under an order-0 model of `byte_hist` (smoothed)."""
    h = byte_hist.astype(np.float64) + 0.5
    return -np.log2(h / h.sum())


def rd_codes(counts: np.ndarray, P: int, rounds: int = 2) -> np.ndarray:
    """Table codes chosen for total size, not only for fit.

    A table entry's code costs bits to store (its zigzag delta from the previous present entry,
    order-0 coded) and a deviation of k quarter-bits from the symbol's ideal code costs its c
    occurrences about (ln 2 / 2) * c * (k/4)^2 payload bits (second order; the table is
    renormalised). Rare symbols therefore take the code that is cheapest to store, frequent
    ones keep their fit. Per table a Viterbi pass over (entry, code) finds the exact optimum
    of that objective; the delta costs are re-estimated from the result `rounds` times.
    """
    ideal = quantize_codes(counts, P)
    T, W = ideal.shape
    V = 4 * P + 1
    v = np.arange(V)
    with np.errstate(divide="ignore", invalid="ignore"):
        exact = np.where(counts > 0, -4.0 * np.log2(counts / np.maximum(counts.sum(1, keepdims=True), 1)), 0.0)
    codes = ideal
    zz = 2 * np.abs(v[None, :] - v[:, None]) - (v[None, :] < v[:, None])  # [prev, cur] -> zigzag
    for _ in range(rounds):
        cost = _zigzag_cost(np.bincount(_codes_to_bytes(codes).ravel(), minlength=256))
        step = cost[np.minimum(zz + 1, 255)]  # [prev, cur] bits to store cur after prev
        out = np.full((T, W), 255, np.uint8)
        for t in range(T):
            present = np.flatnonzero(counts[t] > 0)
            # Viterbi: acc[v] = best cost of the entries so far ending with code v
            acc = step[0].copy()  # first present entry: delta from prev = 0
            acc += 0.3466 * counts[t, present[0]] * ((v - exact[t, present[0]]) / 4.0) ** 2
            back = []
            for s in present[1:]:
                tot = acc[:, None] + step  # [prev, cur]
                arg = tot.argmin(0)
                acc = tot[arg, v] + 0.3466 * counts[t, s] * ((v - exact[t, s]) / 4.0) ** 2
                back.append(arg)
            cur = int(acc.argmin())
            path = [cur]
            for arg in reversed(back):
                cur = int(arg[cur])
                path.append(cur)
            out[t, present] = np.array(path[::-1], np.uint8)
        codes = out
    return codes


def _codes_to_bytes(codes: np.ndarray) -> np.ndarray:
    """Stored form of T x W table codes (csrc form, 255 = absent): 0 = absent, else
    zigzag(v - previous present v in the table, starting at 0) + 1 (csrc/RANS.md 6.2)."""
    codes = np.asarray(codes, np.uint8)
    present = codes != 255
    v = np.where(present, codes.astype(np.int64), 0)
    # v of the previous present entry: forward-fill the present values, shifted by one column
    idx = np.where(present, np.arange(codes.shape[1])[None, :], -1)
    last = np.maximum.accumulate(idx, axis=1)
    prev_idx = np.concatenate([np.full((codes.shape[0], 1), -1), last[:, :-1]], axis=1)
    prev = np.where(prev_idx >= 0, np.take_along_axis(v, np.maximum(prev_idx, 0), axis=1), 0)
    d = v - prev
    z = np.where(d >= 0, 2 * d, -2 * d - 1) + 1
    return np.where(present, z, 0).astype(np.uint8)


def _bytes_to_codes(b: np.ndarray, P: int) -> np.ndarray:
    """Inverse of _codes_to_bytes; FormatError for a code outside 0..4P."""
    b = np.asarray(b, np.int64)
    present = b != ABSENT
    z = np.where(present, b - 1, 0)
    d = np.where(z & 1, -((z + 1) >> 1), z >> 1)
    v = np.cumsum(d, axis=1)  # absent entries add 0, so this is prev + d at every present entry
    bad = present & ((v < 0) | (v > 4 * P))
    if bad.any():
        t, i = map(int, np.argwhere(bad)[0])
        raise FormatError(f"rans_rc stream: table {t} code {int(v[t, i])} outside 0..{4 * P} [C2]")
    return np.where(present, v, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- serialization


def _side(arr: np.ndarray) -> bytes:
    return _C.rans_encode(np.ascontiguousarray(arr, np.uint8).reshape(-1), 0)


def _choose_lanes(payload_bytes: float) -> int:
    """The most lanes (decode speed) whose 8-byte state flush stays within 0.1% of the payload,
    the rule of the v1 stream (csrc/RANS.md 2)."""
    lanes = 8
    while lanes > 1 and 8 * lanes > payload_bytes / 1000:
        lanes //= 2
    return lanes


def serialize(m: Model, payload: bytes) -> bytes:
    sides = [_side(m.row_class), _side(m.col_class), _side(m.table_map), _side(_codes_to_bytes(m.codes))]
    head = HEADER.pack(VERSION, m.P, m.lanes, m.lo, m.hi, m.cols, m.R, m.C, m.T, *(len(s) for s in sides))
    return head + b"".join(sides) + payload


def parse(data: bytes, count: int) -> tuple[Model, memoryview]:
    """Validate the header and side streams against `count` symbols; (model, payload view)."""
    mv = memoryview(data)
    if len(mv) < HEADER.size:
        raise FormatError(f"rans_rc stream: {len(mv)} bytes, shorter than its {HEADER.size}-byte header [C1]")
    ver, P, lanes, lo, hi, cols, R, C, T, *lens = HEADER.unpack_from(mv, 0)
    if ver != VERSION:
        raise FormatError(f"rans_rc stream: version {ver} is not supported (this golfpack reads {VERSION}) [C1]")
    if not 10 <= P <= 15:
        raise FormatError(f"rans_rc stream: precision {P} outside 10..15 [C1]")
    if lanes not in (1, 2, 4, 8):
        raise FormatError(f"rans_rc stream: lane count {lanes} is not 1, 2, 4 or 8 [C1]")
    if lo > hi:
        raise FormatError(f"rans_rc stream: alphabet lo {lo} > hi {hi} [C1]")
    if cols == 0 or count % cols:
        raise FormatError(f"rans_rc stream: row length {cols} does not divide the {count} symbols [C1]")
    rows = count // cols
    for name, v, cap in (("row classes", R, min(rows, MAX_CLASSES)), ("column classes", C, min(cols, MAX_CLASSES)),
                         ("tables", T, min(R * C, MAX_CLASSES))):
        if not 1 <= v <= max(cap, 1):
            raise FormatError(f"rans_rc stream: {v} {name}, allowed 1..{max(cap, 1)} [C1]")
    W = hi - lo + 1
    pos = HEADER.size
    if pos + sum(lens) > len(mv):
        raise FormatError(f"rans_rc stream: side streams need {sum(lens)} bytes, {len(mv) - pos} remain [C2]")
    arrays = []
    for name, n, length in (("row_class", rows, lens[0]), ("col_class", cols, lens[1]),
                            ("table_map", R * C, lens[2]), ("table codes", T * W, lens[3])):
        try:
            arrays.append(_C.rans_decode(mv[pos:pos + length], n))
        except ValueError as e:
            raise FormatError(f"rans_rc stream: {name}: {e}") from None
        pos += length
    row_class, col_class, table_map, code_bytes = arrays
    for name, a, lim in (("row class", row_class, R), ("column class", col_class, C), ("table index", table_map, T)):
        if a.size and int(a.max()) >= lim:
            raise FormatError(f"rans_rc stream: {name} {int(a.max())} out of range (< {lim}) [C2]")
    if code_bytes.size and int(code_bytes.max()) > 8 * P + 1:
        raise FormatError("rans_rc stream: table code byte out of range [C2]")
    codes = _bytes_to_codes(code_bytes.reshape(T, W), P)
    return Model(P, lanes, lo, hi, cols, row_class, col_class, table_map, R, C, codes), mv[pos:]


def decode(data: bytes, count: int) -> np.ndarray:
    """uint8 symbols u = s + 128 (count of them); FormatError on anything malformed."""
    if count > (1 << 30):
        raise FormatError(f"rans_rc stream: count {count} exceeds 2^30 [C1]")
    m, payload = parse(data, count)
    try:
        freqs = m.freqs()
        return _C.rans_ctx_decode(payload, count, m.cols, m.row_class, m.col_class, m.table_map, m.C, freqs,
                                  m.P, m.lanes)
    except ValueError as e:
        raise FormatError(f"rans_rc stream: {e}") from None


# ----------------------------------------------------------------------------- fitting


def _quantile_classes(v: np.ndarray, k: int) -> np.ndarray:
    if k <= 1:
        return np.zeros(v.size, np.int64)
    return np.searchsorted(np.quantile(v, np.linspace(0, 1, k + 1)[1:-1]), v, side="right").clip(0, k - 1)


class _Fit:
    """Alternating co-clustering of one tensor's symbols (values 0..W-1, shape rows x cols)."""

    def __init__(self, q: np.ndarray, W: int):
        self.q, self.W = q, W
        self.rows, self.cols = q.shape
        mag = np.abs(q.astype(np.float64) - q.mean())
        self.row_mag, self.col_mag = mag.mean(1), mag.mean(0)

    def cell_counts(self, rc, cc, R, C) -> np.ndarray:
        key = (rc * (C * self.W))[:, None] + (cc * self.W)[None, :] + self.q
        return np.bincount(key.ravel(), minlength=R * C * self.W).reshape(R * C, self.W).astype(np.float64)

    def run(self, R, C, rc=None, cc=None, iters=6):
        rc = _quantile_classes(self.row_mag, R) if rc is None else rc
        cc = _quantile_classes(self.col_mag, C) if cc is None else cc
        W, q = self.W, self.q
        # key bases that stay fixed while the other side's classes move
        row_base = np.arange(self.rows)[:, None] * (C * W) + q if R > 1 else None
        col_base = np.arange(self.cols)[None, :] * (R * W) + q if C > 1 else None
        for _ in range(iters):
            moved = False
            if R > 1:
                T = self.cell_counts(rc, cc, R, C) + _SMOOTH
                lp = np.log2(T / T.sum(1, keepdims=True)).reshape(R, C * W)
                # per row: histogram over (column class, symbol), then cost against every row class
                key = row_base + (cc * W)[None, :]
                h = np.bincount(key.ravel(), minlength=self.rows * C * W).reshape(self.rows, C * W)
                new = (h @ -lp.T).argmin(1)
                moved |= bool((new != rc).any())
                rc = new
            if C > 1:
                T = self.cell_counts(rc, cc, R, C) + _SMOOTH
                lp = np.log2(T / T.sum(1, keepdims=True)).reshape(R, C, W).transpose(1, 0, 2).reshape(C, R * W)
                key = col_base + (rc * W)[:, None]
                h = np.bincount(key.ravel(), minlength=self.cols * R * W).reshape(self.cols, R * W)
                new = (h @ -lp.T).argmin(1)
                moved |= bool((new != cc).any())
                cc = new
            if not moved:
                break
        return rc, cc


def _split(classes: np.ndarray, k: int, mag: np.ndarray, k2: int) -> np.ndarray:
    """Warm start for k2 = 2k classes: each class split at its median magnitude."""
    if k2 == k:
        return classes
    out = classes * 2
    for c in range(k):
        sel = classes == c
        if sel.any():
            out[sel] += mag[sel] > np.median(mag[sel])
    return out


def _model_for(q: np.ndarray, lo: int, hi: int, rc, cc, R, C, P, rd: bool = True) -> tuple[Model, np.ndarray]:
    W = hi - lo + 1
    key = (rc[:, None] * C + cc[None, :]) * W + q
    counts = np.bincount(key.ravel(), minlength=R * C * W).reshape(R * C, W)
    table_map, tables = merge_cells(counts)
    codes = rd_codes(tables, P) if rd else quantize_codes(tables, P)
    m = Model(P, 8, lo, hi, q.shape[1], rc.astype(np.uint8), cc.astype(np.uint8), table_map, R, C, codes)
    return m, tables


def _entropy_bits(c: np.ndarray) -> np.ndarray:
    """n * H(c / n) in bits along the last axis."""
    c = np.asarray(c, np.float64)
    n = c.sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, n * np.log2(np.maximum(n, 1)) - np.where(c > 0, c * np.log2(np.maximum(c, 1)), 0).sum(-1), 0)


ENTRY_BITS = 5.0  # what storing one present table entry costs, about (measured: 4-7 bits)


def merge_cells(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Share tables between cells whose symbol statistics are alike: (map[cells], table counts).

    Greedily merges the pair of tables whose union codes worst by the fewest bits (the entropy
    increase), while that increase is below what the dropped table would cost to store
    (ENTRY_BITS per present entry). Empty cells point at table 0; they code no symbol.
    """
    cells = counts.shape[0]
    used = np.flatnonzero(counts.sum(1) > 0)
    groups = [[int(i)] for i in used]
    tab = counts[used].astype(np.float64)
    if len(groups) > 1:
        h = _entropy_bits(tab)
        # pairwise union costs, a block of rows at a time (T x T x W floats at once could be 130 MB)
        merged = np.empty((len(groups), len(groups)))
        step = max(1, (1 << 21) // max(1, tab.size))
        for a0 in range(0, len(groups), step):
            blk = tab[a0:a0 + step]
            merged[a0:a0 + step] = _entropy_bits(blk[:, None, :] + tab[None, :, :]) - h[a0:a0 + step, None] - h[None, :]
        present = (tab > 0).sum(1)
        np.fill_diagonal(merged, np.inf)
        alive = np.ones(len(groups), bool)
        while alive.sum() > 1:
            gain = ENTRY_BITS * np.minimum(present[:, None], present[None, :]) - merged
            gain[~alive] = -np.inf
            gain[:, ~alive] = -np.inf
            a, b = np.unravel_index(int(np.argmax(gain)), gain.shape)
            if not gain[a, b] > 0:
                break
            tab[a] += tab[b]
            groups[a] += groups[b]
            alive[b] = False
            present[a] = int((tab[a] > 0).sum())
            h[a] = _entropy_bits(tab[a])
            row = _entropy_bits(tab[a][None, :] + tab) - h[a] - h
            row[a] = np.inf
            merged[a, :] = row
            merged[:, a] = row
        keep = np.flatnonzero(alive)
        groups = [groups[k] for k in keep]
        tab = tab[keep]
    table_map = np.zeros(cells, np.uint8)
    for t, g in enumerate(groups):
        table_map[g] = t
    return table_map, tab


def _size(m: Model, counts: np.ndarray) -> float:
    """Exact side-stream bytes + the payload's ideal size under the quantized tables."""
    f = m.freqs().reshape(m.T, 256)[:, m.lo:m.hi + 1].astype(np.float64)
    with np.errstate(divide="ignore"):
        bits = np.where(counts > 0, counts * (m.P - np.log2(np.maximum(f, 1))), 0.0).sum()
    side = sum(len(_side(a)) for a in (m.row_class, m.col_class, m.table_map, _codes_to_bytes(m.codes)))
    return HEADER.size + side + bits / 8 + 8 * m.lanes


def fit(q: np.ndarray, P: int = PRECISION) -> Model:
    """Greedy search over (R, C): each round tries 2R, 2C and both from the best model so far,
    warm-started, while the stream shrinks; returns the smallest model measured."""
    lo, hi = int(q.min()), int(q.max())
    qq = (q - lo).astype(np.int64)
    fitter = _Fit(qq, hi - lo + 1)
    rows, cols = q.shape
    best = None

    def consider(R, C, rc=None, cc=None):
        nonlocal best
        rc, cc = fitter.run(R, C, rc, cc, iters=4 if rc is not None else 6)
        m, counts = _model_for(qq, lo, hi, rc, cc, R, C, P)
        size = _size(m, counts)
        if best is None or size < best[0]:
            best = (size, m, rc, cc, R, C)
            return True
        return False

    consider(1, 1)
    R = C = 1
    while True:  # each round: the best of doubling R, C or both, while the stream shrinks
        before, _, brc, bcc, bR, bC = best  # every candidate of the round starts from this model
        step = None
        for dr, dc in ((2, 1), (1, 2), (2, 2)):
            nR, nC = R * dr, C * dc
            if nR > min(rows, MAX_CLASSES) or nC > min(cols, MAX_CLASSES) or nR * nC > MAX_CLASSES:
                continue
            if max(rows * nC, cols * nR) * fitter.W > MAX_FIT_CELLS:
                continue  # the fitter's per-row / per-column histograms would not fit in memory
            if consider(nR, nC, _split(brc, bR, fitter.row_mag, nR), _split(bcc, bC, fitter.col_mag, nC)):
                step = (nR, nC)
        if step is None or best[0] >= before:
            break
        R, C = step
    m = best[1]
    m.lanes = _choose_lanes(best[0])
    return m


def encode(q2d: np.ndarray) -> bytes:
    """Encode a rows x cols array of uint8 symbols (u = s + 128) as one rans_rc stream."""
    q = np.ascontiguousarray(q2d, np.uint8)
    if q.ndim != 2 or q.size == 0:
        raise ValueError("rans_rc codes a non-empty 2-D symbol array")
    m = fit(q)
    freqs = m.freqs()
    payload = _C.rans_ctx_encode(q.reshape(-1), m.cols, m.row_class, m.col_class, m.table_map, m.C, freqs, m.P,
                                 m.lanes)
    return serialize(m, payload)

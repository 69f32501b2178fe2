"""codec.byte_model: the planner's estimate of what the artifact writer stores for a candidate."""
import numpy as np
import pytest
import torch

from golfpack.codec import byte_model as bm
from golfpack.codec.coders import StreamType, best_encoding


def writer_bytes(q: np.ndarray) -> int:
    """What the artifact writer stores for these int8 symbols (every coder, the smallest)."""
    return len(best_encoding(q.reshape(-1), StreamType("int", q.size, 8, row_len=q.shape[1]))[2])


def structured(seed: int, rows: int = 256, cols: int = 384, bits: int = 6, lattice: bool = False) -> np.ndarray:
    """Laplace symbols with per-row and per-column scales, optionally every third row on a
    sparse lattice (multiples of 4, as a requantized int8 checkpoint's rows are). Tensors of
    real size (~10^5 symbols): on much smaller ones the tables are a larger share of the stream
    and the estimate's plainer table codes (quantize_codes, not the encoder's rd_codes) show."""
    rng = np.random.default_rng(seed)
    lim = (1 << (bits - 1)) - 1
    scale = np.exp(rng.normal(0, 0.4, (rows, 1))) * np.geomspace(0.5, 2.0, cols)[None, :] * lim / 6
    q = np.clip(np.rint(rng.laplace(size=(rows, cols)) * scale), -lim, lim)
    if lattice:
        q[::3] = np.clip(4 * np.rint(q[::3] / 4), -lim, lim)
    return q.astype(np.int8)


@pytest.mark.parametrize("seed, bits, lattice", [(0, 6, False), (1, 5, True), (2, 8, False), (3, 4, True)])
def test_estimate_is_close_to_what_the_writer_stores(seed, bits, lattice):
    q = structured(seed, bits=bits, lattice=lattice)
    real = writer_bytes(q)
    quick = bm.symbol_bytes(q)
    anchored = bm.symbol_bytes(q, bm.fit_classes(q))
    # the quick (quantile-class) model never prices below what a real fit reaches by much, and the
    # anchored one (the writer's own classes) is within a fraction of a percent
    assert abs(anchored / real - 1) < 0.005, (anchored, real)
    assert -0.005 < quick / real - 1 < 0.05, (quick, real)


def test_classes_of_another_candidate_price_this_one():
    # the classes of the int6 candidate price the int5 and int7 candidates of the same weights
    rng = np.random.default_rng(7)
    w = rng.laplace(size=(256, 384)) * np.exp(rng.normal(0, 0.5, (256, 1))) * np.geomspace(0.3, 3, 384)[None, :]
    cands = {}
    for bits in (5, 6, 7):
        lim = (1 << (bits - 1)) - 1
        s = np.abs(w).max(1, keepdims=True) / lim
        cands[bits] = np.clip(np.rint(w / s), -lim, lim).astype(np.int8)
    cl = bm.fit_classes(cands[6])
    for bits, q in cands.items():
        real = writer_bytes(q)
        assert abs(bm.symbol_bytes(q, cl) / real - 1) < 0.005, bits


def test_scales_are_priced_exactly_and_inputs_are_checked():
    rng = np.random.default_rng(3)
    for dtype, kind in ((np.float16, "float16"), (np.float32, "float32")):
        s = (np.exp(rng.normal(-4, 0.3, 300))).astype(dtype)
        assert bm.scale_bytes(s) == len(best_encoding(s, StreamType(kind, s.size))[2])
        assert bm.scale_bytes(torch.from_numpy(s)) == bm.scale_bytes(s)
    with pytest.raises(ValueError, match="float16 or float32"):
        bm.scale_bytes(np.ones(4, np.float64))
    q = structured(4)
    assert bm.tensor_bytes(q, s) == bm.symbol_bytes(q) + bm.scale_bytes(s)
    assert bm.symbol_bytes(np.zeros((0, 5), np.int8)) == 0 and bm.scale_bytes(np.zeros(0, np.float16)) == 0
    with pytest.raises(ValueError, match="classes are for a 256 x 384 tensor"):
        bm.symbol_bytes(q[:50], bm.fit_classes(q))


def test_degenerate_tensors():
    # one value, one row, a 1-D tensor: order-0 / raw, which the writer would pick too
    for q in (np.zeros((20, 30), np.int8), np.full((1, 500), 3, np.int8), structured(5)[0]):
        est = bm.symbol_bytes(q)
        real = len(best_encoding(q.reshape(-1), StreamType("int", q.size, 8, row_len=q.shape[-1]))[2])
        assert est >= real and est <= real * 1.05 + 16, (q.shape, est, real)

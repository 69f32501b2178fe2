"""LQER low-rank corrections (codec/lqer.py) and magnitude pruning of symbols (codec/prune.py)."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from golfpack.checkpoint import Checkpoint
from golfpack.codec.candidates import Candidate, Choice
from golfpack.codec.container import build_artifact, parse_artifact
from golfpack.codec.encode import encode_plan
from golfpack.codec.lqer import LowRank, fit_lowrank, lqer, quantize_lowrank
from golfpack.codec.planner import Item, _tensor_plan
from golfpack.codec.prune import prune_symbols, prune_to_bytes, symbol_bytes
from golfpack.codec.quant import ClipSpec, quantize_rtn
from golfpack.errors import GolfpackError


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _err(n=12, k=9, seed=0):
    return torch.randn(n, k, generator=_gen(seed))


def _stats(n, k, seed=1, rank_deficient=False):
    g = _gen(seed)
    X = torch.randn(k if not rank_deficient else k // 2, k, generator=g, dtype=torch.float64)
    X = X * torch.linspace(0.2, 3.0, k, dtype=torch.float64)  # unequal input scales: weighting matters
    H = X.T @ X / X.shape[0]
    G = torch.rand(n, generator=g, dtype=torch.float64) * 4 + 0.05
    return H, G


def _werr(E: torch.Tensor, H=None, G=None) -> float:
    """sum_i G_i (E H E^T)_ii: the K-FAC loss proxy LQER minimizes (plain ||E||_F^2 without H, G)."""
    E = E.to(torch.float64)
    quad = ((E @ H) * E).sum(1) if H is not None else (E * E).sum(1)
    return float((quad * (G if G is not None else 1.0)).sum())


# ----------------------------------------------------------------------------- fit_lowrank


@pytest.mark.parametrize("shape", [(12, 9), (9, 12), (1, 7), (6, 6)])
def test_without_statistics_it_is_the_truncated_svd(shape):
    E = _err(*shape)
    S = np.linalg.svd(E.double().numpy(), compute_uv=False)
    for r in range(1, min(shape) + 1):
        A, B = fit_lowrank(E, r)
        assert A.shape == (shape[0], r) and B.shape == (r, shape[1]) and A.dtype == B.dtype == torch.float32
        # Eckart-Young: the residual is exactly the discarded singular values
        assert _werr(E - A @ B) == pytest.approx(float((S[r:] ** 2).sum()), rel=1e-4, abs=1e-9)
        # the singular values are split evenly between the factors (same scale for per-row quantization)
        assert torch.allclose(A.norm(dim=0), B.norm(dim=1), rtol=1e-4)


def test_with_statistics_it_is_the_weighted_optimum():
    n, k = 10, 8
    E = _err(n, k, seed=2)
    H, G = _stats(n, k)
    L = torch.linalg.cholesky(H)
    D = torch.diag(G.sqrt())
    S = torch.linalg.svdvals(D @ E.double() @ L)
    for r in range(1, 8):
        A, B = fit_lowrank(E, r, H, G)
        Ap, Bp = fit_lowrank(E, r)
        w = _werr(E - A @ B, H, G)
        # the optimum of sum_i G_i (E' H E'^T)_ii over rank-r corrections is the tail of svd(D E L)
        assert w == pytest.approx(float((S[r:] ** 2).sum()), rel=1e-4)
        assert w <= _werr(E - Ap @ Bp, H, G) * (1 + 1e-6)
        # and no nearby rank-r factorisation does better
        for seed in range(3):
            dA = torch.randn(A.shape, generator=_gen(seed)) * 1e-2 * float(A.abs().mean())
            assert _werr(E - (A + dA) @ B, H, G) >= w * (1 - 1e-6)
    # H alone (no G): every output row weighs the same
    A, B = fit_lowrank(E, 3, H)
    S = torch.linalg.svdvals(E.double() @ L)
    assert _werr(E - A @ B, H) == pytest.approx(float((S[3:] ** 2).sum()), rel=1e-4)


def test_a_singular_hessian_and_rows_without_gradient_are_handled():
    n, k = 8, 10
    E = _err(n, k, seed=3)
    H, G = _stats(n, k, rank_deficient=True)  # rank k/2: Cholesky needs the damping
    G[2] = 0.0  # a row without gradient signal keeps a small weight (no division by zero)
    A, B = fit_lowrank(E, 3, H, G)
    assert torch.isfinite(A).all() and torch.isfinite(B).all()
    Ap, Bp = fit_lowrank(E, 3)
    assert _werr(E - A @ B, H, G) <= _werr(E - Ap @ Bp, H, G) * (1 + 1e-4)


def test_the_error_falls_with_the_rank_and_ranks_share_one_svd():
    n, k = 10, 8
    E = _err(n, k, seed=4)
    H, G = _stats(n, k, seed=5)
    for stats in ((None, None), (H, G)):
        errs = [_werr(E, *stats)]
        Am, Bm = fit_lowrank(E, 8, *stats)
        for r in range(1, 9):
            A, B = fit_lowrank(E, r, *stats)
            errs.append(_werr(E - A @ B, *stats))
            # the rank-r factors are the leading r of the largest rank's (what candidates.add_lqer relies on)
            assert torch.allclose(A, Am[:, :r], rtol=1e-5, atol=1e-6) and torch.allclose(B, Bm[:r], rtol=1e-5, atol=1e-6)
        assert all(b <= a * (1 + 1e-9) + 1e-12 for a, b in zip(errs, errs[1:]))
        assert errs[-1] <= 1e-6 * errs[0]  # full rank reproduces the error


@pytest.mark.parametrize("err, rank, message", [
    (torch.zeros(4, 5), 0, r"rank must be in 1..4 for shape \[4, 5\], got 0"),
    (torch.zeros(4, 5), 5, "rank must be in 1..4"),
    (torch.zeros(2, 3, 4), 1, "needs a 2-D error matrix"),
    (torch.zeros(0, 5), 1, "rank must be in 1..0"),
])
def test_fit_lowrank_errors(err, rank, message):
    with pytest.raises(GolfpackError, match=message):
        fit_lowrank(err, rank)


# ----------------------------------------------------------------------------- quantized factors


def test_quantized_factors_are_per_row_rtn_of_the_fit():
    E = _err(16, 12, seed=6)
    A, B = fit_lowrank(E, 4)
    lr = quantize_lowrank(A, B, 5)
    assert isinstance(lr, LowRank) and lr.rank == 4 and lr.bits == 5 and lr.n_symbols == 4 * (16 + 12)
    want_a = quantize_rtn(A.t().contiguous(), 5, ClipSpec("mse"))
    assert torch.equal(lr.a_t.symbols, want_a.symbols) and torch.equal(lr.a_t.scales, want_a.scales)
    fa, fb = lr.factors()
    assert fa.shape == (16, 4) and fb.shape == (4, 12)
    assert torch.equal(lr.product(), fa @ fb)
    # 5-bit factors lose little of what the exact rank-4 term removes (measured: 60.85 vs 60.53 of 185.4)
    assert _werr(E - A @ B) <= _werr(E - lr.product()) < 1.02 * _werr(E - A @ B)


@pytest.mark.parametrize("bits, lr_bits, rank", [(3, 6, 2), (2, 8, 5), (4, 2, 1)])
def test_stored_factors_decode_to_exactly_what_the_candidate_was_scored_with(bits, lr_bits, rank):
    """A candidate with an LQER term, encoded the way the planner encodes it (_tensor_plan), decodes to
    LowRank.factors() and to q.dequantize() + lowrank.product(), bit for bit: the predicted dloss is
    the one of the tensor the decoder builds."""
    w = torch.randn(24, 20, generator=_gen(7)) * 0.1
    q = quantize_rtn(w, bits, ClipSpec("mse"))
    lr = lqer(w, q.dequantize(), rank, lr_bits)
    cand = Candidate(Choice("rtn", bits, "mse", 1.0, 0.0, rank, lr_bits), 0.0, 0.0, 0, q, lr)
    ck = Checkpoint(floats={"w": w}, order=["w"])
    plan, meta = _tensor_plan(ck, Item("w", (24, 20), "float32", [cand]), cand)
    assert plan[3] == {"kind": "int_rowscale", "bits": bits, "lowrank": {"rank": rank, "bits": lr_bits}}
    art = parse_artifact(build_artifact(encode_plan([plan], jobs=1, metas=[meta])))
    e = art.tensors["w"]
    fa, fb = e.lowrank()
    la, lb = lr.factors()
    assert torch.equal(fa, la) and torch.equal(fb, lb)
    assert torch.equal(e.dequantize(), q.dequantize() + lr.product())
    assert e.meta["choice"] == {"method": "rtn", "bits": bits, "clip": "mse", "rank": rank, "lr_bits": lr_bits}
    # the correction helps: the decoded tensor is closer to w than the plain grid
    assert _werr(w - e.dequantize()) < _werr(w - q.dequantize())


# ----------------------------------------------------------------------------- pruning


def _brute_prune(sym: torch.Tensor, w: torch.Tensor, fraction: float) -> torch.Tensor:
    """Zero round(fraction * numel) nonzero symbols, smallest |w| first, ties by position."""
    out = sym.clone().reshape(-1)
    n = int(round(fraction * sym.numel()))
    mag = w.float().abs().reshape(-1).tolist()
    nz = [i for i in range(out.numel()) if int(out[i]) != 0]
    for i in sorted(nz, key=lambda i: (mag[i], i))[:n]:
        out[i] = 0
    return out.reshape(sym.shape)


@given(st.integers(0, 2**32 - 1), st.integers(0, 6), st.integers(0, 9), st.floats(0, 1), st.booleans())
def test_prune_symbols_zeroes_the_smallest_nonzero_weights(seed, rows, cols, fraction, ties):
    rng = np.random.default_rng(seed)
    sym = torch.from_numpy(rng.integers(-3, 4, (rows, cols)).astype(np.int8))
    w = torch.from_numpy(rng.standard_normal((rows, cols)).astype(np.float32))
    if ties:  # many equal magnitudes (of both signs): position must break the ties
        w = torch.from_numpy(rng.choice([-0.5, 0.25, 0.5], (rows, cols)).astype(np.float32))
    sym0, w0 = sym.clone(), w.clone()
    out = prune_symbols(sym, w, fraction)
    assert torch.equal(sym, sym0) and torch.equal(w, w0)  # inputs untouched
    assert torch.equal(out, _brute_prune(sym, w, fraction))
    assert torch.equal(out, prune_symbols(sym, w, fraction))  # deterministic
    n = int(round(fraction * sym.numel()))
    nonzero = int((sym != 0).sum())
    assert int((out != 0).sum()) == max(0, nonzero - n)
    kept = out != 0
    assert torch.equal(out[kept], sym[kept])  # survivors keep their symbol; zeros stay zero
    assert bool((out[sym == 0] == 0).all())


def test_prune_fraction_ends():
    g = _gen(8)
    sym = torch.randint(-7, 8, (10, 30), generator=g, dtype=torch.int8)
    w = torch.randn(10, 30, generator=g)
    assert torch.equal(prune_symbols(sym, w, 0.0), sym)
    assert int(prune_symbols(sym, w, 1.0).abs().sum()) == 0
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(GolfpackError, match="prune fraction must be in"):
            prune_symbols(sym, w, bad)
    with pytest.raises(GolfpackError, match="differ in shape"):
        prune_symbols(sym, w.t(), 0.5)


def _grid(seed=9, n=32, k=64, bits=4):
    w = torch.randn(n, k, generator=_gen(seed))
    return quantize_rtn(w, bits, ClipSpec("absmax")).symbols, w


def test_prune_to_bytes_reaches_the_target_with_a_near_minimal_fraction():
    sym, w = _grid()
    full = symbol_bytes(sym)
    zero = symbol_bytes(torch.zeros_like(sym))
    for target in (int(full * 0.9), int(full * 0.7), int(full * 0.5), zero + 5):
        out, frac = prune_to_bytes(sym, w, target)
        assert symbol_bytes(out) <= target
        assert torch.equal(out, prune_symbols(sym, w, frac))
        # minimal-ish: pruning one percent less of the tensor no longer fits
        assert symbol_bytes(prune_symbols(sym, w, max(0.0, frac - 0.01))) > target, (target, frac)
    out, frac = prune_to_bytes(sym, w, full)  # already fits: nothing pruned
    assert frac == 0.0 and torch.equal(out, sym) and out is not sym


def test_prune_to_bytes_refuses_an_impossible_target():
    sym, w = _grid()
    zero = symbol_bytes(torch.zeros_like(sym))
    with pytest.raises(GolfpackError, match=f"cannot reach {zero - 1} bytes: all-zero symbols need more"):
        prune_to_bytes(sym, w, zero - 1)
    out, frac = prune_to_bytes(sym, w, zero)  # exactly the all-zero size is reachable
    assert symbol_bytes(out) <= zero


def test_symbol_bytes_is_the_rans_stream_the_container_would_store():
    from golfpack.codec.coders import StreamType, decode_stream, encode_stream

    sym, _ = _grid()
    q = sym.reshape(-1).numpy()
    data = encode_stream(q, StreamType("int", q.size, 8), "rans")
    assert symbol_bytes(sym) == len(data)
    assert np.array_equal(decode_stream(data, StreamType("int", q.size, 8), "rans"), q)

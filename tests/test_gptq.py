"""golfpack.codec.gptq: blocked Cholesky GPTQ with fixed scales.

Checks: H = I (and any diagonal H, under act-order too) gives exactly RTN;
parity with an independent, deliberately naive OBS loop (explicit inverse,
Schur-complement downdate after every column) for several shapes, block sizes,
groups, with and without act-order; block_size does not change the result;
GPTQ beats RTN on hessian_error for correlated inputs at 3..6 bits; dead
columns; non-Hessians give GolfpackError; determinism and no mutation;
static groups keep each column on its original group's scale; config JSON.
"""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from golfpack.codec.gptq import GPTQConfig, gptq_quantize
from golfpack.codec.quant import ClipSpec, clip_thresholds, hessian_error, qmax, quantize_rtn, scales_from_clip
from golfpack.errors import GolfpackError

CLIPS = [ClipSpec("absmax"), ClipSpec("percentile", 99.0), ClipSpec("sdclip", 2.5), ClipSpec("mse", 12)]


def correlated_hessian(k: int, seed: int, tokens: int = 512, mix: float = 0.4) -> torch.Tensor:
    """mean(x x^T) over random correlated inputs x = z A (A = I + mix * noise), float32."""
    g = torch.Generator().manual_seed(seed)
    a = torch.eye(k) + mix * torch.randn(k, k, generator=g) / k**0.5
    x = torch.randn(tokens, k, generator=g) @ a
    x = x * (0.2 + torch.rand(k, generator=g) * 2)  # uneven column energies: act-order matters
    return x.T @ x / tokens


def weights(n: int, k: int, seed: int) -> torch.Tensor:
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed + 1000)) * 0.05


def expand_cols(scales: torch.Tensor, k: int, group) -> torch.Tensor:
    s = scales.double()
    if group is None:
        return s[:, None].expand(-1, k).clone()
    return torch.stack([s[:, j // group] for j in range(k)], dim=1)


def naive_gptq(w, H, bits, scales, group, damp=0.01, act_order=False) -> torch.Tensor:
    """Unblocked OBS column loop with an explicit inverse downdated by the Schur complement.

    Independent of the module on purpose: no Cholesky, no blocks, no lazy updates.
    """
    q = qmax(bits)
    k = w.shape[1]
    W = w.double().clone()
    Hm = H.double().clone()
    S = expand_cols(scales, k, group)
    dead = torch.diagonal(Hm) == 0
    Hm[dead, dead] = 1.0
    W[:, dead] = 0.0
    order = torch.argsort(torch.diagonal(Hm), descending=True, stable=True) if act_order else torch.arange(k)
    W, S, Hm = W[:, order], S[:, order], Hm[order][:, order]
    Hm += damp * torch.diagonal(Hm).mean() * torch.eye(k, dtype=torch.float64)
    Hinv = torch.linalg.inv(Hm)
    Q = torch.zeros_like(W)
    for j in range(k):
        qj = torch.clamp(torch.round(W[:, j] / S[:, j]), -q, q)
        Q[:, j] = qj
        err = (W[:, j] - qj * S[:, j]) / Hinv[j, j]
        W[:, j + 1 :] -= torch.outer(err, Hinv[j, j + 1 :])
        # Inverse Hessian of the remaining columns: Schur complement after removing column j.
        Hinv[j + 1 :, j + 1 :] -= torch.outer(Hinv[j + 1 :, j], Hinv[j, j + 1 :]) / Hinv[j, j]
    out = torch.empty_like(Q)
    out[:, order] = Q
    return out.to(torch.int8)


def fixed_scales(w, H, bits, clip, group):
    c = clip_thresholds(w, bits, clip, group, col_weight=torch.diagonal(H).double())
    return scales_from_clip(c, bits)


# ----------------------------------------------------------------------------------------
# Reduction to RTN when there is nothing to compensate
# ----------------------------------------------------------------------------------------
@settings(max_examples=60)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(0, 8),
    k=st.integers(0, 48),
    bits=st.integers(2, 8),
    clip=st.sampled_from(CLIPS),
    group=st.sampled_from([None, 1, 5, 16, 1000]),
    bs=st.integers(1, 20),
)
def test_identity_hessian_is_rtn(seed, n, k, bits, clip, group, bs):
    w = weights(n, k, seed)
    r = quantize_rtn(w, bits, clip, group, col_weight=torch.ones(k))
    g = gptq_quantize(w, torch.eye(k), bits, clip, group, GPTQConfig(block_size=bs, act_order=False))
    assert torch.equal(g.symbols, r.symbols) and torch.equal(g.scales, r.scales)
    assert g.bits == bits and g.group == group


@settings(max_examples=40)
@given(seed=st.integers(0, 2**31 - 1), bits=st.integers(2, 8), group=st.sampled_from([None, 4, 16]))
def test_diagonal_hessian_under_act_order_is_rtn(seed, bits, group):
    """No off-diagonal terms, no error feedback: act-order only permutes and un-permutes,
    so the symbols equal (col_weight = diag H) RTN exactly, each on its original group's scale."""
    k = 37
    w = weights(6, k, seed)
    d = torch.rand(k, generator=torch.Generator().manual_seed(seed)) * 5 + 0.1
    for clip in (ClipSpec("absmax"), ClipSpec("mse", 8)):
        r = quantize_rtn(w, bits, clip, group, col_weight=d)
        g = gptq_quantize(w, torch.diag(d), bits, clip, group, GPTQConfig(block_size=5, act_order=True))
        assert torch.equal(g.symbols, r.symbols) and torch.equal(g.scales, r.scales)


# ----------------------------------------------------------------------------------------
# Parity with the naive reference
# ----------------------------------------------------------------------------------------
PARITY_CASES = [
    # n, k, bits, block_size, act_order, group, clip
    (16, 64, 4, 16, False, None, ClipSpec("absmax")),
    (16, 64, 4, 16, True, None, ClipSpec("absmax")),
    (8, 100, 3, 7, True, None, ClipSpec("mse", 12)),
    (8, 100, 2, 33, False, None, ClipSpec("percentile", 99.5)),
    (12, 96, 6, 32, True, 32, ClipSpec("sdclip", 3.0)),
    (12, 90, 5, 25, True, 32, ClipSpec("absmax")),  # partial last group, blocks straddle groups
    (5, 130, 8, 64, True, 16, ClipSpec("mse", 24)),
    (20, 48, 4, 1, True, None, ClipSpec("absmax")),
]


@pytest.mark.parametrize("n,k,bits,bs,act_order,group,clip", PARITY_CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_parity_with_naive_obs_loop(n, k, bits, bs, act_order, group, clip, seed):
    H = correlated_hessian(k, seed)
    w = weights(n, k, seed)
    got = gptq_quantize(w, H, bits, clip, group, GPTQConfig(damp=0.01, block_size=bs, act_order=act_order))
    scales = fixed_scales(w, H, bits, clip, group)
    assert torch.equal(got.scales, scales)
    want = naive_gptq(w, H, bits, scales, group, damp=0.01, act_order=act_order)
    diff = (got.symbols.int() - want.int()).abs()
    assert int(diff.max()) <= 1
    assert float((diff > 0).float().mean()) < 0.005
    assert not torch.equal(got.symbols, quantize_rtn(w, bits, clip, group, col_weight=torch.diagonal(H)).symbols)


def test_block_size_does_not_matter():
    k = 150
    H = correlated_hessian(k, 3)
    w = weights(10, k, 3)
    ref = gptq_quantize(w, H, 4, cfg=GPTQConfig(block_size=k))
    for bs in (1, 7, 64, 128, 1000):
        got = gptq_quantize(w, H, 4, cfg=GPTQConfig(block_size=bs))
        diff = (got.symbols.int() - ref.symbols.int()).abs()
        assert int(diff.max()) <= 1 and float((diff > 0).float().mean()) < 0.005


# ----------------------------------------------------------------------------------------
# GPTQ is better than RTN on the proxy it minimizes
# ----------------------------------------------------------------------------------------
# Measured on these inputs (5 seeds x bits 3..6): GPTQ / RTN hessian_error is 0.38-0.43 with
# the absmax clip and 0.42-0.49 with mse (RTN there is already diag(H)-weighted). Asserted with
# margin: every seed < 0.75 and the mean < 0.6.
@pytest.mark.parametrize("bits", [3, 4, 5, 6])
@pytest.mark.parametrize("clip", [ClipSpec("absmax"), ClipSpec("mse")], ids=str)
def test_gptq_beats_rtn_on_hessian_error(bits, clip):
    ratios = []
    for seed in range(5):
        k = 96
        H = correlated_hessian(k, seed, tokens=1024, mix=1.0)
        w = weights(32, k, seed)
        rtn = quantize_rtn(w, bits, clip, col_weight=torch.diagonal(H))
        gq = gptq_quantize(w, H, bits, clip)
        ratios.append(hessian_error(w, gq.dequantize(), H) / hessian_error(w, rtn.dequantize(), H))
    assert max(ratios) < 0.75, ratios
    assert sum(ratios) / len(ratios) < 0.6, ratios


# ----------------------------------------------------------------------------------------
# Dead columns, bad Hessians
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("act_order", [False, True])
def test_dead_columns_get_symbol_zero(act_order):
    k = 40
    g = torch.Generator().manual_seed(5)
    x = torch.randn(300, k, generator=g)
    dead = [0, 7, 8, 39]
    x[:, dead] = 0  # inputs that never fire
    H = x.T @ x / 300
    w = torch.randn(9, k, generator=g)
    r = gptq_quantize(w, H, 4, group=16, cfg=GPTQConfig(block_size=8, act_order=act_order))
    assert not r.symbols[:, dead].any()
    assert bool(torch.isfinite(r.dequantize()).all()) and bool(torch.isfinite(r.scales.float()).all())
    assert r.symbols[:, [j for j in range(k) if j not in dead]].any()
    # Every column dead: all zeros, no NaN.
    z = gptq_quantize(w, torch.zeros(k, k), 3, ClipSpec("mse"))
    assert not z.symbols.any() and bool(torch.isfinite(z.scales.float()).all())


@pytest.mark.parametrize(
    "H,match",
    [
        (-torch.eye(4), "semidefinite"),
        (torch.diag(torch.tensor([1.0, 2.0, -0.5, 1.0])), "semidefinite"),
        (torch.tensor([[1.0, 1000, 0, 0], [1000, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]), "positive definite"),
        (torch.tensor([[1.0, 2, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]), "symmetric"),
        (torch.full((4, 4), float("nan")), "NaN"),
        (torch.eye(3), r"\[K, K\]"),
        (torch.eye(4, dtype=torch.int64), "float"),
    ],
)
def test_bad_hessian_raises_golfpack_error(H, match):
    w = weights(3, 4, 0)
    with pytest.raises(GolfpackError, match=match):
        gptq_quantize(w, H, 4)


def test_singular_psd_hessian_is_fixed_by_damping():
    """Rank-deficient (fewer tokens than columns) but PSD: damping makes it invertible."""
    g = torch.Generator().manual_seed(6)
    x = torch.randn(10, 32, generator=g)
    H = x.T @ x / 10
    r = gptq_quantize(weights(4, 32, 6), H, 4)
    assert int(r.symbols.abs().max()) <= 7
    # damp = 0 fails the first Cholesky and recovers through the retries.
    r0 = gptq_quantize(weights(4, 32, 6), H, 4, cfg=GPTQConfig(damp=0.0))
    assert int(r0.symbols.abs().max()) <= 7


def test_other_bad_input():
    w = weights(3, 4, 0)
    for call in (
        lambda: gptq_quantize(w, torch.eye(4), 4, cfg=None),
        lambda: gptq_quantize(w.numpy(), torch.eye(4), 4),
        lambda: gptq_quantize(torch.tensor([[float("nan")] * 4]), torch.eye(4), 4),
        lambda: gptq_quantize(w, torch.eye(4), 9),
        lambda: gptq_quantize(w, torch.eye(4), 4, group=0),
        lambda: gptq_quantize(w * 1e7, torch.eye(4), 2),  # fp16 scale overflow
        lambda: GPTQConfig(damp=-1.0),
        lambda: GPTQConfig(damp=float("nan")),
        lambda: GPTQConfig(block_size=0),
        lambda: GPTQConfig(block_size=2.0),
        lambda: GPTQConfig(act_order=1),
        lambda: GPTQConfig.from_json({"damp": 0.1, "blocksize": 3}),
        lambda: GPTQConfig.from_json([0.1]),
    ):
        with pytest.raises(GolfpackError):
            call()


# ----------------------------------------------------------------------------------------
# Determinism, groups, shapes, config
# ----------------------------------------------------------------------------------------
def test_deterministic_and_inputs_untouched():
    k = 70
    H = correlated_hessian(k, 7)
    H[:, 3] = 0
    H[3, :] = 0  # a dead column exercises the in-place fixes on the internal copy
    w = weights(11, k, 7)
    H0, w0 = H.clone(), w.clone()
    a = gptq_quantize(w, H, 5, ClipSpec("mse"), 16, GPTQConfig(block_size=9))
    b = gptq_quantize(w, H, 5, ClipSpec("mse"), 16, GPTQConfig(block_size=9))
    assert torch.equal(a.symbols, b.symbols) and torch.equal(a.scales, b.scales)
    assert torch.equal(H, H0) and torch.equal(w, w0)


@pytest.mark.parametrize("clip", CLIPS, ids=str)
def test_groups_keep_original_group_scales(clip):
    k, group, bits = 100, 32, 4
    H = correlated_hessian(k, 8)
    w = weights(7, k, 8)
    w[:, 64:96] *= 20  # one group much larger than the others: a wrong scale would show
    r = gptq_quantize(w, H, bits, clip, group, GPTQConfig(block_size=24, act_order=True))
    assert r.scales.shape == (7, 4) and r.symbols.dtype == torch.int8
    assert int(r.symbols.abs().max()) <= qmax(bits)
    assert torch.equal(r.scales, fixed_scales(w, H, bits, clip, group))
    deq = r.dequantize()
    for gi in range(4):
        cols = slice(gi * group, min(k, (gi + 1) * group))
        assert torch.equal(deq[:, cols], r.symbols[:, cols].float() * r.scales[:, gi : gi + 1].float())
    # Still better than grouped RTN on the proxy (measured 0.70-0.75 here, the large group
    # dominating); a column rounded on a wrong group's scale would wreck this.
    rtn = quantize_rtn(w, bits, clip, group, col_weight=torch.diagonal(H))
    assert hessian_error(w, deq, H) < 0.9 * hessian_error(w, rtn.dequantize(), H)


@pytest.mark.parametrize("n,k", [(0, 5), (4, 0), (0, 0)])
@pytest.mark.parametrize("group", [None, 3])
def test_empty_shapes(n, k, group):
    r = gptq_quantize(torch.zeros(n, k), torch.eye(k), 4, group=group)
    assert tuple(r.symbols.shape) == (n, k)
    assert tuple(r.scales.shape) == ((n,) if group is None else (n, -(-k // group)))
    assert tuple(r.dequantize().shape) == (n, k)


def test_float16_weights_and_float32_scales():
    k = 64
    H = correlated_hessian(k, 9)
    w = weights(5, k, 9)
    a = gptq_quantize(w.half(), H.double(), 4, scale_dtype=torch.float32)
    b = gptq_quantize(w.half().float(), H, 4, scale_dtype=torch.float32)
    assert a.scales.dtype == torch.float32
    assert torch.equal(a.symbols, b.symbols)


def test_config_json_round_trip():
    for cfg in (GPTQConfig(), GPTQConfig(damp=0.1, block_size=7, act_order=False), GPTQConfig(damp=0)):
        d = cfg.to_json()
        assert set(d) == {"damp", "block_size", "act_order"}
        assert GPTQConfig.from_json(d) == cfg
    assert GPTQConfig.from_json({}) == GPTQConfig()


def test_wide_matrix():
    """K = 1000 (memory O(K^2) float64, several blocks, partial last block)."""
    k = 1000
    H = correlated_hessian(k, 10, tokens=2048)
    w = weights(8, k, 10)
    r = gptq_quantize(w, H, 4, ClipSpec("mse"), 128)
    rtn = quantize_rtn(w, 4, ClipSpec("mse"), 128, col_weight=torch.diagonal(H))
    assert hessian_error(w, r.dequantize(), H) < 0.8 * hessian_error(w, rtn.dequantize(), H)


def test_prepared_cache_never_serves_a_freed_hessian():
    """GPTQ caches its O(K^3) setup per H object. Python reuses ids (and allocators reuse
    addresses) once a tensor is freed, so a cache keyed by id alone served one Hessian's
    factorization for another; every call here builds a fresh H and must match a cold run."""
    from golfpack.codec import gptq as G

    g = torch.Generator().manual_seed(7)
    w = torch.randn(8, 24, generator=g)
    for i in range(30):
        x = torch.randn(64, 24, generator=g) * torch.linspace(0.1, 3.0, 24)
        H = x.t() @ x / 64
        warm = gptq_quantize(w, H, 4)
        G._PREPARED.clear()
        cold = gptq_quantize(w, H.clone(), 4)
        assert torch.equal(warm.symbols, cold.symbols), i
        del H, x
    # an in-place change of a cached H is seen too
    x = torch.randn(64, 24, generator=g)
    H = x.t() @ x / 64
    before = gptq_quantize(w, H, 3)
    H.mul_(torch.linspace(0.1, 4.0, 24)[:, None] * torch.linspace(0.1, 4.0, 24)[None, :])
    after = gptq_quantize(w, H, 3)
    G._PREPARED.clear()
    assert torch.equal(after.symbols, gptq_quantize(w, H.clone(), 3).symbols)
    assert before.symbols.shape == after.symbols.shape


def test_prepared_cache_checks_the_tensor_object_not_just_its_id():
    """White-box: an entry filed under H's id but holding another tensor (what a recycled id
    looks like) must not be used."""
    from golfpack.codec import gptq as G

    g = torch.Generator().manual_seed(11)
    w = torch.randn(6, 16, generator=g)
    x = torch.randn(48, 16, generator=g)
    H = x.t() @ x / 48
    cfg = GPTQConfig()
    G._PREPARED.clear()
    ref = gptq_quantize(w, H.clone(), 4, cfg=cfg).symbols
    G._PREPARED.clear()
    other = torch.eye(16, dtype=torch.float64)
    poisoned = (other, torch.zeros(16, dtype=torch.bool), None, torch.eye(16, dtype=torch.float64) * 1e-3)
    G._PREPARED[(id(H), 16, cfg.damp, cfg.act_order)] = (other, other._version, poisoned)
    assert torch.equal(gptq_quantize(w, H, 4, cfg=cfg).symbols, ref)
    G._PREPARED.clear()


# ----------------------------------------------------------------------------------------
# Batched jobs: one column loop for several scale sets of the same weight
# ----------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 9), k=st.integers(1, 40), seed=st.integers(0, 10_000), act_order=st.booleans(),
       bs=st.integers(1, 16), njobs=st.integers(1, 5))
def test_batched_jobs_equal_one_call_each(n, k, seed, act_order, bs, njobs):
    from golfpack.codec.gptq import GPTQJob, gptq_quantize_batch

    w = weights(n, k, seed)
    H = correlated_hessian(k, seed)
    cfg = GPTQConfig(block_size=bs, act_order=act_order)
    g = torch.Generator().manual_seed(seed)
    jobs = []
    for j in range(njobs):
        bits = int(torch.randint(2, 9, (1,), generator=g))
        group = [None, 4, 7][j % 3]
        clip = CLIPS[j % len(CLIPS)]
        jobs.append(GPTQJob(bits, fixed_scales(w, H, bits, clip, group), group))
    got = gptq_quantize_batch(w, H, jobs, cfg)
    # with a tiny per-pass row limit the jobs are split over several passes: same answer
    import golfpack.codec.gptq as G

    old, G.BATCH_ROWS = G.BATCH_ROWS, 1
    try:
        split = gptq_quantize_batch(w, H, jobs, cfg)
    finally:
        G.BATCH_ROWS = old
    for j, a, b in zip(jobs, got, split):
        one = gptq_quantize(w, H, j.bits, group=j.group, cfg=cfg, scales=j.scales)
        assert torch.equal(a.symbols, one.symbols) and torch.equal(b.symbols, one.symbols)
        assert a.bits == j.bits and a.group == j.group and torch.equal(a.scales, j.scales)
        ref = naive_gptq(w, H, j.bits, j.scales, j.group, act_order=act_order)
        assert (a.symbols.int() - ref.int()).abs().max() <= 1  # rounding ties only


def test_batched_jobs_refuse_bad_jobs():
    from golfpack.codec.gptq import GPTQJob, gptq_quantize_batch

    w, H = weights(4, 8, 1), correlated_hessian(8, 1)
    s = fixed_scales(w, H, 4, CLIPS[0], None)
    for bad in ([("4", s)], [GPTQJob(9, s)], [GPTQJob(4, s[:3])], [GPTQJob(4, s, 0)]):
        with pytest.raises(GolfpackError):
            gptq_quantize_batch(w, H, bad)
    assert gptq_quantize_batch(w, H, []) == []


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 12), k=st.integers(1, 70), seed=st.integers(0, 10_000), bs=st.integers(1, 32),
       act_order=st.booleans(), bits=st.integers(2, 8))
def test_native_block_loop_is_bit_identical_to_the_torch_reference(n, k, seed, bs, act_order, bits):
    """golfpack._C.gptq_block_f64 does the reference loop's float64 arithmetic operation for
    operation: symbols are identical, not merely close, with per-row bit widths mixed."""
    import golfpack.codec.gptq as G

    w = weights(n, k, seed)
    H = correlated_hessian(k, seed)
    cfg = GPTQConfig(block_size=bs, act_order=act_order)
    h, dead, perm, U = G._prepared(H, k, cfg)
    W = w.double().clone()
    W[:, dead] = 0
    scales = fixed_scales(w, H, bits, CLIPS[seed % len(CLIPS)], None).double()
    S = scales[:, None].expand(n, k)
    qm = torch.tensor([float(qmax(2 + (bits + i) % 7)) for i in range(n)], dtype=torch.float64)[:, None]
    if perm is not None:
        W, S = W[:, perm], S[:, perm]
    a = G._column_loop(W.clone().contiguous(), S.contiguous(), qm, U, bs, None, None, perm, n, native=True)
    b = G._column_loop(W.clone().contiguous(), S.contiguous(), qm, U, bs, None, None, perm, n, native=False)
    assert torch.equal(a, b)


def test_native_block_loop_refuses_bad_shapes():
    from golfpack import _C
    import numpy as np

    W, S, q, U = np.zeros((3, 4)), np.ones((3, 4)), np.ones(3), np.eye(4)
    for args in ((W, S[:2], q, U), (W, S, q[:2], U), (W, S, q, U[:3]), (W[0], S, q, U)):
        with pytest.raises(ValueError):
            _C.gptq_block_f64(*args)
    qq, ee = _C.gptq_block_f64(W, S, q, U)
    assert qq.shape == (3, 4) and not qq.any() and not ee.any()

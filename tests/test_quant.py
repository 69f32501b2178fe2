"""golfpack.codec.quant: per-row/per-group symmetric RTN with clip search.

Checks: invariants for every bit width x clip method x grouping (symbol range,
shapes incl. empty, positive finite scales, dequantize == symbols * stored
scales, symbols == quantize_with_scales of the stored scales, |error| <= s/2
wherever the weight is inside the clip range, c == 0 exactly on all-zero
rows/groups); mse never loses to absmax on the weighted error it minimizes;
percentile 100 == absmax and percentiles match torch.quantile; extreme rows
(1e-30, 1e4, constants, zeros, subnormals); round trip of already-quantized
tensors; fp16 overflow, NaN and every other bad input give GolfpackError;
ClipSpec text/JSON round trips; determinism and no mutation; hessian_error.
"""
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from golfpack.codec.quant import (
    CLIP_METHODS,
    ClipSpec,
    QuantResult,
    clip_thresholds,
    hessian_error,
    qmax,
    quantize_rtn,
    quantize_with_scales,
    scales_from_clip,
)
from golfpack.errors import GolfpackError

FP16_TINY = 2.0**-14  # smallest positive normal float16
BITS = list(range(2, 9))


# ----------------------------------------------------------------------------------------
# Strategies: matrices are drawn as (seed, shape, row kinds) and built with a torch
# Generator, which is much faster than drawing every element through hypothesis.
# ----------------------------------------------------------------------------------------
ROW_KINDS = ("normal", "normal", "heavy", "zero", "const", "tiny", "big", "sparse", "onehot", "subnormal")


def make_matrix(seed: int, n: int, k: int, kinds: list[str]) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.zeros(n, k)
    for i in range(n):
        kind = kinds[i % len(kinds)]
        x = torch.randn(k, generator=g)
        if kind == "normal":
            w[i] = x * 0.05
        elif kind == "heavy":  # outliers, like real weight rows
            w[i] = x * 0.02 / (torch.rand(k, generator=g) + 0.02)
        elif kind == "const":
            w[i] = -0.37 if seed % 2 else 1.5
        elif kind == "tiny":
            w[i] = x * 1e-30
        elif kind == "big" and k:
            w[i] = (x / x.abs().max().clamp_min(1e-9)) * 1e4
        elif kind == "sparse":
            w[i] = x * (torch.rand(k, generator=g) < 0.1)
        elif kind == "onehot" and k:
            w[i, seed % k] = -3.0
        elif kind == "subnormal":
            w[i] = x * 1e-40
    return w


@st.composite
def matrices(draw, max_n=9, max_k=70):
    n = draw(st.integers(0, max_n))
    k = draw(st.integers(0, max_k))
    kinds = draw(st.lists(st.sampled_from(ROW_KINDS), min_size=1, max_size=4))
    return make_matrix(draw(st.integers(0, 2**31 - 1)), n, k, kinds)


@st.composite
def clip_specs(draw):
    method = draw(st.sampled_from(CLIP_METHODS))
    if method == "absmax" or draw(st.booleans()):
        return ClipSpec(method)
    if method == "percentile":
        return ClipSpec(method, draw(st.sampled_from([100.0, 99.99984, 99.9, 90.0, 50.0, 0.5])))
    if method == "sdclip":
        return ClipSpec(method, draw(st.sampled_from([0.5, 2.0, 3.0, 12.85])))
    return ClipSpec(method, draw(st.sampled_from([2, 5, 24])))


groups = st.one_of(st.none(), st.integers(1, 40), st.just(10_000))


def expand(scales: torch.Tensor, k: int, group) -> torch.Tensor:
    """Stored scales broadcast to [N, K] in float64 (independent of the module's helper)."""
    s = scales.double()
    if group is None:
        return s[:, None].expand(-1, k)
    return torch.stack([s[:, j // group] for j in range(k)], dim=1) if k else s[:, :0]


def group_ids(k: int, group):
    return [0] * k if group is None else [j // group for j in range(k)]


# ----------------------------------------------------------------------------------------
# Invariants
# ----------------------------------------------------------------------------------------
@given(w=matrices(), bits=st.sampled_from(BITS), clip=clip_specs(), group=groups)
def test_rtn_invariants(w, bits, clip, group):
    n, k = w.shape
    q = qmax(bits)
    r = quantize_rtn(w, bits, clip, group)
    g_count = None if group is None else math.ceil(k / group)
    assert r.symbols.dtype == torch.int8 and tuple(r.symbols.shape) == (n, k)
    assert r.scales.dtype == torch.float16
    assert tuple(r.scales.shape) == ((n,) if group is None else (n, g_count))
    assert r.bits == bits and r.group == group
    assert int(r.symbols.abs().max()) <= q if r.symbols.numel() else True
    assert bool(torch.isfinite(r.scales).all()) and bool((r.scales > 0).all())
    assert bool((r.scales.float() >= FP16_TINY).all())  # never subnormal, never 0

    s = expand(r.scales, k, group)
    deq = r.dequantize()
    assert deq.dtype == torch.float32 and tuple(deq.shape) == (n, k)
    assert torch.equal(deq, (r.symbols.double() * s).float())  # exactly what a decoder computes
    assert torch.equal(r.symbols, quantize_with_scales(w, r.scales, bits, group))  # rounds with the stored scale

    # Inside the clip range the error is at most half a step; outside it the symbol saturates.
    w64, err = w.double(), (w.double() - r.symbols.double() * s).abs()
    inside = w64.abs() <= q * s
    assert bool((err[inside] <= s[inside] / 2).all())
    assert bool((r.symbols[~inside].abs() == q).all())
    assert bool((torch.sign(r.symbols[~inside].double()) == torch.sign(w64[~inside])).all())

    # c == 0 exactly on all-zero rows/groups, where the scale is 1.0.
    c = clip_thresholds(w, bits, clip, group)
    assert c.dtype == torch.float32 and c.shape == r.scales.shape
    for i in range(n):
        for gi in range(1 if group is None else g_count):
            cols = [j for j in range(k) if group_ids(k, group)[j] == gi]
            zero = not bool(w[i, cols].any()) if cols else True
            ci = c[i] if group is None else c[i, gi]
            si = r.scales[i] if group is None else r.scales[i, gi]
            assert (float(ci) == 0) == zero
            if zero:
                assert float(si) == 1.0


@given(w=matrices(max_n=6, max_k=50), bits=st.sampled_from(BITS), group=groups, data=st.data())
def test_absmax_error_at_most_half_step(w, bits, group, data):
    r = quantize_rtn(w, bits, ClipSpec("absmax"), group)
    s = expand(r.scales, w.shape[1], group)
    err = (w.double() - r.symbols.double() * s).abs()
    assert bool((err <= s / 2).all())


@settings(max_examples=100)
@given(w=matrices(max_n=6, max_k=60), bits=st.sampled_from(BITS), group=groups, n_cand=st.sampled_from([None, 2, 7, 24]), data=st.data())
def test_mse_weighted_error_never_worse_than_absmax(w, bits, group, n_cand, data):
    n, k = w.shape
    seed = data.draw(st.integers(0, 2**31 - 1))
    cw = torch.rand(k, generator=torch.Generator().manual_seed(seed)) ** 3 * 10
    cw[torch.rand(k, generator=torch.Generator().manual_seed(seed + 1)) < 0.2] = 0  # dead columns
    rm = quantize_rtn(w, bits, ClipSpec("mse", n_cand), group, col_weight=cw)
    ra = quantize_rtn(w, bits, ClipSpec("absmax"), group, col_weight=cw)

    def weighted(r):
        e = (w.double() - r.dequantize().double()) ** 2 * cw.double()
        ids = torch.tensor(group_ids(k, group), dtype=torch.long)
        out = torch.zeros(n, (max(group_ids(k, group)) + 1) if k else 0, dtype=torch.float64)
        return out.index_add_(1, ids, e) if k else out

    em, ea = weighted(rm), weighted(ra)
    assert bool((em <= ea * (1 + 1e-12) + 1e-300).all())
    # The chosen clip is one of the candidates r * absmax with r in [0.3, 1].
    cm = clip_thresholds(w, bits, ClipSpec("mse", n_cand), group, col_weight=cw)
    ca = clip_thresholds(w, bits, ClipSpec("absmax"), group)
    assert bool((cm <= ca).all()) and bool((cm >= ca * 0.3 * (1 - 1e-6)).all())


def test_mse_improves_on_gaussian_rows():
    """On Gaussian rows at low bits clipping below absmax wins for (almost) every row."""
    w = torch.randn(64, 512, generator=torch.Generator().manual_seed(0))
    cm = clip_thresholds(w, 3, ClipSpec("mse"))
    ca = clip_thresholds(w, 3, ClipSpec("absmax"))
    assert float((cm < ca).float().mean()) > 0.9
    em = ((w - quantize_rtn(w, 3, ClipSpec("mse")).dequantize()) ** 2).sum()
    ea = ((w - quantize_rtn(w, 3).dequantize()) ** 2).sum()
    assert em < 0.8 * ea


def test_mse_col_weight_changes_choice_and_others_ignore_it():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(32, 64, generator=g)
    w[:, 0] *= 8  # an outlier column
    heavy = torch.ones(64)
    heavy[0] = 1e4  # the outlier column dominates the weighted error
    c_plain = clip_thresholds(w, 4, ClipSpec("mse"))
    c_heavy = clip_thresholds(w, 4, ClipSpec("mse"), col_weight=heavy)
    assert bool((c_heavy != c_plain).any())

    def weighted(r):
        return ((w.double() - r.dequantize().double()) ** 2 * heavy.double()).sum(1)

    # Each choice is optimal for its own weighting, row by row.
    rp, rh = quantize_rtn(w, 4, ClipSpec("mse")), quantize_rtn(w, 4, ClipSpec("mse"), col_weight=heavy)
    assert bool((weighted(rh) <= weighted(rp) * (1 + 1e-12)).all())
    assert float(weighted(rh).sum()) < 0.5 * float(weighted(rp).sum())
    for clip in (ClipSpec("absmax"), ClipSpec("percentile", 90.0), ClipSpec("sdclip", 2.0)):
        a = quantize_rtn(w, 4, clip, 16)
        b = quantize_rtn(w, 4, clip, 16, col_weight=heavy)
        c = quantize_rtn(w, 4, clip, 16, col_weight=torch.full((3,), float("nan")))  # not even validated
        assert torch.equal(a.symbols, b.symbols) and torch.equal(a.scales, b.scales)
        assert torch.equal(a.symbols, c.symbols) and torch.equal(a.scales, c.scales)


def test_mse_measures_error_with_the_stored_scale_dtype():
    w = torch.randn(16, 256, generator=torch.Generator().manual_seed(2))
    for dt in (torch.float16, torch.float32, torch.bfloat16):
        r = quantize_rtn(w, 4, ClipSpec("mse"), scale_dtype=dt)
        assert r.scales.dtype == dt
        c = clip_thresholds(w, 4, ClipSpec("mse"), scale_dtype=dt)
        assert torch.equal(r.scales, scales_from_clip(c, 4, dt))


# ----------------------------------------------------------------------------------------
# Percentile and sdclip semantics
# ----------------------------------------------------------------------------------------
@given(w=matrices(max_n=6, max_k=60), bits=st.sampled_from(BITS), group=groups)
def test_percentile_100_is_absmax(w, bits, group):
    a = quantize_rtn(w, bits, ClipSpec("absmax"), group)
    p = quantize_rtn(w, bits, ClipSpec("percentile", 100), group)
    assert torch.equal(clip_thresholds(w, bits, ClipSpec("percentile", 100.0), group), clip_thresholds(w, bits, ClipSpec(), group))
    assert torch.equal(a.symbols, p.symbols) and torch.equal(a.scales, p.scales)


@settings(max_examples=50)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 6), k=st.integers(1, 300), p=st.sampled_from([99.99984, 99.9, 97.5, 50.0, 12.5, 0.1]))
def test_percentile_matches_torch_quantile(seed, n, k, p):
    w = torch.randn(n, k, generator=torch.Generator().manual_seed(seed)) + 0.1  # no zero rows
    c = clip_thresholds(w, 8, ClipSpec("percentile", p))
    assert torch.equal(c, torch.quantile(w.abs(), p / 100, dim=1))


def test_percentile_default_is_the_baseline_clip():
    assert ClipSpec("percentile").value == 99.99984
    w = torch.randn(8, 5000, generator=torch.Generator().manual_seed(3))
    assert torch.equal(clip_thresholds(w, 8, ClipSpec("percentile")), torch.quantile(w.abs(), 0.9999984, dim=1))


def test_percentile_on_large_rows_beyond_torch_quantile_limit():
    w = torch.randn(1, (1 << 24) + 1, generator=torch.Generator().manual_seed(9))
    with pytest.raises(RuntimeError, match="too large"):
        torch.quantile(w.abs(), 0.5, dim=1)
    c = clip_thresholds(w, 8, ClipSpec("percentile"))
    assert 0 < float(c[0]) <= float(w.abs().max())


def test_sdclip_is_k_times_population_std_per_row_and_group():
    g = torch.Generator().manual_seed(4)
    w = torch.randn(5, 70, generator=g)
    c = clip_thresholds(w, 6, ClipSpec("sdclip", 12.85))
    torch.testing.assert_close(c, (12.85 * w.double().std(dim=1, correction=0)).float(), rtol=1e-6, atol=0)
    cg = clip_thresholds(w, 6, ClipSpec("sdclip", 2.5), group=32)
    want = torch.stack([w[:, a : a + 32].double().std(dim=1, correction=0) * 2.5 for a in (0, 32, 64)], dim=1)
    torch.testing.assert_close(cg, want.float(), rtol=1e-6, atol=0)
    assert ClipSpec("sdclip").value == 3.0


# ----------------------------------------------------------------------------------------
# Extreme values
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", CLIP_METHODS)
@pytest.mark.parametrize("bits", BITS)
def test_extreme_rows(method, bits):
    q = qmax(bits)
    w = torch.zeros(8, 33)
    w[0] = 1e-30
    w[1] = torch.linspace(-1e4, 1e4, 33)
    w[2] = torch.tensor([(-1) ** j * (j + 1) * 1e-3 for j in range(33)])  # mixed signs
    w[3] = 0.7  # constant
    w[4] = -2.5e-2  # constant negative (2.5e-2 / 127 is still a normal fp16 scale)
    w[5] = 0.0
    w[6, 7] = 1e-40  # a lone float32 subnormal
    w[7] = torch.tensor([1e4 if j == 3 else 1e-3 for j in range(33)])  # one huge outlier
    for group in (None, 8, 64):
        r = quantize_rtn(w, bits, ClipSpec(method), group)
        s = expand(r.scales, 33, group)
        deq = r.dequantize()
        assert bool(torch.isfinite(deq).all()) and bool((r.scales > 0).all())
        assert not r.symbols[0].any() and not r.symbols[5].any() and not r.symbols[6].any()
        assert float(r.scales[0].reshape(-1)[0]) == FP16_TINY  # 1e-30 / qmax clamps to the tiny normal
        assert bool((r.scales[5] == 1).all())  # all-zero row
        # Constant rows: every method clips at the value itself (sdclip falls back to absmax),
        # so the symbols are +-qmax and the only error is the fp16 rounding of the scale.
        for i in (3, 4):
            assert bool((r.symbols[i].abs() == q).all())
            torch.testing.assert_close(deq[i], w[i], rtol=2.0**-10, atol=0)
        if method == "absmax":  # nothing is clipped: every error is within half a step
            assert bool(((w.double() - deq.double()).abs() <= s / 2).all())


def test_fp16_scale_overflow_raises_and_float32_works():
    w = torch.tensor([[1e5, -3.0], [1.0, 2.0]])
    with pytest.raises(GolfpackError, match="float32"):
        quantize_rtn(w, 2)  # qmax 1: scale 1e5 > 65504
    for clip in (ClipSpec("absmax"), ClipSpec("percentile"), ClipSpec("sdclip", 100.0)):
        with pytest.raises(GolfpackError, match="overflow"):
            quantize_rtn(torch.tensor([[1e7, 1.0]]), 8, clip)  # 1e7 / 127 > 65504
    # mse only considers clips whose scale can be stored: here it must clip the 1e7.
    r = quantize_rtn(torch.tensor([[1e7, 1.0]]), 8, ClipSpec("mse"))
    assert float(r.scales[0]) <= 65504 and r.symbols[0, 0] == 127
    r = quantize_rtn(w, 2, scale_dtype=torch.float32)
    assert r.scales.dtype == torch.float32 and float(r.scales[0]) == 1e5
    assert torch.equal(r.dequantize()[0], torch.tensor([1e5, -0.0]))
    # 65504 * qmax is fine (largest fp16), a little more is not.
    assert float(quantize_rtn(torch.tensor([[65504.0 * 127]]), 8).scales[0]) == 65504.0
    with pytest.raises(GolfpackError):
        quantize_rtn(torch.tensor([[65600.0 * 127]]), 8)


# ----------------------------------------------------------------------------------------
# Round trip of already-quantized tensors
# ----------------------------------------------------------------------------------------
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 8), k=st.integers(1, 64), bits=st.sampled_from(BITS), group=st.one_of(st.none(), st.integers(1, 20)))
def test_requantizing_quantized_weights_is_exact(seed, n, k, bits, group):
    g = torch.Generator().manual_seed(seed)
    q = qmax(bits)
    g_count = 1 if group is None else math.ceil(k / group)
    sym = torch.randint(-q, q + 1, (n, k), generator=g)
    # Attain +-qmax in every row/group so the absmax clip lands exactly on q * s.
    for gi in range(g_count):
        lo = 0 if group is None else gi * group
        hi = k if group is None else min(k, lo + group)
        cols = torch.randint(lo, hi, (n,), generator=g)
        sym[torch.arange(n), cols] = torch.where(torch.rand(n, generator=g) < 0.5, q, -q)
    # fp16-representable normal scales over a wide range of exponents.
    s = (torch.exp2(torch.randint(-14, 10, (n, g_count), generator=g).float()) * (1 + torch.rand(n, g_count, generator=g))).half()
    sc = s[:, 0] if group is None else s
    w = (sym.float() * expand(sc, k, group).float())
    r = quantize_rtn(w, bits, ClipSpec("absmax"), group)
    assert torch.equal(r.symbols, sym.to(torch.int8))
    assert torch.equal(r.scales, sc)
    assert torch.equal(r.dequantize(), w)


# ----------------------------------------------------------------------------------------
# Input handling
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_dtypes_are_quantized_as_float32(dtype):
    w = torch.randn(6, 40, generator=torch.Generator().manual_seed(5)).to(dtype)
    a = quantize_rtn(w, 5, ClipSpec("mse"), 16)
    b = quantize_rtn(w.float(), 5, ClipSpec("mse"), 16)
    assert torch.equal(a.symbols, b.symbols) and torch.equal(a.scales, b.scales)


@pytest.mark.parametrize(
    "call",
    [
        lambda: quantize_rtn(torch.tensor([[1.0, float("nan")]]), 4),
        lambda: quantize_rtn(torch.tensor([[1.0, float("inf")]]), 4),
        lambda: quantize_rtn(torch.tensor([[1e300]], dtype=torch.float64), 4),  # beyond float32
        lambda: quantize_rtn(torch.ones(3), 4),
        lambda: quantize_rtn(torch.ones(2, 3, 4), 4),
        lambda: quantize_rtn(torch.ones(2, 3, dtype=torch.int32), 4),
        lambda: quantize_rtn([[1.0]], 4),
        lambda: quantize_rtn(torch.ones(2, 3), 1),
        lambda: quantize_rtn(torch.ones(2, 3), 9),
        lambda: quantize_rtn(torch.ones(2, 3), True),
        lambda: quantize_rtn(torch.ones(2, 3), 4.0),
        lambda: quantize_rtn(torch.ones(2, 3), 4, group=0),
        lambda: quantize_rtn(torch.ones(2, 3), 4, group=2.0),
        lambda: quantize_rtn(torch.ones(2, 3), 4, scale_dtype=torch.int8),
        lambda: quantize_rtn(torch.ones(2, 3), 4, clip="absmax"),
        lambda: quantize_rtn(torch.ones(2, 3), 4, ClipSpec("mse"), col_weight=torch.ones(4)),
        lambda: quantize_rtn(torch.ones(2, 3), 4, ClipSpec("mse"), col_weight=-torch.ones(3)),
        lambda: quantize_rtn(torch.ones(2, 3), 4, ClipSpec("mse"), col_weight=torch.tensor([1.0, float("nan"), 1.0])),
        lambda: quantize_with_scales(torch.ones(2, 3), torch.ones(3), 4),
        lambda: quantize_with_scales(torch.ones(2, 3), torch.tensor([1.0, 0.0]), 4),
        lambda: quantize_with_scales(torch.ones(2, 3), torch.ones(2, 1), 4, group=2),
        lambda: scales_from_clip(torch.tensor([-1.0]), 4),
        lambda: scales_from_clip(torch.tensor([float("inf")]), 4),
        lambda: ClipSpec("minmax"),
        lambda: ClipSpec("absmax", 1.0),
        lambda: ClipSpec("percentile", 0.0),
        lambda: ClipSpec("percentile", 100.5),
        lambda: ClipSpec("percentile", float("nan")),
        lambda: ClipSpec("sdclip", -1.0),
        lambda: ClipSpec("sdclip", 0),
        lambda: ClipSpec("sdclip", "3"),
        lambda: ClipSpec("sdclip", True),
        lambda: ClipSpec("mse", 1),
        lambda: ClipSpec("mse", 2.5),
        lambda: ClipSpec("mse", 10**6),
        lambda: ClipSpec.parse("sdclip:abc"),
        lambda: ClipSpec.parse("l2:3"),
        lambda: ClipSpec.parse("absmax:1"),
        lambda: ClipSpec.from_json({"method": "mse", "param": 24, "extra": 1}),
        lambda: ClipSpec.from_json({"param": 24}),
        lambda: ClipSpec.from_json(["mse"]),
        lambda: ClipSpec.from_json({"method": 3}),
        lambda: hessian_error(torch.ones(2, 3), torch.ones(2, 3), torch.eye(2)),
    ],
)
def test_bad_input_raises_golfpack_error(call):
    with pytest.raises(GolfpackError):
        call()


def test_nan_message_is_clear():
    with pytest.raises(GolfpackError, match="NaN"):
        quantize_rtn(torch.tensor([[0.0, float("nan")]]), 8, ClipSpec("mse"))


@given(clip=clip_specs())
def test_clipspec_text_and_json_round_trip(clip):
    assert ClipSpec.parse(str(clip)) == clip
    assert ClipSpec.from_json(clip.to_json()) == clip
    d = clip.to_json()
    assert set(d) == {"method", "param"} and d["method"] == clip.method


def test_clipspec_text_forms():
    assert str(ClipSpec()) == "absmax"
    assert str(ClipSpec("sdclip", 12.85)) == "sdclip:12.85"
    assert str(ClipSpec("mse", 24)) == "mse:24" and str(ClipSpec("mse")) == "mse"
    assert str(ClipSpec("percentile", 99.99984)) == "pct:99.99984"
    assert ClipSpec.parse("percentile:99.9") == ClipSpec.parse("pct:99.9") == ClipSpec("percentile", 99.9)
    assert ClipSpec.parse("mse:24.0") == ClipSpec("mse", 24)
    assert ClipSpec.parse(" SDClip:3 ") == ClipSpec("sdclip", 3.0)
    assert ClipSpec.from_json({"method": "mse"}) == ClipSpec("mse")


def test_scales_from_clip_rules():
    c = torch.tensor([0.0, 1e-30, 7 * 2.0**-20, 7.0, 7 * 65504.0])
    s = scales_from_clip(c, 4)  # qmax 7
    assert s.dtype == torch.float16
    assert s.tolist() == [1.0, FP16_TINY, FP16_TINY, 1.0, 65504.0]
    s32 = scales_from_clip(torch.tensor([0.0, 1e-40, 7e-30]), 4, torch.float32)
    assert s32.tolist() == [1.0, torch.finfo(torch.float32).tiny, torch.tensor(1e-30).item()]


@given(w=matrices(max_n=5, max_k=40), clip=clip_specs(), group=groups)
def test_deterministic_and_inputs_untouched(w, clip, group):
    cw = torch.rand(w.shape[1], generator=torch.Generator().manual_seed(7))
    w0, cw0 = w.clone(), cw.clone()
    a = quantize_rtn(w, 4, clip, group, col_weight=cw)
    b = quantize_rtn(w, 4, clip, group, col_weight=cw)
    assert torch.equal(a.symbols, b.symbols) and torch.equal(a.scales, b.scales)
    assert torch.equal(w, w0) and torch.equal(cw, cw0)


def test_quant_result_dequantize_partial_last_group():
    r = QuantResult(torch.tensor([[1, -2, 3, 4, 5]], dtype=torch.int8), torch.tensor([[0.5, 2.0]], dtype=torch.float16), 4, 3)
    assert r.dequantize().tolist() == [[0.5, -1.0, 1.5, 8.0, 10.0]]


# ----------------------------------------------------------------------------------------
# hessian_error
# ----------------------------------------------------------------------------------------
def test_hessian_error():
    g = torch.Generator().manual_seed(8)
    w = torch.randn(7, 12, generator=g)
    w_hat = quantize_rtn(w, 3).dequantize()
    assert hessian_error(w, w_hat, torch.eye(12)) == pytest.approx(float(((w.double() - w_hat.double()) ** 2).sum()), rel=1e-12)
    X = torch.randn(100, 12, generator=g, dtype=torch.float64)
    H = X.T @ X / 100
    want = sum(float(((X @ (w.double() - w_hat.double()).T) ** 2)[:, i].sum()) for i in range(7)) / 100
    assert hessian_error(w, w_hat, H) == pytest.approx(want, rel=1e-10)
    assert hessian_error(w, w, H) == 0.0

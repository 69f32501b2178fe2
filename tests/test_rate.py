"""Rate-aware rounding (golfpack.codec.rate) in RTN, GPTQ, the candidates and the planner."""
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from golfpack.cli import main
from golfpack.codec import calib as C
from golfpack.codec.candidates import TensorCandidates, lower_hull, rans_bytes
from golfpack.codec.gptq import gptq_quantize
from golfpack.codec.planner import PlannerConfig, _hull_slopes, build_items, plan
from golfpack.codec.quant import hessian_error, qmax, quantize_with_scales, scales_from_clip
from golfpack.codec.rate import RateTerm, code_lengths, element_weights, round_rate_aware, rtn_rate_aware
from golfpack.errors import GolfpackError
from golfpack.model.load import from_state_dict

from planner_standin import MIN_NUMEL, checkpoint_of, random_tokens, save_safetensors, tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def laplace_weights(n, k, seed=0, col_spread=1.0):
    g = torch.Generator().manual_seed(seed)
    e = torch.empty(n, k).exponential_(generator=g) * torch.sign(torch.rand(n, k, generator=g) - 0.5)
    cols = torch.exp(torch.randn(1, k, generator=g) * col_spread * 0.3)
    return (e * cols * 0.02).to(torch.float32)


def spd(k, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4 * k, k, generator=g, dtype=torch.float64) * torch.exp(torch.randn(k, generator=g, dtype=torch.float64))
    return x.T @ x / (4 * k)


def entropy_bits(sym: torch.Tensor) -> float:
    c = torch.bincount(sym.reshape(-1).to(torch.int64) + 128).to(torch.float64)
    c = c[c > 0]
    return float(-(c * torch.log2(c / c.sum())).sum())


# ----------------------------------------------------------------------------- code lengths


def test_code_lengths_are_a_smoothed_distribution():
    sym = torch.tensor([0, 0, 0, 1, -1, 5], dtype=torch.int8)
    L = code_lengths(sym, 4)
    assert L.shape == (15,)
    assert float(torch.exp2(-L).sum()) == pytest.approx(1.0, abs=1e-12)
    assert torch.isfinite(L).all()
    assert L[7] < L[8] == L[6] == L[12] < L[0] == L[14]  # 0 cheapest, then the values used once, unused dearest
    for bad in (9, -9):  # above and below the range (bincount would raise its own error below)
        with pytest.raises(GolfpackError, match="outside"):
            code_lengths(torch.tensor([0, bad], dtype=torch.int8), 4)


@pytest.mark.parametrize("lam", [-1.0, float("nan"), float("inf")])
def test_rate_term_rejects_bad_prices(lam):
    with pytest.raises(GolfpackError, match="lam"):
        RateTerm(lam, torch.zeros(15))


# ----------------------------------------------------------------------------- the rounding rule


def _reference_round(u, weight, lengths, lam, q):
    """Independent float64 numpy reference: among every grid point -q..q, the argmin of
    weight*(u-s)^2 + lam*L(s) restricted to the two nearest points of u (ties: the nearest)."""
    u = np.asarray(u, np.float64)
    w = np.broadcast_to(np.asarray(weight, np.float64), u.shape)
    out = np.empty_like(u)
    for idx in np.ndindex(u.shape):
        x = u[idx]
        near = float(np.clip(np.round(x), -q, q))  # numpy rounds half to even, as torch does
        other = float(np.clip(near + np.sign(x - near), -q, q))
        cost = lambda s: w[idx] * (x - s) ** 2 + lam * lengths[int(s) + q]  # noqa: E731
        out[idx] = other if cost(other) < cost(near) else near
    return out


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(2, 8), seed=st.integers(0, 10**6), lam=st.sampled_from([0.0, 1e-3, 0.1, 1.0, 10.0]),
       spread=st.floats(0.1, 40.0))
def test_round_rate_aware_matches_the_reference(bits, seed, lam, spread):
    q = qmax(bits)
    rng = np.random.default_rng(seed)
    u = rng.laplace(0, spread / 4, size=(7, 9))
    u[0, :4] = [0.5, -1.5, 2.5, q + 3.0]  # exact ties and a value past the clip
    weight = rng.uniform(0.01, 2.0, size=(7, 1))
    lengths = torch.from_numpy(rng.uniform(0.5, 12.0, size=2 * q + 1))
    got = round_rate_aware(torch.from_numpy(u), torch.from_numpy(weight), RateTerm(lam, lengths), q)
    ref = _reference_round(u, weight, lengths.numpy(), lam, q)
    assert np.array_equal(got.numpy(), ref)
    plain = np.clip(np.round(u), -q, q)
    assert np.abs(got.numpy() - plain).max() <= 1
    if lam == 0.0:
        assert np.array_equal(got.numpy(), plain)


def test_rtn_rate_aware_trades_error_for_bits():
    w = laplace_weights(96, 128, seed=1)
    bits = 5
    scales = scales_from_clip(w.abs().amax(1), bits)
    plain = quantize_with_scales(w, scales, bits)
    wt = element_weights(None, scales, tuple(w.shape))
    assert torch.equal(rtn_rate_aware(w, scales, bits, wt, 0.0), plain)
    prev_bytes, prev_err = rans_bytes(plain), 0.0
    for lam in (1e-6, 1e-5, 1e-4):  # weights are scale^2 ~ 1e-4 per squared grid unit
        sym = rtn_rate_aware(w, scales, bits, wt, lam)
        err = float((sym.float() * scales.float()[:, None] - w).double().pow(2).sum())
        nbytes = rans_bytes(sym)
        assert nbytes <= prev_bytes and err >= prev_err
        assert (sym.int() - plain.int()).abs().max() <= 1
        prev_bytes, prev_err = nbytes, err
    assert prev_bytes < 0.9 * rans_bytes(plain)  # the largest price really buys bytes


def test_gptq_rate_zero_is_plain_gptq_and_a_price_buys_bytes():
    n, k, bits = 64, 96, 4
    w = laplace_weights(n, k, seed=2)
    H = spd(k, seed=3)
    base = gptq_quantize(w, H, bits)
    L = code_lengths(base.symbols, bits)
    same = gptq_quantize(w, H, bits, scales=base.scales, rate=RateTerm(0.0, L))
    assert torch.equal(same.symbols, base.symbols)
    e0 = hessian_error(w, base.dequantize(), H)
    prev = base.symbols
    for lam in (3e-6, 3e-5, 3e-4):
        priced = gptq_quantize(w, H, bits, scales=base.scales, rate=RateTerm(lam, L))
        assert rans_bytes(priced.symbols) < rans_bytes(prev)
        assert entropy_bits(priced.symbols) < entropy_bits(prev)
        prev = priced.symbols
    # GPTQ is greedy, so a small price can even lower the error a little; a large one costs error.
    assert hessian_error(w, priced.dequantize(), H) > 1.05 * e0
    with pytest.raises(GolfpackError, match="per-row scales"):
        gptq_quantize(w, H, bits, group=32, rate=RateTerm(1.0, L))


# ----------------------------------------------------------------------------- candidates and planner


@pytest.fixture(scope="module")
def calibrated():
    model = tiny_model(0)
    ck = checkpoint_of(model)
    seqs = C.sequences_from_tokens(random_tokens(5000, 0), 8, 32, seed=0)
    return ck, C.collect(from_state_dict(ck.state_dict(), ck.config), seqs)


def test_rate_candidates_sit_where_the_hull_prices_bits(calibrated):
    ck, cal = calibrated
    name = "blocks.0.mlp.fc.weight"
    g = TensorCandidates(name, ck.floats[name], cal.stats[name])
    for b in (3, 4, 5, 6):
        g.add_quantized("rtn", b)
        g.add_quantized("gptq", b)
    hull = lower_hull(g.cands)
    slopes = _hull_slopes(hull)
    assert slopes and all(lam > 0 for _, lam in slopes)
    saved = 0
    for c, lam in slopes:
        r = g.add_rate_aware(c, 4 * lam)
        assert r.choice.rate_lam == 4 * lam and r.choice.bits == c.choice.bits and r.choice.method == c.choice.method
        assert torch.equal(r.q.scales, c.q.scales)
        # (dloss need not rise: GPTQ is greedy and the rule prices the K-FAC diagonal, so a
        # re-rounding can land on a better point than the base, as measured here for int5 GPTQ)
        assert r.est_bytes <= c.est_bytes
        saved += c.est_bytes - r.est_bytes
        lam = 4 * lam
        assert f"rate {lam:.3g}" in r.choice.label()
        assert json.loads(json.dumps(r.choice.to_json()))["rate_lam"] == pytest.approx(lam, rel=1e-5)
    assert saved > 0
    zero = g.add_rate_aware(hull[-1], 0.0)
    assert torch.equal(zero.q.symbols, hull[-1].q.symbols)


def test_the_planner_uses_rate_candidates_and_never_predicts_worse(calibrated):
    ck, cal = calibrated
    base = PlannerConfig(min_numel=MIN_NUMEL, jobs=1, lqer_ranks=(), prune_rel=(), tolerance=0.02,
                         rate_mults=(0.5, 1.0, 2.0))
    without = build_items(ck, cal, PlannerConfig(**{**base.__dict__, "rate_mults": ()}))
    with_rate = build_items(ck, cal, base)
    assert not any(c.choice.rate_lam for it in without for c in it.cands)
    assert any(c.choice.rate_lam for it in with_rate for c in it.cands)
    # Without LQER or pruning the rate stage only adds candidates, so at every budget the predicted
    # loss can only go down. Measured on the real artifacts the planner writes.
    need = plan(ck, 10**9, cal, base, items=without).report["total_bytes"]
    used_rate = 0
    for frac in (0.35, 0.5, 0.7):
        b = int(need * frac)
        r0 = plan(ck, b, cal, base, items=without).report
        r1 = plan(ck, b, cal, base, items=with_rate).report
        assert r1["total_bytes"] <= b and r0["total_bytes"] <= b
        used_rate += sum(1 for t in r1["tensors"] if t["choice"].get("rate_lam"))
        # both land in the planner's window; the rate arm may land lower or higher in it
        assert r1["predicted_dloss"] <= r0["predicted_dloss"] * 1.05
    assert used_rate > 0


def test_encode_cli_rate_options(tmp_path, capsys):
    src = save_safetensors(tiny_model(0), tmp_path / "tiny.safetensors")
    quick = ["--min-numel", "256", "--tolerance", "0.02", "--quiet", "--jobs", "1", "--calib", "none",
             "--method", "rtn", "--budget", "6000", "--json"]
    capsys.readouterr()
    assert main(["encode", str(src), "-o", str(tmp_path / "a.gp"), *quick]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert not any(t["choice"].get("rate_lam") for t in rep["plan"])  # off by default
    assert main(["encode", str(src), "-o", str(tmp_path / "a.gp"), *quick, "--rate-mults", "0.5,1,2"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["total_bytes"] <= 6000
    for bad, msg in (("x", "'x' is not a number"), ("0", "positive finite"), ("1,-2", "positive finite")):
        rc = main(["encode", str(src), "-o", str(tmp_path / "b.gp"), *quick, "--rate-mults", bad])
        out, err = capsys.readouterr()
        assert rc == 2 and err.count("\n") == 1 and msg in err, err
        assert not (tmp_path / "b.gp").exists()


# ----------------------------------------------------------------------------- per-cell rates (rans_rc)


def _two_scale_weight(seed=0, n=48, k=64):
    """Rows and columns at two scales each: a matrix whose rans_rc model has several cells."""
    g = torch.Generator().manual_seed(seed)
    row = torch.where(torch.arange(n) % 2 == 0, 0.3, 1.0).reshape(n, 1)
    col = torch.where(torch.arange(k) % 3 == 0, 3.0, 1.0).reshape(1, k)
    return torch.randn(n, k, generator=g, dtype=torch.float64) * row * col


def test_cell_code_lengths_match_the_fitted_rans_rc_model():
    from golfpack.codec import rans_rc
    from golfpack.codec.rate import cell_code_lengths

    w = _two_scale_weight()
    sym = torch.round(w / w.abs().amax(1, keepdim=True) * 7).clamp(-7, 7).to(torch.int8)
    lengths, cells = cell_code_lengths(sym, 4)
    assert lengths.shape[1] == 15 and cells.shape == sym.shape
    assert int(cells.max()) < lengths.shape[0] and lengths.shape[0] > 1  # several tables
    # the ideal payload under these lengths is within 2% of what rans_rc stores (tables, indices excluded)
    ideal_bits = float(lengths[cells, sym.long() + 7].sum())
    stored = len(rans_rc.encode((sym.numpy().astype(np.int16) + 128).astype(np.uint8)))
    assert ideal_bits / 8 <= stored <= 1.02 * ideal_bits / 8 + 400


def test_rate_term_validates_cells():
    with pytest.raises(GolfpackError, match="go together"):
        RateTerm(1.0, torch.zeros(2, 15))
    with pytest.raises(GolfpackError, match="go together"):
        RateTerm(1.0, torch.zeros(15), torch.zeros(3, 3, dtype=torch.int64))
    with pytest.raises(GolfpackError, match="past the lengths"):
        RateTerm(1.0, torch.zeros(2, 15), torch.full((3, 3), 2, dtype=torch.int64))


@pytest.mark.parametrize("method", ["rtn", "gptq"])
def test_per_cell_rate_aware_rounding(method):
    """lam = 0 reproduces plain rounding; a positive lam lowers the rans_rc-coded bytes and moves
    no symbol by more than one step."""
    from golfpack.codec import rans_rc
    from golfpack.codec.rate import cell_code_lengths

    w = _two_scale_weight(1, 64, 96).float()
    bits, q = 5, qmax(5)
    scales = scales_from_clip(w.abs().amax(1), bits)
    x = torch.randn(256, 96, generator=torch.Generator().manual_seed(2))
    H = x.T @ x / 256
    if method == "gptq":
        plain = gptq_quantize(w, H, bits, scales=scales).symbols
    else:
        plain = quantize_with_scales(w, scales, bits)
    lengths, cells = cell_code_lengths(plain, bits)

    def rounded(lam):
        if method == "gptq":
            return gptq_quantize(w, H, bits, scales=scales, rate=RateTerm(lam, lengths, cells)).symbols
        wt = torch.ones(1, 1, dtype=torch.float64)
        return rtn_rate_aware(w, scales, bits, wt, lam, iters=1, lengths=lengths, cells=cells)

    assert torch.equal(rounded(0.0), plain)
    rate = rounded(0.05)
    coded = lambda s: len(rans_rc.encode((s.numpy().astype(np.int16) + 128).astype(np.uint8)))  # noqa: E731
    assert coded(rate) < coded(plain)
    if method == "rtn":
        u = w.double() / scales.double().reshape(-1, 1)
        assert float((rate.double() - u).abs().max()) < 1.0 + 1e-9
    assert int(rate.abs().max()) <= q

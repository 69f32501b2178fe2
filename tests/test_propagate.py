"""golfpack.codec.propagate: re-quantization of a plan against the quantized model's own inputs.

Checks: the least-squares target makes the output error split exactly into a part Q cannot change
and a GPTQ problem on (W*, H~) (the identity the module rests on); without upstream error the
target is the weight itself; the stages group linears that read one input and leave out shared
(recurrent) blocks; the one-pass implementation gives the weights of a slow reference that runs a
whole forward per stage; in the planner it fits the budget, spends what the re-quantization frees,
brings a coarse plan's logits closer to the float model's, and is refused for bad settings.
"""
import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from golfpack.codec import calib as C
from golfpack.codec import propagate as P
from golfpack.codec.container import parse_artifact
from golfpack.codec.gptq import gptq_quantize
from golfpack.codec.planner import PlannerConfig, plan
from golfpack.errors import GolfpackError
from golfpack.model.load import from_state_dict

from planner_standin import MIN_NUMEL, calibrated_standin, random_tokens, tiny_model

CFG = PlannerConfig(method="gptq", min_numel=MIN_NUMEL, jobs=1, lqer_ranks=(), tolerance=0.02)


@given(n=st.integers(1, 6), k=st.integers(1, 8), seed=st.integers(0, 2**16))
@settings(max_examples=30, deadline=None)
def test_output_error_splits_at_the_least_squares_target(n, k, seed):
    g = torch.Generator().manual_seed(seed)
    rows = 4 * k + 8
    X = torch.randn(rows, k, generator=g, dtype=torch.float64)
    Xq = X + 0.3 * torch.randn(rows, k, generator=g, dtype=torch.float64)  # upstream error
    W = torch.randn(n, k, generator=g, dtype=torch.float64)
    Q = torch.randn(n, k, generator=g, dtype=torch.float64)
    Ht, Cm = Xq.T @ Xq / rows, X.T @ Xq / rows
    Ws = P.corrected_target(W, Cm, Ht, 1.0, 1e-12).to(torch.float64)
    total = ((X @ W.T - Xq @ Q.T) ** 2).sum() / rows
    fixed = ((X @ W.T - Xq @ Ws.T) ** 2).sum() / rows
    gptq_part = ((Xq @ (Ws - Q).T) ** 2).sum() / rows
    # Ws is rounded to float32: the cross term is then ~1e-7 of the parts, not 0
    assert torch.allclose(total, fixed + gptq_part, rtol=1e-5, atol=1e-6)
    # and no other target does better on the part Q cannot change
    other = Ws + 0.01 * torch.randn(n, k, generator=g, dtype=torch.float64)
    assert ((X @ W.T - Xq @ other.T) ** 2).sum() / rows >= fixed - 1e-9


def test_target_is_the_weight_without_upstream_error_and_moves_by_alpha():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 16, generator=g, dtype=torch.float64)
    W = torch.randn(8, 16, generator=g)
    H = X.T @ X / 200
    assert torch.allclose(P.corrected_target(W, H, H, 1.0, 1e-9), W, atol=1e-5)
    Xq = X + 0.5 * torch.randn(200, 16, generator=g, dtype=torch.float64)
    Ht, Cm = Xq.T @ Xq / 200, X.T @ Xq / 200
    full = P.corrected_target(W, Cm, Ht, 1.0, 0.01)
    half = P.corrected_target(W, Cm, Ht, 0.5, 0.01)
    assert torch.allclose(half, (W + full) / 2, atol=1e-5)
    # noisy inputs attenuate the map: the target shrinks (why the re-quantized artifact is smaller)
    assert float(full.norm()) < float(W.norm())


def test_stages_group_shared_inputs_and_skip_recurrent_blocks():
    m = tiny_model(0)
    x = torch.randint(0, 64, (1, 8))
    stages, rep = P.linear_stages(m, x)
    assert not rep
    assert stages[0] == ["blocks.0.attn.c_q", "blocks.0.attn.c_k", "blocks.0.attn.c_v"]
    assert stages[1:4] == [["blocks.0.attn.proj"], ["blocks.0.mlp.fc"], ["blocks.0.mlp.proj"]]
    assert sum(len(s) for s in stages) == len(m.linear_names)
    r = tiny_model(0, num_layers=3, recur_start=1, recur_end=1, recur_repeats=2)
    stages, rep = P.linear_stages(r, x)
    assert rep and all(n.startswith("blocks.1.") for n in rep)
    assert not any(n in rep for s in stages for n in s)


def test_grams_are_the_float64_products():
    g = torch.Generator().manual_seed(3)
    xq, xf = torch.randn(10000, 24, generator=g), torch.randn(10000, 24, generator=g)
    Ht, Cm = P._grams(xq, xf, chunk=4096)
    q, f = xq.double(), xf.double()
    assert torch.allclose(Ht, q.T @ q / 10000, atol=1e-6) and torch.allclose(Cm, f.T @ q / 10000, atol=1e-6)


def _reference(student, teacher, seqs, targets, quantize, cfg):
    """The slow way: per stage, a whole forward of each model over the sequences."""
    x = seqs[:, :-1]
    stages, _ = P.linear_stages(teacher, x[:1])
    params = dict(student.named_parameters())
    for stg in stages:
        if not any(n in targets for n in stg):
            continue
        got = {}
        for name, model in (("f", teacher), ("q", student)):
            h = model.get_submodule(stg[0]).register_forward_pre_hook(
                lambda m, inp, name=name: got.__setitem__(name, inp[0].reshape(-1, inp[0].shape[-1]).float()))
            with torch.no_grad():
                model(x)
            h.remove()
        # the same float32-chunk sums as the module (test_grams checks them against float64), so
        # that GPTQ sees bit-identical Hessians and the comparison is of the pass structure
        Ht, Cm = P._grams(got["q"], got["f"])
        for n in stg:
            if n in targets:
                w_hat = quantize(n, P.corrected_target(targets[n], Cm, Ht, cfg.alpha, cfg.damp), Ht)
                with torch.no_grad():
                    params[n + ".weight"].copy_(w_hat)


def test_one_pass_matches_a_forward_per_stage():
    teacher = tiny_model(1)
    seqs = C.sequences_from_tokens(random_tokens(4000, 1), 6, 16, seed=0)
    targets = {n: teacher.get_submodule(n).weight.detach().clone() for n in teacher.linear_names}

    def quantize(n, wt, Ht):
        s = (wt.abs().amax(1).clamp_min(1e-8) / 3).to(torch.float16)
        return gptq_quantize(wt, Ht, 3, scales=s).dequantize()

    def start():
        s = tiny_model(1)
        with torch.no_grad():  # a coarse copy: every linear's value as 3-bit RTN
            for n in s.linear_names:
                w = s.get_submodule(n).weight
                sc = w.abs().amax(1, keepdim=True) / 3
                w.copy_(torch.round(w / sc) * sc)
        return s

    # one batch, as the reference: float32 forwards of other batch shapes differ in the last bits,
    # and a flipped rounding then moves everything downstream
    cfg = P.PropagateConfig(batch=6)
    a, b = start(), start()
    rep = P.propagate(a, teacher, seqs, targets, quantize, cfg)
    _reference(b, teacher, seqs, targets, quantize, cfg)
    assert rep["tensors"] == len(targets) and rep["stages"] == 4 * teacher.config.num_layers
    for n in teacher.linear_names:
        wa, wb = a.get_submodule(n).weight, b.get_submodule(n).weight
        assert torch.allclose(wa, wb, atol=1e-6), n
    # and the re-quantized model's logits are closer to the float model's than the coarse start's
    with torch.no_grad():
        ref = teacher(seqs[:, :-1])
        assert float((a(seqs[:, :-1]) - ref).pow(2).mean()) < float((start()(seqs[:, :-1]) - ref).pow(2).mean())


@pytest.fixture(scope="module")
def setup():
    with calibrated_standin(CFG) as s:
        yield s


def test_planner_propagation_fits_and_brings_the_logits_closer(setup):
    ck, cal, items = setup["ck"], setup["cal"], setup["items"]
    budget = 5000
    plain = plan(ck, budget, cal, CFG, items=items)
    prop = plan(ck, budget, cal, dataclasses.replace(CFG, propagate=1.0), items=items)
    rep = prop.report["propagate"]
    assert rep["accepted"] and rep["rounds"], rep
    assert len(prop.artifact) <= budget
    assert prop.report["stage_seconds"]["propagate"] >= 0
    ref = from_state_dict(ck.state_dict(), ck.config)

    x = cal.seqs[:, :-1]
    with torch.no_grad():
        want = ref(x)

    def err(res):  # how far the artifact's logits are from the float model's on the calibration tokens
        m = from_state_dict({k: v.float() for k, v in parse_artifact(res.artifact).state_dict().items()}, ck.config)
        with torch.no_grad():
            return float((m(x) - want).pow(2).mean())

    assert err(prop) < err(plain)
    # the symbols of every re-quantized tensor changed, the float tensors did not
    a, b = parse_artifact(plain.artifact).state_dict(), parse_artifact(prop.artifact).state_dict()
    changed = [k for k in a if not torch.equal(a[k], b[k])]
    assert changed and all(k.endswith(".weight") for k in changed)


def test_propagation_without_calibration_or_golfpack_model_leaves_the_plan(setup):
    ck, items = setup["ck"], setup["items"]
    cfg = dataclasses.replace(CFG, propagate=1.0)
    plain = plan(ck, 5000, None, dataclasses.replace(CFG, method="rtn"))
    res = plan(ck, 5000, None, dataclasses.replace(cfg, method="rtn"))
    assert res.artifact == plain.artifact and res.report["propagate"] is None


@pytest.mark.parametrize("kw", [dict(alpha=0.0), dict(alpha=1.5), dict(damp=0.0), dict(batch=0)])
def test_bad_settings_are_refused(kw):
    with pytest.raises(GolfpackError):
        P.PropagateConfig(**kw)

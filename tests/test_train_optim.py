"""Muon, the lr schedule, QAT fake quantization and weight averaging."""
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from golfpack.model import GPT, GPTConfig
from golfpack.train.averaging import EMA, SWA
from golfpack.train.muon import Muon, zeropower_via_newtonschulz5
from golfpack.train.qat import attach_qat, canonical_name, detach_qat, fake_quant_rows, tensor_class
from golfpack.train.schedule import lr_multiplier, muon_momentum, progress


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("shape", [(16, 64), (64, 16), (32, 32)])
def test_newton_schulz_orthogonalizes(shape):
    g = torch.Generator().manual_seed(0)
    G = torch.randn(*shape, generator=g) * 3.0
    X = zeropower_via_newtonschulz5(G, steps=5, dtype=torch.float32)
    s = torch.linalg.svdvals(X)
    # The quintic's coefficients trade exactness for speed: singular values land in ~[0.7, 1.2].
    assert X.shape == G.shape and s.min() > 0.5 and s.max() < 1.25
    # the direction is kept: X ~ U V^T of G
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    cos = (X * (U @ Vh)).sum() / (X.norm() * (U @ Vh).norm())
    assert cos > 0.95


def test_muon_update_and_decoupled_weight_decay():
    w = torch.nn.Parameter(torch.randn(8, 4, generator=torch.Generator().manual_seed(1)))
    w0 = w.detach().clone()
    opt = Muon([w], lr=0.1, momentum=0.9, weight_decay=0.5, ns_dtype=torch.float32)
    w.grad = torch.zeros_like(w)  # zero gradient: only the decay acts
    opt.step()
    torch.testing.assert_close(w.detach(), w0 * (1 - 0.1 * 0.5))
    # a real gradient: the update is -lr * NS(g + m*buf) * sqrt(rows/cols)
    opt2 = Muon([w], lr=0.1, momentum=0.9, weight_decay=0.0, ns_dtype=torch.float32)
    before = w.detach().clone()
    g = torch.randn(8, 4, generator=torch.Generator().manual_seed(2))
    w.grad = g.clone()
    opt2.step()
    want = before - 0.1 * zeropower_via_newtonschulz5(g + 0.9 * g, dtype=torch.float32) * math.sqrt(8 / 4)
    torch.testing.assert_close(w.detach(), want)
    with pytest.raises(ValueError, match="2-D"):
        Muon([torch.nn.Parameter(torch.zeros(3))])


def test_lr_schedule():
    kw = dict(total_steps=100, warmdown_steps=20, warmup_steps=10)
    assert lr_multiplier(0, 0, **kw) == pytest.approx(0.1)
    assert lr_multiplier(9, 0, **kw) == 1.0 and lr_multiplier(50, 0, **kw) == 1.0
    assert lr_multiplier(80, 0, **kw) == 1.0 and lr_multiplier(90, 0, **kw) == pytest.approx(0.5)
    assert lr_multiplier(99, 0, **kw) == pytest.approx(0.05)
    tk = dict(budget_s=100.0, warmdown_frac=0.25)
    assert lr_multiplier(5, 70.0, **tk) == 1.0
    assert lr_multiplier(5, 87.5, **tk) == pytest.approx(0.5)
    assert lr_multiplier(5, 120.0, **tk) == 0.0
    # both budgets: the one closer to its end decides
    assert lr_multiplier(90, 10.0, total_steps=100, warmdown_steps=20, **tk) == pytest.approx(0.5)
    assert lr_multiplier(10, 90.0, total_steps=100, warmdown_steps=20, **tk) == pytest.approx(0.4)
    assert progress(25, 80.0, total_steps=100, budget_s=100.0) == pytest.approx(0.8)
    assert muon_momentum(0, 0.85, 0.95, 500) == 0.85 and muon_momentum(250, 0.85, 0.95, 500) == pytest.approx(0.9)
    assert muon_momentum(9999, 0.85, 0.95, 500) == 0.95


@given(st.integers(2, 8), st.sampled_from(["absmax", 2.5]), st.integers(0, 2**31 - 1))
def test_fake_quant_rows(bits, clip, seed):
    w = torch.randn(6, 33, generator=torch.Generator().manual_seed(seed))
    q = fake_quant_rows(w, bits, clip)
    qmax = (1 << (bits - 1)) - 1
    amax = w.abs().amax(1, keepdim=True)
    c = amax if clip == "absmax" else torch.minimum(clip * w.std(1, keepdim=True, unbiased=False), amax)
    step = c / qmax
    levels = torch.round(q / step)
    assert torch.allclose(levels * step, q, atol=1e-5) and levels.abs().max() <= qmax
    inside = w.abs() <= c
    assert ((q - w).abs()[inside] <= (step / 2 + 1e-6).expand_as(w)[inside]).all()


def _tiny(**kw):
    return GPT(GPTConfig(vocab_size=64, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1, **kw))


def test_qat_attach_detach_keeps_parameters_and_passes_gradient_straight_through():
    torch.manual_seed(0)
    m = _tiny()
    before = dict(m.named_parameters())
    names = attach_qat(m, {"attn": 4, "emb": 6})
    assert "tok_emb.weight" in names and "blocks.0.attn.c_q.weight" in names
    assert not any(".mlp." in n for n in names)
    now = {canonical_name(n): p for n, p in m.named_parameters()}
    assert set(now) == set(before) and all(now[n] is before[n] for n in now)
    # forward sees quantized weights, gradient reaches the float parameter unchanged (STE)
    w = m.blocks[0].attn.c_q.weight
    raw = before["blocks.0.attn.c_q.weight"]
    torch.testing.assert_close(w, fake_quant_rows(raw.detach(), 4))
    (w * torch.arange(w.numel()).reshape(w.shape)).sum().backward()
    torch.testing.assert_close(raw.grad, torch.arange(w.numel()).reshape(w.shape).float())
    detach_qat(m)
    assert dict(m.named_parameters()).keys() == before.keys()
    assert m.blocks[0].attn.c_q.weight is raw


def test_tensor_classes():
    m = _tiny(tie_embeddings=False, gated_attention=True)
    cls = {n: tensor_class(n, p) for n, p in m.named_parameters()}
    assert cls["tok_emb.weight"] == "emb" and cls["lm_head.weight"] == "head"
    assert cls["blocks.1.mlp.fc.weight"] == "mlp" and cls["blocks.0.attn.c_v.weight"] == "attn"
    for n in ("blocks.0.attn.attn_gate.weight", "blocks.0.attn.q_gain", "skip_weights", "blocks.0.resid_mix"):
        assert cls[n] is None


def test_ema_and_swa():
    m = torch.nn.Linear(3, 2, bias=False)
    ema, swa = EMA(m, 0.9), SWA()
    w0 = m.weight.detach().clone()
    ws = []
    for k in range(3):
        with torch.no_grad():
            m.weight.add_(1.0)
        ema.update(m)
        swa.add(m)
        ws.append(m.weight.detach().clone())
    want = w0
    for w in ws:
        want = 0.9 * want + 0.1 * w
    torch.testing.assert_close(ema.state()["weight"], want)
    torch.testing.assert_close(swa.state()["weight"], sum(ws) / 3)

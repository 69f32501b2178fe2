"""Test-time training (evaluate/ttt.py, evaluate/lora.py): legality, exactness, gradients."""
import json

import numpy as np
import pytest
import torch

from golfpack.errors import GolfpackError
from golfpack.evaluate import evaluate
from golfpack.evaluate import ttt as ttt_mod
from golfpack.evaluate.lora import BatchedLoRA, SlotAdamW, SlotBank
from golfpack.evaluate.ttt import TTTConfig, evaluate_ttt
from golfpack.model import GPT, GPTConfig
from golfpack.model.packed import PackedLinear

from eval_standin import tiny_tables

TABLES = tiny_tables()
GEOM = dict(chunk=8, context=32, doc_batch=4, prefix_docs=6, phases=2, sgd_chunk_tokens=120, sgd_batch=4)


def tiny_packed(seed=0, bits=6, layers=2):
    torch.manual_seed(seed)
    m = GPT(GPTConfig(vocab_size=40, num_layers=layers, model_dim=32, num_heads=2, num_kv_heads=1))
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # zero-init projections would hide bugs
    m.replace_linears(lambda n, lin: PackedLinear.from_dense(lin.weight, bits))
    return m.eval()


def repetitive_docs(n_docs, seed=0, max_rep=12):
    """BOS-led documents that repeat a random 5-gram: TTT can learn them, the base cannot."""
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(n_docs):
        pat = rng.integers(4, 40, 5)
        parts += [[1], np.tile(pat, int(rng.integers(1, max_rep)))[: int(rng.integers(3, 5 * max_rep))]]
    return np.concatenate(parts).astype(np.uint16)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def model():
    return tiny_packed()


@pytest.fixture(scope="module")
def stream():
    return repetitive_docs(14)


# ------------------------------------------------------------------ exactness vs evaluate()

@pytest.mark.parametrize("method", ["lora", "phased", "sgd", "q"])
def test_zero_lr_reproduces_doc_aware_eval(model, stream, method):
    ref = evaluate(model, stream, TABLES, seq_len=32, stride=8, doc_aware=True)
    cfg = TTTConfig.for_method(method, dict(GEOM, lr=0.0, sgd_lr=0.0))
    r = evaluate_ttt(model, stream, TABLES, cfg)
    assert (r.tokens, r.bytes) == (ref.tokens, ref.bytes)
    assert r.val_bpb == pytest.approx(ref.val_bpb, abs=1e-8)


def test_hard_cut_geometry_equals_doc_aware_hard_cut(model, stream):
    ref = evaluate(model, stream, TABLES, seq_len=16, doc_aware=True)
    r = evaluate_ttt(model, stream, TABLES, TTTConfig.for_method("lora", dict(GEOM, chunk=16, context=16, lr=0.0)))
    assert r.val_bpb == pytest.approx(ref.val_bpb, abs=1e-8)


def test_first_chunk_of_every_document_is_scored_by_the_base(model, stream):
    """B starts at zero, so before any step the adapted model is the base: chunk 0 losses equal
    the no-TTT losses even with a large learning rate."""
    base = evaluate_ttt(model, stream, TABLES, TTTConfig.for_method("lora", dict(GEOM, lr=0.0)), return_losses=True)
    hot = evaluate_ttt(model, stream, TABLES, TTTConfig.for_method("lora", dict(GEOM, lr=0.05)), return_losses=True)
    starts = np.flatnonzero(stream == 1)
    first = np.concatenate([np.arange(s + 1, min(s + 1 + 8, len(stream))) for s in starts])
    np.testing.assert_allclose(hot.losses[first], base.losses[first], rtol=1e-5, atol=1e-6)
    assert not np.allclose(hot.losses[1:], base.losses[1:], atol=1e-3)  # later chunks did change


def test_lora_ttt_learns_repetitive_documents(model, stream):
    base = evaluate_ttt(model, stream, TABLES, TTTConfig.for_method("lora", dict(GEOM, lr=0.0)))
    r = evaluate_ttt(model, stream, TABLES, TTTConfig.for_method("lora", dict(GEOM, lr=0.03)))
    assert r.val_bpb < base.val_bpb - 0.05
    assert r.documents_adapted == r.documents


def test_model_is_restored(model, stream):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    names = [type(m).__name__ for m in model.modules()]
    for method in ("lora", "phased", "sgd"):
        evaluate_ttt(model, stream, TABLES, TTTConfig.for_method(method, dict(GEOM, lr=0.05, sgd_lr=0.05)))
    assert [type(m).__name__ for m in model.modules()] == names
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert all(p.requires_grad for p in model.parameters())


# ------------------------------------------------------------------ legality

class _TrainThenScore(ttt_mod._Runner):
    """A deliberately illegal runner: steps on a chunk before scoring it."""

    def chunk_step(self, docs, c, train_mask, opt):
        x, y, scored, lo, tgt = self._rows(docs, c)
        if opt is not None:
            with torch.enable_grad():
                _, ce = self.forward_ce(x, y, lo)
                self.train_rows(ce, scored, np.ones(len(docs), bool), docs, opt, True, x, y, lo)
        with torch.no_grad():
            logits, ce = self.forward_ce(x, y, lo)
            self.record(logits, ce, y, scored, tgt)


def _legality_violations(model, stream, method, t, monkeypatch=None, runner=None):
    """Max |loss change| over targets <= t when every token after t is replaced."""
    cfg = TTTConfig.for_method(method, dict(GEOM, lr=0.05, sgd_lr=0.05, epochs=2))
    other = stream.copy()
    rng = np.random.default_rng(t)
    tail = other[t + 1:]
    keep_bos = tail == 1
    tail[~keep_bos] = rng.integers(4, 40, int((~keep_bos).sum()))  # same document layout
    if runner is not None:
        monkeypatch.setattr(ttt_mod, "_Runner", runner)
    a = evaluate_ttt(model, stream, TABLES, cfg, return_losses=True).losses
    b = evaluate_ttt(model, other, TABLES, cfg, return_losses=True).losses
    return float(np.max(np.abs(a[1:t + 1] - b[1:t + 1])))


@pytest.mark.parametrize("method", ["lora", "phased", "sgd", "q"])
def test_future_tokens_never_change_recorded_losses(model, stream, method):
    for t in (20, len(stream) // 2, len(stream) - 10):
        assert _legality_violations(model, stream, method, t) < 1e-5, t


def test_the_legality_property_catches_train_before_score(model, stream, monkeypatch):
    # Any t inside a chunk with later targets of its document catches it (40 and 130 here).
    worst = max(_legality_violations(model, stream, "lora", t, monkeypatch, _TrainThenScore) for t in (40, 130))
    assert worst > 1e-3


# ------------------------------------------------------------------ gradients

def test_adapter_gradients_through_packed_layers_match_float64_dense():
    """LoRA A/B gradients through PackedLinear (transposed dequant kernels) vs a float64 model
    whose linears hold the dequantized weights and whose adapters are plain float64 matmuls."""
    torch.manual_seed(3)
    packed = tiny_packed(seed=3, bits=4)
    dense = GPT(packed.config).double()
    sd = {k: v.double() for k, v in packed.state_dict().items() if "packed" not in k and "scales" not in k}
    for n in packed.linear_names:
        sd[n + ".weight"] = packed.get_submodule(n).dequantize().double()
    dense.load_state_dict(sd)
    x = torch.as_tensor(repetitive_docs(3, seed=5)[:2 * 24].astype(np.int64)).view(2, 24)
    y = torch.roll(x, -1, 1)
    S, r = 2, 3
    bank = SlotBank(S)
    grads = {}
    for tag, m, dt in (("packed", packed, torch.float32), ("dense", dense, torch.float64)):
        surg = ttt_mod._Surgery(m)
        g = torch.Generator().manual_seed(0)
        ad = [surg.wrap_slot(n, lambda b, k, o: BatchedLoRA(b, k, o, r, 2.0, bank, generator=g))
              for n in m.linear_names]
        ad.append(surg.wrap_head(lambda b, k, o: BatchedLoRA(b, k, o, r, 2.0, bank, generator=g)))
        torch.manual_seed(1)
        for a in ad:
            with torch.no_grad():
                a.B.normal_(0, 0.1)  # non-zero B, so A gets a gradient too
            a.A.data, a.B.data = a.A.data.to(dt), a.B.data.to(dt)
        for p in m.parameters():
            if not any(p is q for a in ad for q in (a.A, a.B)):
                p.requires_grad_(False)
        logits = m(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 40).to(dt), y.reshape(-1))
        loss.backward()
        grads[tag] = [(a.A.grad.double(), a.B.grad.double()) for a in ad]
        surg.restore()
    for (pa, pb), (da, db) in zip(grads["packed"], grads["dense"]):
        assert da.abs().max() > 0 and db.abs().max() > 0
        torch.testing.assert_close(pa, da, rtol=2e-4, atol=2e-6)
        torch.testing.assert_close(pb, db, rtol=2e-4, atol=2e-6)


def test_slot_adamw_matches_torch_adamw_per_slot_and_skips_idle_slots():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(3, 4, 5))
    ref = [torch.nn.Parameter(p.detach()[i].clone()) for i in range(3)]
    opt = SlotAdamW([p], 3, lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    ropt = [torch.optim.AdamW([q], lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1) for q in ref]
    frozen = p.detach()[2].clone()
    for _ in range(4):
        g = torch.randn(3, 4, 5)
        p.grad = g.clone()
        opt.step(torch.tensor([True, True, False]))
        for i in range(2):
            ref[i].grad = g[i].clone()
            ropt[i].step()
    for i in range(2):
        torch.testing.assert_close(p.detach()[i], ref[i].detach(), rtol=1e-5, atol=1e-6)
    assert torch.equal(p.detach()[2], frozen)


# ------------------------------------------------------------------ fallbacks, config

def test_long_documents_and_time_limit_fall_back_to_the_base(model, stream):
    base = evaluate_ttt(model, stream, TABLES, TTTConfig.for_method("lora", dict(GEOM, lr=0.0)), return_losses=True)
    r = evaluate_ttt(model, stream, TABLES, TTTConfig.for_method("lora", dict(GEOM, lr=0.05, max_doc_len=1)),
                     return_losses=True)
    np.testing.assert_allclose(r.losses, base.losses, rtol=1e-5, atol=1e-6)
    assert r.documents_adapted == 0
    r = evaluate_ttt(model, stream, TABLES, TTTConfig.for_method("lora", dict(GEOM, lr=0.05, time_limit_s=0.0)),
                     return_losses=True)
    np.testing.assert_allclose(r.losses, base.losses, rtol=1e-5, atol=1e-6)
    assert r.documents_adapted == 0


def test_temperature_rescales_the_counted_loss(model, stream):
    a = evaluate_ttt(model, stream, TABLES, TTTConfig.for_method("lora", dict(GEOM, lr=0.0)))
    b = evaluate_ttt(model, stream, TABLES, TTTConfig.for_method("lora", dict(GEOM, lr=0.0, temperature=0.9)))
    assert a.val_bpb != b.val_bpb and (a.tokens, a.bytes) == (b.tokens, b.bytes)


@pytest.mark.parametrize("bad, msg", [
    ({"chunk": 0}, "chunk"), ({"context": 100, "chunk": 64}, "multiple"), ({"lr": -1}, "lr"),
    ({"betas": [0.9]}, "betas"), ({"targets": ["q", "zz"]}, "zz"), ({"rank": 2.5}, "rank"),
    ({"nope": 1}, "unknown"), ({"temperature": 0}, "temperature"), ({"lr": float("nan")}, "lr"),
    ({"keep_a_warm": 1}, "keep_a_warm"), ({"method": "sgd"}, "method"),
])
def test_bad_config_is_one_clear_error(bad, msg):
    with pytest.raises(GolfpackError, match=msg):
        TTTConfig.from_json(json.dumps(bad), method="lora")


def test_config_json_roundtrip_and_hostile_input():
    c = TTTConfig.for_method("phased", {"rank": 4})
    assert TTTConfig.from_json(json.dumps(c.to_dict())) == c
    with pytest.raises(GolfpackError):
        TTTConfig.from_json("[" * 10000, method="lora")
    with pytest.raises(GolfpackError, match="object"):
        TTTConfig.from_json("[1, 2]", method="lora")
    with pytest.raises(GolfpackError, match="q"):
        TTTConfig.for_method("q", {"sgd_targets": ["q", "k"]})

"""Each TTT variant changes the weights it should, only those, and lowers the loss it trains on.

The other TTT tests check legality and exactness at lr = 0; they pass with the optimizer step
replaced by a no-op (issue 20). These watch the training itself: the trainable tensors are read
just before evaluate_ttt puts the model back, and every training call's loss is measured before
and after it.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from golfpack.evaluate import ttt as ttt_mod
from golfpack.evaluate.lora import BatchedLoRA, DeltaLinear
from golfpack.evaluate.ttt import TTTConfig, evaluate_ttt

from eval_standin import tiny_tables
from test_ttt import GEOM, repetitive_docs, tiny_packed

TABLES = tiny_tables()

# What each method trains (ttt_config.py defaults): LoRA slots, dense delta slots, control tensors.
EXPECT = {
    "lora": dict(lora=(".attn.c_q", ".attn.c_v", "lm_head"), delta=(), controls=False),
    "phased": dict(lora=(".attn.c_q", ".attn.c_k", ".attn.c_v", ".attn.proj", ".mlp.fc", ".mlp.proj", "lm_head"),
                   delta=(".attn.c_q", ".attn.c_k", ".attn.c_v", ".attn.proj", ".mlp.fc", ".mlp.proj"), controls=True),
    "sgd": dict(lora=(), delta=(".attn.c_q", ".attn.c_k", ".attn.c_v", ".attn.proj", ".mlp.fc", ".mlp.proj"),
                controls=True),
    "q": dict(lora=(), delta=(".attn.c_q",), controls=False),
}
LR = dict(lr=0.03, sgd_lr=0.05)



@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def model():
    return tiny_packed()


@pytest.fixture(scope="module")
def stream():
    return repetitive_docs(14)


def _rows_loss(run, docs) -> float:
    """Mean CE over the hard `context`-token rows train_rows_sgd trains on (no grad)."""
    W = run.cfg.context
    num = den = 0.0
    with torch.no_grad():
        for d in docs:
            s, n = int(run.starts[d]), int(run.counts[d])
            for o in range(0, n, W):
                ln = min(W, n - o)
                pos = torch.arange(s + o, s + o + ln)
                _, ce = run.forward_ce(run.tok[pos][None], run.tok[pos + 1][None], 0)
                num += float(ce.sum())
                den += ln
    return num / den


def _adapters(model) -> dict[str, torch.nn.Module]:
    """Installed wrappers by the slot they wrap ("blocks.0.attn.c_q"; a delta under a LoRA is "...c_q.base")."""
    return {n: m for n, m in model.named_modules() if isinstance(m, (BatchedLoRA, DeltaLinear))}


def _slot(name: str) -> str:
    return name[: -len(".base")] if name.endswith(".base") else name


class _Watch:
    """Records: which wrappers were installed and whether each trained tensor ever left its initial
    zero, which control tensors changed, whether the base's own tensors stayed put while wrapped,
    and the loss before / after every training call."""

    def __init__(self, monkeypatch, model):
        self.kinds: dict[str, set] = {"lora": set(), "delta": set()}
        self.moved: dict[tuple[str, str], bool] = {}
        self.controls_changed: list[bool] = []
        self.base = [(n, t, t.detach().clone()) for n, t in list(model.named_parameters()) + list(model.named_buffers())]
        self.base_ok = None
        self.lora_losses: list[tuple[float, float]] = []
        self.sgd_losses: list[tuple[float, float]] = []
        watch = self
        orig_restore = ttt_mod._Surgery.restore
        orig_backup = ttt_mod._ControlBackup.restore
        orig_rows = ttt_mod._Runner.train_rows
        orig_sgd = ttt_mod._Runner.train_rows_sgd

        def note(model_):
            for n, m in _adapters(model_).items():
                kind = "lora" if isinstance(m, BatchedLoRA) else "delta"
                watch.kinds[kind].add(_slot(n))
                t = m.B if kind == "lora" else m.delta  # both start at zero
                key = (kind, _slot(n))
                watch.moved[key] = watch.moved.get(key, False) or bool(t.detach().abs().max() > 0)

        def restore(self_):
            note(self_.model)
            watch.base_ok = [torch.equal(t.detach(), v) for _, t, v in watch.base]
            orig_restore(self_)

        def backup(self_):
            watch.controls_changed = [not torch.equal(p.detach(), v) for p, v in self_.saved]
            orig_backup(self_)

        def train_rows(self_, ce, scored, train_mask, docs, opt, first, x, y, lo):
            tm = torch.as_tensor(train_mask)
            w = scored.float()
            before = float(((ce.detach() * w).sum(1) / w.sum(1).clamp(min=1))[tm].sum())
            orig_rows(self_, ce, scored, train_mask, docs, opt, first, x, y, lo)
            with torch.no_grad():
                _, ce2 = self_.forward_ce(x, y, lo)
            after = float(((ce2 * w).sum(1) / w.sum(1).clamp(min=1))[tm].sum())
            watch.lora_losses.append((before, after))
            note(self_.model)

        def train_rows_sgd(self_, docs, params, opt, lr_of_step, step0):
            before = _rows_loss(self_, docs)
            out = orig_sgd(self_, docs, params, opt, lr_of_step, step0)
            watch.sgd_losses.append((before, _rows_loss(self_, docs)))
            note(self_.model)
            return out

        monkeypatch.setattr(ttt_mod._Surgery, "restore", restore)
        monkeypatch.setattr(ttt_mod._ControlBackup, "restore", backup)
        monkeypatch.setattr(ttt_mod._Runner, "train_rows", train_rows)
        monkeypatch.setattr(ttt_mod._Runner, "train_rows_sgd", train_rows_sgd)


@pytest.mark.parametrize("method", ["lora", "phased", "sgd", "q"])
def test_each_variant_trains_exactly_its_targets_and_lowers_its_training_loss(model, stream, method, monkeypatch):
    base = evaluate_ttt(model, stream, TABLES, TTTConfig.for_method(method, dict(GEOM, lr=0.0, sgd_lr=0.0)))
    watch = _Watch(monkeypatch, model)
    r = evaluate_ttt(model, stream, TABLES, TTTConfig.for_method(method, dict(GEOM, **LR)))
    want = EXPECT[method]
    linear = list(model.linear_names)

    # 1. The wrappers installed are exactly the method's targets, on every layer.
    head = {"lm_head"} if "lm_head" in want["lora"] else set()
    assert watch.kinds["lora"] == {n for n in linear if n.endswith(want["lora"])} | head
    assert watch.kinds["delta"] == {n for n in linear if n.endswith(want["delta"])}

    # 2. Every trained tensor left its initial zero (LoRA B, dense deltas).
    stuck = sorted(k for k, moved in watch.moved.items() if not moved)
    assert not stuck, f"never trained: {stuck}"
    # Control tensors: trained (then put back) by sgd and phased; untouched by lora and q.
    if want["controls"]:
        assert any(watch.controls_changed), "no control tensor was trained"
    else:
        assert not any(watch.controls_changed)

    # 3. The base's own tensors (packed symbols, scales, embeddings) never change, even while wrapped.
    changed = [n for (n, _, _), ok in zip(watch.base, watch.base_ok) if not ok]
    if want["controls"]:  # controls are trained in place, then restored: only they may differ here
        ctl = {id(p) for p in ttt_mod._controls(model)}
        changed = [n for (n, t, _), ok in zip(watch.base, watch.base_ok) if not ok and id(t) not in ctl]
    assert not changed, changed

    # 4. Training calls lower the loss they train on: most of them, and clearly in sum.
    calls = (watch.lora_losses if want["lora"] else []) + (watch.sgd_losses if want["delta"] else [])
    assert calls, "no training call was made"
    drops = [b - a for b, a in calls]
    assert sum(d > 0 for d in drops) >= 0.8 * len(drops), drops
    assert sum(drops) > 1e-4 * sum(b for b, _ in calls), drops  # q (one matrix per layer) gains least: ~2e-4
    if want["lora"]:  # per-document adaptation also shows in the score-first result (random 5-gram
        # documents share nothing, so what sgd / q learn on earlier documents need not carry over)
        assert r.val_bpb < base.val_bpb - 0.01, (r.val_bpb, base.val_bpb)


def test_temperature_is_the_softmax_of_logits_over_t(model):
    """The counted loss is -log softmax(logits / T)[target], computed here from the model directly."""
    rng = np.random.default_rng(3)
    docs = [np.concatenate([[1], rng.integers(4, 40, int(n))]) for n in rng.integers(5, 30, 6)]
    stream = np.concatenate(docs).astype(np.uint16)
    geom = dict(GEOM, chunk=32, context=32)  # every document fits one chunk: its input is itself from BOS
    for T in (1.0, 0.7, 1.6):
        r = evaluate_ttt(model, stream, TABLES, TTTConfig.for_method("lora", dict(geom, lr=0.0, temperature=T)),
                         return_losses=True)
        start = 0
        for d in docs:
            x = torch.as_tensor(d[:-1].astype(np.int64))[None]
            y = torch.as_tensor(d[1:].astype(np.int64))
            with torch.no_grad():
                logits = model.logits_from_hidden(model.forward_hidden(x))[0].double()
            want = -F.log_softmax(logits / T, dim=-1)[torch.arange(len(y)), y]
            got = r.losses[start + 1: start + len(d)]
            np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)
            start += len(d)

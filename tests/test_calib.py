"""Calibration statistics (codec/calib.py): what `collect` gathers, that `TensorStats.predict` is its
formula, and that prediction tracks the measured loss change on a tiny seeded GPT."""
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from golfpack.codec import calib as C
from golfpack.data.shards import write_shard
from golfpack.errors import GolfpackError

from planner_standin import random_tokens, tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> bool:
    """Equal up to float32 rounding, relative to the largest magnitude (near-zero entries included)."""
    b = b.detach().to(a.dtype)
    return a.shape == b.shape and float((a - b).abs().max()) <= rel * float(b.abs().max())


def _seqs(n=8, T=24, seed=0):
    return C.sequences_from_tokens(random_tokens(4000, seed), n, T, seed=seed)


# ----------------------------------------------------------------------------- collect


def test_collect_covers_every_linear_slot_and_the_table():
    model = tiny_model(0)
    seqs = _seqs()
    cal = C.collect(model, seqs, batch=3)
    linears = {n + ".weight" for n in model.linear_names}
    assert set(cal.stats) == linears | {"tok_emb.weight"}
    params = dict(model.named_parameters())
    for name in linears:
        s, w = cal.stats[name], params[name]
        n, k = w.shape
        assert s.H.shape == (k, k) and s.H.dtype == torch.float64
        assert s.G.shape == (n,) and s.G.dtype == torch.float64 and bool((s.G >= 0).all())
        assert s.grad.shape == w.shape
        assert s.F_lookup is None and s.rows_per_token == 1.0
    # the tied table: a lookup (F) and the output head (H over hidden states, G over the vocabulary)
    t = cal.stats["tok_emb.weight"]
    V, D = params["tok_emb.weight"].shape
    assert t.H.shape == (D, D) and t.G.shape == (V,) and t.F_lookup.shape == (V, D)
    assert bool((t.F_lookup >= 0).all()) and t.grad.shape == (V, D)
    for s in cal.stats.values():  # H = E[x x^T]: symmetric positive semi-definite
        assert torch.allclose(s.H, s.H.T, rtol=1e-6, atol=1e-12)
        ev = torch.linalg.eigvalsh(s.H)
        assert float(ev.min()) >= -1e-9 * float(ev.max())
        assert s.col_weight().dtype == torch.float32 and bool((s.col_weight() >= 0).all())
    assert cal.tokens == 8 * 24
    assert cal.base_loss == pytest.approx(C.measure_loss(model, seqs), rel=1e-6)


def test_an_untied_head_gets_its_own_statistics():
    model = tiny_model(0, tie_embeddings=False)
    cal = C.collect(model, _seqs())
    assert "lm_head.weight" in cal.stats and cal.stats["lm_head.weight"].H.shape == (32, 32)
    t = cal.stats["tok_emb.weight"]
    assert t.H is None and t.G is None and t.F_lookup.shape == (64, 32)  # a lookup only
    # predict of a lookup-only table is its F term alone
    dW = torch.randn(64, 32, generator=torch.Generator().manual_seed(0)) * 1e-2
    assert t.predict(dW) == pytest.approx(0.5 * float((t.F_lookup * dW.double() ** 2).sum()), rel=1e-12)


def test_collect_statistics_equal_an_independent_autograd_computation():
    """H, G, F and grad recomputed with plain autograd (no hooks) on an identical model."""
    seqs = _seqs(n=6, T=20, seed=3)
    model, ref = tiny_model(5), tiny_model(5)
    cal = C.collect(model, seqs, batch=4)  # batches of 4 + 2: the sums must span batches
    x, y = seqs[:, :-1], seqs[:, 1:]
    T = y.numel()
    # linear slot: its input and output-gradient moments
    name = "blocks.1.mlp.fc"
    mod = ref.get_submodule(name)
    seen = {}
    h = mod.register_forward_hook(lambda m, i, o: seen.update(x=i[0], y=o) or o.retain_grad())
    emb = {}
    h2 = ref.tok_emb.register_forward_hook(lambda m, i, o: emb.update(o=o) or o.retain_grad())
    hidden = ref.forward_hidden(x)
    hidden.retain_grad()
    z = F.linear(hidden, ref.tok_emb.weight)  # the tied head's pre-softcap logits
    z.retain_grad()
    logits = 30.0 * torch.tanh(z / 30.0)
    loss = F.cross_entropy(logits.reshape(-1, 64).float(), y.reshape(-1), reduction="sum")
    loss.backward()
    h.remove()
    h2.remove()
    xin = seen["x"].reshape(-1, 32).double()
    gout = seen["y"].grad.reshape(-1, 64).double()
    s = cal.stats[name + ".weight"]
    # collect sums x^T x in float32 per batch: compare at float32 precision of the largest entry
    assert close(s.H, xin.T @ xin / xin.shape[0])
    assert close(s.G, (gout ** 2).mean(0))
    assert close(s.grad, mod.weight.grad / T)
    # tied table: head role (hidden states, logit gradients), lookup role, and the total gradient
    t = cal.stats["tok_emb.weight"]
    hs = hidden.detach().reshape(-1, 32).double()
    assert close(t.H, hs.T @ hs / hs.shape[0])
    assert close(t.G, (z.grad.reshape(-1, 64).double() ** 2).mean(0))
    Fref = torch.zeros(64, 32, dtype=torch.float64)
    Fref.index_add_(0, x.reshape(-1), emb["o"].grad.reshape(-1, 32).double() ** 2)
    assert close(t.F_lookup, Fref / T)
    assert close(t.grad, ref.tok_emb.weight.grad / T)
    assert cal.base_loss == pytest.approx(float(loss.detach()) / T, rel=1e-6)


def test_what_collect_leaves_behind():
    """collect runs the model in float32 eval mode and leaves every parameter's values exactly as they
    were, with .grad None and requires_grad False (it freezes the model; it does not restore the flags)."""
    model = tiny_model(1)
    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
        p.grad = torch.ones_like(p)  # a stale gradient is cleared, not accumulated into
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    C.collect(model, _seqs())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None and not p.requires_grad for p in model.parameters())
    assert not model.training


def test_measure_with_restores_the_weights():
    model = tiny_model(2)
    seqs = _seqs()
    name = "blocks.0.attn.c_q.weight"
    before = model.state_dict()[name].clone()
    base = C.measure_loss(model, seqs)
    moved = C.measure_with(model, seqs, {name: before + 0.5})
    assert moved != base and torch.equal(model.state_dict()[name], before)
    assert C.measure_loss(model, seqs) == base
    with pytest.raises(GolfpackError, match="no weight 'nope'"):
        C.measure_with(model, seqs, {name: before + 1.0, "nope": before})
    assert torch.equal(model.state_dict()[name], before)  # restored after the error too


# ----------------------------------------------------------------------------- the prediction


def test_predict_is_its_formula():
    g = torch.Generator().manual_seed(0)
    N, K = 5, 7
    M = torch.randn(K, K, generator=g, dtype=torch.float64)
    s = C.TensorStats(H=M @ M.T, G=torch.rand(N, generator=g, dtype=torch.float64), rows_per_token=2.5,
                      F_lookup=torch.rand(N, K, generator=g, dtype=torch.float64),
                      grad=torch.randn(N, K, generator=g))
    dW = torch.randn(N, K, generator=g)
    d = dW.double()
    # 1/2 * rows_per_token * sum_i G_i (dW H dW^T)_ii + 1/2 * sum F dW^2, written out element by element
    quad = sum(float(s.G[i]) * sum(float(d[i, j] * s.H[j, l] * d[i, l]) for j in range(K) for l in range(K))
               for i in range(N))
    lookup = sum(float(s.F_lookup[i, j] * d[i, j] ** 2) for i in range(N) for j in range(K))
    assert s.predict(dW) == pytest.approx(0.5 * 2.5 * quad + 0.5 * lookup, rel=1e-12)
    assert s.first_order(dW) == pytest.approx(float((s.grad.double() * d).sum()), rel=1e-12)
    assert s.predict(torch.zeros(N, K)) == 0.0
    assert s.predict(3 * dW) == pytest.approx(9 * s.predict(dW), rel=1e-6)  # 3 * dW is rounded to float32
    # without G every output row weighs 1; without statistics there is nothing to predict
    s2 = C.TensorStats(H=s.H)
    assert s2.predict(dW) == pytest.approx(0.5 * float(((d @ s.H) * d).sum()), rel=1e-12)
    assert C.TensorStats().predict(dW) == 0.0 and C.TensorStats().first_order(dW) == 0.0


def test_planning_cost_counts_a_first_order_term_only_beyond_calibration_noise():
    s = C.TensorStats(tokens=1000)
    noise = C.FIRST_ORDER_Z * (2 * 1e-6 / 1000) ** 0.5  # z standard errors of the mean g . dW x
    assert s.planning_cost(1e-6, 0.5 * noise) == 1e-6  # explained by noise: the quadratic alone
    assert s.planning_cost(1e-6, noise + 3e-4) == pytest.approx(1e-6 + 3e-4, rel=1e-9)
    assert s.planning_cost(1e-6, -1.0) == 1e-6  # a descent of the calibration loss is not credited
    assert C.TensorStats().planning_cost(1e-6, 1.0) == 1e-6  # no token count: nothing to judge it by
    # more tokens, less noise: the same term counts more
    assert C.TensorStats(tokens=10 ** 6).planning_cost(1e-6, 2 * noise) > s.planning_cost(1e-6, 2 * noise)


def test_collect_records_the_tokens_behind_each_gradient_and_candidates_pay_a_real_gradient():
    from golfpack.codec.candidates import TensorCandidates

    model = tiny_model(3)
    cal = C.collect(model, _seqs())
    assert all(s.tokens == cal.tokens for s in list(cal.stats.values()) + list(cal.float_stats.values()))
    name = "blocks.0.mlp.proj.weight"
    s = cal.stats[name]
    w = dict(model.named_parameters())[name].detach()
    g = TensorCandidates(name, w, s)
    # an error straight up the gradient: its first-order term is far beyond the noise, so the cost
    # the planner minimizes is (almost) the first-order term, not the quadratic
    d = s.grad / s.grad.norm() * 0.05 * w.norm()
    dl, fo = g.cost(w + d)
    assert fo > 0 and fo == pytest.approx(float((s.grad.double() * d.double()).sum()), rel=1e-5)
    assert dl > 100 * s.predict(d) and dl == pytest.approx(s.planning_cost(s.predict_fast(d), fo), rel=1e-9)
    dl_down, fo_down = g.cost(w - d)  # the same error down the gradient: the quadratic alone
    assert fo_down < 0 and dl_down == pytest.approx(s.predict_fast(-d), rel=1e-9)


def test_predict_on_collected_statistics_is_its_formula():
    model = tiny_model(3)
    cal = C.collect(model, _seqs())
    g = torch.Generator().manual_seed(1)
    for name in ("blocks.0.mlp.proj.weight", "tok_emb.weight"):
        s = cal.stats[name]
        dW = torch.randn(s.grad.shape, generator=g) * 1e-2
        d = dW.double()
        want = 0.5 * s.rows_per_token * float(torch.einsum("i,ij,jk,ik->", s.G, d, s.H, d))
        if s.F_lookup is not None:
            want += 0.5 * float((s.F_lookup * d * d).sum())
        assert s.predict(dW) == pytest.approx(want, rel=1e-10)
        assert cal.predict(name, dW) == s.predict(dW) and cal.predict("nope", dW) is None


# Output projections (straight into the residual stream) and the tied table: the layers where the
# K-FAC factorisation is closest, so a factor-of-2 band is a real check of H, G, F and the 1/2.
TRACKED = ("tok_emb.weight", "blocks.0.attn.proj.weight", "blocks.1.attn.proj.weight",
           "blocks.0.mlp.proj.weight", "blocks.1.mlp.proj.weight")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prediction_tracks_the_measured_loss_change(seed):
    """Calibrating on sequences the model samples itself makes the empirical Fisher the expected
    Hessian, so predict(dW) should match the measured second-order loss change. The symmetric
    difference (L(W+dW) + L(W-dW))/2 - L(W) removes the first-order term; the one-sided change is
    compared with predict + first_order. Random dW as large as the weight's own std: there the
    second-order term dominates the first-order one and higher orders stay small. Measured ratios
    for seeds 0..2: 0.91..1.54 (second order) and 0.90..1.40 (total); the band is [0.5, 2]."""
    model = tiny_model(seed)
    seqs = C.sequences_from_model(model, 32, 32, seed=0)
    cal = C.collect(model, seqs)
    params = dict(model.named_parameters())
    g = torch.Generator().manual_seed(5)
    for name in TRACKED:
        w = params[name].detach().clone()
        dW = torch.randn(w.shape, generator=g) * float(w.std())
        plus = C.measure_with(model, seqs, {name: w + dW})
        minus = C.measure_with(model, seqs, {name: w - dW})
        second = (plus + minus) / 2 - cal.base_loss
        pred, first = cal.stats[name].predict(dW), cal.stats[name].first_order(dW)
        assert second > 0 and 0.5 <= pred / second <= 2.0, (name, pred, second)
        assert 0.5 <= (pred + first) / (plus - cal.base_loss) <= 2.0, (name, pred, first, plus - cal.base_loss)


# ----------------------------------------------------------------------------- calibration sequences


def _rng_states():
    return random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state().clone()


def _same_states(a, b):
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and torch.equal(a[2], b[2])


def test_sequences_from_tokens_are_seeded_windows_of_the_stream():
    toks = random_tokens(1000, 1)
    before = _rng_states()
    a = C.sequences_from_tokens(toks, 7, 20, seed=3)
    assert _same_states(before, _rng_states())  # no global RNG is touched
    assert torch.equal(a, C.sequences_from_tokens(toks, 7, 20, seed=3))
    assert not torch.equal(a, C.sequences_from_tokens(toks, 7, 20, seed=4))
    assert a.shape == (7, 21) and a.dtype == torch.int64
    starts = []
    for row in a.numpy():  # every row is a contiguous window of the stream
        hits = [s for s in range(len(toks) - 20) if np.array_equal(toks[s : s + 21], row)]
        assert hits
        starts.append(hits[0])
    # a long enough stream gives non-overlapping windows, in stream order
    assert all(b - a_ >= 21 for a_, b in zip(starts, starts[1:]))
    # a short stream still gives valid (overlapping) windows
    short = C.sequences_from_tokens(toks[:50], 9, 20, seed=0)
    assert short.shape == (9, 21)
    for row in short.numpy():
        assert any(np.array_equal(toks[s : s + 21], row) for s in range(30))


@pytest.mark.parametrize("n, T, size, message", [
    (0, 8, 100, "n_seqs >= 1"), (4, 0, 100, "seq_len >= 1"), (1, 100, 100, "has 100 tokens; one sequence needs 101"),
])
def test_sequences_from_tokens_errors(n, T, size, message):
    with pytest.raises(GolfpackError, match=message):
        C.sequences_from_tokens(random_tokens(size), n, T)


def test_sequences_from_model_start_at_bos_and_are_seeded():
    model = tiny_model(4)
    before = _rng_states()
    a = C.sequences_from_model(model, 5, 9, seed=1, batch=2)
    assert _same_states(before, _rng_states())
    assert a.shape == (5, 10) and a.dtype == torch.int64
    assert bool((a[:, 0] == model.config.bos_id).all())
    assert int(a.min()) >= 0 and int(a.max()) < 64
    assert torch.equal(a, C.sequences_from_model(model, 5, 9, seed=1, batch=2))
    assert not torch.equal(a, C.sequences_from_model(model, 5, 9, seed=2, batch=2))
    with pytest.raises(GolfpackError, match="temperature must be > 0"):
        C.sequences_from_model(model, 1, 4, temperature=0)


def test_calibrate_from_a_shard_and_its_errors(tmp_path):
    model = tiny_model(0)
    shard = tmp_path / "train.bin"
    write_shard(shard, random_tokens(3000, 2))
    cal = C.calibrate(model, shard=shard, n_seqs=4, seq_len=16, seed=1)
    assert cal.source == "shard:train.bin" and cal.tokens == 64 and np.isfinite(cal.base_loss)
    assert torch.equal(cal.seqs, C.sequences_from_tokens(random_tokens(3000, 2), 4, 16, seed=1))
    bad = tmp_path / "bad.bin"
    write_shard(bad, np.full(100, 100, np.uint16))  # ids past the model's 64-token vocabulary
    with pytest.raises(GolfpackError, match=r"outside the model's vocabulary \[0, 64\)"):
        C.calibrate(tiny_model(0), shard=bad, n_seqs=2, seq_len=8)
    cal = C.calibrate(tiny_model(0), shard=None, n_seqs=2, seq_len=6)
    assert cal.source == "self" and cal.tokens == 12

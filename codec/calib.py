"""Calibration: the statistics that turn a weight error into a predicted loss increase.

For a linear layer y = W x, a weight error dW changes the output of token t by
dW x_t. With the per-token loss gradient g_t = d loss_t / d y_t, the empirical
Fisher (Gauss-Newton) approximation of the loss increase is

    d_loss ~= 1/2 * (1/T) * sum_t (g_t^T dW x_t)^2
           ~= 1/2 * (rows/T) * sum_i G_i * (dW H dW^T)_ii          (K-FAC, diagonal in outputs)

with H = E[x x^T] over the rows that pass through the layer (the GPTQ Hessian)
and G_i = E[g_i^2] (the output-gradient second moment). rows/T is > 1 when a
layer runs several times per token (depth recurrence). An embedding table E
used as a lookup changes the input of token t by dE[idx_t], which gives the
diagonal term 1/2 * sum_{v,j} F[v, j] * dE[v, j]^2 with
F[v, j] = (1/T) * sum_{t: idx_t = v} g_{t,j}^2; a tied table also serves as the
output head (input: the final hidden state, output: the pre-softcap logits), so
it gets both terms.

`collect` runs the float model forward and backward over calibration
sequences (from a *training* shard, or sampled from the model itself) with
hooks on every linear slot, every embedding and the tied head. The predicted
d_loss is checked against measured d_loss (`measure_loss`) by the planner and
by benchmarks/quant_rd.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from golfpack.errors import GolfpackError


SMALL_FISHER_NUMEL = 1 << 20  # collect() keeps a diagonal Fisher for unhooked tensors up to this size
# How many standard errors of calibration noise a first-order term must exceed before the planner
# counts it (TensorStats.planning_cost). On the GPU-trained 9x512 the z-scores of RTN candidates'
# first-order terms are standard normal (median |z| 0.6-0.8, max 3.1 over 275 candidates); on a
# model trained two CPU minutes they reach 30-200 (benchmarks/RESULTS.md, "Seed recipes").
FIRST_ORDER_Z = 4.0


@dataclass
class TensorStats:
    """Second-order statistics of one weight tensor (see module docstring)."""

    H: torch.Tensor | None = None  # [K, K] float64, mean x x^T over the rows through the layer
    G: torch.Tensor | None = None  # [N] float64, mean g_i^2 over the same rows
    rows_per_token: float = 1.0
    F_lookup: torch.Tensor | None = None  # [V, D] float64, lookup-role Fisher diagonal
    grad: torch.Tensor | None = None  # float32, d(mean loss)/dW on the calibration tokens
    # float64, same shape as the weight: a diagonal Fisher for the tensors no hook sees (control
    # vectors, skip weights), from the squares of per-batch gradients (collect's docstring)
    F_diag: torch.Tensor | None = None
    tokens: int = 0  # calibration tokens behind `grad` (0: unknown; planning_cost then ignores it)

    def planning_cost(self, dloss: float, first_order: float) -> float:
        """The loss increase the planner minimizes: the second-order prediction plus the part of a
        positive first-order term that calibration noise cannot explain.

        Near a minimum of the training loss the calibration gradient is noise: the first-order term
        of an error dW is the mean over T tokens of g_t . dW x_t, whose per-token second moment is
        2 * dloss (the same empirical Fisher), so under "no systematic gradient" it is ~N(0, 2 dloss / T).
        A model far from a minimum (trained a few minutes) has a systematic gradient, and there the
        first-order term is the loss change: zeroing a block's MLP predicted 1e-8 by the quadratic
        and measured 1e-3, its first-order term 2e-3. So the planner adds max(0, fo - z * sigma),
        z = FIRST_ORDER_Z: nothing on a trained model's noise, the measured cost where the gradient
        is real. A negative term (an error that happens to descend the calibration loss) is not
        credited: that would fit the calibration tokens."""
        if self.tokens <= 0 or not first_order > 0:
            return dloss
        noise = FIRST_ORDER_Z * math.sqrt(2.0 * max(dloss, 0.0) / self.tokens)
        return dloss + max(0.0, first_order - noise)

    def col_weight(self) -> torch.Tensor | None:
        """diag(H) as float32 (what the MSE clip search weights columns by)."""
        return None if self.H is None else torch.diagonal(self.H).to(torch.float32).clamp_min(0)

    def predict(self, dW: torch.Tensor) -> float:
        """Predicted loss increase (nats/token) of adding dW [N, K] to the weight."""
        # a 0-d tensor (a scalar gain such as bigram.scale) is one row of one element
        d = dW.to(torch.float64).reshape(dW.shape[0] if dW.dim() else 1, -1)
        total = 0.0
        if self.H is not None:
            quad = ((d @ self.H) * d).sum(dim=1)  # (dW H dW^T)_ii
            g = self.G if self.G is not None else torch.ones_like(quad)
            total += 0.5 * self.rows_per_token * float((g * quad).sum())
        if self.F_lookup is not None:
            total += 0.5 * float((self.F_lookup * d * d).sum())
        if self.F_diag is not None:
            total += 0.5 * float((self.F_diag.reshape(d.shape) * d * d).sum())
        return total

    def predict_fast(self, dW: torch.Tensor) -> float:
        """predict() with the [N, K] x [K, K] product in float32 (half the time of float64, which
        the candidate loop calls thousands of times); the sums stay float64. On the 9x512's matrices
        it agrees with predict() to ~1e-8 relative."""
        if self.H is None or self.F_diag is not None:
            return self.predict(dW)
        cached = getattr(self, "_h32", None)  # (the H it was made from, its float32 copy)
        if cached is None or cached[0] is not self.H:
            cached = self._h32 = (self.H, self.H.to(torch.float32))
        h32 = cached[1]
        d = dW.to(torch.float32).reshape(dW.shape[0], -1)
        quad = ((d @ h32) * d).to(torch.float64).sum(dim=1)
        g = self.G if self.G is not None else torch.ones_like(quad)
        total = 0.5 * self.rows_per_token * float((g * quad).sum())
        if self.F_lookup is not None:
            total += 0.5 * float((self.F_lookup * d.to(torch.float64).square()).sum())
        return total

    def predict_diag(self, dW: torch.Tensor) -> float:
        """predict() with H replaced by its diagonal: O(N K) instead of O(N K^2). For errors that are
        independent across columns (round-to-nearest) the off-diagonal terms average out, so the
        planner screens its RTN grid with this and predicts the survivors exactly."""
        d2 = dW.to(torch.float64).reshape(dW.shape[0], -1).square()
        total = 0.0
        if self.H is not None:
            quad = d2 @ torch.diagonal(self.H)
            g = self.G if self.G is not None else torch.ones_like(quad)
            total += 0.5 * self.rows_per_token * float((g * quad).sum())
        if self.F_lookup is not None:
            total += 0.5 * float((self.F_lookup * d2).sum())
        if self.F_diag is not None:
            total += 0.5 * float((self.F_diag.reshape(d2.shape) * d2).sum())
        return total

    def first_order(self, dW: torch.Tensor) -> float:
        """<grad, dW>: the linear term of the loss change on the calibration tokens. A trained model
        sits near a minimum of its *training* loss, not of these tokens', so this term is not zero;
        it is what makes prediction match measurement on the calibration tokens (see
        benchmarks/RESULTS.md), but it is data-specific, so the planner does not optimize it."""
        if self.grad is None:
            return 0.0
        return float((self.grad.to(torch.float64) * dW.to(torch.float64).reshape(self.grad.shape)).sum())


@dataclass
class Calibration:
    """Statistics per weight name (state-dict keys) and the sequences they came from."""

    stats: dict[str, TensorStats]
    seqs: torch.Tensor  # int64 [n, T + 1]: inputs seqs[:, :-1], targets seqs[:, 1:]
    base_loss: float  # mean cross entropy of the reference model on seqs (nats/token)
    source: str  # "shard:<name>" or "self"
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    # the tensors no hook sees (stored as floats by the planner), each with only F_diag and grad
    float_stats: dict[str, TensorStats] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return int(self.seqs.shape[0] * (self.seqs.shape[1] - 1))

    def predict(self, name: str, dW: torch.Tensor) -> float | None:
        s = self.stats.get(name)
        return None if s is None else s.predict(dW)

    def first_order(self, name: str, dW: torch.Tensor) -> float:
        s = self.stats.get(name)
        return 0.0 if s is None else s.first_order(dW)


# ----------------------------------------------------------------------------- calibration sequences


def sequences_from_tokens(tokens: np.ndarray, n_seqs: int, seq_len: int, seed: int = 0) -> torch.Tensor:
    """n_seqs windows of seq_len + 1 tokens at seeded random offsets (non-overlapping when the
    stream is long enough). No global RNG is touched."""
    if n_seqs < 1 or seq_len < 1:
        raise GolfpackError(f"calibration needs n_seqs >= 1 and seq_len >= 1 (got {n_seqs}, {seq_len})")
    tokens = np.asarray(tokens)
    need = seq_len + 1
    if tokens.size < need:
        raise GolfpackError(f"calibration stream has {tokens.size} tokens; one sequence needs {need}")
    rng = np.random.default_rng(seed)
    slots = tokens.size // need
    if slots >= n_seqs:
        starts = np.sort(rng.choice(slots, size=n_seqs, replace=False)) * need
    else:
        starts = np.sort(rng.integers(0, tokens.size - need + 1, size=n_seqs))
    out = np.stack([tokens[s : s + need] for s in starts]).astype(np.int64)
    return torch.from_numpy(out)


def sequences_from_shard(path, n_seqs: int, seq_len: int, seed: int = 0) -> torch.Tensor:
    from golfpack.data.shards import read_shards

    return sequences_from_tokens(read_shards(path), n_seqs, seq_len, seed)


@torch.no_grad()
def sequences_from_model(model, n_seqs: int, seq_len: int, seed: int = 0, temperature: float = 1.0,
                         batch: int = 16) -> torch.Tensor:
    """Sample n_seqs sequences from the model itself, each starting at BOS (the 03-25 record's
    self-generated calibration: no training data needed). Quadratic in seq_len (no KV cache)."""
    if temperature <= 0:
        raise GolfpackError(f"temperature must be > 0, got {temperature}")
    gen = torch.Generator().manual_seed(seed)
    bos = int(getattr(model.config, "bos_id", 1))
    out = []
    for b0 in range(0, n_seqs, batch):
        nb = min(batch, n_seqs - b0)
        x = torch.full((nb, 1), bos, dtype=torch.int64)
        for _ in range(seq_len):
            logits = model(x[:, -seq_len:])[:, -1, :].float() / temperature
            nxt = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=gen)
            x = torch.cat([x, nxt], dim=1)
        out.append(x)
    return torch.cat(out, dim=0)


# ----------------------------------------------------------------------------- statistics


class _Acc:
    """Running sums for one weight: sum x x^T and the row count (inputs), sum g^2 (outputs), and
    the lookup Fisher F of an embedding table."""

    def __init__(self):
        self.H = None
        self.G = None
        self.rows = 0
        self.F = None

    def add_inputs(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).detach().to(torch.float32)
        Hb = (x.t() @ x).to(torch.float64)
        self.H = Hb if self.H is None else self.H + Hb
        self.rows += x.shape[0]

    def watch_outputs(self, out: torch.Tensor) -> None:
        """Add the per-row output gradients' squares to G when backward reaches `out`."""
        if not out.requires_grad:
            return

        def on_grad(g):
            g2 = g.reshape(-1, g.shape[-1]).to(torch.float64).pow(2).sum(0)
            self.G = g2 if self.G is None else self.G + g2
        out.register_hook(on_grad)


def _head_logits(model, h: torch.Tensor, acc: _Acc | None) -> torch.Tensor:
    """Tied head with a hook on the pre-softcap logits z = h E^T (what GPT.logits_from_hidden does)."""
    z = F.linear(h, model.tok_emb.weight)
    if acc is not None:
        acc.add_inputs(h)
        acc.watch_outputs(z)
    cap = model.config.logit_softcap
    return (cap * torch.tanh(z / cap) if cap else z).float()


def _forward_loss(model, x: torch.Tensor, y: torch.Tensor, head_acc: _Acc | None) -> torch.Tensor:
    """Summed cross entropy (nats) over the batch."""
    if model.lm_head is None and head_acc is not None:
        logits = _head_logits(model, model.forward_hidden(x), head_acc)
    else:
        logits = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum")


def collect(model, seqs: torch.Tensor, batch: int = 8, source: str = "", progress=None,
            device=None) -> Calibration:
    """Forward + backward over seqs with hooks; returns the statistics of every weight it can see.

    device: where the passes and the running sums run (default: where the model is; the code is
    device-generic, so a CUDA device does the same arithmetic); the statistics are returned on
    the CPU in float64 either way, and the model is left on the device it came from.

    Weight names are the model's state-dict keys: "<linear slot>.weight", embedding tables
    ("tok_emb.weight", "bigram.embed.weight", ...). The model is put in float32 and eval mode (in
    place) and its weights keep their values, but it is left frozen: the weights' gradients are
    taken for the first-order term, then every parameter ends with .grad None and
    requires_grad False (tests/test_calib.py::test_what_collect_leaves_behind).
    """
    import time

    t0 = time.perf_counter()
    model = model.float().eval()
    home = next(model.parameters()).device
    dev = home if device is None else torch.device(device)
    model.to(dev)
    # Weights of >= 2 dims get a gradient (the first-order term); the rest stay frozen.
    weights = {n: p for n, p in model.named_parameters() if p.dim() >= 2}
    for n, p in model.named_parameters():
        p.requires_grad_(n in weights)
        p.grad = None
    accs: dict[str, _Acc] = {}
    handles = []

    def linear_hook(name):
        acc = accs.setdefault(name, _Acc())

        def hook(mod, inp, out):
            acc.add_inputs(inp[0])
            acc.watch_outputs(out)
        return hook

    def embed_hook(name):
        acc = accs.setdefault(name, _Acc())

        def hook(mod, inp, out):
            idx = inp[0].reshape(-1)
            if torch.is_grad_enabled():
                if not out.requires_grad:
                    # A frozen table's lookup is a leaf: asking for its gradient is what makes
                    # every activation downstream carry one.
                    out.requires_grad_(True)

                def on_grad(g):
                    g2 = g.reshape(-1, g.shape[-1]).to(torch.float64).pow(2)
                    if acc.F is None:
                        acc.F = torch.zeros(mod.weight.shape, dtype=torch.float64, device=g2.device)
                    acc.F.index_add_(0, idx, g2)
                out.register_hook(on_grad)
        return hook

    for mname, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            handles.append(mod.register_forward_hook(linear_hook(mname + ".weight")))
        elif isinstance(mod, nn.Embedding):
            # the lookup's output must carry grad for the hook: make it a leaf that requires grad
            handles.append(mod.register_forward_hook(embed_hook(mname + ".weight")))
    head_acc = accs.setdefault("tok_emb.weight", _Acc()) if model.lm_head is None else None
    # Tensors no hook sees (control vectors, skip weights: what the planner stores as floats) get
    # a diagonal Fisher from per-batch gradients: with the loss summed over a batch's n tokens,
    # E[g_batch^2] = n E[g_token^2] + n (n - 1) mean(g)^2, so sum_b g_b^2 / T estimates the
    # per-token Fisher diagonal, biased upward by the mean gradient (conservative: it overstates
    # what rounding them to float16 costs).
    small = {n: p for n, p in model.named_parameters() if n not in accs and p.numel() <= SMALL_FISHER_NUMEL}
    for p in small.values():
        p.requires_grad_(True)
    f_diag = {n: torch.zeros(p.shape, dtype=torch.float64, device=dev) for n, p in small.items()}
    loss_sum, n_tok = 0.0, 0
    try:
        n = seqs.shape[0]
        for b0 in range(0, n, batch):
            chunk = seqs[b0 : b0 + batch].to(dev)
            x, y = chunk[:, :-1], chunk[:, 1:]
            with torch.enable_grad():
                before = {n: (p.grad.detach().clone() if p.grad is not None else None) for n, p in small.items()}
                loss = _forward_loss(model, x, y, head_acc)
                loss.backward()  # summed loss: the hooks see per-token gradients g_t
            for n, p in small.items():
                if p.grad is not None:
                    g = p.grad.detach() if before[n] is None else p.grad.detach() - before[n]
                    f_diag[n] += g.to(torch.float64).square()
            loss_sum += float(loss.detach())
            n_tok += y.numel()
            if progress is not None:
                progress(min(n, b0 + batch), n)
    finally:
        for h in handles:
            h.remove()
    cpu = torch.device("cpu")
    grads = {n: (p.grad.detach() / max(n_tok, 1)).to(cpu) for n, p in {**weights, **small}.items()
             if p.grad is not None}  # of the mean
    for p in model.parameters():
        p.requires_grad_(False)
        p.grad = None
    model.to(home)
    T = float(n_tok)
    stats = {}
    for name, acc in accs.items():
        s = TensorStats()
        if acc.H is not None and acc.rows:
            s.H = (acc.H / acc.rows).to(cpu)
            s.G = (acc.G / acc.rows).to(cpu) if acc.G is not None else None
            s.rows_per_token = acc.rows / T
        if acc.F is not None:
            s.F_lookup = (acc.F / T).to(cpu)
        s.grad = grads.get(name)
        s.tokens = n_tok
        if s.H is not None or s.F_lookup is not None:
            stats[name] = s
    small_stats = {name: TensorStats(F_diag=(f / T).to(cpu), grad=grads.get(name), tokens=n_tok)
                   for name, f in f_diag.items()}
    return Calibration(stats=stats, seqs=seqs, base_loss=loss_sum / T, source=source,
                       seconds=time.perf_counter() - t0, float_stats=small_stats)


@torch.no_grad()
def measure_loss(model, seqs: torch.Tensor, batch: int = 8) -> float:
    """Mean cross entropy (nats/token) of model on seqs."""
    total, n = 0.0, 0
    dev = next(model.parameters()).device
    for b0 in range(0, seqs.shape[0], batch):
        chunk = seqs[b0 : b0 + batch].to(dev)
        x, y = chunk[:, :-1], chunk[:, 1:]
        total += float(_forward_loss(model, x, y, None))
        n += y.numel()
    return total / n


@torch.no_grad()
def measure_with(model, seqs: torch.Tensor, replace: dict[str, torch.Tensor], batch: int = 8) -> float:
    """measure_loss with some weights temporarily replaced (state-dict names); restores them."""
    params = dict(model.named_parameters())
    saved = {}
    try:
        for name, w in replace.items():
            if name not in params:
                raise GolfpackError(f"model has no weight {name!r}")
            saved[name] = params[name].detach().clone()
            params[name].copy_(w.to(params[name].dtype))
        return measure_loss(model, seqs, batch)
    finally:
        for name, w in saved.items():
            params[name].copy_(w)


def calibrate(model, *, shard: str | Path | None = None, n_seqs: int = 64, seq_len: int = 512, seed: int = 0,
              batch: int = 8, progress=None, device=None) -> Calibration:
    """Sequences from a training shard (or sampled from the model when shard is None), then `collect`."""
    if shard is not None:
        seqs = sequences_from_shard(shard, n_seqs, seq_len, seed)
        source = f"shard:{Path(shard).name}"
    else:
        seqs = sequences_from_model(model, n_seqs, seq_len, seed)
        source = "self"
    vocab = model.config.vocab_size
    if int(seqs.max()) >= vocab or int(seqs.min()) < 0:
        raise GolfpackError(f"calibration tokens fall outside the model's vocabulary [0, {vocab})")
    cal = collect(model, seqs, batch=batch, source=source, progress=progress, device=device)
    if not math.isfinite(cal.base_loss):
        raise GolfpackError("calibration loss is not finite: the model or its tokens are broken")
    return cal

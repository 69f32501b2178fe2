"""Legal (score-first) test-time training on a packed or dense GPT.

    from golfpack.evaluate.ttt import TTTConfig, evaluate_ttt
    r = evaluate_ttt(model, tokens, tables, TTTConfig.for_method("lora"))
    r.val_bpb, r.tokens_per_s

Rules (FIELD_GUIDE section 5; issue #1017): one left-to-right pass; every
target is scored exactly once, by a forward pass that ran *before* any update
that could have seen it; the counted loss is the full normalized softmax of the
model's logits (divided by a temperature fixed beforehand); training only ever
uses tokens already scored.

Geometry. Documents are BOS-led spans of the stream (windows.document_spans).
A document's targets are split into chunks of `chunk`; chunk c is scored with
the document's own tokens [max(0, (c+1)*chunk - context), end) as input, i.e.
exactly the contexts of `evaluate(..., doc_aware=True, seq_len=context,
stride=chunk)`, so with adapters at zero the two give the same loss. Bytes
follow evaluate() (byte tables, previous token of each target).

Methods (TTTConfig.method):
  lora    doc_batch documents side by side, one LoRA slot each (evaluate/lora.py).
          Per chunk index c: one forward over every document that still has a
          chunk c; its pre-update losses are recorded; the same graph is then
          backpropagated (documents with a later chunk only) and SlotAdamW steps;
          `epochs` > 1 re-forwards and steps again (never re-scored). Slots are
          reset between batches of documents (B <- 0; A re-drawn unless keep_a_warm).
  phased  lora, and after the documents up to each phase boundary (prefix_docs
          split into `phases`, rounded up to whole doc batches) are scored, one
          SGD pass over all of them trains dense deltas of the base weights.
  sgd     documents grouped into chunks of >= sgd_chunk_tokens; each group is
          scored (no grad), then SGD with momentum (cosine lr over groups, grad
          clipping) trains dense deltas + control tensors on it for sgd_epochs.
  q       sgd, training the Q projections only.

Packed weights: adapters only *call* the base layers, so a PackedLinear stays
packed and gradients reach the adapters through the transposed dequant-matmul
kernels. The full-parameter methods (sgd, q, phased's phases) train a dense
float32 delta per target matrix (DeltaLinear): that is a dense trainable copy's
worth of memory, the base itself is never densified. The token table / tied head
is never a full-parameter target (it can take a LoRA via "lm_head").

Fallbacks: documents longer than max_doc_len, and every document after
time_limit_s seconds, are scored with adapters disabled (no training).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from golfpack.errors import GolfpackError
from golfpack.evaluate.lora import BatchedLoRA, DeltaLinear, SlotAdamW, SlotBank
from golfpack.evaluate.ttt_config import METHODS, TARGET_SUFFIXES, TTTConfig
from golfpack.evaluate.windows import document_spans

LN2 = math.log(2.0)
__all__ = ["TTTConfig", "TTTResult", "evaluate_ttt", "METHODS"]


@dataclass
class TTTResult:
    val_loss: float
    val_bpb: float
    tokens: int
    bytes: int
    seconds: float
    tokens_per_s: float
    mode: str
    seq_len: int  # the context window
    stride: int  # the chunk
    documents: int
    documents_adapted: int  # documents scored with TTT (the rest: base fallback)
    device: str
    segments: int = 0  # chunk rows scored (one per document chunk)
    world_size: int = 1
    autocast: str = "fp32"
    config: dict = field(default_factory=dict)
    losses: np.ndarray | None = None  # per-target loss (index = stream position), if asked for

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("losses")
        return d


# ------------------------------------------------------------------ model surgery

def _slot_names(model, suffixes) -> list[str]:
    return [n for n in model.linear_names if any(n.endswith(s) for s in suffixes)]


def _base_head(model):
    """The pre-softcap output head as a callable h -> logits (what GPT.logits_from_hidden uses)."""
    if model.lm_head is not None:
        return model.lm_head
    if hasattr(model.tok_emb, "head"):
        return model.tok_emb.head
    w = model.tok_emb.weight
    return lambda h: F.linear(h, w.to(h.dtype))


class _Surgery:
    """Installs wrappers into a GPT's linear slots / head and restores the originals."""

    def __init__(self, model):
        self.model = model
        self.saved: list[tuple[object, str, object]] = []

    def wrap_slot(self, name: str, make):
        parent_name, _, attr = name.rpartition(".")
        parent = self.model.get_submodule(parent_name) if parent_name else self.model
        orig = getattr(parent, attr)
        new = make(orig, orig.in_features, orig.out_features)
        self.saved.append((parent, attr, orig))
        setattr(parent, attr, new)
        return new

    def wrap_head(self, make):
        m = self.model
        D, V = m.config.model_dim, m.config.vocab_size
        orig = m.lm_head
        new = make(_base_head(m), D, V)
        self.saved.append((m, "lm_head", orig))
        m.lm_head = new
        return new

    def restore(self):
        for parent, attr, orig in reversed(self.saved):
            setattr(parent, attr, orig)
        self.saved.clear()


def _controls(model) -> list[torch.nn.Parameter]:
    """Float control tensors (norm gains, scales, mixes, q_gain, skips): the small dense params.
    Embedding tables and dense linear weights are excluded (those are targets or frozen)."""
    out = []
    for name, p in model.named_parameters():
        if p.dim() <= 1 or name.endswith(("resid_mix", "skip_weights")):
            out.append(p)
    return out


# ------------------------------------------------------------------ scoring core

class _Runner:
    def __init__(self, model, tokens: np.ndarray, tables, cfg: TTTConfig, device, amp_dtype, bos_id,
                 progress):
        self.model, self.cfg, self.dev, self.amp = model, cfg, device, amp_dtype
        self.tok_np = tokens
        self.tok = torch.from_numpy(tokens.astype(np.int64)).to(device)
        n = tokens.size
        base = np.asarray(tables.base_bytes).astype(np.int64)
        space = np.asarray(tables.has_leading_space).astype(bool)
        bnd = np.asarray(tables.is_boundary).astype(bool)
        t = tokens.astype(np.int64)
        self.bytes_at = np.zeros(n, np.int64)  # bytes of target i (i >= 1), evaluate()'s rule
        self.bytes_at[1:] = base[t[1:]] + (space[t[1:]] & ~bnd[t[:-1]])
        self.loss_at = np.zeros(n, np.float64)
        self.seen = np.zeros(n, np.int8)
        self.starts, self.counts = document_spans(tokens, bos_id)
        self.total = int(n - 1)
        self.done = 0
        self.progress = progress
        self.bank: SlotBank | None = None

    def _amp(self):
        if self.amp is None or self.amp == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.dev.type, dtype=self.amp)

    def _rows(self, docs: np.ndarray, c: int):
        """Input/target tensors of chunk c of each doc in `docs` (all have a chunk c)."""
        C, W = self.cfg.chunk, self.cfg.context
        s, n = self.starts[docs], self.counts[docs]
        ws = max(0, (c + 1) * C - W)  # same window start for every doc at chunk c
        end = np.minimum((c + 1) * C, n)
        length = end - ws
        lo = c * C - ws  # first scored position of every row
        T = int(length.max())
        j = torch.arange(T, device=self.dev)
        len_t = torch.as_tensor(length, device=self.dev)
        valid = j[None, :] < len_t[:, None]
        base = torch.as_tensor(s + ws, device=self.dev)
        pos = torch.where(valid, base[:, None] + j[None, :], base[:, None])
        x, y = self.tok[pos], self.tok[pos + 1]
        scored = valid[:, lo:]
        tgt = (s + 1 + ws)[:, None] + np.arange(lo, T)[None, :]  # stream index of each target
        return x, y[:, lo:], scored, lo, tgt

    def forward_ce(self, x, y, lo):
        """Per-position CE [R, T-lo] on fp32 logits (training graph when grad is enabled)."""
        with self._amp():
            h = self.model.forward_hidden(x)
            logits = self.model.logits_from_hidden(h[:, lo:] if lo else h)
        logits = logits.float()
        V = logits.shape[-1]
        ce = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1), reduction="none").view_as(y)
        return logits, ce

    def record(self, logits, ce, y, scored, tgt):
        """Store the counted loss of every scored target (temperature applied if set)."""
        T = self.cfg.temperature
        if T != 1.0:
            with torch.no_grad():
                V = logits.shape[-1]
                ce = F.cross_entropy((logits / T).reshape(-1, V), y.reshape(-1), reduction="none").view_as(y)
        m = scored.cpu().numpy()
        idx = tgt[m]
        if np.any(self.seen[idx]):
            raise RuntimeError("a target was scored twice (TTT plan bug)")
        self.loss_at[idx] = ce.detach().double().cpu().numpy()[m]
        self.seen[idx] = 1
        self.done += int(idx.size)
        if self.progress is not None:
            self.progress(self.done, self.total)

    # -------------------------------------------------------------- per-document LoRA

    def chunk_step(self, docs, c, train_mask, opt):
        """Score chunk c of `docs`, then (score-first) train the rows in train_mask on it."""
        x, y, scored, lo, tgt = self._rows(docs, c)
        train = opt is not None and bool(train_mask.any())
        with torch.set_grad_enabled(train):
            logits, ce = self.forward_ce(x, y, lo)
            self.record(logits, ce, y, scored, tgt)  # counted: the pre-update forward
            if train:
                self.train_rows(ce, scored, train_mask, docs, opt, first=True, x=x, y=y, lo=lo)

    def train_rows(self, ce, scored, train_mask, docs, opt, first, x, y, lo):
        tm = torch.as_tensor(train_mask, device=self.dev)
        # Row i of the batch is slot bank.rows[i] (finished documents drop out of the rows).
        active = torch.zeros(self.bank.slots, dtype=torch.bool, device=self.dev)
        active[self.bank.rows[tm]] = True
        for e in range(self.cfg.epochs):
            if e > 0:
                _, ce = self.forward_ce(x, y, lo)
            w = scored.float()
            per_doc = (ce * w).sum(1) / w.sum(1).clamp(min=1)
            loss = per_doc[tm].sum()  # docs are independent: each slot sees only its own mean
            opt.zero_grad()
            loss.backward()
            opt.step(active)

    def run_docs(self, docs: np.ndarray, opt: SlotAdamW | None, adapters: list[BatchedLoRA]):
        """All chunks of `docs` (<= slots, stream order). opt None: adapters disabled, no training."""
        C = self.cfg.chunk
        n_chunks = -(-self.counts[docs] // C)
        slots = torch.arange(len(docs))
        if self.bank is not None:
            self.bank.enabled = opt is not None
        if opt is not None:
            for a in adapters:
                a.reset(slots, keep_a=self.cfg.keep_a_warm)
            opt.reset(slots)
        for c in range(int(n_chunks.max())):
            act = np.flatnonzero(n_chunks > c)
            if self.bank is not None:
                self.bank.rows = torch.as_tensor(act, device=self.dev)
            self.chunk_step(docs[act], c, n_chunks[act] > c + 1, opt)
        if self.bank is not None:
            self.bank.rows = None

    # -------------------------------------------------------------- full-parameter SGD

    def train_rows_sgd(self, docs: np.ndarray, params, opt, lr_of_step: Callable[[int], float], step0: int) -> int:
        """SGD over `docs` (already scored), cut into hard `context`-token rows, sgd_batch rows a step."""
        W = self.cfg.context
        starts, lens = [], []
        for d in docs:
            s, n = int(self.starts[d]), int(self.counts[d])
            for o in range(0, n, W):
                starts.append(s + o)
                lens.append(min(W, n - o))
        starts, lens = np.asarray(starts, np.int64), np.asarray(lens, np.int64)
        step = step0
        B = self.cfg.sgd_batch
        for i in range(0, len(starts), B):
            st, ln = starts[i:i + B], lens[i:i + B]
            T = int(ln.max())
            j = torch.arange(T, device=self.dev)
            valid = j[None, :] < torch.as_tensor(ln, device=self.dev)[:, None]
            b = torch.as_tensor(st, device=self.dev)
            pos = torch.where(valid, b[:, None] + j[None, :], b[:, None])
            with torch.enable_grad():
                _, ce = self.forward_ce(self.tok[pos], self.tok[pos + 1], 0)
                loss = (ce * valid).sum() / valid.sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
            if self.cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
            for g in opt.param_groups:
                g["lr"] = lr_of_step(step)
            opt.step()
            step += 1
        return step


def _resolve(device, autocast_dtype):
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GolfpackError("device cuda requested but CUDA is not available")
    if isinstance(autocast_dtype, str):
        if autocast_dtype != "auto":
            raise GolfpackError(f"autocast_dtype must be 'auto', None or a torch dtype, got {autocast_dtype!r}")
        autocast_dtype = torch.bfloat16 if dev.type == "cuda" else None
    return dev, autocast_dtype


def _doc_batches(docs: np.ndarray, size: int) -> list[np.ndarray]:
    return [docs[i:i + size] for i in range(0, len(docs), size)]


def evaluate_ttt(
    model: torch.nn.Module,
    tokens: np.ndarray,
    tables,
    config: TTTConfig,
    *,
    device: str | torch.device = "cpu",
    max_tokens: int | None = None,
    bos_id: int = 1,
    autocast_dtype: torch.dtype | None | str = "auto",
    progress: Callable[[int, int], None] | None = None,
    return_losses: bool = False,
) -> TTTResult:
    """Score `tokens` with score-first test-time training; returns a TTTResult.

    model: a golfpack GPT (dense, or from load_packed: PackedLinear / PackedEmbedding);
        it is restored unchanged afterwards (adapters and deltas are removed; the
        base weights are never modified: full-parameter methods train deltas).
    tokens: 1-D integer stream of BOS-led documents. tables: ByteTables of the tokenizer.
    config: TTTConfig (TTTConfig.for_method(name, overrides) or TTTConfig.from_json(...)).
    max_tokens: score only the first N targets (stream cut to N+1 tokens; cut at a
        document boundary to keep whole documents). progress(done_targets, total_targets).
    return_losses: also return the per-target counted loss (float64, index = stream
        position of the target; index 0 unused).
    Result fields mirror evaluate()'s EvalResult: val_loss (nats/token), val_bpb,
    tokens, bytes, seconds, tokens_per_s (scored targets per second, everything
    included), plus documents / documents_adapted and the config as a dict.
    """
    if not isinstance(config, TTTConfig):
        raise GolfpackError(f"config must be a TTTConfig, got {type(config).__name__}")
    config.validate()
    from golfpack.evaluate.bpb import checked_tokens

    tokens = checked_tokens(model, tokens, tables, max_tokens)
    if not hasattr(model, "linear_names") or not hasattr(model, "forward_hidden"):
        raise GolfpackError("test-time training needs a golfpack GPT (linear_names / forward_hidden)")
    dev, amp = _resolve(device, autocast_dtype)

    t0 = time.perf_counter()
    was_training = model.training
    model.to(dev).eval()
    req = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    surgery = _Surgery(model)
    run = _Runner(model, tokens, tables, config, dev, amp, bos_id, progress)
    try:
        adapted = _METHOD_FNS[config.method](run, surgery, config, t0)
    finally:
        surgery.restore()
        for p, r in req.items():
            p.requires_grad_(r)
        model.train(was_training)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0

    n_tok = int(run.seen[1:].sum())
    if n_tok != run.total or run.seen[0]:
        raise RuntimeError(f"TTT scored {n_tok} of {run.total} targets (plan bug)")
    n_bytes = int(run.bytes_at[1:].sum())
    if n_bytes <= 0:
        raise GolfpackError("the scored targets stand for 0 bytes (only control tokens?); bpb is undefined")
    loss_sum = math.fsum(run.loss_at[1:].tolist())  # correctly rounded: order-free
    val_loss = loss_sum / n_tok
    return TTTResult(
        val_loss=val_loss,
        val_bpb=(val_loss / LN2) * (n_tok / n_bytes),
        tokens=n_tok,
        bytes=n_bytes,
        seconds=seconds,
        tokens_per_s=n_tok / seconds if seconds > 0 else float("inf"),
        mode=f"ttt_{config.method}",
        seq_len=config.context,
        stride=config.chunk,
        documents=int(run.starts.size),
        documents_adapted=int(adapted),
        device=str(dev),
        segments=int((-(-run.counts // config.chunk)).sum()),
        autocast="fp32" if amp in (None, torch.float32) else str(amp).replace("torch.", ""),
        config=config.to_dict(),
        losses=run.loss_at.copy() if return_losses else None,
    )


# ------------------------------------------------------------------ methods

def _install_lora(run: _Runner, surgery: _Surgery, cfg: TTTConfig) -> tuple[list[BatchedLoRA], SlotAdamW]:
    bank = run.bank = SlotBank(cfg.doc_batch)
    gen = torch.Generator().manual_seed(cfg.seed)
    adapters = []

    def make(base, k, n):
        return BatchedLoRA(base, k, n, cfg.rank, cfg.alpha, bank, generator=gen, device=run.dev)

    suffixes = tuple(s for t in cfg.targets if t != "lm_head" for s in TARGET_SUFFIXES[t])
    for name in _slot_names(run.model, suffixes):
        adapters.append(surgery.wrap_slot(name, make))
    if "lm_head" in cfg.targets:
        adapters.append(surgery.wrap_head(make))
    if not adapters:
        raise GolfpackError(f"TTT targets {list(cfg.targets)} match no layer of this model")
    params = [p for a in adapters for p in (a.A, a.B)]
    opt = SlotAdamW(params, cfg.doc_batch, cfg.lr, cfg.betas, cfg.eps, cfg.weight_decay)
    return adapters, opt


def _install_deltas(run: _Runner, surgery: _Surgery, cfg: TTTConfig) -> list[torch.nn.Parameter]:
    suffixes = tuple(s for t in cfg.sgd_targets for s in TARGET_SUFFIXES[t])
    deltas = [surgery.wrap_slot(n, lambda b, k, m: DeltaLinear(b, k, m, device=run.dev)).delta
              for n in _slot_names(run.model, suffixes)]
    params = list(deltas)
    if cfg.sgd_controls:
        ctl = _controls(run.model)
        for p in ctl:
            p.requires_grad_(True)
        params += ctl
    if not params:
        raise GolfpackError(f"TTT sgd_targets {list(cfg.sgd_targets)} match no layer of this model")
    return params


class _ControlBackup:
    """Full-parameter methods train control tensors in place; put them back afterwards."""

    def __init__(self, params):
        self.saved = [(p, p.detach().clone()) for p in params]

    def restore(self):
        with torch.no_grad():
            for p, v in self.saved:
                p.copy_(v)


def _split_long(run: _Runner, docs: np.ndarray, cfg: TTTConfig):
    if cfg.max_doc_len is None:
        return docs, docs[:0]
    long = run.counts[docs] > cfg.max_doc_len
    return docs[~long], docs[long]


def _run_lora(run: _Runner, surgery: _Surgery, cfg: TTTConfig, t0: float, phase_hook=None) -> int:
    adapters, opt = _install_lora(run, surgery, cfg)
    all_docs = np.arange(run.starts.size)
    adapted = 0
    for batch in _doc_batches(all_docs, cfg.doc_batch):
        over = cfg.time_limit_s is not None and time.perf_counter() - t0 > cfg.time_limit_s
        short, long = _split_long(run, batch, cfg)
        if len(short):
            run.run_docs(short, None if over else opt, adapters)
            adapted += 0 if over else len(short)
        for grp in _doc_batches(long, cfg.doc_batch):
            run.run_docs(grp, None, adapters)
        if phase_hook is not None:
            phase_hook(int(batch[-1]) + 1, over)
    return adapted


def _run_phased(run: _Runner, surgery: _Surgery, cfg: TTTConfig, t0: float) -> int:
    # Deltas first, so the LoRA adapters wrap (base + delta): both act on the same layers.
    params = _install_deltas(run, surgery, cfg)
    backup = _ControlBackup([p for p in params if not any(p is d for d in _delta_params(run.model))])
    ndocs = int(run.starts.size)
    prefix = min(cfg.prefix_docs, ndocs)
    bounds = sorted({-(-prefix * (k + 1) // cfg.phases) for k in range(cfg.phases)})
    opt = torch.optim.SGD(params, lr=cfg.sgd_lr, momentum=cfg.sgd_momentum)
    for p in params:
        p.requires_grad_(False)
    pending = list(bounds)

    def phase(done_docs: int, over: bool):
        # At the first doc-batch edge at or past a boundary: every document so far is scored.
        while pending and done_docs >= pending[0]:
            pending.pop(0)
            if over or cfg.sgd_lr == 0:
                continue
            run.bank.enabled = False  # the base (+ deltas) learns alone
            for p in params:
                p.requires_grad_(True)
            docs = np.arange(done_docs)
            rows = int(sum(-(-int(n) // cfg.context) for n in run.counts[docs]))
            steps = max(1, -(-rows // cfg.sgd_batch)) * cfg.sgd_epochs

            def lr(i, steps=steps):
                return cfg.sgd_lr * 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps))

            step = 0
            for _ in range(cfg.sgd_epochs):
                step = run.train_rows_sgd(docs, params, opt, lr, step)
            for p in params:  # frozen again: the LoRA steps must not pay for their gradients
                p.requires_grad_(False)

    try:
        return _run_lora(run, surgery, cfg, t0, phase_hook=phase)
    finally:
        backup.restore()


def _delta_params(model) -> list[torch.nn.Parameter]:
    return [m.delta for m in model.modules() if isinstance(m, DeltaLinear)]


def _run_sgd(run: _Runner, surgery: _Surgery, cfg: TTTConfig, t0: float) -> int:
    params = _install_deltas(run, surgery, cfg)
    deltas = _delta_params(run.model)
    backup = _ControlBackup([p for p in params if not any(p is d for d in deltas)])
    opt = torch.optim.SGD(params, lr=cfg.sgd_lr, momentum=cfg.sgd_momentum)
    # Whole documents, in stream order, grouped until a group holds sgd_chunk_tokens targets.
    groups, cur, acc = [], [], 0
    for d in range(run.starts.size):
        cur.append(d)
        acc += int(run.counts[d])
        if acc >= cfg.sgd_chunk_tokens:
            groups.append(np.asarray(cur))
            cur, acc = [], 0
    if cur:
        groups.append(np.asarray(cur))
    n = len(groups)
    adapted = 0
    try:
        for k, g in enumerate(groups):
            adapted += len(g) if k > 0 and cfg.sgd_lr > 0 else 0  # group 0 is scored by the untouched base
            for batch in _doc_batches(g, cfg.doc_batch):
                run.run_docs(batch, None, [])
            over = cfg.time_limit_s is not None and time.perf_counter() - t0 > cfg.time_limit_s
            if k == n - 1 or over or cfg.sgd_lr == 0:
                if over:
                    cfg = cfg.with_(sgd_lr=0.0)  # no more updates; the rest is scored as is
                continue
            lr_k = cfg.sgd_lr * 0.5 * (1 + math.cos(math.pi * k / max(1, n - 1)))
            for _ in range(cfg.sgd_epochs):
                run.train_rows_sgd(g, params, opt, lambda i: lr_k, 0)
    finally:
        backup.restore()
    return adapted


_METHOD_FNS = {"lora": _run_lora, "phased": _run_phased, "sgd": _run_sgd, "q": _run_sgd}

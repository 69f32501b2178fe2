"""Exact val_loss / val_bpb of a causal LM on a token stream (field guide section 2).

    evaluate(model, tokens, tables, seq_len=1024)                   # plain
    evaluate(model, tokens, tables, seq_len=1024, stride=64)        # sliding, exact once
    evaluate(model, tokens, tables, seq_len=2048, doc_aware=True)   # per document

The arithmetic follows the challenge: per-token cross entropy on fp32 logits,
summed in float64; integer token and byte counts; bytes of a target by the
byte-table rule with the target's previous token (which is the input at the
same position, so it exists even at a window start);
val_loss = loss_sum / tokens and val_bpb = (val_loss / ln 2) * tokens / bytes.
Which targets are scored, and with what context, is windows.py's job.

The model is any causal LM module with `forward(idx[B,T]) -> logits[B,T,V]`.
If it also has `forward_hidden(idx) -> h[B,T,D]` and `logits_from_hidden(h)`,
the output head runs only on the scored positions (sliding mode scores S of
every L positions, so this saves most of the head's work).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from golfpack.errors import GolfpackError
from golfpack.evaluate.distributed import DistInfo, all_reduce_sum_, batch_range, init_if_needed
from golfpack.evaluate.windows import VARIANTS, Segments, plan_batches, plan_segments

LN2 = math.log(2.0)


@dataclass
class EvalResult:
    val_loss: float
    val_bpb: float
    tokens: int  # scored targets (with repeats under rescore_tail)
    bytes: int
    seconds: float  # planning + forward passes + reduction (model loading excluded)
    tokens_per_s: float  # scored tokens per second
    mode: str = "plain"
    seq_len: int = 0
    stride: int | None = None
    variant: str | None = None
    segments: int = 0  # forward rows
    world_size: int = 1
    device: str = "cpu"
    autocast: str = "fp32"

    def to_dict(self) -> dict:
        return asdict(self)


def mode_name(stride: int | None, doc_aware: bool) -> str:
    if doc_aware:
        return "doc" if stride is None else "doc_sliding"
    return "plain" if stride is None else "sliding"


def _resolve_device(dev: torch.device, info: DistInfo) -> torch.device:
    """A bare "cuda" means this process's GPU: cuda:LOCAL_RANK under torchrun."""
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise GolfpackError("device cuda requested but CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(dev)
    return dev


def _autocast_ctx(device: torch.device, dtype: torch.dtype | None):
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _model_vocab(model) -> int | None:
    cfg = getattr(model, "config", None)
    v = getattr(cfg, "vocab_size", None)
    return int(v) if v is not None else None


def _validate_tokens(tokens: np.ndarray, vocab: int) -> None:
    if tokens.ndim != 1:
        raise GolfpackError(f"tokens must be a 1-D array, got shape {tokens.shape}")
    if not np.issubdtype(tokens.dtype, np.integer):
        raise GolfpackError(f"tokens must be integers, got dtype {tokens.dtype}")
    if tokens.size < 2:
        raise GolfpackError(f"need at least 2 tokens to score one target, got {tokens.size}")
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or hi >= vocab:
        bad = int(np.flatnonzero((tokens < 0) | (tokens >= vocab))[0])
        raise GolfpackError(
            f"token id {int(tokens[bad])} at position {bad} is outside the vocabulary "
            f"[0, {vocab}) (shard and model/tokenizer do not match)"
        )


def checked_tokens(model, tokens, tables, max_tokens: int | None) -> np.ndarray:
    """The token stream cut to max_tokens targets (+1 input), checked against the byte tables'
    vocabulary and the model's: what every scorer (plain, sliding, TTT) starts from."""
    tokens = np.asarray(tokens)
    if max_tokens is not None:
        if int(max_tokens) < 1:
            raise GolfpackError(f"max_tokens must be >= 1, got {max_tokens}")
        tokens = tokens[: int(max_tokens) + 1]
    vocab = int(len(tables.base_bytes))
    model_vocab = _model_vocab(model)
    if model_vocab is not None and model_vocab != vocab:
        raise GolfpackError(
            f"model vocabulary ({model_vocab}) differs from the byte tables' ({vocab}): "
            "the tokenizer does not belong to this model"
        )
    _validate_tokens(tokens, vocab)
    return tokens


class _BatchScorer:
    """Runs one batch of segments and returns (loss_sum fp64, tokens, bytes) tensors."""

    def __init__(self, model, tokens_t, tables, device, amp_dtype):
        self.model = model
        self.tok = tokens_t
        base, space, bnd = (torch.as_tensor(np.asarray(a), device=device) for a in
                            (tables.base_bytes, tables.has_leading_space, tables.is_boundary))
        self.base = base.to(torch.int64)
        self.space = space.to(torch.bool)
        self.not_bnd = ~bnd.to(torch.bool)
        self.vocab = int(self.base.numel())
        self.device = device
        self.amp_dtype = amp_dtype
        self.use_hidden = callable(getattr(model, "forward_hidden", None)) and callable(
            getattr(model, "logits_from_hidden", None)
        )

    def logits(self, x: torch.Tensor, lo: int) -> torch.Tensor:
        with _autocast_ctx(self.device, self.amp_dtype):
            if self.use_hidden:
                h = self.model.forward_hidden(x)
                out = self.model.logits_from_hidden(h[:, lo:] if lo else h)
            else:
                out = self.model(x)
                if lo and isinstance(out, torch.Tensor) and out.dim() == 3:
                    out = out[:, lo:]
        if not isinstance(out, torch.Tensor) or out.dim() != 3 or out.shape[:2] != (x.shape[0], x.shape[1] - lo):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise GolfpackError(f"model returned {got}, expected logits of shape [B, T, V]")
        if out.shape[-1] != self.vocab:
            raise GolfpackError(
                f"model emits {out.shape[-1]} logits per token but the byte tables cover "
                f"{self.vocab} tokens (tokenizer and model vocabularies differ)"
            )
        return out.float()  # CE on fp32 logits, as the challenge does

    def __call__(self, seg: Segments, rows: np.ndarray):
        dev = self.device
        start = torch.as_tensor(seg.start[rows], device=dev)
        length = torch.as_tensor(seg.length[rows], device=dev)
        score_lo = torch.as_tensor(seg.score_lo[rows], device=dev)
        t_max = int(seg.length[rows].max())
        lo = int(seg.score_lo[rows].min())  # positions before this are context for every row
        j = torch.arange(t_max, device=dev)
        in_seg = j[None, :] < length[:, None]
        # Right padding repeats a valid index; a causal model never lets it reach real positions.
        pos = torch.where(in_seg, start[:, None] + j[None, :], start[:, None])
        x = self.tok[pos].long()
        y = self.tok[pos + 1].long()
        scored = (in_seg & (j[None, :] >= score_lo[:, None]))[:, lo:]
        logits = self.logits(x, lo)
        y, xp = y[:, lo:], x[:, lo:]
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
        ce = ce.view_as(y).double()
        if dev.type == "cpu":
            # numpy's pairwise sum: single-threaded, so the value does not depend on the thread count.
            loss = torch.tensor(float(np.sum(ce[scored].numpy())), dtype=torch.float64)
        else:
            loss = torch.where(scored, ce, torch.zeros((), dtype=ce.dtype, device=dev)).sum()
        nbytes = self.base[y] + (self.space[y] & self.not_bnd[xp]).long()
        nbytes = torch.where(scored, nbytes, torch.zeros((), dtype=nbytes.dtype, device=dev)).sum()
        return loss, scored.sum(), nbytes


def evaluate(
    model: torch.nn.Module,
    tokens: np.ndarray,
    tables,
    *,
    seq_len: int,
    stride: int | None = None,
    doc_aware: bool = False,
    batch: int = 16,
    device: str | torch.device = "cpu",
    max_tokens: int | None = None,
    bos_id: int = 1,
    variant: str = "exact_once",
    autocast_dtype: torch.dtype | None | str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Score `tokens` (a 1-D uint16 stream of concatenated BOS-led documents).

    seq_len: window / segment length L. stride: sliding-window stride S
    (None = no sliding). doc_aware: no attention across documents (see
    windows.py for the exact coverage of every mode). batch: forward passes hold
    batch * seq_len (padded) tokens. max_tokens: score only the first N targets:
    the stream is cut to N+1 tokens before the mode's rules apply (plain then
    scores floor(N/L)*L of them). variant: "exact_once" | "rescore_tail", the
    sliding tail rule. autocast_dtype: "auto" (bf16 on CUDA, fp32 on CPU), None
    or torch.float32 (no autocast), or a dtype such as torch.bfloat16. Under
    torchrun the batches are split across ranks; every rank returns the same
    result. `tables` has base_bytes / has_leading_space / is_boundary arrays
    (golfpack.data.ByteTables). The model is moved to `device` and put in eval mode.
    """
    if variant not in VARIANTS:
        raise GolfpackError(f"unknown sliding variant {variant!r} (expected one of {', '.join(VARIANTS)})")
    if int(batch) < 1:
        raise GolfpackError(f"batch must be >= 1, got {batch}")
    tokens = checked_tokens(model, tokens, tables, max_tokens)

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GolfpackError("device cuda requested but CUDA is not available")
    info: DistInfo = init_if_needed(dev)
    dev = _resolve_device(dev, info)
    if isinstance(autocast_dtype, str):
        if autocast_dtype != "auto":
            raise GolfpackError(f"autocast_dtype must be 'auto', None or a torch dtype, got {autocast_dtype!r}")
        autocast_dtype = torch.bfloat16 if dev.type == "cuda" else None

    t0 = time.perf_counter()
    segs = plan_segments(tokens, seq_len, stride=stride, doc_aware=doc_aware, variant=variant, bos_id=bos_id)
    if len(segs) == 0:
        raise GolfpackError(
            f"the stream has {tokens.size} tokens, fewer than the seq_len + 1 = {seq_len + 1} "
            "that one plain window needs (use a shorter --seq-len or --stride/--doc-aware)"
        )
    batches = plan_batches(segs, int(batch) * int(seq_len))
    nb = len(batches)
    mine = batch_range(nb, info)

    was_training = model.training
    model.to(dev).eval()
    tok_t = torch.from_numpy(tokens.astype(np.int32, copy=False)).to(dev)
    scorer = _BatchScorer(model, tok_t, tables, dev, autocast_dtype)
    loss_b = torch.zeros(nb, dtype=torch.float64, device=dev)
    count_b = torch.zeros(nb, dtype=torch.int64, device=dev)
    bytes_b = torch.zeros(nb, dtype=torch.int64, device=dev)
    try:
        with torch.inference_mode():
            for k, b in enumerate(mine):
                loss_b[b], count_b[b], bytes_b[b] = scorer(segs, batches[b])
                if progress is not None:
                    progress(k + 1, len(mine))
    finally:
        model.train(was_training)
    all_reduce_sum_([loss_b, count_b, bytes_b], info)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    # fsum is correctly rounded, so the total does not depend on the order of the batches.
    loss_sum = math.fsum(loss_b.cpu().tolist())
    n_tok = int(count_b.sum().item())
    n_bytes = int(bytes_b.sum().item())
    seconds = time.perf_counter() - t0

    if n_tok != segs.num_scored:  # the plan and the masks must agree; anything else is a bug
        raise RuntimeError(f"scored {n_tok} tokens but the plan has {segs.num_scored}")
    if n_bytes <= 0:
        raise GolfpackError("the scored targets stand for 0 bytes (only control tokens?); bpb is undefined")
    val_loss = loss_sum / n_tok
    val_bpb = (val_loss / LN2) * (n_tok / n_bytes)
    return EvalResult(
        val_loss=val_loss,
        val_bpb=val_bpb,
        tokens=n_tok,
        bytes=n_bytes,
        seconds=seconds,
        tokens_per_s=n_tok / seconds if seconds > 0 else float("inf"),
        mode=mode_name(stride, doc_aware),
        seq_len=int(seq_len),
        stride=None if stride is None else int(stride),
        variant=variant if stride is not None else None,
        segments=len(segs),
        world_size=info.world,
        device=str(dev),
        autocast="fp32" if autocast_dtype in (None, torch.float32) else str(autocast_dtype).replace("torch.", ""),
    )

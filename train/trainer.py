"""The training loop: GPT + Muon/Adam, schedule, EMA/SWA, QAT, val bpb, checkpoint out.

Output directory (written by rank 0 only):
    model.safetensors   the weights (state-dict names of golfpack.model.GPT), float32; metadata
                        "golfpack.config" = the GPTConfig JSON
    config.json         the GPTConfig JSON (what golfpack.checkpoint reads next to the weights)
    train_log.json      configs, per-step losses, val history, final val, timings, weight source

Parameter groups (as in the challenge baseline):
    Muon      2-D non-control matrices (attention, MLP, bigram/value-embedding projections)
    Adam      embedding tables (tok_emb and any nn.Embedding; tied_embed_lr if the head is
              tied, else embed_lr), lm_head when untied (head_lr), and vectors / scalars /
              control tensors (attn_scale, mlp_scale, resid_mix, q_gain, skip_weights,
              gates, scales) with scalar_lr.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

from golfpack.errors import GolfpackError
from golfpack.model import GPT, GPTConfig
from golfpack.train import distributed as D
from golfpack.train.averaging import EMA, SWA
from golfpack.train.config import TrainConfig
from golfpack.train.loader import DistributedBatches
from golfpack.train.muon import Muon
from golfpack.train.qat import attach_qat, canonical_name, detach_qat, is_control
from golfpack.train.regularizers import attach_neftune, loss_with_z
from golfpack.train.schedule import lr_multiplier, muon_momentum, progress
from golfpack.train.validate import evaluate_val


def build_model(config: GPTConfig, seed: int) -> GPT:
    """GPT with weights drawn from `seed`, without touching the caller's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GPT(config)


def param_groups(model: GPT) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """Split parameters into embed / head / matrix / scalar (see the module docstring)."""
    embed_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    groups: dict[str, list] = {"embed": [], "head": [], "matrix": [], "scalar": []}
    for name, p in model.named_parameters():
        name = canonical_name(name)
        if id(p) in embed_ids:
            groups["embed"].append((name, p))
        elif name == "lm_head.weight":
            groups["head"].append((name, p))
        elif p.ndim == 2 and not is_control(name):
            groups["matrix"].append((name, p))
        else:
            groups["scalar"].append((name, p))
    return groups


def make_optimizers(model: GPT, t: TrainConfig, device: torch.device) -> tuple[list, Muon | None]:
    groups = param_groups(model)
    fused = device.type == "cuda"
    tok_lr = t.tied_embed_lr if model.config.tie_embeddings else t.embed_lr
    opts: list[torch.optim.Optimizer] = []

    def adam(params, lr, wd):
        opt = torch.optim.AdamW([p for _, p in params], lr=lr, betas=(t.beta1, t.beta2), eps=t.adam_eps,
                                weight_decay=wd, fused=fused)
        for g in opt.param_groups:
            g["base_lr"] = lr
        return opt

    if groups["embed"]:
        opts.append(adam(groups["embed"], tok_lr, t.embed_weight_decay))
    if groups["head"]:
        opts.append(adam(groups["head"], t.head_lr, t.embed_weight_decay))
    if groups["scalar"]:
        opts.append(adam(groups["scalar"], t.scalar_lr, 0.0))
    muon = None
    if groups["matrix"]:
        ns_dtype = torch.bfloat16 if (t.muon_dtype == "bf16" or (t.muon_dtype == "auto" and device.type == "cuda")) \
            else torch.float32
        muon = Muon([p for _, p in groups["matrix"]], lr=t.matrix_lr, momentum=t.muon_momentum,
                    backend_steps=t.muon_backend_steps, weight_decay=t.weight_decay, ns_dtype=ns_dtype)
        for g in muon.param_groups:
            g["base_lr"] = t.matrix_lr
        opts.append(muon)
    return opts, muon


class Progress:
    """One-line progress display: carriage return on a TTY, plain lines otherwise."""

    def __init__(self, enabled: bool, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = self.enabled and self.stream.isatty()
        self._dirty = False

    def line(self, msg: str, final: bool = False) -> None:
        if not self.enabled:
            return
        if self.tty and not final:
            self.stream.write("\r" + msg[:200].ljust(100))
            self._dirty = True
        else:
            if self._dirty:
                self.stream.write("\n")
                self._dirty = False
            self.stream.write(msg + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._dirty:
            self.stream.write("\n")
            self.stream.flush()
            self._dirty = False


def _resolve_device(device: str | torch.device, dist: D.DistInfo | None = None) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise GolfpackError("--device cuda requested but CUDA is not available")
        if dev.index is None and dist is not None:
            dev = torch.device("cuda", dist.local_rank)
    elif dev.type != "cpu":
        raise GolfpackError(f"unsupported device {device!r}; use cpu or cuda")
    return dev


def _load_val(val, seq_len):
    from golfpack.data.shards import read_shards

    tokens = read_shards(val)
    if (tokens.size - 1) // seq_len < 1:
        raise GolfpackError(f"val data has {tokens.size} tokens: too short for seq_len {seq_len}")
    return tokens


def export_state_dict(model: GPT, averaged: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """CPU float32 state dict with canonical names; averaged weights replace the live ones."""
    sd = {}
    for name, t in model.state_dict().items():
        name = canonical_name(name)
        src = averaged[name] if averaged is not None and name in averaged else t
        sd[name] = src.detach().to("cpu", torch.float32).contiguous()
    return sd


def train(
    model_config: GPTConfig,
    tcfg: TrainConfig,
    data,
    out_dir: str | os.PathLike | None,
    *,
    val=None,
    tokenizer=None,
    device: str = "cpu",
    show_progress: bool = True,
) -> dict:
    """Train a GPT and (rank 0) write OUT/{model.safetensors, config.json, train_log.json}.

    data / val: shard path(s), directory or glob. tokenizer: SentencePiece model
    for val bpb (without it only val loss is reported). Returns the train log dict.
    """
    t = tcfg
    dev0 = torch.device(device)
    dist = D.setup(dev0.type)
    try:
        log = _train(model_config, t, data, out_dir, val, tokenizer, _resolve_device(device, dist), dist,
                     show_progress)
    except BaseException:
        D.teardown(dist, clean=False)
        raise
    D.teardown(dist)
    return log


def _train(cfg: GPTConfig, t: TrainConfig, data, out_dir, val, tokenizer, device, dist: D.DistInfo,
           show_progress: bool) -> dict:
    if t.seq_len < 1:
        raise GolfpackError("seq_len must be >= 1")
    pg = Progress(show_progress and dist.is_main)
    tables = None
    if tokenizer is not None:
        from golfpack.data.bytes import build_byte_tables

        tables = build_byte_tables(tokenizer, vocab_size=cfg.vocab_size)
    val_tokens = _load_val(val, t.seq_len) if val is not None else None
    loader = DistributedBatches(data, batch_tokens=t.batch_tokens, seq_len=t.seq_len, rank=dist.rank,
                                world_size=dist.world_size, grad_accum=t.grad_accum,
                                seed=t.seed if t.data_offset_by_seed else 0, device=device)
    data_max = max(int(s.max()) if s.size else 0 for s in loader.stream.shards)
    if data_max >= cfg.vocab_size:
        raise GolfpackError(f"training data holds token id {data_max}, outside the model's vocab {cfg.vocab_size}")

    model = build_model(cfg, t.seed).to(device)
    params = [p for p in model.parameters()]
    if dist.enabled:
        D.broadcast_params(params)
    opts, muon = make_optimizers(model, t, device)
    fwd = torch.compile(model) if t.compile else model
    neftune = attach_neftune(model, t.neftune_alpha, t.seed + dist.rank) if t.neftune_alpha > 0 else None
    use_bf16 = t.autocast == "bf16" or (t.autocast == "auto" and device.type == "cuda")
    amp_dtype = torch.bfloat16 if use_bf16 else None
    amp = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if use_bf16 else nullcontext
    ema = EMA(model, t.ema_decay) if t.ema_decay > 0 else None
    swa = SWA() if t.swa_every > 0 else None
    budget_s = 60.0 * t.minutes
    qat_on_step: int | None = None
    qat_tensors: list[str] = []

    log: dict = {
        "model_config": cfg.to_dict(), "train_config": t.to_dict(), "world_size": dist.world_size,
        "device": str(device), "num_params": model.num_params(),
        "data": [str(p) for p in loader.stream.paths], "data_tokens": loader.stream.total,
        "val": str(val) if val is not None else None, "tokenizer": str(tokenizer) if tokenizer else None,
        "losses": [], "val_history": [],
    }
    pg.line(f"train: {model.num_params():,} params, world {dist.world_size}, device {device}, "
            f"batch {t.batch_tokens:,} tokens x seq {t.seq_len}, data {loader.stream.total:,} tokens", final=True)

    def run_val(max_tokens: int) -> dict:
        return evaluate_val(fwd, val_tokens, t.seq_len, tables=tables, max_tokens=max_tokens,
                            batch_tokens=t.val_batch_tokens, rank=dist.rank, world_size=dist.world_size,
                            device=device, autocast_dtype=amp_dtype)

    pending: list[torch.Tensor] = []  # per-step losses not yet reduced (avoids a sync per step)

    def flush_losses() -> None:
        if not pending:
            return
        v = torch.stack(pending).double()
        if dist.enabled:
            torch.distributed.all_reduce(v)
            v /= dist.world_size
        vals = v.tolist()
        pending.clear()
        for x in vals:
            if not math.isfinite(x):
                raise GolfpackError(f"training diverged: loss {x} at step {len(log['losses']) + 1}")
        log["losses"].extend(vals)

    train_s = 0.0
    t_start = time.perf_counter()
    step = 0
    tokens_seen = 0
    while True:
        elapsed = train_s + (time.perf_counter() - t_start)
        if dist.enabled and budget_s > 0:
            elapsed = D.broadcast_float(elapsed, device)  # every rank must take the same decisions
        if (t.steps and step >= t.steps) or (budget_s > 0 and elapsed >= budget_s):
            break
        if val_tokens is not None and t.val_every and step > 0 and step % t.val_every == 0:
            train_s = elapsed
            r = run_val(t.val_tokens)
            log["val_history"].append({"step": step, **r})
            flush_losses()
            pg.line(_val_line(step, r), final=True)
            t_start = time.perf_counter()
        mul = lr_multiplier(step, elapsed, total_steps=t.steps, budget_s=budget_s,
                            warmup_steps=t.lr_warmup_steps, warmdown_steps=t.warmdown_steps,
                            warmdown_frac=t.warmdown_frac)
        if t.qat_bits and qat_on_step is None:
            frac = progress(step, elapsed, total_steps=t.steps, budget_s=budget_s)
            if (t.qat_start <= 1 and frac >= t.qat_start) or (t.qat_start > 1 and step >= t.qat_start):
                qat_tensors = attach_qat(model, t.qat_bits, t.qat_clip)
                qat_on_step = step
        for opt in opts:
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * mul
        if muon is not None:
            m = muon_momentum(step, t.muon_momentum_warmup_start, t.muon_momentum, t.muon_momentum_warmup_steps)
            for g in muon.param_groups:
                g["momentum"] = m

        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss_acc = torch.zeros((), device=device, dtype=torch.float32)
        for x, y in loader.next():
            with amp():
                loss = loss_with_z(fwd, x, y, t.z_loss) if t.z_loss > 0 else fwd(x, y)
            (loss / t.grad_accum).backward()
            loss_acc += loss.detach().float()
        pending.append(loss_acc / t.grad_accum)
        D.average_gradients(params, dist.world_size)
        if t.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
        for opt in opts:
            opt.step()
        step += 1
        tokens_seen += t.batch_tokens
        if ema is not None:
            ema.update(model)
        if swa is not None and mul < 1.0 and step % t.swa_every == 0:
            swa.add(model)
        if step % t.log_every == 0 or step == 1:
            flush_losses()
            el = train_s + (time.perf_counter() - t_start)
            pg.line(f"step {step}{'/' + str(t.steps) if t.steps else ''}  loss {log['losses'][-1]:.4f}  "
                    f"lr x{mul:.3f}  {tokens_seen / max(el, 1e-9):,.0f} tok/s  {el:.0f}s"
                    + ("  qat" if qat_on_step is not None else ""))
    flush_losses()
    train_s = train_s + (time.perf_counter() - t_start)
    pg.close()

    # ---- the weights to save: SWA > EMA > raw, then the final val on exactly those weights
    detach_qat(model)
    if neftune is not None:
        neftune.remove()
    averaged, source = None, "raw"
    if swa is not None and swa.count:
        averaged, source = swa.state(), "swa"
    elif ema is not None:
        averaged, source = ema.state(), "ema"
    if averaged is not None:
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(averaged[canonical_name(name)].to(p.dtype))
    log.update({
        "steps": step, "tokens_seen": tokens_seen, "train_seconds": train_s,
        "tokens_per_second": tokens_seen / train_s if train_s > 0 else None,
        "weights": source, "swa_snapshots": swa.count if swa is not None else 0,
        "qat": {"start_step": qat_on_step, "tensors": qat_tensors, "bits": t.qat_bits} if t.qat_bits else None,
    })
    if val_tokens is not None:
        r = run_val(t.final_val_tokens)
        log["final"] = r
        pg.line(_val_line(step, r, f"final ({source} weights)"), final=True)
    if dist.is_main and out_dir is not None:
        save_checkpoint(out_dir, model, cfg, log)
    return log


def _val_line(step: int, r: dict, what: str = "val") -> str:
    bpb = f"  bpb {r['val_bpb']:.4f}" if r.get("val_bpb") is not None else ""
    return f"{what} @ step {step}: loss {r['val_loss']:.4f}{bpb}  ({r['val_tokens']:,} tokens)"


def save_checkpoint(out_dir, model: GPT, cfg: GPTConfig, log: dict) -> None:
    from golfpack.safetensors_io import save_file

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise GolfpackError(f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    sd = export_state_dict(model, None)
    save_file(sd, out / "model.safetensors",
              metadata={"golfpack.config": cfg.to_json(), "golfpack.producer": "golfpack.train"})
    _write_text(out / "config.json", json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n")
    _write_text(out / "train_log.json", json.dumps(log, indent=1) + "\n")


def _write_text(path: Path, text: str) -> None:
    from golfpack.output import write_text

    write_text(path, text)

"""Tiny GPTs, checkpoints, token streams and a tokenizer for the quantization planner tests.

Not a test module: imported by tests/test_calib.py, test_lqer_prune.py, test_planner.py and
test_planner_cli.py. Everything is synthetic, seeded and small (vocab 64, 2 layers, dim 32), so a
whole plan (candidates, GPTQ, encode) takes about a second on one core.
"""
from __future__ import annotations

import io
import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from golfpack import safetensors_io
from golfpack.checkpoint import Checkpoint
from golfpack.model import GPT, GPTConfig

CFG = dict(vocab_size=64, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1)
# Linears are 512..2048 elements and the table 64 x 32: a min_numel of 256 makes every one of them
# quantizable, while the control tensors (gains, mixes, skip weights) stay float.
MIN_NUMEL = 256


def tiny_config(**over) -> GPTConfig:
    return GPTConfig(**{**CFG, **over})


def tiny_model(seed: int = 0, noise: float = 0.05, **over) -> GPT:
    """A seeded random GPT. Noise on every tensor: the zero-initialised projections and the
    near-zero tied table would otherwise hide bugs (an all-zero weight quantizes exactly).
    The global torch RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT(tiny_config(**over))
    g = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * noise)
    return model.eval()


def checkpoint_of(model: GPT) -> Checkpoint:
    ck = Checkpoint(config=model.config.to_dict(), source_format="test")
    for name, t in model.state_dict().items():
        ck.floats[name] = t.detach().clone().contiguous()
        ck.order.append(name)
    return ck


def tiny_checkpoint(seed: int = 0, **over) -> Checkpoint:
    return checkpoint_of(tiny_model(seed, **over))


def save_safetensors(model: GPT, path: Path) -> Path:
    """The model as a .safetensors checkpoint with its config in the metadata (what golfpack reads)."""
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    safetensors_io.save_file(sd, path, metadata={"golfpack.config": json.dumps(model.config.to_dict())})
    return path


def random_tokens(n: int, seed: int = 0, vocab: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, n).astype(np.uint16)


TEXT = [f"the quick brown fox {i} jumps over the lazy dog; pack {i * 7 % 13} golf balls" for i in range(300)]


def tiny_tokenizer(path: Path) -> Path:
    """A 48-piece SentencePiece BPE (challenge special ids 0..3, no byte fallback), trained in ~0.05 s.
    Fewer pieces than the model's 64-token vocabulary: the byte tables pad the rest."""
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TEXT), model_writer=buf, model_type="bpe", vocab_size=48, pad_id=0, bos_id=1,
        eos_id=2, unk_id=3, hard_vocab_limit=False, num_threads=1, minloglevel=2)
    path.write_bytes(buf.getvalue())
    return path


def val_tokens(sp_path: Path, n_docs: int = 30) -> np.ndarray:
    """BOS-led documents tokenized with the tiny tokenizer (a validation stream)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(sp_path))
    out = []
    for i in range(n_docs):
        out += [sp.bos_id(), *sp.encode(TEXT[(i * 37) % len(TEXT)] + f" doc {i}", out_type=int)]
    return np.array(out, dtype=np.uint16)


@contextmanager
def calibrated_standin(cfg):
    """{ck, cal, items} of the seed-0 tiny checkpoint: its calibration on 16 x 32 random tokens and
    the planner's candidates under cfg, built with one torch thread (the thread count is restored
    on exit). For module-scoped fixtures of the plan-stage tests (test_tune, test_propagate)."""
    from golfpack.codec import calib as C
    from golfpack.codec.planner import build_items
    from golfpack.model.load import from_state_dict

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ck = checkpoint_of(tiny_model(0))
        seqs = C.sequences_from_tokens(random_tokens(8000, 0), 16, 32, seed=0)
        cal = C.collect(from_state_dict(ck.state_dict(), ck.config), seqs)
        yield dict(ck=ck, cal=cal, items=build_items(ck, cal, cfg))
    finally:
        torch.set_num_threads(n)

"""Checkpoint -> artifact bytes.

Lossless mode: integer symbols the source already holds (the baseline's int8 +
fp16 row scales) are stored exactly as `int_rowscale` / `int_tensorscale`
tensors, and every float tensor is stored bit-exactly as a `float` tensor. Each
stream gets the smallest of the allowed coders (codec.coders.best_encoding).

Lossy mode (codec.planner) chooses per-tensor schemes, quantizes, and hands
its streams to the same `encode_plan`.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from golfpack.checkpoint import Checkpoint
from golfpack.codec.coders import ALL_CODERS, CODERS, StreamType, best_encoding
from golfpack.codec.container import DTYPE_NAMES, EncodedStream, EncodedTensor, build_artifact
from golfpack.errors import GolfpackError


def _float_values(t: torch.Tensor) -> tuple[str, np.ndarray]:
    """(stream type, numpy values) of a float tensor; bf16 travels as its uint16 bits."""
    if t.dtype not in DTYPE_NAMES:
        raise GolfpackError(f"dtype {t.dtype} cannot be stored losslessly (supported: {', '.join(DTYPE_NAMES.values())})")
    t = t.detach().to("cpu").contiguous().reshape(-1)
    if t.dtype == torch.bfloat16:
        return "bfloat16", t.view(torch.int16).numpy().view(np.uint16)
    return DTYPE_NAMES[t.dtype], t.numpy()


def row_length(shape) -> int:
    """Elements per row of a symbol matrix of this shape, 0 below two dimensions (rans_rc needs rows)."""
    return int(np.prod(shape[1:])) if len(shape) >= 2 else 0


def lossless_tensor(ck: Checkpoint, name: str):
    """(name, shape, dtype name, scheme, {role: (StreamType, values)}) of one tensor, stored exactly."""
    if name in ck.quantized:
        qs = ck.quantized[name]
        q = qs.symbols.numpy().reshape(-1)
        # Source symbols are int8 (the baseline's 8-bit grid); they keep that width so
        # inspect reports the scheme honestly. Entropy coding makes the nominal width free.
        bits = 8
        kind = "int_rowscale" if qs.scale.ndim > 0 else "int_tensorscale"
        if not bool(torch.isfinite(qs.scale).all()):  # the reader refuses them (FORMAT.md section 3)
            raise GolfpackError(f"{name}: scales hold NaN or Inf")
        st_kind, s_vals = _float_values(qs.scale.reshape(-1))
        if st_kind not in ("float16", "float32"):
            s_vals = qs.scale.reshape(-1).to(torch.float32).numpy()
            st_kind = "float32"
            if not torch.equal(torch.from_numpy(s_vals).to(qs.scale.dtype), qs.scale.reshape(-1)):
                raise GolfpackError(f"{name}: scale dtype {qs.scale.dtype} cannot be stored losslessly")
        streams = {
            "symbols": (StreamType("int", q.size, bits, row_len=row_length(qs.symbols.shape)), q),
            "scales": (StreamType(st_kind, s_vals.size), s_vals),
        }
        return name, tuple(qs.symbols.shape), DTYPE_NAMES[qs.dtype], {"kind": kind, "bits": bits}, streams
    t = ck.floats[name]
    st_kind, vals = _float_values(t)
    out_dtype = ck.cast.get(name, t.dtype)
    if out_dtype not in DTYPE_NAMES:
        raise GolfpackError(f"{name}: cannot record output dtype {out_dtype}")
    return name, tuple(t.shape), DTYPE_NAMES[out_dtype], {"kind": "float"}, {"data": (StreamType(st_kind, vals.size), vals)}


def _plan_lossless(ck: Checkpoint):
    """Yield (name, shape, dtype name, scheme, {role: (StreamType, values)}) per tensor."""
    for name in ck.order:
        yield lossless_tensor(ck, name)


def check_coders(coders) -> None:
    bad = [c for c in coders if c not in ALL_CODERS]
    if bad or not coders:
        raise GolfpackError(f"unknown coder(s) {bad} (choose from {', '.join(ALL_CODERS)})")


def _stream_key(st: StreamType, vals: np.ndarray, coders, fast_decode: bool) -> tuple:
    import hashlib

    digest = hashlib.blake2b(np.ascontiguousarray(vals).view(np.uint8).reshape(-1), digest_size=16).digest()
    return (st, vals.dtype.str, tuple(coders), fast_decode, digest)


def encode_plan(plan: list, coders=CODERS, jobs: int | None = None, metas: list | None = None,
                cache: dict | None = None, fast_decode: bool = False) -> list[EncodedTensor]:
    """Entropy-code planned tensors: each stream gets the smallest allowed coder (threads in parallel).

    fast_decode: int streams take the fast-decode coder when it is within 0.5% of the smallest
    (codec.coders.best_encoding).

    cache: a dict kept by the caller across calls, mapping a stream's type, values and coders to
    its encoding, so identical streams are coded once (the coders are deterministic)."""
    work = [(i, role, st, vals) for i, (_, _, _, _, streams) in enumerate(plan) for role, (st, vals) in streams.items()]
    keys = [_stream_key(st, vals, coders, fast_decode) for _, _, st, vals in work] if cache is not None else None

    def run(item):
        i, role, st, vals = item
        coder, tf, data = best_encoding(vals, st, coders, fast_decode)
        return i, role, EncodedStream(st, coder, tf, data)

    todo = [w for k, w in enumerate(work) if cache is None or keys[k] not in cache]
    jobs = jobs or min(8, os.cpu_count() or 1)
    # zstd, brotli and the rANS coder release the GIL, so threads give real parallelism.
    with ThreadPoolExecutor(max_workers=jobs) as ex:
        fresh = {(i, role): es for i, role, es in ex.map(run, todo)}
    encoded = [dict() for _ in plan]
    for k, (i, role, st, vals) in enumerate(work):
        if (i, role) in fresh:
            es = fresh[(i, role)]
            if cache is not None:
                cache[keys[k]] = es
        else:
            es = cache[keys[k]]
        encoded[i][role] = es
    return [EncodedTensor(name, shape, dtype, scheme, encoded[i], (metas[i] if metas else None) or {})
            for i, (name, shape, dtype, scheme, _) in enumerate(plan)]


def encode_lossless(ck: Checkpoint, coders=CODERS, jobs: int | None = None, fast_decode: bool = False) -> bytes:
    """Encode a checkpoint losslessly; returns the artifact bytes (deterministic)."""
    check_coders(coders)
    tensors = encode_plan(list(_plan_lossless(ck)), coders, jobs, fast_decode=fast_decode)
    source = {"format": ck.source_format, "params": ck.num_params()}
    return build_artifact(tensors, config=ck.config, source=source)

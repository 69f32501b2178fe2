"""Re-entropy-code an artifact: same decoded tensors, each stream with the best allowed coder.

    artifact -> decode every stream -> best_encoding per stream -> artifact

The symbols, scales and float bytes are unchanged (the result decodes to bit-identical
tensors); only the coders and the bytes change. This is how an artifact written before a
coder existed (rans_rc, issue 8) gets its bytes, and how a user trades size for decode speed:
`--coders raw,rans` keeps only the coders with the fastest decoders.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from golfpack.codec.coders import CODERS, StreamType, best_encoding, decode_stream
from golfpack.codec.container import Artifact, EncodedStream, EncodedTensor, build_artifact
from golfpack.codec.encode import check_coders


def stream_row_length(t, role: str) -> int:
    """Elements per row of a stream that is a row-major matrix (what rans_rc needs), else 0."""
    shape = tuple(t.shape)
    if role == "symbols" and len(shape) >= 2:
        return int(np.prod(shape[1:]))
    if role == "lowrank_a" and shape:
        return int(shape[0])  # A^T [r, N]
    if role == "lowrank_b" and len(shape) >= 2:
        return int(np.prod(shape[1:]))  # B [r, K]
    return 0


def recode(art: Artifact, coders=CODERS, jobs: int | None = None, manifest_coding: int = 1,
           fast_decode: bool = False) -> bytes:
    """The artifact's tensors with every stream re-coded by the smallest allowed coder (fast_decode:
    int streams take the fast-decode coder within 0.5% of it, codec.coders.best_encoding)."""
    check_coders(coders)
    work = [(name, role) for name, t in art.tensors.items() for role in t.streams]

    def run(item):
        name, role = item
        t = art.tensors[name]
        s = t.streams[role]
        vals = decode_stream(t.stream_bytes(role), s.type, s.coder, s.transform)
        st = StreamType(s.type.kind, s.type.count, s.type.bits, row_len=stream_row_length(t, role))
        coder, tf, data = best_encoding(vals, st, coders, fast_decode)
        return item, EncodedStream(st, coder, tf, data)

    with ThreadPoolExecutor(max_workers=jobs or min(8, os.cpu_count() or 1)) as ex:
        done = dict(ex.map(run, work))
    tensors = [EncodedTensor(name, tuple(t.shape), t.dtype, t.scheme, {r: done[(name, r)] for r in t.streams},
                             dict(t.meta)) for name, t in art.tensors.items()]
    return build_artifact(tensors, config=art.config, source=art.source, manifest_coding=manifest_coding)

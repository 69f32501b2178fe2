"""Write the seed corpora for fuzz/targets.py: small valid inputs made here, nothing downloaded.

    python fuzz/make_corpus.py [OUT_DIR]      # default fuzz/corpus/<target>/seed-NNN

Artifacts cover every coder, both manifest codings, every scheme (float, int_rowscale,
int_tensorscale, int_groupscale, LQER low-rank) and every float stream type; the
stream seeds cover every (coder, type, transform) the format allows.
"""
from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import torch

from golfpack import _C
from golfpack.checkpoint import Checkpoint, QuantizedSource
from golfpack.codec.coders import CODERS, FLOAT_TYPES, StreamType, best_encoding, encode_stream
from golfpack.codec.container import MANIFEST_RAW, MANIFEST_ZSTD, EncodedStream, EncodedTensor, build_artifact
from golfpack.codec.encode import encode_lossless

sys.path.insert(0, str(Path(__file__).resolve().parent))
from targets import STREAM_KINDS  # noqa: E402


def small_checkpoint(seed: int) -> Checkpoint:
    g = np.random.default_rng(seed)
    ck = Checkpoint(source_format="fuzz-seed")
    rows, cols = int(g.integers(1, 9)), int(g.integers(1, 17))
    q = np.clip(np.round(g.laplace(0, 2, size=(rows, cols))), -31, 31).astype(np.int8)
    ck.quantized["w"] = QuantizedSource(torch.from_numpy(q), torch.full((rows,), 0.01, dtype=torch.float16), torch.float32)
    ck.quantized["t"] = QuantizedSource(torch.from_numpy(q[:1].copy()), torch.tensor(0.5), torch.bfloat16)
    dt = [torch.float32, torch.float16, torch.bfloat16, torch.float64][seed % 4]
    ck.floats["b"] = torch.linspace(-1, 1, int(g.integers(0, 12))).to(dt)
    ck.floats["s"] = torch.tensor(3.0)
    ck.order = ["w", "t", "b", "s"]
    ck.config = {"model_dim": cols} if seed % 2 else None
    return ck


def _stream(values: np.ndarray, st: StreamType, coder: str | None) -> EncodedStream:
    if coder is None:
        c, tf, data = best_encoding(values, st)
        return EncodedStream(st, c, tf, data)
    return EncodedStream(st, coder, "none", encode_stream(values, st, coder))


def scheme_artifact(coder: str | None, coding: int) -> bytes:
    """int_groupscale with an LQER term, and int_rowscale with one: the schemes encode_lossless never writes."""
    g = np.random.default_rng(7)
    n, k, r, b = 4, 6, 2, 4
    q = g.integers(-8, 8, size=n * k).astype(np.int8)
    a = g.integers(-8, 8, size=r * n).astype(np.int8)
    bb = g.integers(-8, 8, size=r * k).astype(np.int8)
    f16 = lambda m: (g.random(m) + 0.1).astype(np.float16)  # noqa: E731
    lowrank = {
        "lowrank_a": _stream(a, StreamType("int", r * n, b), coder),
        "lowrank_a_scales": _stream(f16(r), StreamType("float16", r), coder),
        "lowrank_b": _stream(bb, StreamType("int", r * k, b), coder),
        "lowrank_b_scales": _stream(f16(r), StreamType("float16", r), coder),
    }
    group = {"symbols": _stream(q, StreamType("int", n * k, 4), coder),
             "scales": _stream(f16(n * 2), StreamType("float16", n * 2), coder), **lowrank}
    row = {"symbols": _stream(q, StreamType("int", n * k, 4), coder),
           "scales": _stream(f16(n), StreamType("float16", n), coder), **lowrank}
    tensors = [
        EncodedTensor("g", (n, k), "float32", {"kind": "int_groupscale", "bits": 4, "group": 3,
                                               "lowrank": {"rank": r, "bits": b}}, group),
        EncodedTensor("r", (n, k), "float16", {"kind": "int_rowscale", "bits": 4,
                                               "lowrank": {"rank": r, "bits": b}}, row, meta={"dloss": 0.5}),
    ]
    return build_artifact(tensors, config={"model_dim": k}, source={"format": "fuzz-seed"}, manifest_coding=coding)


def artifacts(raw_manifest: bool) -> list[bytes]:
    coding = MANIFEST_RAW if raw_manifest else MANIFEST_ZSTD
    out = []
    for i, coders in enumerate([("raw",), ("rans",), ("zstd",), ("brotli",), CODERS]):
        data = encode_lossless(small_checkpoint(i), coders=coders, jobs=1)
        if raw_manifest:  # re-emit with a raw manifest: same tensors, JSON visible to the mutator
            from golfpack.codec.container import parse_artifact

            art = parse_artifact(data)
            tensors = [EncodedTensor(t.name, t.shape, t.dtype, t.scheme,
                                     {r: EncodedStream(s.type, s.coder, s.transform, t.stream_bytes(r))
                                      for r, s in t.streams.items()}, t.meta)
                       for t in art.tensors.values()]
            data = build_artifact(tensors, config=art.config, source=art.source, manifest_coding=coding)
        out.append(data)
    out += [scheme_artifact(c, coding) for c in ("raw", "rans", None)]
    out.append(build_artifact([], manifest_coding=coding))
    return out


def rans_seeds() -> list[bytes]:
    g = np.random.default_rng(1)
    out = []
    for n, alphabet, p, lanes in [(0, 1, 0, 0), (1, 1, 12, 0), (40, 1, 13, 0), (3, 2, 12, 0), (7, 3, 12, 1),
                                  (64, 16, 13, 2), (200, 64, 14, 4), (300, 200, 15, 8), (500, 5, 0, 0),
                                  (100, 256, 0, 8)]:
        sym = g.integers(0, alphabet, size=n).astype(np.uint8)
        if alphabet > 40:
            sym[::3] = 200  # holes in the alphabet: the sparse table form
        out.append(struct.pack("<I", n) + _C.rans_encode(sym, p, lanes))
    return out


def rans_x32_seeds() -> list[bytes]:
    g = np.random.default_rng(3)
    out = []
    for n, alphabet in [(0, 1), (1, 1), (40, 1), (3, 2), (31, 3), (32, 16), (33, 64), (200, 5), (700, 256)]:
        sym = g.integers(0, alphabet, size=n).astype(np.uint8)
        if alphabet > 40:
            sym[::3] = 200
        out.append(struct.pack("<I", n) + _C.rans_x32_encode(sym))
    return out


def bitpack_seeds() -> list[bytes]:
    g = np.random.default_rng(2)
    out = []
    for bits in range(2, 9):
        for n in (0, 1, 7, 8, 9, 33):
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1))
            sym = g.integers(lo, hi, size=n).astype(np.int8)
            out.append(bytes([bits - 2, 0]) + _C.pack_bits(sym, bits).tobytes())
    return out


def stream_seeds() -> list[bytes]:
    g = np.random.default_rng(3)
    out = []
    for ki, kind in enumerate(STREAM_KINDS):
        for ci, coder in enumerate(CODERS):
            for shuffle in (False, True):
                if shuffle and (kind == "int" or coder == "raw"):
                    continue
                n = int(g.integers(0, 40))
                st = StreamType(kind, n, 5 if kind == "int" else 8, row_len=4 if n % 4 == 0 else n)
                if not st.offers(coder):
                    continue
                if kind == "int":
                    vals = g.integers(-16, 16, size=n).astype(np.int8)
                else:
                    vals = (g.standard_normal(n) * 0.1).astype(np.float32).astype(FLOAT_TYPES[kind].newbyteorder("="))
                    if kind == "bfloat16":
                        vals = g.integers(0, 2**16, size=n).astype(np.uint16)
                data = encode_stream(vals, st, coder, "byteshuffle" if shuffle else "none")
                sel = ci | (ki << 3) | (0x80 if shuffle else 0)
                out.append(bytes([sel]) + struct.pack("<H", n) + bytes([5 - 2]) + data)
    return out


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "corpus"
    seeds = {"header": artifacts(False) + artifacts(True), "manifest": artifacts(True),
             "rans": rans_seeds(), "rans_x32": rans_x32_seeds(), "bitpack": bitpack_seeds(), "streams": stream_seeds(),
             "crc": [bytes(range(n % 256)) * (1 + n // 256) for n in (0, 1, 15, 16, 17, 63, 64, 65, 200, 1000)]}
    for target, items in seeds.items():
        d = root / target
        d.mkdir(parents=True, exist_ok=True)
        for i, data in enumerate(items):
            (d / f"seed-{i:03d}").write_bytes(data)
        print(f"{target}: {len(items)} seeds, {sum(map(len, items))} bytes -> {d}")


if __name__ == "__main__":
    main()

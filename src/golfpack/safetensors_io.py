"""A small, strict safetensors reader and writer (no third-party package).

Layout (https://huggingface.co/docs/safetensors): an 8-byte little-endian u64 N,
then N bytes of UTF-8 JSON mapping each tensor name to
``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to the
byte after the header) plus an optional ``"__metadata__"`` map of str -> str,
then the data.

The reader enforces the guarantees the format promises (field guide §9):
header at most 100,000,000 bytes, no duplicate keys, offsets that are
contiguous, non-overlapping and cover the data exactly, and sizes that agree
with dtype x shape. Every violation is a FormatError naming the file and the
problem. Nothing is executed; nothing is allocated from an unchecked size.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

from golfpack.errors import FormatError, GolfpackError
from golfpack.safe_json import loads_bounded

MAX_HEADER_BYTES = 100_000_000

# safetensors dtype string <-> torch dtype
DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
if hasattr(torch, "float8_e4m3fn"):
    DTYPES["F8_E4M3"] = torch.float8_e4m3fn
    DTYPES["F8_E5M2"] = torch.float8_e5m2
_NAMES = {v: k for k, v in DTYPES.items()}


def tensor_bytes(t: torch.Tensor) -> bytes:
    """Raw little-endian bytes of a tensor in its own dtype (bf16 included)."""
    t = t.detach().to("cpu").contiguous()
    if t.numel() == 0:
        return b""
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


def tensor_from_bytes(buf: bytes | memoryview, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of tensor_bytes; the caller has checked len(buf) == numel * itemsize."""
    n = math.prod(shape)
    if n == 0:
        return torch.empty(shape, dtype=dtype)
    raw = torch.frombuffer(bytearray(buf), dtype=torch.uint8)
    return raw.view(dtype).reshape(shape)


def save_file(tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None) -> int:
    """Write tensors (sorted by name, deterministic) atomically; returns the file size."""
    header: dict[str, object] = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise GolfpackError(f"safetensors metadata must map str to str, got {k!r}: {type(v).__name__}")
        header["__metadata__"] = dict(sorted(metadata.items()))
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        if not isinstance(t, torch.Tensor):
            raise GolfpackError(f"safetensors: value for {name!r} is {type(t).__name__}, not a tensor")
        if t.dtype not in _NAMES:
            raise GolfpackError(f"safetensors: tensor {name!r} has unsupported dtype {t.dtype}")
        b = tensor_bytes(t)
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * (-len(hjson) % 8)  # pad so the data starts 8-byte aligned
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(len(hjson).to_bytes(8, "little"))
        f.write(hjson)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)
    return 8 + len(hjson) + offset


def load_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a .safetensors file; returns (tensors, metadata)."""
    path = Path(path)
    data = path.read_bytes()
    where = f"{path}"
    if len(data) < 8:
        raise FormatError(f"{where}: not a safetensors file (only {len(data)} bytes)")
    n = int.from_bytes(data[:8], "little")
    if n > MAX_HEADER_BYTES:
        raise FormatError(f"{where}: safetensors header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit")
    if 8 + n > len(data):
        raise FormatError(f"{where}: truncated: header claims {n} bytes but the file has {len(data) - 8} after the length")
    # Bounded like the artifact manifest: depth, integer digits, finite floats, duplicate keys.
    header = loads_bounded(data[8 : 8 + n], f"{where}: safetensors header")
    if not isinstance(header, dict):
        raise FormatError(f"{where}: safetensors header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise FormatError(f"{where}: __metadata__ must map strings to strings")
    body = memoryview(data)[8 + n :]
    entries = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise FormatError(f"{where}: tensor {name!r}: entry must have exactly dtype, shape, data_offsets")
        dt = info["dtype"]
        if dt not in DTYPES:
            raise FormatError(f"{where}: tensor {name!r}: unsupported dtype {dt!r}")
        shape = info["shape"]
        offs = info["data_offsets"]
        if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise FormatError(f"{where}: tensor {name!r}: bad shape {shape!r}")
        if not (isinstance(offs, list) and len(offs) == 2 and all(isinstance(o, int) and not isinstance(o, bool) for o in offs)):
            raise FormatError(f"{where}: tensor {name!r}: bad data_offsets {offs!r}")
        begin, end = offs
        itemsize = torch.empty((), dtype=DTYPES[dt]).element_size()
        need = math.prod(shape) * itemsize
        if not (0 <= begin <= end) or end - begin != need:
            raise FormatError(
                f"{where}: tensor {name!r}: data_offsets {offs} hold {end - begin} bytes, dtype x shape needs {need}"
            )
        entries.append((begin, end, name, DTYPES[dt], tuple(shape)))
    entries.sort()
    pos = 0
    for begin, end, name, _, _ in entries:
        if begin != pos:
            raise FormatError(f"{where}: tensor {name!r} starts at {begin}, expected {pos} (gap or overlap in data)")
        pos = end
    if pos != len(body):
        raise FormatError(f"{where}: tensors cover {pos} data bytes but the file holds {len(body)} (truncated or trailing bytes)")
    tensors = {name: tensor_from_bytes(body[b:e], dt, shape) for b, e, name, dt, shape in entries}
    return tensors, dict(meta)


def load_sharded(index_path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a sharded checkpoint from its ``*.safetensors.index.json`` (a ``weight_map`` of name -> shard file)."""
    index_path = Path(index_path)
    index = loads_bounded(index_path.read_bytes(), f"{index_path}: index")
    wmap = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(wmap, dict) or not wmap:
        raise FormatError(f"{index_path}: index has no 'weight_map' object")
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, str] = {}
    base = index_path.parent
    for shard in sorted(set(wmap.values())):
        if not isinstance(shard, str) or "/" in shard or "\\" in shard or shard in ("", ".", ".."):
            raise FormatError(f"{index_path}: shard name {shard!r} must be a plain file name next to the index")
        sp = base / shard
        if not sp.exists():
            raise FormatError(f"{index_path}: shard file {shard!r} is missing")
        part, m = load_file(sp)
        meta.update(m)
        for name, t in part.items():
            if wmap.get(name) != shard:
                raise FormatError(f"{index_path}: tensor {name!r} found in {shard!r} but the weight_map says {wmap.get(name)!r}")
            tensors[name] = t
    missing = sorted(set(wmap) - set(tensors))
    if missing:
        raise FormatError(f"{index_path}: tensors listed in weight_map but absent from their shards: {missing[:5]}")
    if isinstance(index.get("metadata"), dict):
        meta.update({k: v for k, v in index["metadata"].items() if isinstance(v, str)})
    return tensors, meta

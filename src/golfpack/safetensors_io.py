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
from golfpack.safe_json import TooManyObjects, loads_bounded

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
_ITEMSIZE = {k: torch.empty((), dtype=v).element_size() for k, v in DTYPES.items()}

# Caps shared with the artifact format (FORMAT.md section 2, SECURITY.md "Input limits").
MAX_NDIM = 8
MAX_DIM = 1 << 40
MAX_TOTAL_ELEMENTS = 1 << 30  # per checkpoint, as per artifact
MAX_TENSORS = 1 << 16  # per checkpoint: a 256-layer GPT has ~4,000; a count past this is an attack
MAX_META_MEMBERS = 4096  # __metadata__ (or an index's metadata) entries: golfpack writes 2


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


def _raw_view(t: torch.Tensor):
    """A tensor's bytes as a numpy uint8 array without a copy when it is already contiguous."""
    t = t.detach().to("cpu").contiguous()
    return t.reshape(-1).view(torch.uint8).numpy()


def save_file(tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None,
              inputs=()) -> int:
    """Write tensors (sorted by name, deterministic) atomically (golfpack.output); returns the file size.

    Each tensor is written straight from its own memory: no second copy of the state dict."""
    from golfpack.output import atomic_output

    header: dict[str, object] = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise GolfpackError(f"safetensors metadata must map str to str, got {k!r}: {type(v).__name__}")
        header["__metadata__"] = dict(sorted(metadata.items()))
    offset = 0
    names = sorted(tensors)
    for name in names:
        t = tensors[name]
        if not isinstance(t, torch.Tensor):
            raise GolfpackError(f"safetensors: value for {name!r} is {type(t).__name__}, not a tensor")
        if t.dtype not in _NAMES:
            raise GolfpackError(f"safetensors: tensor {name!r} has unsupported dtype {t.dtype}")
        n = t.numel() * t.element_size()
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + n]}
        offset += n
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * (-len(hjson) % 8)  # pad so the data starts 8-byte aligned
    with atomic_output(path, inputs) as f:
        f.write(len(hjson).to_bytes(8, "little"))
        f.write(hjson)
        for name in names:
            if tensors[name].numel():
                f.write(_raw_view(tensors[name]))
    return 8 + len(hjson) + offset


def _check_shape(shape, where: str, name: str) -> tuple[int, ...]:
    """A shape from a hostile header: at most MAX_NDIM dims, each and their product bounded, before any use."""
    if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_DIM for d in shape):
        raise FormatError(f"{where}: tensor {name!r}: field 'shape' must be a list of at most {MAX_NDIM} integers "
                          f"in [0, 2^40], got {_short(shape)}")
    numel = 1
    for d in shape:
        numel *= d
    if numel > MAX_TOTAL_ELEMENTS:
        raise FormatError(f"{where}: tensor {name!r}: field 'shape' {shape} holds {numel} elements, over the "
                          f"{MAX_TOTAL_ELEMENTS} (2^30) cap")
    return tuple(shape)


def _short(v) -> str:
    r = repr(v)
    return r if len(r) <= 80 else r[:77] + "..."


def read_header(f, where: str, file_size: int):
    """(entries sorted by offset, metadata, data start) of an open safetensors file, all checked.

    entries: (begin, end, name, dtype, shape). Nothing is allocated from a size that has not been
    checked against the file: the header length against the file size, every shape against the caps,
    and the offsets against each other and the file."""
    head = f.read(8)
    if len(head) < 8:
        raise FormatError(f"{where}: not a safetensors file (only {len(head)} bytes)")
    n = int.from_bytes(head, "little")
    if n > MAX_HEADER_BYTES:
        raise FormatError(f"{where}: safetensors header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit")
    if 8 + n > file_size:
        raise FormatError(f"{where}: truncated: header claims {n} bytes but the file has {file_size - 8} after the length")
    # Bounded like the artifact manifest: depth, integer digits, finite floats, duplicate keys. A valid
    # header has one object per tensor plus the root and __metadata__: past that the parse stops.
    # Decoded here so that the raw bytes are freed before the parse (a 100 MB header is held once).
    try:
        text = f.read(n).decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(f"{where}: safetensors header: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    try:
        header = loads_bounded(text, f"{where}: safetensors header", max_objects=MAX_TENSORS + 2,
                               max_members=4 * MAX_TENSORS + 1 + MAX_META_MEMBERS)
    except TooManyObjects as e:  # one object (of 3 members, under 1 name) per tensor, plus the root and __metadata__
        if e.kind == "members":
            raise FormatError(f"{where}: header holds {e.count} names, more than the limit of {MAX_TENSORS} tensors "
                              f"(4 names each) + {MAX_META_MEMBERS} metadata entries") from None
        raise FormatError(f"{where}: header opens {e.count} JSON objects, more than the limit of {MAX_TENSORS} "
                          "tensors per checkpoint") from None
    del text
    if not isinstance(header, dict):
        raise FormatError(f"{where}: safetensors header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise FormatError(f"{where}: __metadata__ must map strings to strings")
    if len(header) > MAX_TENSORS:
        raise FormatError(f"{where}: {len(header)} tensors, over the limit of {MAX_TENSORS} per checkpoint")
    entries = []
    total = 0
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise FormatError(f"{where}: tensor {name!r}: entry must have exactly dtype, shape, data_offsets")
        dt = info["dtype"]
        if not isinstance(dt, str) or dt not in DTYPES:
            raise FormatError(f"{where}: tensor {name!r}: field 'dtype' {_short(dt)} is not one of {sorted(DTYPES)}")
        shape = _check_shape(info["shape"], where, name)
        offs = info["data_offsets"]
        if not (isinstance(offs, list) and len(offs) == 2 and all(isinstance(o, int) and not isinstance(o, bool) for o in offs)):
            raise FormatError(f"{where}: tensor {name!r}: field 'data_offsets' must be two integers, got {_short(offs)}")
        begin, end = offs
        need = math.prod(shape) * _ITEMSIZE[dt]
        if not (0 <= begin <= end) or end - begin != need:
            raise FormatError(
                f"{where}: tensor {name!r}: field 'data_offsets' {offs} hold {end - begin} bytes, dtype x shape needs {need}"
            )
        total += math.prod(shape)
        if total > MAX_TOTAL_ELEMENTS:
            raise FormatError(f"{where}: tensor {name!r}: more than {MAX_TOTAL_ELEMENTS} (2^30) elements in all")
        entries.append((begin, end, name, DTYPES[dt], shape))
    entries.sort()
    pos = 0
    for begin, end, name, _, _ in entries:
        if begin != pos:
            raise FormatError(f"{where}: tensor {name!r} starts at {begin}, expected {pos} (gap or overlap in data)")
        pos = end
    body = file_size - 8 - n
    if pos != body:
        raise FormatError(f"{where}: tensors cover {pos} data bytes but the file holds {body} (truncated or trailing bytes)")
    return entries, dict(meta), 8 + n


def load_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a .safetensors file; returns (tensors, metadata).

    The header is read and checked in full first; then each tensor is read into its own buffer, so
    the peak is the tensors' size once (not the file plus a copy)."""
    from golfpack.input_files import open_regular

    path = Path(path)
    where = f"{path}"
    with open_regular(path, "safetensors file") as (f, size):
        entries, meta, start = read_header(f, where, size)
        tensors = {}
        for begin, end, name, dt, shape in entries:
            if end == begin:
                tensors[name] = torch.empty(shape, dtype=dt)
                continue
            buf = bytearray(end - begin)
            f.seek(start + begin)
            got = f.readinto(buf)
            if got != len(buf):  # the file shrank while being read
                raise FormatError(f"{where}: tensor {name!r}: truncated data ({got} of {len(buf)} bytes)")
            tensors[name] = torch.frombuffer(buf, dtype=torch.uint8).view(dt).reshape(shape)
    return tensors, meta


def load_sharded(index_path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a sharded checkpoint from its ``*.safetensors.index.json`` (a ``weight_map`` of name -> shard file).

    Shards must be regular files in the index's own folder (golfpack.input_files.confined_file): no
    path components, no symlink that leads out, no FIFO or device."""
    from golfpack.input_files import confined_file, read_regular

    index_path = Path(index_path)
    # At most MAX_TENSORS weight_map entries, plus room for metadata: counted before the parse builds them.
    try:
        index = loads_bounded(read_regular(index_path, "sharded index", MAX_HEADER_BYTES), f"{index_path}: index",
                              max_members=MAX_TENSORS + MAX_META_MEMBERS)
    except TooManyObjects as e:
        raise FormatError(f"{index_path}: index holds {e.count} names, more than the limit of {MAX_TENSORS} tensors "
                          f"(+ {MAX_META_MEMBERS} metadata entries)") from None
    wmap = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(wmap, dict) or not wmap:
        raise FormatError(f"{index_path}: index has no 'weight_map' object")
    if len(wmap) > MAX_TENSORS:
        raise FormatError(f"{index_path}: weight_map lists {len(wmap)} tensors, over the limit of {MAX_TENSORS}")
    for name, shard in wmap.items():
        if not isinstance(shard, str):
            raise FormatError(f"{index_path}: weight_map[{name!r}] must be a shard file name, got {_short(shard)}")
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, str] = {}
    base = index_path.parent
    total = 0
    for shard in sorted(set(wmap.values())):
        sp = confined_file(base, shard, f"{index_path}")
        part, m = load_file(sp)
        meta.update(m)
        for name, t in part.items():
            if wmap.get(name) != shard:
                raise FormatError(f"{index_path}: tensor {name!r} found in {shard!r} but the weight_map says {wmap.get(name)!r}")
            tensors[name] = t
            total += t.numel()
        if total > MAX_TOTAL_ELEMENTS:
            raise FormatError(f"{index_path}: shards hold more than {MAX_TOTAL_ELEMENTS} (2^30) elements in all")
    missing = sorted(set(wmap) - set(tensors))
    if missing:
        raise FormatError(f"{index_path}: tensors listed in weight_map but absent from their shards: {missing[:5]}")
    if isinstance(index.get("metadata"), dict):
        meta.update({k: v for k, v in index["metadata"].items() if isinstance(v, str)})
    return tensors, meta

"""The golfpack artifact container: writer and strict parser (spec: FORMAT.md).

    [fixed header, 28 bytes][manifest (JSON, zstd or raw)][payload: streams back to back]

The parser follows FORMAT.md field by field. It never unpickles, never
executes anything, validates every size and offset before it allocates, and
checks a CRC-32 over the header + manifest and one per stream. Anything wrong
is a FormatError whose message names the field.
"""
from __future__ import annotations

import json
import math
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import zstandard

from golfpack import _C
from golfpack.output import write_bytes  # loaded at decode too: one counted set of modules (code_bytes)
from golfpack.codec import schemes as _schemes
from golfpack.codec.coders import FLOAT_TYPES, StreamType, decode_stream
from golfpack.errors import FormatError, GolfpackError
from golfpack.safe_json import check_value, loads_bounded

MAGIC = b"GOLFPACK"
FORMAT_VERSION = 1
HEADER = struct.Struct("<8sHHBBHIII")  # magic, version, flags, manifest_coding, reserved u8, reserved u16, stored, raw, crc
HEADER_SIZE = HEADER.size  # 28
MANIFEST_RAW, MANIFEST_ZSTD, MANIFEST_LZMA = 0, 1, 2
# LZMA ("alone" format, preset 9e): what an exported record writes, since Python's standard
# library decodes it (the challenge's machines have no zstandard; golfpack.export).
MAX_MANIFEST_BYTES = 64 << 20
MAX_TENSORS = 1 << 20
MAX_NDIM = 8
# Hostile-size guard: a one-symbol rANS (or a zstd) stream can legitimately decode any count
# from a few bytes, so the element total is capped. 2^30 (~1.07 G parameters, 4 GiB as fp32)
# is far above anything a 16 MB budget holds and keeps decoding inside a small machine's memory.
MAX_TOTAL_ELEMENTS = 1 << 30
# zlib's CRC-32, computed with PCLMULQDQ when the CPU has it (several times the system zlib's
# speed on a 16 MB artifact; benchmarks/RESULTS.md "Fast decode").
_crc32 = _C.crc32 if _C.crc32_simd else zlib.crc32
# Sizes, offsets, lengths and shape dims: 2^40 (1 TiB) is far past any artifact, and keeps every
# sum and product of these fields small and exact (FORMAT.md section 2).
MAX_SIZE_FIELD = 1 << 40

TORCH_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}
DTYPE_NAMES = {v: k for k, v in TORCH_DTYPES.items()}
TENSOR_KEYS = {"name", "shape", "dtype", "scheme", "streams"}
OPTIONAL_TENSOR_KEYS = {"meta"}
STREAM_KEYS = {"type", "count", "coder", "transform", "offset", "length", "crc32"}
TOP_KEYS = {"config", "source", "payload_bytes", "tensors"}


# ----------------------------------------------------------------------------- model of a parsed artifact


@dataclass
class StreamEntry:
    role: str
    type: StreamType
    coder: str
    transform: str
    offset: int
    length: int
    crc32: int

    def to_json(self) -> dict:
        d = {"type": self.type.kind, "count": self.type.count, "coder": self.coder, "transform": self.transform,
             "offset": self.offset, "length": self.length, "crc32": self.crc32}
        if self.type.kind == "int":
            d["bits"] = self.type.bits
        return d


@dataclass
class TensorEntry:
    name: str
    shape: tuple[int, ...]
    dtype: str
    scheme: dict
    streams: dict[str, StreamEntry]
    meta: dict = field(default_factory=dict)
    _payload: memoryview | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        return self.scheme["kind"]

    @property
    def is_quantized(self) -> bool:
        return self.kind != "float"

    @property
    def bits(self) -> int:
        if self.is_quantized:
            return int(self.scheme["bits"])
        return 8 * self.streams["data"].type.itemsize

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return sum(s.length for s in self.streams.values())

    def stream_bytes(self, role: str) -> bytes:
        return bytes(self.stream_view(role))

    def stream_view(self, role: str) -> memoryview:
        """The stream's stored bytes, CRC-checked, without a copy (a view of the artifact buffer)."""
        s = self.streams[role]
        b = self._payload[s.offset : s.offset + s.length]
        if _crc32(b) != s.crc32:
            raise FormatError(f"tensor {self.name!r}: {role} stream checksum mismatch (artifact is corrupt) [S7]")
        return b

    @property
    def is_rowscale_matrix(self) -> bool:
        """A 2-D int_rowscale tensor: what PackedLinear holds (symbols + one scale per row)."""
        return self.is_quantized and self.kind == "int_rowscale" and len(self.shape) == 2

    @property
    def packs_directly(self) -> bool:
        """True when `packed_rows` can decode this tensor's symbols straight into packed rows:
        a row-scale matrix whose symbols are rans- or rans_rc-coded."""
        return self.is_rowscale_matrix and self.streams["symbols"].coder in ("rans", "rans_rc", "rans_x32")

    def _decode(self, role: str) -> np.ndarray:
        s = self.streams[role]
        try:
            return decode_stream(self.stream_bytes(role), s.type, s.coder, s.transform)
        except FormatError as e:
            raise FormatError(f"tensor {self.name!r}: {role} stream: {e}") from None

    def symbols(self) -> np.ndarray:
        """Integer symbols (int8, the tensor's shape) of a quantized tensor."""
        if not self.is_quantized:
            raise GolfpackError(f"tensor {self.name!r} is stored as float, it has no symbols")
        return self._decode("symbols").reshape(self.shape)

    def scales(self) -> torch.Tensor:
        """Row scales ([rows]), group scales ([rows, groups]) or the one tensor scale ([]), stored dtype."""
        if not self.is_quantized:
            raise GolfpackError(f"tensor {self.name!r} is stored as float, it has no scales")
        t = self._float("scales")
        if self.kind == "int_tensorscale":
            return t.reshape(())
        if self.kind == "int_groupscale":
            return t.reshape(self.shape[0], -1) if self.shape[0] else t.reshape(0, 0)
        return t

    @property
    def group(self) -> int | None:
        return int(self.scheme["group"]) if self.kind == "int_groupscale" else None

    @property
    def rank(self) -> int:
        """Rank of the LQER low-rank term (0 when there is none)."""
        return int(self.scheme["lowrank"]["rank"]) if "lowrank" in self.scheme else 0

    def lowrank(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """float32 factors (A [rows, r], B [r, cols]) of the low-rank term, or None."""
        if not self.rank:
            return None
        return _schemes.lowrank_factors(self.scheme, self.shape, self._decode, self._float)

    def _float(self, role: str) -> torch.Tensor:
        t = _float_tensor(self._decode(role), self.streams[role].type.kind)
        # A float tensor's own data may hold anything (lossless); a NaN or Inf scale would
        # silently turn whole rows of weights into NaN, so side streams must be finite.
        if role != "data" and t.numel() and not bool(torch.isfinite(t).all()):
            raise FormatError(f"tensor {self.name!r}: {role} stream holds NaN or Inf (scales must be finite) [S10]")
        return t

    def float_data(self) -> torch.Tensor:
        """A float tensor's stored values, in the stored dtype (before any cast)."""
        return self._float("data").reshape(self.shape)

    def dequantize(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The decoded float tensor (codec/schemes.py): exactly what the dense loader and `decode` use.
        `dtype` overrides the recorded dtype of the final cast (to_checkpoint keeps float32)."""
        dtype = dtype or TORCH_DTYPES[self.dtype]
        if not self.is_quantized:
            return self.float_data().to(dtype).contiguous()
        return _schemes.dequantize(self.scheme, self.shape, dtype, self._decode, self._float)


def packed_rows(entries: list[TensorEntry], threads: int = 1) -> list[np.ndarray]:
    """Symbols of tensors with `packs_directly`, decoded straight into PackedLinear's row layout.

    One uint8 array [rows, ceil(cols*bits/8) rounded up to 16] per entry, bit for bit
    golfpack._C.qpack_rows(entry.symbols(), bits), without the int8 symbol array ever existing.
    Same validation as `symbols()` (CRC, every rANS stream check, the symbol range); the first
    bad stream raises FormatError naming its tensor. The streams are decoded several at a time
    per core (golfpack._C.rans_decode_rows); `threads` > 1 spreads them over more cores.
    """
    jobs, rc, x32 = [], [], []
    for e in entries:
        if not e.packs_directly:
            raise GolfpackError(f"tensor {e.name!r} cannot be decoded straight into packed rows")
        s = e.streams["symbols"]
        {"rans_rc": rc, "rans_x32": x32}.get(s.coder, jobs).append(e)
    out = {}
    for group, native in ((jobs, _C.rans_decode_rows), (x32, _C.rans_x32_decode_rows)):
        out.update(zip((e.name for e in group), native(
            [(e.stream_view("symbols"), e.shape[0], e.shape[1], e.streams["symbols"].type.bits) for e in group],
            threads)))
    out.update(_rc_packed_rows(rc, threads))
    for e in jobs + x32:
        if isinstance(out[e.name], str):
            raise FormatError(f"tensor {e.name!r}: symbols stream: {out[e.name]}")
    return [out[e.name] for e in entries]


def row_scales_f32(entries: list[TensorEntry]) -> list[torch.Tensor]:
    """The row scales of int_rowscale matrices as PackedLinear keeps them: float32, contiguous,
    shape [rows], one new tensor per entry. The values of `entry.scales().to(torch.float32)`, with
    the same checks (CRC, the coder's, finiteness: FormatError naming the tensor), but a raw
    stream is read in place rather than copied, and finiteness is checked once for all of them
    (load_packed widens 50-120 of these per artifact; one by one through torch it was ~15 us each)."""
    out = []
    for e in entries:
        if not e.is_rowscale_matrix:
            raise GolfpackError(f"tensor {e.name!r} has no row scales")
        s = e.streams["scales"]
        if s.coder == "raw" and s.transform == "none":
            view = e.stream_view("scales")
            if len(view) != s.type.raw_bytes:  # decode_stream's raw check, same words
                raise FormatError(f"tensor {e.name!r}: scales stream: raw stream holds {len(view)} bytes, "
                                  f"{s.type.count} elements need {s.type.raw_bytes} [S8]")
            values = np.frombuffer(view, FLOAT_TYPES[s.type.kind])
        else:
            values = e._decode("scales")
        out.append(values.astype(np.float32))  # a new array: nothing keeps the artifact buffer alive
    if out and not np.isfinite(np.concatenate(out)).all():
        bad = next(e for e, v in zip(entries, out) if not np.isfinite(v).all())
        raise FormatError(f"tensor {bad.name!r}: scales stream holds NaN or Inf (scales must be finite) [S10]")
    return [torch.from_numpy(v) for v in out]


def _rc_packed_rows(entries: list[TensorEntry], threads: int) -> dict[str, np.ndarray]:
    """rans_rc symbols streams decoded straight into packed rows (csrc/core/rans_ctx.cpp), several
    at a time per core (golfpack._C.rans_ctx_decode_rows); the first bad stream raises."""
    from golfpack.codec import rans_rc

    out, jobs, names = {}, [], []
    for e in entries:
        s = e.streams["symbols"]
        try:
            m, payload = rans_rc.parse(e.stream_view("symbols"), s.type.count)
            if m.cols != e.shape[1]:  # valid, but its rows are not the tensor's: decode, then pack
                out[e.name] = _C.qpack_rows(e.symbols().reshape(e.shape), s.type.bits)
                continue
            jobs.append((payload, s.type.count, m.cols, m.row_class, m.col_class, m.table_map, m.C, m.freqs(), m.P,
                         m.lanes, s.type.bits))
            names.append(e.name)
        except ValueError as err:  # m.freqs(): a table the integer rebuild rejects (RANS.md 6.2)
            raise FormatError(f"tensor {e.name!r}: symbols stream: rans_rc stream: {err}") from None
        except FormatError as err:
            raise FormatError(f"tensor {e.name!r}: symbols stream: {err}") from None
    for name, r in zip(names, _C.rans_ctx_decode_rows(jobs, threads)):
        if isinstance(r, str):  # the native decoder's words, as rans_rc.decode reports them
            raise FormatError(f"tensor {name!r}: symbols stream: rans_rc stream: {r}")
        out[name] = r
    return out


def _float_tensor(values: np.ndarray, kind: str) -> torch.Tensor:
    if kind == "bfloat16":  # numpy has no bf16: the stream holds the raw uint16 bits
        return torch.from_numpy(values.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(values)


@dataclass
class Artifact:
    version: int
    config: dict | None
    source: dict
    tensors: dict[str, TensorEntry]
    file_bytes: int
    header_bytes: int  # fixed header + stored manifest

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: t.dequantize() for name, t in self.tensors.items()}

    def verify(self) -> None:
        """Check every stream's CRC-32 (the header's was checked on open)."""
        for t in self.tensors.values():
            for role in t.streams:
                t.stream_bytes(role)

    def to_checkpoint(self):
        """The artifact as a Checkpoint: symbols and scales exact, floats bit-exact."""
        from golfpack.checkpoint import Checkpoint, QuantizedSource

        ck = Checkpoint(config=self.config, source_format="golfpack")
        for name, t in self.tensors.items():
            dtype = TORCH_DTYPES[t.dtype]
            if t.is_quantized and t.kind != "int_groupscale" and not t.rank:
                ck.quantized[name] = QuantizedSource(torch.from_numpy(t.symbols()), t.scales(), dtype)
            elif t.is_quantized:
                # Group scales and low-rank terms have no QuantizedSource form: keep the decoded
                # tensor exactly (as float32, cast to its dtype on use).
                ck.floats[name] = t.dequantize(torch.float32)
                if dtype != torch.float32:
                    ck.cast[name] = dtype
            else:
                data = t.float_data()
                ck.floats[name] = data
                if data.dtype != dtype:
                    ck.cast[name] = dtype
            ck.order.append(name)
        return ck


# ----------------------------------------------------------------------------- writer


@dataclass
class EncodedStream:
    type: StreamType
    coder: str
    transform: str
    data: bytes


@dataclass
class EncodedTensor:
    name: str
    shape: tuple[int, ...]
    dtype: str
    scheme: dict
    streams: dict[str, EncodedStream]
    meta: dict = field(default_factory=dict)


def _canonical_json(obj) -> bytes:
    # The writer refuses what the reader would (NaN, huge ints, deep nesting, lone surrogates),
    # as a GolfpackError naming the field, instead of writing an artifact no reader accepts.
    check_value(obj, "manifest")
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def build_artifact(tensors: list[EncodedTensor], config: dict | None = None, source: dict | None = None,
                   manifest_coding: int = MANIFEST_ZSTD) -> bytes:
    """Serialize encoded tensors into artifact bytes. Deterministic: same input, same bytes."""
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        raise GolfpackError("duplicate tensor names in artifact [M6]")
    for t in tensors:
        if any(not isinstance(d, int) or not 0 <= d <= MAX_SIZE_FIELD for d in t.shape):
            raise GolfpackError(f"tensor {t.name!r}: shape {list(t.shape)} has a dimension outside [0, 2^40] (FORMAT.md section 2) [M7]")
    total = sum(math.prod(t.shape) for t in tensors)
    if total > MAX_TOTAL_ELEMENTS:
        raise GolfpackError(f"{total} elements in all exceed the format's cap of {MAX_TOTAL_ELEMENTS} (FORMAT.md section 2) [M12]")
    entries, blobs, offset = [], [], 0
    for t in tensors:
        streams = {}
        for role in sorted(t.streams):
            s = t.streams[role]
            e = StreamEntry(role, s.type, s.coder, s.transform, offset, len(s.data), zlib.crc32(s.data))
            streams[role] = e.to_json()
            blobs.append(s.data)
            offset += len(s.data)
        entry = {"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "scheme": t.scheme, "streams": streams}
        if t.meta:
            entry["meta"] = t.meta
        entries.append(entry)
    manifest = {"config": config, "source": source or {}, "payload_bytes": offset, "tensors": entries}
    raw = _canonical_json(manifest)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise GolfpackError(f"manifest is {len(raw)} bytes, over the {MAX_MANIFEST_BYTES}-byte limit [H6]")
    if manifest_coding == MANIFEST_ZSTD:
        stored = zstandard.ZstdCompressor(level=19, write_content_size=True).compress(raw)
    elif manifest_coding == MANIFEST_LZMA:
        import lzma

        stored = lzma.compress(raw, format=lzma.FORMAT_ALONE, preset=9 | lzma.PRESET_EXTREME)
    elif manifest_coding == MANIFEST_RAW:
        stored = raw
    else:
        raise GolfpackError(f"unknown manifest coding {manifest_coding}")
    head = HEADER.pack(MAGIC, FORMAT_VERSION, 0, manifest_coding, 0, 0, len(stored), len(raw), 0)[:-4]
    crc = zlib.crc32(stored, zlib.crc32(head))
    return head + struct.pack("<I", crc) + stored + b"".join(blobs)


def write_artifact(path: str | os.PathLike, data: bytes, inputs=()) -> None:
    """Write atomically (golfpack.output): a failed write never leaves a half artifact under `path`."""
    write_bytes(path, data, inputs)


# ----------------------------------------------------------------------------- parser


def _req(rule: str, cond: bool, msg: str) -> None:
    """Refuse with FormatError naming the FORMAT.md rule broken: `msg [H3]`."""
    if not cond:
        raise FormatError(f"{msg} [{rule}]")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _parse_stream(tname: str, role: str, d, payload_len: int) -> StreamEntry:
    where = f"manifest: tensor {tname!r} stream {role!r}"
    _req("S1", isinstance(d, dict), f"{where}: must be an object")
    keys = set(d)
    kind = d.get("type")
    need = STREAM_KEYS | ({"bits"} if kind == "int" else set())
    _req("S1", keys == need, f"{where}: keys {sorted(keys)} (expected {sorted(need)})")
    _req("S1", kind == "int" or kind in FLOAT_TYPES, f"{where}: unknown type {kind!r}")
    for k in ("count", "offset", "length", "crc32"):
        _req("S2", _is_int(d[k]) and d[k] >= 0, f"{where}: {k} must be a non-negative integer")
    for k in ("offset", "length"):
        _req("S2", d[k] <= MAX_SIZE_FIELD, f"{where}: {k} {d[k]} outside [0, 2^40]")
    _req("S2", d["crc32"] < 2**32, f"{where}: crc32 out of range")
    _req("S2", d["count"] <= MAX_TOTAL_ELEMENTS, f"{where}: count {d['count']} exceeds {MAX_TOTAL_ELEMENTS}")
    _req("S3", d["offset"] + d["length"] <= payload_len, f"{where}: bytes [{d['offset']}, {d['offset'] + d['length']}) lie outside the {payload_len}-byte payload")
    bits = 8
    if kind == "int":
        _req("S4", _is_int(d["bits"]) and 2 <= d["bits"] <= 8, f"{where}: bits must be 2..8, got {d['bits']!r}")
        bits = d["bits"]
    _req("S5", isinstance(d["coder"], str), f"{where}: coder must be a string")
    _req("S5", d["transform"] in ("none", "byteshuffle"), f"{where}: unknown transform {d['transform']!r}")
    from golfpack.codec.coders import ALL_CODERS

    _req("S5", d["coder"] in ALL_CODERS, f"{where}: unknown coder {d['coder']!r} (this golfpack knows {', '.join(ALL_CODERS)})")
    return StreamEntry(role, StreamType(kind, d["count"], bits), d["coder"], d["transform"], d["offset"], d["length"], d["crc32"])


def _parse_tensor(d, payload_len: int) -> TensorEntry:
    _req("M6", isinstance(d, dict), "manifest: tensor entry must be an object")
    name = d.get("name")
    _req("M6", isinstance(name, str) and name != "", "manifest: tensor name must be a non-empty string")
    where = f"manifest: tensor {name!r}"
    keys = set(d)
    _req("M6", TENSOR_KEYS <= keys <= TENSOR_KEYS | OPTIONAL_TENSOR_KEYS, f"{where}: keys {sorted(keys)} (expected {sorted(TENSOR_KEYS)} + optional meta)")
    shape = d["shape"]
    _req("M7", isinstance(shape, list) and len(shape) <= MAX_NDIM and all(_is_int(x) and 0 <= x <= MAX_SIZE_FIELD for x in shape),
         f"{where}: shape must be a list of at most {MAX_NDIM} integers in [0, 2^40], got {shape!r}")
    _req("M8", d["dtype"] in TORCH_DTYPES, f"{where}: unsupported dtype {d['dtype']!r}")
    scheme = d["scheme"]
    _schemes.validate_scheme(scheme, where)
    kind = scheme["kind"]
    roles = _schemes.roles(scheme)
    streams_d = d["streams"]
    _req("M10", isinstance(streams_d, dict) and set(streams_d) == roles, f"{where}: streams {sorted(streams_d) if isinstance(streams_d, dict) else streams_d!r} (expected {sorted(roles)})")
    streams = {r: _parse_stream(name, r, streams_d[r], payload_len) for r in sorted(roles)}
    numel = math.prod(shape)
    _req("M12", numel <= MAX_TOTAL_ELEMENTS, f"{where}: {numel} elements exceed {MAX_TOTAL_ELEMENTS}")
    counts = _schemes.expected_counts(scheme, tuple(shape), where)
    for role, s in streams.items():
        bits = _schemes.stream_bits(scheme, role)
        if kind == "float":
            _req("M10", s.type.kind in FLOAT_TYPES, f"{where}: data stream must hold floats")
        elif bits is not None:
            _req("M10", s.type.kind == "int" and s.type.bits == bits, f"{where}: {role} stream must be {bits}-bit int")
        else:
            _req("M10", s.type.kind in ("float16", "float32"), f"{where}: {role} must be float16 or float32")
        _req("M10", s.type.count == counts[role], f"{where}: {role} stream holds {s.type.count} values, "
             f"{'shape' if role in ('data', 'symbols') else 'the scheme'} needs {counts[role]}")
    meta = d.get("meta", {})
    _req("M11", isinstance(meta, dict), f"{where}: meta must be an object")
    return TensorEntry(name, tuple(shape), d["dtype"], scheme, streams, meta)


_FAST_TRANSFORMS = frozenset(("none", "byteshuffle"))


def _fast_stream(role: str, d, payload_len: int, bits: int | None, count: int, coders) -> StreamEntry | None:
    """One stream entry of the manifest when it meets every rule `_parse_stream` and `_parse_tensor`
    check for it (S1-S5, M10); None at the first doubt, and the caller reruns the checking parser,
    which names the problem. No message is formatted on this path: formatting the f-strings of
    every check was most of the manifest's parse time (192 tensors, 307 streams: ~4 ms)."""
    if type(d) is not dict:
        return None
    kind = d.get("type")
    if kind == "int":
        if len(d) != 8 or bits is None:
            return None
        b = d.get("bits")
        if type(b) is not int or b != bits:  # bits 2..8: checked on the scheme's value
            return None
    elif type(kind) is str and kind in FLOAT_TYPES:
        if len(d) != 7 or bits is not None:
            return None
        b = 8
    else:
        return None
    c, off, n, crc = d.get("count"), d.get("offset"), d.get("length"), d.get("crc32")
    # type(x) is int refuses bool as _is_int does; the 7 or 8 lengths above plus these gets make
    # the key set exactly STREAM_KEYS (+ bits).
    if not (type(c) is int and type(off) is int and type(n) is int and type(crc) is int):
        return None
    if not (c == count and c <= MAX_TOTAL_ELEMENTS and 0 <= off <= MAX_SIZE_FIELD and 0 <= n <= MAX_SIZE_FIELD and 0 <= crc < 4294967296
            and off + n <= payload_len):
        return None
    coder, transform = d.get("coder"), d.get("transform")
    if type(coder) is not str or coder not in coders or type(transform) is not str or transform not in _FAST_TRANSFORMS:
        return None
    return StreamEntry(role, StreamType(kind, c, b), coder, transform, off, n, crc)


def _fast_tensor(d, payload_len: int, coders) -> TensorEntry | None:
    """A tensor entry that passes every check of `_parse_tensor`, built without formatting any
    message; None when any check fails or the entry is unusual (then `_parse_tensor` decides)."""
    if type(d) is not dict or not 5 <= len(d) <= 6:
        return None
    name, shape, dtype, scheme, streams_d = d.get("name"), d.get("shape"), d.get("dtype"), d.get("scheme"), d.get("streams")
    meta = d.get("meta", {}) if len(d) == 6 else {}
    if len(d) == 6 and "meta" not in d:
        return None
    if type(name) is not str or not name or type(shape) is not list or len(shape) > MAX_NDIM:
        return None
    numel = 1
    for x in shape:
        if type(x) is not int or not 0 <= x <= MAX_SIZE_FIELD:
            return None
        numel *= x
    if numel > MAX_TOTAL_ELEMENTS or type(dtype) is not str or dtype not in TORCH_DTYPES or type(meta) is not dict:
        return None
    if type(scheme) is not dict or type(streams_d) is not dict:
        return None
    kind = scheme.get("kind")
    if kind == "float":
        if len(scheme) != 1 or len(streams_d) != 1:
            return None
        s = _fast_stream("data", streams_d.get("data"), payload_len, None, numel, coders)
        if s is None:
            return None
        return TensorEntry(name, tuple(shape), dtype, scheme, {"data": s}, meta)
    if kind != "int_rowscale" or len(scheme) != 2 or len(streams_d) != 2 or not shape:
        return None  # group and tensor scales, low-rank terms: rare, the checking parser takes them
    bits = scheme.get("bits")
    if type(bits) is not int or not 2 <= bits <= 8:
        return None
    sc = _fast_stream("scales", streams_d.get("scales"), payload_len, None, shape[0], coders)
    sy = _fast_stream("symbols", streams_d.get("symbols"), payload_len, bits, numel, coders)
    if sc is None or sy is None or sc.type.kind not in ("float16", "float32"):
        return None
    return TensorEntry(name, tuple(shape), dtype, scheme, {"scales": sc, "symbols": sy}, meta)


def _bounded_lzma(data: bytes, size: int) -> bytes:
    """An LZMA "alone" stream that decodes to exactly `size` bytes (it stops one byte past)."""
    import lzma

    d = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)
    try:
        out = d.decompress(data, max_length=size + 1)
    except lzma.LZMAError as e:
        raise FormatError(f"manifest: lzma stream is corrupt ({e}) [H9]") from None
    _req("H9", len(out) == size and d.eof and not d.unused_data,
         f"manifest: lzma stream does not decode to exactly the {size} bytes the header announces")
    return out


def parse_artifact(buf: bytes | memoryview) -> Artifact:
    """Parse artifact bytes (see FORMAT.md). Streams decode lazily; each checks its CRC."""
    mv = memoryview(buf)
    n = len(mv)
    _req("H1", n >= HEADER_SIZE, f"not a golfpack artifact: {n} bytes is shorter than the {HEADER_SIZE}-byte header")
    magic, version, flags, coding, r1, r2, stored, raw, crc = HEADER.unpack(mv[:HEADER_SIZE])
    _req("H2", magic == MAGIC, "not a golfpack artifact (bad magic)")
    if version != FORMAT_VERSION:
        raise FormatError(
            f"artifact format version {version} is not supported: this golfpack reads version {FORMAT_VERSION}"
            + (" (written by a newer golfpack; upgrade)" if version > FORMAT_VERSION else "") + " [H3]"
        )
    _req("H4", flags == 0 and r1 == 0 and r2 == 0, f"header: flags/reserved fields must be 0 in version {FORMAT_VERSION}")
    _req("H5", coding in (MANIFEST_RAW, MANIFEST_ZSTD, MANIFEST_LZMA), f"header: unknown manifest coding {coding}")
    _req("H6", raw <= MAX_MANIFEST_BYTES, f"header: manifest size {raw} exceeds the {MAX_MANIFEST_BYTES}-byte limit")
    _req("H7", HEADER_SIZE + stored <= n, f"truncated: header announces a {stored}-byte manifest, file has {n - HEADER_SIZE} bytes after the header")
    stored_b = bytes(mv[HEADER_SIZE : HEADER_SIZE + stored])
    _req("H8", _crc32(stored_b, _crc32(bytes(mv[: HEADER_SIZE - 4]))) == crc, "header checksum mismatch (artifact header or manifest is corrupt)")
    if coding == MANIFEST_ZSTD:
        from golfpack.codec.coders import _bounded_zstd

        try:
            text = _bounded_zstd(stored_b, raw)
        except FormatError as e:  # the zstd checks of S8, applied to the manifest: H9
            raise FormatError(f"manifest: {str(e).removesuffix(' [S8]')} [H9]") from None
    elif coding == MANIFEST_LZMA:
        text = _bounded_lzma(stored_b, raw)
    else:
        _req("H9", stored == raw, "header: raw manifest sizes disagree")
        text = stored_b
    # Bounded: depth, integer digits/range, finite floats, duplicate keys (FORMAT.md section 2).
    try:
        man = loads_bounded(text, "manifest")
    except FormatError as e:
        raise FormatError(f"{e} [M1]") from None
    _req("M2", isinstance(man, dict) and set(man) == TOP_KEYS, f"manifest: top-level keys must be {sorted(TOP_KEYS)}")
    _req("M2", man["config"] is None or isinstance(man["config"], dict), "manifest: config must be an object or null")
    if man["config"] is not None:  # sizes bounded before anything is built from them (SECURITY.md, input limits)
        from golfpack.model.config import limit_problems

        over = limit_problems(man["config"])
        _req("M2", not over, "manifest: config field " + "; ".join(over))
    _req("M2", isinstance(man["source"], dict), "manifest: source must be an object")
    payload_len = man["payload_bytes"]
    _req("M3", _is_int(payload_len) and payload_len >= 0, "manifest: payload_bytes must be a non-negative integer")
    _req("M3", payload_len <= MAX_SIZE_FIELD, f"manifest: payload_bytes {payload_len} outside [0, 2^40]")
    body_start = HEADER_SIZE + stored
    _req("M4", body_start + payload_len <= n, f"truncated: payload needs {payload_len} bytes, file has {n - body_start}")
    _req("M4", body_start + payload_len == n, f"{n - body_start - payload_len} unexpected bytes after the payload")
    tl = man["tensors"]
    _req("M5", isinstance(tl, list) and len(tl) <= MAX_TENSORS, f"manifest: tensors must be a list of at most {MAX_TENSORS} entries")
    tensors: dict[str, TensorEntry] = {}
    total = 0
    spans = []
    payload = mv[body_start:]
    from golfpack.codec.coders import CODERS

    coders = frozenset(CODERS)
    for d in tl:
        t = _fast_tensor(d, payload_len, coders) or _parse_tensor(d, payload_len)
        _req("M6", t.name not in tensors, f"manifest: duplicate tensor {t.name!r}")
        total += t.numel
        _req("M12", total <= MAX_TOTAL_ELEMENTS, f"manifest: more than {MAX_TOTAL_ELEMENTS} elements in all")
        t._payload = payload
        tensors[t.name] = t
        spans += [(s.offset, s.length, t.name, s.role) for s in t.streams.values()]
    # Streams must tile the payload exactly: no gaps, no overlaps, nothing left over.
    pos = 0
    for off, length, name, role in sorted(spans):
        if off != pos:  # (the message is formatted only for a stream that breaks the rule)
            _req("S6", off == pos, f"manifest: tensor {name!r} {role} stream starts at {off}, expected {pos} (gap or overlap)")
        pos += length
    _req("S6", pos == payload_len, f"manifest: streams cover {pos} of {payload_len} payload bytes")
    return Artifact(version, man["config"], man["source"], tensors, n, body_start)


def read_artifact(path_or_bytes: str | os.PathLike | bytes) -> Artifact:
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return parse_artifact(path_or_bytes)
    p = Path(path_or_bytes)
    if not p.is_file():
        raise GolfpackError(f"{p}: no such artifact file")
    try:
        return parse_artifact(p.read_bytes())
    except FormatError as e:
        raise FormatError(f"{p}: {e}") from None

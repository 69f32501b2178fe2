"""Per-stream entropy coders: raw, rANS, row/column-classed rANS, zstd-22, brotli-11.

A *stream* is one array the container stores: the integer symbols of a
quantized tensor, its row scales, or the bytes of a float tensor. Every stream
has a logical form (what `decode_stream` returns) and each coder turns a
*representation* of it into stored bytes:

    stream type       raw                     rans                      zstd / brotli
    int (b bits)      bit-packed, b bits each u = s + 128, one symbol   int8 bytes (two's complement)
    float16/32/bf16   little-endian bytes     bytes as symbols          little-endian bytes

`rans_x32` (csrc/RANS.md section 7) codes the same u = s + 128 symbols as `rans` in a layout
with 32 narrow lanes whose rows decode measured ~2x faster (1.7-2.3 vs 0.8-1.1 GB/s,
benchmarks/RESULTS.md issue 19) for 0.03-0.15% more bytes than `rans`. It is opt-in: it is
not in the default CODERS; `fast_decode=True` (encode --fast-decode) makes the writer take it
for an int stream whenever it is within FAST_DECODE_SLACK of the smallest allowed coder.

`rans_rc` (codec/rans_rc.py) codes the symbols u = s + 128 of an int stream that is a matrix
(StreamType.row_len > 0) with one table per (row class, column class) cell; it is not offered
for float streams or streams without a row length.

Float streams may also be *byte-shuffled* first (all first bytes of each value,
then all second bytes, ...), which groups exponents together and helps every
coder on smooth float data; the transform is recorded per stream.

The writer tries every allowed (coder, transform) and keeps the smallest;
ties go to the cheaper decoder (order of CODERS). Decoding validates sizes
before allocating and checks the decoded length exactly, so a hostile stream
gives a FormatError, never a bomb.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import brotli
import numpy as np
import zstandard

from golfpack import _C
from golfpack.codec import rans_rc
from golfpack.errors import FormatError

# Order matters: ties in size go to the earlier (faster to decode) coder. CODERS is the default
# set the writer tries; ALL_CODERS is every coder a reader knows (and --coders may name).
CODERS = ("raw", "rans", "rans_rc", "zstd", "brotli")
FAST_CODER = "rans_x32"
ALL_CODERS = CODERS + (FAST_CODER,)
# fast_decode: the fast coder is kept while its stream is at most this much larger than the smallest.
FAST_DECODE_SLACK = 0.005
FLOAT_TYPES = {"float16": np.dtype("<f2"), "float32": np.dtype("<f4"), "bfloat16": np.dtype("<u2"), "float64": np.dtype("<f8")}
TRANSFORMS = ("none", "byteshuffle")
ZSTD_LEVEL = 22
BROTLI_QUALITY = 11
RANS_SYMBOL_OFFSET = 128  # int symbols s in [-128, 127] are coded as u = s + 128 in 0..255


@dataclass(frozen=True)
class StreamType:
    """What a stream holds: `int` symbols of `bits` bits, or a float type; `count` elements."""

    kind: str  # "int" or one of FLOAT_TYPES
    count: int
    bits: int = 8  # for kind == "int"
    # Elements per row when the stream is a row-major matrix (0: not known). Only the writer
    # uses it, to offer rans_rc; a rans_rc stream stores its own row length, so the manifest
    # does not carry it and a parsed StreamType has 0 (hence compare=False).
    row_len: int = field(default=0, compare=False)

    def offers(self, coder: str) -> bool:
        """Whether `coder` can code this stream (every coder but rans_rc codes every stream)."""
        if coder != "rans_rc":
            return True
        return self.kind == "int" and self.count > 0 and self.row_len > 0 and self.count % self.row_len == 0

    @property
    def itemsize(self) -> int:
        return 1 if self.kind == "int" else FLOAT_TYPES[self.kind].itemsize

    @property
    def raw_bytes(self) -> int:
        """Size of the uncompressed logical representation (bytes)."""
        if self.kind == "int":
            return (self.count * self.bits + 7) // 8
        return self.count * self.itemsize


def _shuffle(b: bytes, itemsize: int) -> bytes:
    if itemsize == 1 or not b:
        return b
    return np.frombuffer(b, np.uint8).reshape(-1, itemsize).T.tobytes()


def _unshuffle(b: bytes, itemsize: int) -> bytes:
    if itemsize == 1 or not b:
        return b
    return np.frombuffer(b, np.uint8).reshape(itemsize, -1).T.tobytes()


def _representation(values: np.ndarray, st: StreamType, coder: str, transform: str) -> bytes:
    """The bytes a coder compresses for this stream (see the module table)."""
    if st.kind == "int":
        if coder == "raw":
            return _C.pack_bits(values, st.bits).tobytes()
        if coder in ("rans", "rans_rc", FAST_CODER):
            return (values.astype(np.int16) + RANS_SYMBOL_OFFSET).astype(np.uint8).tobytes()
        return values.tobytes()
    b = values.tobytes()
    return _shuffle(b, st.itemsize) if transform == "byteshuffle" else b


def encode_stream(values: np.ndarray, st: StreamType, coder: str, transform: str = "none") -> bytes:
    """Encode one stream with one coder. `values` is int8 (int streams) or the float dtype's bits."""
    rep = _representation(values, st, coder, transform)
    if coder == "raw":
        return rep
    if coder == "rans":
        return _C.rans_encode(np.frombuffer(rep, np.uint8), 0)
    if coder == FAST_CODER:
        return _C.rans_x32_encode(np.frombuffer(rep, np.uint8))
    if coder == "rans_rc":
        if not st.offers("rans_rc"):
            raise ValueError("rans_rc codes non-empty int streams with a row length that divides the count")
        return rans_rc.encode(np.frombuffer(rep, np.uint8).reshape(-1, st.row_len))
    if coder == "zstd":
        # write_content_size lets the reader check the declared size before allocating
        return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True).compress(rep)
    if coder == "brotli":
        return brotli.compress(rep, quality=BROTLI_QUALITY)
    raise ValueError(f"unknown coder {coder!r}")


def best_encoding(values: np.ndarray, st: StreamType, coders=CODERS, fast_decode: bool = False) -> tuple[str, str, bytes]:
    """Try every allowed coder (and, for floats, both transforms); return the smallest (coder, transform, bytes).

    fast_decode: for an int stream, the fast coder (rans_x32) instead whenever its stream is at most
    FAST_DECODE_SLACK larger than that smallest one (it is tried even when `coders` omits it)."""
    best = _smallest(values, st, coders)
    if fast_decode and st.kind == "int" and best[0] != FAST_CODER:
        fast = encode_stream(values, st, FAST_CODER)
        if len(fast) <= len(best[2]) * (1 + FAST_DECODE_SLACK):
            return FAST_CODER, "none", fast
    return best


def _smallest(values: np.ndarray, st: StreamType, coders) -> tuple[str, str, bytes]:
    transforms = ("none",) if st.kind == "int" or st.itemsize == 1 else TRANSFORMS
    best = None
    for coder in ALL_CODERS:
        if coder not in coders or not st.offers(coder):
            continue
        for tf in transforms:
            if coder == "raw" and tf != "none":
                continue  # shuffling raw bytes saves nothing
            data = encode_stream(values, st, coder, tf)
            if best is None or len(data) < len(best[2]):
                best = (coder, tf, data)
    if best is None and "rans_rc" in coders:
        # rans_rc codes only matrices of int symbols; its streams' fallback is its own
        # order-0 special case, plain rans, so a coder list of just rans_rc still codes any stream.
        return _smallest(values, st, ("rans",))
    if best is None:
        raise ValueError(f"no usable coder among {coders!r}")
    return best


def _bounded_zstd(data: bytes, size: int) -> bytes:
    try:
        declared = zstandard.frame_content_size(data)
    except zstandard.ZstdError as e:
        raise FormatError(f"zstd stream header is invalid ({e}) [S8]") from None
    if declared != size:
        raise FormatError(f"zstd stream declares {declared} bytes, the manifest expects {size} [S8]")
    # Streaming, not decompress(): that allocates the declared size up front, so a forged
    # 20-byte frame declaring 4 GiB cost 4 GiB before failing. Here memory grows with the
    # output libzstd actually produces, and it stops a frame that overruns its declared size.
    d = zstandard.ZstdDecompressor().decompressobj()
    try:
        out = d.decompress(data)
    except zstandard.ZstdError as e:
        raise FormatError(f"zstd stream is corrupt ({e}) [S8]") from None
    if not d.eof or len(out) != size:
        raise FormatError(f"zstd stream does not decode to exactly the {size} bytes the manifest expects [S8]")
    if d.unused_data:
        raise FormatError(f"{len(d.unused_data)} unexpected bytes after the zstd frame [S8]")
    return out


def _bounded_brotli(data: bytes, size: int) -> bytes:
    d = brotli.Decompressor()
    try:
        out = d.process(data, output_buffer_limit=size + 1)
    except brotli.error as e:
        raise FormatError(f"brotli stream is corrupt ({e}) [S8]") from None
    if len(out) != size or not d.is_finished():  # short output too: a stream that ends early
        raise FormatError(f"brotli stream does not decode to exactly the {size} bytes the manifest expects [S8]")
    return out


def _check_symbol_range(vals: np.ndarray, bits: int, coder: str) -> None:
    """Decoded int symbols must fit the stream's declared width (FORMAT.md section 3)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if vals.size and (vals.min() < lo or vals.max() > hi):
        raise FormatError(f"{coder} stream decodes symbols outside the {bits}-bit range [S9]")


def decode_stream(data: bytes, st: StreamType, coder: str, transform: str = "none") -> np.ndarray:
    """Inverse of encode_stream: int8 symbols (int streams) or the float dtype (bf16 as uint16 bits)."""
    if coder == "raw":
        if len(data) != st.raw_bytes:
            raise FormatError(f"raw stream holds {len(data)} bytes, {st.count} elements need {st.raw_bytes} [S8]")
        if st.kind == "int":
            return _C.unpack_bits(np.frombuffer(data, np.uint8), st.bits, st.count)
        rep = data
    elif coder in ("rans", FAST_CODER):  # the same symbol representation, two stream layouts
        n = st.count * st.itemsize
        decode = _C.rans_decode if coder == "rans" else _C.rans_x32_decode
        try:
            sym = decode(np.frombuffer(data, np.uint8), n)
        except ValueError as e:
            raise FormatError(str(e)) from None
        if st.kind == "int":
            vals = sym.astype(np.int16) - RANS_SYMBOL_OFFSET
            _check_symbol_range(vals, st.bits, coder)
            return vals.astype(np.int8)
        rep = sym.tobytes()
    elif coder == "rans_rc":
        if st.kind != "int":
            raise FormatError("rans_rc codes int streams only [S5]")
        vals = rans_rc.decode(data, st.count).astype(np.int16) - RANS_SYMBOL_OFFSET
        _check_symbol_range(vals, st.bits, coder)
        return vals.astype(np.int8)
    elif coder in ("zstd", "brotli"):
        n = st.count * st.itemsize  # int streams are stored one byte per symbol here
        rep = _bounded_zstd(data, n) if coder == "zstd" else _bounded_brotli(data, n)
        if st.kind == "int":
            vals = np.frombuffer(rep, np.int8)
            _check_symbol_range(vals, st.bits, coder)
            return vals.copy()
    else:
        raise FormatError(f"unknown coder {coder!r} (this golfpack knows {', '.join(ALL_CODERS)}) [S5]")
    if st.kind == "int":
        raise FormatError("int streams cannot be byte-shuffled [S5]")
    if transform == "byteshuffle":
        rep = _unshuffle(rep, st.itemsize)
    elif transform != "none":
        raise FormatError(f"unknown stream transform {transform!r} [S5]")
    return np.frombuffer(rep, FLOAT_TYPES[st.kind]).copy()

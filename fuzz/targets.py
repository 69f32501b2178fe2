"""Fuzz targets for artifact loading: one function per parser / decoder, bytes in.

Each target feeds arbitrary bytes to one stage of the loader and fails (raises
something other than the allowed error, or an AssertionError) only on a real
bug: an exception type other than the documented one, a decoder that returns
the wrong shape, or two implementations that disagree. A crash, a sanitizer
report or a hang is caught by the fuzzing engine itself.

    header    raw artifact bytes -> parse_artifact, verify, decode every tensor
    manifest  the same, after re-sealing the CRCs: the header CRC and every stream CRC
              are recomputed from the (mutated) manifest, so mutations of the JSON and
              of the payload get past the checksums to the validators and decoders
    rans      rANS stream + count -> fast (each ISA) and reference decoders (must agree); and an
              encode -> decode round trip of the same bytes as symbols
    rans_x32  the same for the rans_x32 stream (csrc/RANS.md section 7), scalar/AVX2/AVX-512
    bitpack   packed bytes + width + count -> fast and reference unpackers (must agree);
              pack(unpack(x)) == x with the unused high bits cleared
    streams   one stream of any (coder, type, bits, transform) -> codec.coders.decode_stream
              (covers the bounded zstd and brotli paths and the symbol-range check)
    crc       golfpack._C.crc32 (PCLMULQDQ) == zlib.crc32 at every length and start offset

header, manifest and rans also run the fused decoder (golfpack._C.rans_decode_rows, rANS
straight into packed rows: the `golfpack eval` load path) and require it to accept exactly
what the per-tensor decoders accept, with the same result; rans runs every inner loop
(scalar, and AVX2 where the CPU has it).

Used by fuzz/fuzz.py (atheris) and by tests/test_hostile_artifacts.py (hypothesis).
"""
from __future__ import annotations

import json
import struct
import zlib

import numpy as np

from golfpack import _C
from golfpack.codec import container
from golfpack.codec.coders import CODERS, FLOAT_TYPES, StreamType, decode_stream
from golfpack.errors import GolfpackError

# Decoded-size caps inside the harness only: keeps one input's work small so the
# engine spends its time on many inputs. The decoders' own caps are much larger.
MAX_FUZZ_COUNT = 1 << 20


def load_everything(data: bytes) -> None:
    """What `golfpack decode` does with an artifact: parse, check every CRC, decode every tensor."""
    try:
        art = container.parse_artifact(data)
    except GolfpackError:
        return
    # Parsed: every declared size already passed the parser's checks. Decoding may still
    # fail (corrupt stream), but only with a GolfpackError.
    if sum(t.numel for t in art.tensors.values()) > MAX_FUZZ_COUNT:
        return  # legitimate but large (a one-symbol stream can decode 2^30 values)
    try:
        art.verify()
        for t in art.tensors.values():
            w = t.dequantize()
            assert tuple(w.shape) == t.shape, (t.name, tuple(w.shape), t.shape)
        art.to_checkpoint()
    except GolfpackError:
        pass
    packed_rows_agree(art)


def packed_rows_agree(art) -> None:
    """The fused loader path (rANS straight into packed rows, what `golfpack eval` uses) accepts
    exactly the streams the per-tensor path accepts, and produces qpack_rows(symbols)."""
    for t in art.tensors.values():
        if not t.packs_directly:
            continue
        try:
            want = _C.qpack_rows(t.symbols(), t.bits)
        except GolfpackError:
            want = None
        try:
            got = container.packed_rows([t], threads=1)[0]
        except GolfpackError:
            got = None
        assert (want is None) == (got is None), (t.name, "fused and per-tensor decoders disagree on validity")
        if want is not None:
            np.testing.assert_array_equal(got, want)


def header(data: bytes) -> None:
    load_everything(data)


def reseal(data: bytes) -> bytes | None:
    """Recompute the CRCs of an artifact with a raw (uncompressed) JSON manifest, so a
    mutated manifest or payload is judged by the validators, not by the checksums.
    Returns None when the bytes do not look like such an artifact."""
    if len(data) < container.HEADER_SIZE or data[:8] != container.MAGIC:
        return None
    stored = struct.unpack_from("<I", data, 16)[0]
    text = data[container.HEADER_SIZE: container.HEADER_SIZE + stored]
    body = data[container.HEADER_SIZE + stored:]
    try:
        man = json.loads(text)
        streams = [s for t in man["tensors"] for s in t["streams"].values()]
        for s in streams:
            off, n = s["offset"], s["length"]
            if isinstance(off, int) and isinstance(n, int) and 0 <= off <= off + n <= len(body):
                s["crc32"] = zlib.crc32(body[off: off + n])
        text = json.dumps(man, sort_keys=True, separators=(",", ":")).encode()
    except Exception:  # noqa: BLE001 -- any manifest the harness cannot re-seal is fed as it is
        pass
    head = data[:12] + b"\x00\x00\x00\x00" + struct.pack("<II", len(text), len(text))
    head = head[:12] + bytes([container.MANIFEST_RAW]) + head[13:]
    crc = zlib.crc32(text, zlib.crc32(head))
    return head + struct.pack("<I", crc) + text + body


def manifest(data: bytes) -> None:
    sealed = reseal(data)
    load_everything(data if sealed is None else sealed)


def _check_rans_error(e: ValueError) -> None:
    assert str(e).startswith("rANS stream: "), str(e)


ISAS = ["scalar"] + (["avx2"] if _C.rans_cpu_has_avx2() else [])


def _decode_or_error(fn, *args):
    try:
        return fn(*args)
    except ValueError as e:
        _check_rans_error(e)
        return None


def rans(data: bytes) -> None:
    if len(data) < 4:
        return
    count = struct.unpack_from("<I", data)[0] % (MAX_FUZZ_COUNT + 1)
    stream = data[4:]
    ref = _decode_or_error(_C.rans_decode_ref, stream, count)
    prev = _C.rans_set_isa("scalar")
    try:
        for isa in ISAS:  # every inner loop (scalar unrolled, AVX2 gather) agrees with the reference
            _C.rans_set_isa(isa)
            fast = _decode_or_error(_C.rans_decode, stream, count)
            assert (fast is None) == (ref is None), f"{isa} decoder and reference disagree on validity"
            if fast is not None:
                assert fast.shape == (count,) and fast.dtype == np.uint8
                np.testing.assert_array_equal(fast, ref)
            # Fused decode into packed rows (rows x cols = count; width from the input).
            bits = 2 + data[2] % 7
            cols = max(1, data[3] % 64)
            rows, rem = divmod(count, cols)
            if rem:
                rows, cols = 1, count
            rows_out = _C.rans_decode_rows([(stream, rows, cols, bits)], 1)[0]
            half = 1 << (bits - 1)
            fits = ref is not None and (count == 0 or (int(ref.min()) >= 128 - half and int(ref.max()) <= 127 + half))
            if isinstance(rows_out, str):
                assert rows_out.startswith(("rANS stream: ", "rans stream decodes symbols outside")), rows_out
                assert not fits, f"{isa} rans_decode_rows rejected a valid stream: {rows_out}"
            else:
                assert fits, f"{isa} rans_decode_rows accepted an invalid stream"
                sym = (ref.astype(np.int16) - 128).astype(np.int8).reshape(rows, cols)
                np.testing.assert_array_equal(rows_out, _C.qpack_rows(sym, bits))
    finally:
        _C.rans_set_isa(prev)
    # The same bytes as symbols: encode -> decode is the identity at every precision/lane choice.
    precision = (0, 12, 13, 14, 15)[data[0] % 5]
    lanes = (0, 1, 2, 4, 8)[data[1] % 5]
    sym = np.frombuffer(stream, np.uint8)
    enc = _C.rans_encode(sym, precision, lanes)
    np.testing.assert_array_equal(_C.rans_decode(enc, sym.size), sym)


X32_ISAS = ISAS + (["avx512"] if _C.rans_cpu_has_avx512() else [])


def rans_x32(data: bytes) -> None:
    """The rans_x32 stream (csrc/RANS.md section 7): the reference decoder, the fast decoder under
    every inner loop and the packed-rows decoder agree; encode -> decode is the identity."""
    if len(data) < 4:
        return
    count = struct.unpack_from("<I", data)[0] % (MAX_FUZZ_COUNT + 1)
    stream = data[4:]
    ref = _decode_or_error(_C.rans_x32_decode_ref, stream, count)
    prev = _C.rans_set_isa("scalar")
    try:
        for isa in X32_ISAS:
            _C.rans_set_isa(isa)
            fast = _decode_or_error(_C.rans_x32_decode, stream, count)
            assert (fast is None) == (ref is None), f"{isa} rans_x32 decoder and reference disagree on validity"
            if fast is not None:
                assert fast.shape == (count,) and fast.dtype == np.uint8
                np.testing.assert_array_equal(fast, ref)
            bits = 2 + data[2] % 7
            cols = max(1, data[3] % 64)
            rows, rem = divmod(count, cols)
            if rem:
                rows, cols = 1, count
            rows_out = _C.rans_x32_decode_rows([(stream, rows, cols, bits)], 1)[0]
            half = 1 << (bits - 1)
            fits = ref is not None and (count == 0 or (int(ref.min()) >= 128 - half and int(ref.max()) <= 127 + half))
            if isinstance(rows_out, str):
                assert rows_out.startswith(("rANS stream: ", "rans_x32 stream decodes symbols outside")), rows_out
                assert not fits, f"{isa} rans_x32_decode_rows rejected a valid stream: {rows_out}"
            else:
                assert fits, f"{isa} rans_x32_decode_rows accepted an invalid stream"
                sym = (ref.astype(np.int16) - 128).astype(np.int8).reshape(rows, cols)
                np.testing.assert_array_equal(rows_out, _C.qpack_rows(sym, bits))
    finally:
        _C.rans_set_isa(prev)
    sym = np.frombuffer(stream, np.uint8)
    np.testing.assert_array_equal(_C.rans_x32_decode(_C.rans_x32_encode(sym), sym.size), sym)


def bitpack(data: bytes) -> None:
    if len(data) < 2:
        return
    bits = 2 + data[0] % 7
    packed = data[2:]
    count = max(0, len(packed) * 8 // bits - data[1] % 4)
    fast = _C.unpack_bits(packed, bits, count)
    assert fast.shape == (count,)
    np.testing.assert_array_equal(_C.unpack_bits_ref(packed, bits, count), fast)
    repacked = _C.pack_bits(fast, bits).tobytes()
    need = (count * bits + 7) // 8
    want = bytearray(packed[:need])
    if count * bits % 8:
        want[-1] &= (1 << (count * bits % 8)) - 1
    assert repacked == bytes(want)
    try:  # one byte short is always refused
        _C.unpack_bits(packed[: need - 1] if need else b"", bits, count + (need == 0) * 8)
    except ValueError as e:
        assert "too short" in str(e)
    else:
        raise AssertionError("unpack_bits accepted a short buffer")


STREAM_KINDS = ["int"] + sorted(FLOAT_TYPES)


def streams(data: bytes) -> None:
    if len(data) < 4:
        return
    sel, cnt = data[0], struct.unpack_from("<H", data, 1)[0]
    coder = CODERS[(sel & 7) % len(CODERS)]
    kind = STREAM_KINDS[((sel >> 3) & 7) % len(STREAM_KINDS)]
    transform = "byteshuffle" if sel & 0x80 and kind != "int" else "none"
    bits = 2 + data[3] % 7
    st = StreamType(kind, cnt, bits if kind == "int" else 8)
    try:
        out = decode_stream(data[4:], st, coder, transform)
    except GolfpackError:
        return
    assert out.shape == (cnt,), (out.shape, cnt)
    if kind == "int":
        assert out.dtype == np.int8
        assert out.size == 0 or (out.min() >= -(1 << (bits - 1)) and out.max() < (1 << (bits - 1)))


def crc(data: bytes) -> None:
    """The SIMD CRC-32 the container checks streams with equals zlib's, at every length/offset."""
    seed = zlib.crc32(data[:4])
    for off in range(min(4, len(data) + 1)):
        assert _C.crc32(data[off:]) == zlib.crc32(data[off:])
        assert _C.crc32(data[off:], seed) == zlib.crc32(data[off:], seed)


TARGETS = {"header": header, "manifest": manifest, "rans": rans, "rans_x32": rans_x32, "bitpack": bitpack,
           "streams": streams, "crc": crc}

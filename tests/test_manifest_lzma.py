"""Manifest coding 2 (LZMA, FORMAT.md section 1): what exported records write."""
import lzma
import struct
import zlib

import numpy as np
import pytest

from golfpack.codec.coders import StreamType, encode_stream
from golfpack.codec.container import (MANIFEST_LZMA, MANIFEST_ZSTD, EncodedStream, EncodedTensor, build_artifact,
                                      parse_artifact)
from golfpack.errors import FormatError


def _tensors():
    q = np.arange(-8, 8, dtype=np.int8).repeat(4)
    st = StreamType("int", q.size, 4)
    s = np.ones(8, np.float16)
    return [EncodedTensor("w", (8, 8), "float32", {"kind": "int_rowscale", "bits": 4},
                          {"symbols": EncodedStream(st, "rans", "none", encode_stream(q, st, "rans")),
                           "scales": EncodedStream(StreamType("float16", 8), "raw", "none", s.tobytes())})]


def _reseal(head: bytes, manifest: bytes, raw: int, payload: bytes) -> bytes:
    h = bytearray(head[:24])
    struct.pack_into("<II", h, 16, len(manifest), raw)
    return bytes(h) + struct.pack("<I", zlib.crc32(manifest, zlib.crc32(bytes(h)))) + manifest + payload


def test_lzma_manifest_decodes_like_zstd():
    a, b = (parse_artifact(build_artifact(_tensors(), manifest_coding=c)) for c in (MANIFEST_ZSTD, MANIFEST_LZMA))
    assert build_artifact(_tensors(), manifest_coding=MANIFEST_LZMA)[12] == MANIFEST_LZMA
    assert np.array_equal(a.tensors["w"].symbols(), b.tensors["w"].symbols())


@pytest.mark.parametrize("change", ["longer", "shorter", "garbage", "trailing"])
def test_lzma_manifest_of_the_wrong_size_is_refused(change):
    data = build_artifact(_tensors(), manifest_coding=MANIFEST_LZMA)
    stored, raw = struct.unpack_from("<II", data, 16)
    text = lzma.decompress(data[28:28 + stored])
    payload = data[28 + stored:]
    packed = lzma.compress(text + (b" " * 1000 if change == "longer" else b""), format=lzma.FORMAT_ALONE)
    if change == "shorter":
        packed = lzma.compress(text[:-5], format=lzma.FORMAT_ALONE)
    elif change == "garbage":
        packed = b"\x5d\x00\x00\x80\x00" + bytes(40)
    elif change == "trailing":
        packed = data[28:28 + stored] + b"xx"
    with pytest.raises(FormatError, match="manifest"):
        parse_artifact(_reseal(data, packed, raw, payload))

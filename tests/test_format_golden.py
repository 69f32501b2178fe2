"""Golden vector for FORMAT.md version 1.

The artifact below is built with a raw manifest and the raw coder only, so its
bytes depend on golfpack's own code alone (no zstd/brotli version). A change
to any byte of the layout fails this test: update FORMAT.md, bump the version,
then the vector.
"""
import hashlib

import numpy as np
import torch

from golfpack.checkpoint import Checkpoint, QuantizedSource
from golfpack.codec.coders import StreamType, encode_stream
from golfpack.codec.container import MANIFEST_RAW, EncodedStream, EncodedTensor, build_artifact, parse_artifact


def golden_artifact() -> bytes:
    q = np.array([[-2, -1, 0, 1], [1, 1, -2, 0], [0, 0, 0, -1]], dtype=np.int8)  # 3x4, 2-bit symbols
    scales = np.array([0.5, 0.25, 1.0], dtype=np.float16)
    bias = np.array([1.0, -2.0], dtype=np.float32)
    st_q, st_s, st_b = StreamType("int", 12, 2), StreamType("float16", 3), StreamType("float32", 2)
    tensors = [
        EncodedTensor("w", (3, 4), "float32", {"kind": "int_rowscale", "bits": 2}, {
            "symbols": EncodedStream(st_q, "raw", "none", encode_stream(q.reshape(-1), st_q, "raw")),
            "scales": EncodedStream(st_s, "raw", "none", encode_stream(scales, st_s, "raw")),
        }),
        EncodedTensor("b", (2,), "float32", {"kind": "float"}, {
            "data": EncodedStream(st_b, "raw", "none", encode_stream(bias, st_b, "raw")),
        }),
    ]
    return build_artifact(tensors, config={"model_dim": 4}, source={"format": "golden"}, manifest_coding=MANIFEST_RAW)


def test_golden_header_fields():
    data = golden_artifact()
    # magic, version 1, flags 0, manifest coding 0 (raw), reserved
    assert data[:16] == b"GOLFPACK" + bytes([1, 0, 0, 0, 0, 0, 0, 0])
    stored = int.from_bytes(data[16:20], "little")
    assert int.from_bytes(data[20:24], "little") == stored
    manifest = data[28 : 28 + stored]
    assert manifest.startswith(b'{"config":{"model_dim":4},"payload_bytes":17,"source":{"format":"golden"},"tensors":[')
    payload = data[28 + stored :]
    # a tensor's roles are laid out in sorted order: scales (3 fp16), then symbols
    # (12 x 2 bits = 3 bytes, LSB-first: -2=0b10, -1=0b11, 0=0b00, 1=0b01), then bias (2 fp32)
    assert payload[:6] == np.array([0.5, 0.25, 1.0], dtype="<f2").tobytes()
    assert payload[6:9] == bytes([0b01_00_11_10, 0b00_10_01_01, 0b11_00_00_00])
    assert payload[9:] == np.array([1.0, -2.0], dtype="<f4").tobytes()
    assert len(payload) == 17


def test_golden_digest_and_decode():
    data = golden_artifact()
    assert hashlib.sha256(data).hexdigest() == GOLDEN_SHA256
    sd = parse_artifact(data).state_dict()
    assert torch.equal(sd["w"], torch.tensor([[-1.0, -0.5, 0, 0.5], [0.25, 0.25, -0.5, 0], [0, 0, 0, -1.0]]))
    assert torch.equal(sd["b"], torch.tensor([1.0, -2.0]))


def test_golden_checkpoint_encoder_agrees_on_symbols():
    # the high-level encoder stores the same symbols/scales (coder may differ)
    q = torch.tensor([[-2, -1, 0, 1], [1, 1, -2, 0], [0, 0, 0, -1]], dtype=torch.int8)
    ck = Checkpoint(quantized={"w": QuantizedSource(q, torch.tensor([0.5, 0.25, 1.0], dtype=torch.float16), torch.float32)},
                    order=["w"])
    from golfpack.codec.encode import encode_lossless

    art = parse_artifact(encode_lossless(ck, coders=("raw",)))
    assert np.array_equal(art.tensors["w"].symbols(), q.numpy())


GOLDEN_SHA256 = "09f05002ad507ed0b28348851ab2596dfd371b998375595298984c578e7d5b0a"


def golden_lowrank_artifact() -> bytes:
    """A 2x3 int_groupscale tensor (group 2: a full and a partial group per row) with a rank-1
    LQER term, raw manifest and raw coder: the layout of the planner's schemes, pinned."""
    q = np.array([[1, -1, 0], [-2, 1, 1]], dtype=np.int8)  # 2-bit symbols
    scales = np.array([0.5, 2.0, 0.25, 1.0], dtype=np.float16)  # rows x ceil(3/2) groups
    a_t = np.array([1, -1], dtype=np.int8)  # A^T [1, 2], 2-bit
    a_s = np.array([0.5], dtype=np.float16)
    b = np.array([1, 0, -1], dtype=np.int8)  # B [1, 3], 2-bit
    b_s = np.array([0.25], dtype=np.float16)

    def raw(vals, st):
        return EncodedStream(st, "raw", "none", encode_stream(vals, st, "raw"))

    streams = {
        "symbols": raw(q.reshape(-1), StreamType("int", 6, 2)),
        "scales": raw(scales, StreamType("float16", 4)),
        "lowrank_a": raw(a_t, StreamType("int", 2, 2)),
        "lowrank_a_scales": raw(a_s, StreamType("float16", 1)),
        "lowrank_b": raw(b, StreamType("int", 3, 2)),
        "lowrank_b_scales": raw(b_s, StreamType("float16", 1)),
    }
    scheme = {"kind": "int_groupscale", "bits": 2, "group": 2, "lowrank": {"rank": 1, "bits": 2}}
    t = EncodedTensor("w", (2, 3), "float32", scheme, streams)
    return build_artifact([t], config=None, source={"format": "golden"}, manifest_coding=MANIFEST_RAW)


def test_golden_groupscale_lowrank_decode():
    data = golden_lowrank_artifact()
    assert hashlib.sha256(data).hexdigest() == GOLDEN_LOWRANK_SHA256
    w = parse_artifact(data).state_dict()["w"]
    # base: row 0 = [1*.5, -1*.5, 0*2], row 1 = [-2*.25, 1*.25, 1*1]
    # A = [[.5], [-.5]], B = [[.25, 0, -.25]] -> A@B = [[.125, 0, -.125], [-.125, 0, .125]]
    want = torch.tensor([[0.5 + 0.125, -0.5, 0.0 - 0.125], [-0.5 - 0.125, 0.25, 1.0 + 0.125]])
    assert torch.equal(w, want)


GOLDEN_LOWRANK_SHA256 = "bdbcef279df2934610509978f4389714b7e0e08a8122e72b507765c967edbd52"

"""Container round trips, corruption detection and hostile headers (FORMAT.md)."""
import json
import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from golfpack.checkpoint import Checkpoint, QuantizedSource
from golfpack.codec.coders import CODERS
from golfpack.codec.container import (
    HEADER,
    HEADER_SIZE,
    MANIFEST_RAW,
    MAX_TOTAL_ELEMENTS,
    parse_artifact,
)
from golfpack.codec.encode import encode_lossless
from golfpack.errors import FormatError, GolfpackError

FLOAT_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


def bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.numel() == 0:
        return True
    return torch.equal(a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8))


@st.composite
def checkpoints(draw):
    n = draw(st.integers(0, 5))
    ck = Checkpoint(source_format="test")
    for i in range(n):
        name = f"t{i}." + draw(st.text("abcxyz_.0123", min_size=0, max_size=8))
        if draw(st.booleans()):
            # quantized: int8 symbols in a b-bit range with per-row or per-tensor scales
            rows = draw(st.integers(0, 9))
            cols = draw(st.integers(1, 40))
            b = draw(st.integers(2, 8))
            lo, hi = -(1 << (b - 1)), (1 << (b - 1)) - 1
            seed = draw(st.integers(0, 2**31))
            g = np.random.default_rng(seed)
            # extreme values included: the range ends always appear when there is room
            q = g.integers(lo, hi + 1, size=(rows, cols)).astype(np.int8)
            if q.size >= 2:
                q.flat[0], q.flat[-1] = lo, hi
            per_row = draw(st.booleans())
            sdt = draw(st.sampled_from([torch.float16, torch.float32]))
            if per_row:
                scale = torch.from_numpy(g.random(rows).astype(np.float32) + 1e-3).to(sdt)
            else:
                scale = torch.tensor(float(g.random() + 1e-3), dtype=torch.float32)
            out = draw(st.sampled_from(FLOAT_DTYPES[:3]))
            ck.quantized[name] = QuantizedSource(torch.from_numpy(q), scale, out)
        else:
            dt = draw(st.sampled_from(FLOAT_DTYPES))
            shape = tuple(draw(st.lists(st.integers(0, 6), min_size=0, max_size=3)))
            seed = draw(st.integers(0, 2**31))
            g = torch.Generator().manual_seed(seed)
            t = (torch.randn(shape, generator=g) * draw(st.sampled_from([1e-3, 1.0, 1e4]))).to(dt)
            if t.numel() and draw(st.booleans()):  # extreme values: inf, -0.0, max, tiny
                specials = torch.tensor([float("inf"), -0.0, torch.finfo(dt).max, torch.finfo(dt).tiny], dtype=dt)
                t.view(-1)[: min(4, t.numel())] = specials[: min(4, t.numel())]
            ck.floats[name] = t
            if dt == torch.float16 and draw(st.booleans()):
                ck.cast[name] = torch.float32  # the baseline's fp16 passthrough with a recorded dtype
        if name in ck.order:
            ck.floats.pop(name, None)
            continue
        ck.order.append(name)
    ck.order = [n for n in ck.order if n in ck.floats or n in ck.quantized]
    if draw(st.booleans()):
        ck.config = {"num_layers": draw(st.integers(1, 12)), "model_dim": 64}
    return ck


@given(checkpoints(), st.sets(st.sampled_from(CODERS), min_size=1))
def test_round_trip_random_tensor_dicts(ck, coders):
    data = encode_lossless(ck, coders=tuple(sorted(coders)), jobs=1)
    art = parse_artifact(data)
    art.verify()
    assert art.config == ck.config
    assert list(art.tensors) == ck.order
    got = art.state_dict()
    want = ck.state_dict()
    for name in ck.order:
        assert bits_equal(got[name], want[name]), name
        t = art.tensors[name]
        # rans_rc codes only int matrices; its fallback for any other stream is plain rans
        allowed = coders | {"rans"} if "rans_rc" in coders else coders
        assert all(s.coder in allowed for s in t.streams.values())
        if name in ck.quantized:
            assert np.array_equal(t.symbols(), ck.quantized[name].symbols.numpy())
            assert bits_equal(t.scales(), ck.quantized[name].scale)


def small_checkpoint() -> Checkpoint:
    g = np.random.default_rng(0)
    ck = Checkpoint(source_format="test")
    q = np.clip(np.round(g.laplace(0, 3, size=(16, 24))), -31, 31).astype(np.int8)
    ck.quantized["w"] = QuantizedSource(torch.from_numpy(q), torch.full((16,), 0.01, dtype=torch.float16), torch.float32)
    ck.floats["b"] = torch.linspace(-1, 1, 10, dtype=torch.float32)
    ck.order = ["w", "b"]
    ck.config = {"model_dim": 24}
    return ck


def decode_everything(data: bytes):
    art = parse_artifact(data)
    art.verify()
    return art.state_dict()


def test_deterministic_output():
    ck = small_checkpoint()
    assert encode_lossless(ck) == encode_lossless(ck)


@pytest.mark.parametrize("coders", [("raw",), ("rans",), ("zstd",), ("brotli",), CODERS])
def test_every_single_byte_flip_is_detected(coders):
    data = encode_lossless(small_checkpoint(), coders=coders)
    decode_everything(data)
    for i in range(len(data)):
        for mask in (0x01, 0x80):
            bad = bytearray(data)
            bad[i] ^= mask
            with pytest.raises(FormatError):
                decode_everything(bytes(bad))


def test_every_truncation_and_extension_is_detected():
    data = encode_lossless(small_checkpoint())
    for n in range(len(data)):
        with pytest.raises(FormatError):
            decode_everything(data[:n])
    with pytest.raises(FormatError, match="unexpected bytes after the payload"):
        decode_everything(data + b"\0")


def _rebuild(manifest: dict, payload: bytes, version: int = 1, raw_override=None, stored_override=None) -> bytes:
    """Hand-build an artifact with a raw (uncompressed) manifest and a valid header CRC."""
    raw = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    stored = len(raw) if stored_override is None else stored_override
    rawlen = len(raw) if raw_override is None else raw_override
    head = HEADER.pack(b"GOLFPACK", version, 0, MANIFEST_RAW, 0, 0, stored, rawlen, 0)[:-4]
    crc = zlib.crc32(raw, zlib.crc32(head))
    return head + struct.pack("<I", crc) + raw + payload


def _manifest_and_payload():
    data = encode_lossless(small_checkpoint(), coders=("raw",))
    art = parse_artifact(data)
    import zstandard

    _, _, _, coding, _, _, stored, raw, _ = HEADER.unpack(data[:HEADER_SIZE])
    body = data[HEADER_SIZE : HEADER_SIZE + stored]
    text = zstandard.ZstdDecompressor().decompress(body) if coding else body
    return json.loads(text), data[art.header_bytes :]


def test_hand_built_raw_manifest_parses():
    man, payload = _manifest_and_payload()
    decode_everything(_rebuild(man, payload))


def test_unknown_version_is_refused_with_a_clear_message():
    man, payload = _manifest_and_payload()
    with pytest.raises(FormatError, match="version 2 is not supported.*reads version 1"):
        parse_artifact(_rebuild(man, payload, version=2))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda m: m.update(payload_bytes=2**62), "payload_bytes 4611686018427387904 outside"),
        (lambda m: m["tensors"][0].update(shape=[2**40, 2**40]), "elements exceed"),
        (lambda m: m["tensors"][0].update(shape=[2**15, 2**15 + 1]), "elements exceed"),
        (lambda m: m["tensors"][0].update(shape=[-1, 4]), "shape"),
        (lambda m: m["tensors"][0]["streams"]["symbols"].update(count=2**63), "count"),
        (lambda m: m["tensors"][0]["streams"]["symbols"].update(length=2**62), "outside"),
        (lambda m: m["tensors"][0]["streams"]["symbols"].update(offset=3), "gap or overlap|outside"),
        (lambda m: m["tensors"][0]["streams"]["symbols"].update(coder="lz4"), "unknown coder"),
        (lambda m: m["tensors"][0]["scheme"].update(kind="gptq_grouped"), "not supported"),
        (lambda m: m["tensors"][0]["scheme"].update(bits=9), "bits"),
        (lambda m: m["tensors"][0].update(dtype="int4"), "dtype"),
        (lambda m: m["tensors"].append(dict(m["tensors"][0])), "duplicate tensor|gap or overlap"),
        (lambda m: m.update(extra=1), "top-level keys"),
        (lambda m: m["tensors"][1]["streams"]["data"].update(count=11), "holds 11 values"),
    ],
)
def test_hostile_manifest_fields_give_one_clear_error(mutate, message):
    man, payload = _manifest_and_payload()
    mutate(man)
    with pytest.raises(FormatError, match=message):
        decode_everything(_rebuild(man, payload))


def test_hostile_header_sizes():
    man, payload = _manifest_and_payload()
    with pytest.raises(FormatError, match="exceeds"):
        parse_artifact(_rebuild(man, payload, raw_override=2**32 - 1))
    with pytest.raises(FormatError, match="truncated"):
        parse_artifact(_rebuild(man, payload, stored_override=2**32 - 1))
    with pytest.raises(FormatError, match="shorter than"):
        parse_artifact(b"GOLF")
    with pytest.raises(FormatError, match="bad magic"):
        parse_artifact(b"PK\x03\x04" + b"\0" * 40)


def test_element_cap_is_the_documented_one():
    assert MAX_TOTAL_ELEMENTS == 2**30


def test_float_shape_mismatch_is_an_error_not_a_crash():
    man, payload = _manifest_and_payload()
    man["tensors"][1]["shape"] = [3, 4]
    with pytest.raises(FormatError, match="shape needs 12"):
        parse_artifact(_rebuild(man, payload))


def test_writer_rejects_unsupported_dtype():
    ck = Checkpoint(floats={"x": torch.zeros(3, dtype=torch.int32)}, order=["x"])
    with pytest.raises(GolfpackError, match="cannot be stored losslessly"):
        encode_lossless(ck)



def _raw_float_tensor(name: str, shape, data: bytes = b""):
    from golfpack.codec.container import EncodedStream, EncodedTensor
    from golfpack.codec.coders import StreamType

    st_ = EncodedStream(StreamType("float32", len(data) // 4), "raw", "none", data)
    return EncodedTensor(name, tuple(shape), "float32", {"kind": "float"}, {"data": st_})


def test_writer_refuses_duplicate_names_oversize_dims_and_an_oversize_manifest(monkeypatch):
    """The writer refuses what the reader would, each with a message naming the problem."""
    from golfpack.codec import container as C

    a = _raw_float_tensor("w", (1,), b"\0" * 4)
    with pytest.raises(GolfpackError, match="duplicate tensor names"):
        C.build_artifact([a, _raw_float_tensor("w", (1,), b"\0" * 4)])
    with pytest.raises(GolfpackError, match=r"tensor 'big': shape \[1099511627777\] has a dimension outside \[0, 2\^40\]"):
        C.build_artifact([_raw_float_tensor("big", (2**40 + 1,))])
    with pytest.raises(GolfpackError, match=r"tensor 'neg': shape \[-1\]"):
        C.build_artifact([_raw_float_tensor("neg", (-1,))])
    with pytest.raises(GolfpackError, match="elements in all exceed the format's cap of 1073741824"):
        C.build_artifact([_raw_float_tensor("a", (2**15, 2**15)), _raw_float_tensor("b", (1,))])
    # A manifest over the limit: shrink the limit rather than build 64 MiB of JSON.
    ok = C.build_artifact([a])
    assert parse_artifact(ok).tensors["w"].shape == (1,)
    monkeypatch.setattr(C, "MAX_MANIFEST_BYTES", 64)
    with pytest.raises(GolfpackError, match=r"manifest is \d+ bytes, over the 64-byte limit"):
        C.build_artifact([a])


_FUZZ_BASE = None


def _fuzz_base() -> bytes:
    global _FUZZ_BASE
    if _FUZZ_BASE is None:
        _FUZZ_BASE = encode_lossless(small_checkpoint())
    return _FUZZ_BASE


@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255), st.sampled_from(["set", "insert", "delete"])),
                min_size=1, max_size=6))
def test_random_edits_give_format_errors_never_crashes(edits):
    """Any edit (overwrite, insert, delete bytes anywhere): a clean FormatError or, if the edit
    happens to be a no-op, the original tensors. Never another exception, a hang or a crash."""
    data = bytearray(_fuzz_base())
    for pos, val, op in edits:
        pos %= len(data) + (op == "insert")
        if op == "set":
            data[pos] = val
        elif op == "insert":
            data.insert(pos, val)
        elif len(data) > 1:
            del data[pos]
    if bytes(data) == _fuzz_base():
        return
    with pytest.raises(FormatError):
        decode_everything(bytes(data))

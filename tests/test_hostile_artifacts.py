"""Hostile artifacts and checkpoints (issue 11, SECURITY.md): loading never executes code,
never crashes, never allocates what a forged size field claims; bad input is one FormatError.

tests/test_container.py already covers a bit flip (0x01, 0x80) at every byte, every truncation
of one artifact, random edits and the common hostile manifest fields; tests/test_rans.py the
rANS stream on its own; tests/test_hostile_json.py the manifest's JSON. This file adds: every
one of the 255 other values at every byte, truncation of artifacts of every coder and scheme,
hand-built hostile fields behind valid CRCs (so the validators, not the checksums, must catch
them), memory bounds measured in a subprocess, NaN/Inf side tensors, and pickles that try to
run code.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import brotli
import numpy as np
import pytest
import torch
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from golfpack import _C
from golfpack.checkpoint import Checkpoint, QuantizedSource, read_checkpoint
from golfpack.codec.coders import StreamType, encode_stream
from golfpack.codec.container import (
    HEADER,
    HEADER_SIZE,
    MANIFEST_RAW,
    EncodedStream,
    EncodedTensor,
    build_artifact,
    parse_artifact,
)
from golfpack.codec.encode import encode_lossless
from golfpack.errors import FormatError, GolfpackError

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "fuzz"))
import make_corpus  # noqa: E402  (fuzz/: the seed artifacts, every coder and scheme)
import targets  # noqa: E402  (fuzz/: the fuzz targets, also run here under hypothesis)


def load(data: bytes) -> None:
    """Everything `golfpack decode` does: parse, check every CRC, decode every tensor."""
    art = parse_artifact(data)
    art.verify()
    art.state_dict()
    art.to_checkpoint()


def split(data: bytes) -> tuple[dict, bytes]:
    """(manifest, payload) of an artifact."""
    _, _, _, coding, _, _, stored, _, _ = HEADER.unpack(data[:HEADER_SIZE])
    body = data[HEADER_SIZE: HEADER_SIZE + stored]
    text = zstandard.ZstdDecompressor().decompress(body) if coding else body
    return json.loads(text), data[HEADER_SIZE + stored:]


def seal(man: dict, payload: bytes) -> bytes:
    """Artifact bytes with a raw manifest, a valid header CRC and every stream CRC recomputed:
    what a hostile writer produces, so only the validators stand between it and the decoders."""
    for t in man.get("tensors", []):
        for s in t["streams"].values():
            off, n = s["offset"], s["length"]
            if isinstance(off, int) and isinstance(n, int) and 0 <= off <= off + n <= len(payload):
                s["crc32"] = zlib.crc32(payload[off: off + n])
    raw = json.dumps(man, sort_keys=True, separators=(",", ":")).encode()
    head = HEADER.pack(b"GOLFPACK", 1, 0, MANIFEST_RAW, 0, 0, len(raw), len(raw), 0)[:-4]
    return head + struct.pack("<I", zlib.crc32(raw, zlib.crc32(head))) + raw + payload


def tiny_artifact() -> bytes:
    """About 425 bytes, one tensor per coder: rANS symbols, raw bit-packed symbols, zstd and brotli floats."""
    q = np.array([-3, 1, 0, 2, -1, 1, 0, 0], np.int8)
    s16 = np.array([0.5, 0.25], np.float16)
    f32 = np.array([1.0, -2.0, 0.5], np.float32)

    def stream(vals, st, coder):
        return EncodedStream(st, coder, "none", encode_stream(vals, st, coder))

    sq, ss, sf = StreamType("int", 8, 3), StreamType("float16", 2), StreamType("float32", 3)
    tensors = [
        EncodedTensor("a", (2, 4), "float32", {"kind": "int_rowscale", "bits": 3},
                      {"symbols": stream(q, sq, "rans"), "scales": stream(s16, ss, "raw")}),
        EncodedTensor("b", (2, 4), "float16", {"kind": "int_rowscale", "bits": 3},
                      {"symbols": stream(q, sq, "raw"), "scales": stream(s16, ss, "zstd")}),
        EncodedTensor("c", (3,), "float32", {"kind": "float"}, {"data": stream(f32, sf, "brotli")}),
    ]
    return build_artifact(tensors, config={"d": 4})


# ----------------------------------------------------------------------------- byte changes, truncation


def _undetected_changes(data: bytes, values) -> list[tuple[int, int]]:
    missed = []
    for pos in range(len(data)):
        bad = bytearray(data)
        for v in values(data[pos]):
            bad[pos] = v
            try:
                load(bytes(bad))
            except FormatError:
                continue
            missed.append((pos, v))
    return missed


def test_every_bit_flip_of_a_small_artifact_is_detected():
    """Exhaustive over single-bit changes: 8 flips at every offset (~3,400 loads, ~0.5 s)."""
    data = tiny_artifact()
    load(data)
    assert _undetected_changes(data, lambda b: (b ^ (1 << k) for k in range(8))) == []


@pytest.mark.slow
def test_every_value_of_every_byte_of_a_small_artifact_is_detected():
    """Exhaustive: each of the 255 other values at every offset of a ~425-byte artifact whose
    streams use all four coders (~108,000 loads, ~20 s on 2 cores, hence slow). The header CRC covers bytes 0..23 and the manifest, a stream
    CRC every payload byte (streams tile the payload), and CRC-32 catches every error burst of
    at most 32 bits; this checks that every byte really is behind one of them."""
    data = tiny_artifact()
    load(data)
    assert 150 < len(data) < 500
    assert _undetected_changes(data, lambda b: (v for v in range(256) if v != b)) == []


@pytest.mark.slow
def test_every_bit_flip_of_every_seed_artifact_is_detected():
    """8 flips at every offset of all fuzz seed artifacts (every coder, zstd and raw manifests,
    LQER, group scales, an empty artifact): ~18 KB x 8 loads."""
    for data in make_corpus.artifacts(False) + make_corpus.artifacts(True):
        assert _undetected_changes(data, lambda b: (b ^ (1 << k) for k in range(8))) == []


def test_every_truncation_of_every_seed_artifact_is_a_format_error():
    for data in make_corpus.artifacts(False) + make_corpus.artifacts(True):
        load(data)
        for n in range(len(data)):
            with pytest.raises(FormatError):
                load(data[:n])


# ----------------------------------------------------------------------------- hostile fields behind valid CRCs


def _tiny_parts():
    return split(tiny_artifact())


def _stream(man, tensor, role):
    return next(t for t in man["tensors"] if t["name"] == tensor)["streams"][role]


def test_sealing_helper_builds_a_loadable_artifact():
    man, payload = _tiny_parts()
    load(seal(man, payload))  # so every rejection below is the mutation's doing


@pytest.mark.parametrize("field, value, message", [
    ("offset", -1, "offset must be a non-negative integer"),
    ("length", -8, "length must be a non-negative integer"),
    ("offset", 2**40 + 1, "offset 1099511627777 outside"),
    ("length", 2**40, "lie outside the"),
    ("offset", 2**63 - 1, "offset .* outside"),
    ("length", 2**63 - 1, "length .* outside"),
    ("offset", 2**64, "integer|outside"),
    ("count", -1, "count must be a non-negative integer"),
    ("count", 2**31, "exceeds"),
    ("offset", 1.0, "offset must be a non-negative integer"),
    ("count", True, "count must be a non-negative integer"),
])
def test_negative_and_overflowing_stream_fields(field, value, message):
    man, payload = _tiny_parts()
    _stream(man, "a", "symbols")[field] = value
    with pytest.raises(FormatError, match=message):
        load(seal(man, payload))


@pytest.mark.parametrize("mutate, message", [
    (lambda m: m.update(payload_bytes=-1), "payload_bytes must be a non-negative"),
    (lambda m: m.update(payload_bytes=2**63 - 1), "payload_bytes .* outside"),
    (lambda m: m["tensors"][0].update(shape=[2**40 + 1, 0]), "shape must be"),
    (lambda m: m["tensors"][0].update(shape=[2**40, 2**40, 2**40]), "elements exceed"),
    (lambda m: m["tensors"][0].update(shape=[-2, -4]), "shape must be"),
    (lambda m: m["tensors"][0].update(shape=[1] * 9), "at most 8"),
    (lambda m: m["tensors"][0].update(shape="2x4"), "shape must be"),
])
def test_oversized_and_negative_shapes_and_sizes(mutate, message):
    man, payload = _tiny_parts()
    mutate(man)
    with pytest.raises(FormatError, match=message):
        load(seal(man, payload))


def test_crc_field_out_of_range():
    man, payload = _tiny_parts()
    data = seal(man, payload)
    man, payload = split(data)
    _stream(man, "a", "symbols")["crc32"] += 2**32  # same low 32 bits
    raw = json.dumps(man, sort_keys=True, separators=(",", ":")).encode()
    head = HEADER.pack(b"GOLFPACK", 1, 0, MANIFEST_RAW, 0, 0, len(raw), len(raw), 0)[:-4]
    with pytest.raises(FormatError, match="crc32 out of range"):
        load(head + struct.pack("<I", zlib.crc32(raw, zlib.crc32(head))) + raw + payload)


def test_overlapping_and_gapped_streams():
    man, payload = _tiny_parts()
    _stream(man, "a", "scales")["offset"] = _stream(man, "a", "symbols")["offset"]  # overlap, in range
    with pytest.raises(FormatError, match="gap or overlap"):
        load(seal(man, payload))


def test_duplicate_tensor_names_with_disjoint_streams():
    """Two entries named alike whose streams still tile the payload: only the name check can object."""
    man, payload = _tiny_parts()
    man["tensors"][1]["name"] = man["tensors"][0]["name"]
    with pytest.raises(FormatError, match="duplicate tensor 'a'"):
        load(seal(man, payload))


@pytest.mark.parametrize("field, value, message", [
    ("coder", "lzma", "unknown coder 'lzma'"),
    ("coder", 1, "coder must be a string"),
    ("coder", None, "coder must be a string"),
    ("coder", "RANS", "unknown coder"),
    ("transform", "delta", "unknown transform"),
    ("type", "int4", "unknown type|keys"),
    ("type", "float8", "unknown type"),
])
def test_unknown_coder_type_and_transform_ids(field, value, message):
    man, payload = _tiny_parts()
    _stream(man, "b", "scales")[field] = value
    with pytest.raises(FormatError, match=message):
        load(seal(man, payload))


def test_unknown_manifest_coding_in_the_header():
    man, payload = _tiny_parts()
    data = bytearray(seal(man, payload))
    data[12] = 7
    data[24:28] = struct.pack("<I", zlib.crc32(bytes(data[HEADER_SIZE:len(data) - len(payload)]),
                                               zlib.crc32(bytes(data[:24]))))
    with pytest.raises(FormatError, match="unknown manifest coding 7"):
        load(bytes(data))


def _replace_stream(man, payload, tensor, role, new: bytes) -> bytes:
    """Payload with one stream's bytes replaced (offsets after it shifted), CRCs resealed."""
    s = _stream(man, tensor, role)
    off, n = s["offset"], s["length"]
    delta = len(new) - n
    for t in man["tensors"]:
        for other in t["streams"].values():
            if other["offset"] > off:
                other["offset"] += delta
    s["length"] = len(new)
    man["payload_bytes"] += delta
    return seal(man, payload[:off] + new + payload[off + n:])


def _leb128(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    return bytes(out + bytes([v]))


@pytest.mark.parametrize("delta", [1, -1])
def test_rans_frequency_table_that_does_not_sum_to_the_total(delta):
    man, payload = _tiny_parts()
    s = _stream(man, "a", "symbols")
    stream = payload[s["offset"]: s["offset"] + s["length"]]
    info = _C.rans_table_info(stream)
    assert info["precision"] and not info["sparse"] and info["freqs"][0] > 1
    freqs = list(info["freqs"])
    freqs[0] += delta  # the table now sums to 2^P +- 1
    table = stream[:3] + b"".join(map(_leb128, freqs))
    bad = table + stream[info["table_bytes"]:]
    with pytest.raises(FormatError, match="tensor 'a': symbols stream: rANS stream: frequencies sum to"):
        load(_replace_stream(man, payload, "a", "symbols", bad))


@pytest.mark.parametrize("cut", [1, 4, 8])
def test_rans_stream_that_ends_early(cut):
    man, payload = _tiny_parts()
    s = _stream(man, "a", "symbols")
    stream = payload[s["offset"]: s["offset"] + s["length"]]
    with pytest.raises(FormatError, match="tensor 'a': symbols stream: rANS stream: .*(truncated|multiple of 4)"):
        load(_replace_stream(man, payload, "a", "symbols", stream[:-cut]))


def test_brotli_stream_that_ends_early():
    """Regression: a brotli stream that finished short of the expected size was accepted, and
    the short array then failed in numpy's reshape (ValueError, not a FormatError)."""
    man, payload = _tiny_parts()
    short = brotli.compress(np.array([1.0, -2.0], np.float32).tobytes())  # 2 of the 3 values
    with pytest.raises(FormatError, match="tensor 'c': data stream: brotli stream does not decode to exactly the 12 bytes"):
        load(_replace_stream(man, payload, "c", "data", short))


@pytest.mark.parametrize("kind", ["short", "long", "trailing", "truncated"])
def test_zstd_stream_of_the_wrong_size(kind):
    man, payload = _tiny_parts()
    s = _stream(man, "b", "scales")
    good = payload[s["offset"]: s["offset"] + s["length"]]
    new = {"short": zstandard.ZstdCompressor(write_content_size=True).compress(b"\0\0"),
           "long": zstandard.ZstdCompressor(write_content_size=True).compress(b"\0" * 6),
           "trailing": good + b"\0",
           "truncated": good[:-1]}[kind]
    with pytest.raises(FormatError, match="tensor 'b': scales stream: .*zstd (stream|frame)"):
        load(_replace_stream(man, payload, "b", "scales", new))


# ----------------------------------------------------------------------------- NaN / Inf side tensors


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("tensor", ["a", "b"])
def test_nan_or_inf_scales_are_refused(value, tensor):
    man, payload = _tiny_parts()
    bad = encode_stream(np.array([0.5, value], np.float16), StreamType("float16", 2), "raw")
    s = _stream(man, tensor, "scales")
    s["coder"] = "raw"
    with pytest.raises(FormatError, match=f"tensor '{tensor}': scales stream holds NaN or Inf"):
        load(_replace_stream(man, payload, tensor, "scales", bad))


def test_nan_or_inf_lowrank_scales_are_refused():
    data = make_corpus.scheme_artifact("raw", MANIFEST_RAW)
    load(data)
    man, payload = split(data)
    bad = encode_stream(np.array([np.inf, 1.0], np.float16), StreamType("float16", 2), "raw")
    with pytest.raises(FormatError, match="tensor 'g': lowrank_b_scales stream holds NaN or Inf"):
        load(_replace_stream(man, payload, "g", "lowrank_b_scales", bad))


def test_nan_and_inf_in_float_tensor_data_are_kept_exactly():
    """A float tensor is stored losslessly, specials included: only side streams must be finite."""
    t = torch.tensor([float("nan"), float("inf"), -float("inf"), 1.0])
    ck = Checkpoint(floats={"x": t}, order=["x"])
    got = parse_artifact(encode_lossless(ck)).state_dict()["x"]
    assert torch.equal(got.view(torch.int32), t.view(torch.int32))


def test_writer_refuses_non_finite_scales():
    q = torch.zeros(2, 3, dtype=torch.int8)
    ck = Checkpoint(quantized={"w": QuantizedSource(q, torch.tensor([1.0, float("nan")]), torch.float32)}, order=["w"])
    with pytest.raises(GolfpackError, match="w: scales hold NaN or Inf"):
        encode_lossless(ck)


# ----------------------------------------------------------------------------- memory bounds

_MEMORY_PROBE = textwrap.dedent("""
    import json, resource, struct, sys, tracemalloc, zlib
    import numpy as np
    from golfpack import _C
    from golfpack.codec.container import HEADER, MANIFEST_RAW, parse_artifact
    from golfpack.errors import FormatError

    def header(coding, stored, raw_size):
        head = HEADER.pack(b"GOLFPACK", 1, 0, coding, 0, 0, len(stored), raw_size, 0)[:-4]
        return head + struct.pack("<I", zlib.crc32(stored, zlib.crc32(head))) + stored

    def seal(tensors, payload, payload_bytes=None):
        man = {"config": None, "source": {}, "tensors": tensors,
               "payload_bytes": len(payload) if payload_bytes is None else payload_bytes}
        raw = json.dumps(man).encode()
        return header(MANIFEST_RAW, raw, len(raw)) + payload

    def floats(shape, count, coder, stream, kind="float32"):
        s = {"type": kind, "count": count, "coder": coder, "transform": "none", "offset": 0,
             "length": len(stream), "crc32": zlib.crc32(stream)}
        return seal([{"name": "x", "shape": shape, "dtype": "float32", "scheme": {"kind": "float"},
                      "streams": {"data": s}}], stream)

    two_symbols = _C.rans_encode(np.array([0, 1] * 8, np.uint8), 12, 1)
    forged_zstd = b"\\x28\\xb5\\x2f\\xfd" + bytes([0xE0]) + struct.pack("<Q", 1 << 32) + b"\\x01\\x00\\x00"
    windowed_zstd = b"\\x28\\xb5\\x2f\\xfd" + bytes([0xC0, 0x58]) + struct.pack("<Q", 1 << 32) + b"\\x01\\x00\\x00"
    manifest_zstd = b"\\x28\\xb5\\x2f\\xfd" + bytes([0xE0]) + struct.pack("<Q", 64 << 20) + b"\\x01\\x00\\x00"
    cases = {
        # 2^30 float32 values (4 GiB) claimed by a few bytes, per coder
        "raw": floats([1 << 15, 1 << 15], 1 << 30, "raw", b"\\0" * 8),
        "rans": floats([1 << 15, 1 << 15], 1 << 30, "rans", two_symbols),
        "zstd": floats([1 << 15, 1 << 15], 1 << 30, "zstd", forged_zstd),
        "zstd-windowed": floats([1 << 15, 1 << 15], 1 << 30, "zstd", windowed_zstd),
        "brotli": floats([1 << 15, 1 << 15], 1 << 30, "brotli", b"\\x8b\\x00\\x80"),
        "float64": floats([1 << 15, 1 << 15], 1 << 30, "zstd", forged_zstd, "float64"),
        # a manifest that claims 64 MiB, a payload that claims 1 TiB
        "manifest": header(1, manifest_zstd, 64 << 20),
        "payload": seal([], b"", payload_bytes=1 << 40),
    }
    out = {}
    for name, data in cases.items():
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        try:
            art = parse_artifact(data)
            art.verify()
            art.state_dict()
            err = None
        except FormatError as e:
            err = str(e)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0
        out[name] = {"file": len(data), "error": err, "traced_peak": peak, "rss_growth_kib": rss}
    print(json.dumps(out))
""")


def test_forged_sizes_allocate_nothing_near_their_claim():
    """Each input is < 1 KiB and claims gigabytes (2^30-element streams, a 64 MiB manifest, a
    1 TiB payload), behind valid CRCs. Measured in a fresh process: the Python-heap peak during
    the load (tracemalloc; numpy and bytes buffers are traced) stays under 1 MiB, and the peak RSS
    grows by under 32 MiB. Before streaming zstd decompression, the forged zstd frame cost a
    4 GiB allocation (declared content size allocated up front)."""
    res = subprocess.run([sys.executable, "-c", _MEMORY_PROBE], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    for name, r in out.items():
        assert r["file"] < 1024, name
        assert r["error"], f"{name}: loaded without an error"
        assert r["traced_peak"] < 1 << 20, (name, r)
        assert r["rss_growth_kib"] < 32 << 10, (name, r)


# ----------------------------------------------------------------------------- pickles that try to run code


class _Exploit:
    """Unpickling this calls os.system: what a malicious checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _ptz(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return zlib.compress(buf.getvalue())


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("container", ["pt", "ptz", "legacy-pt", "plain-pickle"])
def test_checkpoints_carrying_pickled_code_are_refused_without_running_it(tmp_path, container):
    marker = tmp_path / "pwned"
    obj = {"w": torch.ones(2), "evil": _Exploit(marker)}
    path = tmp_path / ("ck.ptz" if container == "ptz" else "ck.pt")
    if container == "pt":
        torch.save(obj, path)
    elif container == "legacy-pt":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    elif container == "plain-pickle":
        path.write_bytes(pickle.dumps(obj))
    else:
        path.write_bytes(_ptz(obj))
    # Sanity: the payload really runs code when unpickled without the allowlist.
    check = tmp_path / "check.pt"
    check.write_bytes(pickle.dumps(_Exploit(tmp_path / "control")))
    pickle.loads(check.read_bytes())
    assert (tmp_path / "control").exists()

    # zip files reach torch's weights-only unpickler, which names the refused global; the legacy
    # format and plain pickles are refused before any unpickling.
    with pytest.raises(FormatError, match=r"refused by the weights-only torch loader \(.*posix\.system|"
                                          r"not a torch\.save zip file") as ei:
        read_checkpoint(path)
    assert "weights_only=False" not in str(ei.value)  # never advise running the pickle's code
    assert not marker.exists()


def test_checkpoint_with_non_tensor_objects_is_refused(tmp_path):
    """weights_only admits tensors in plain containers; any other class (here a torch module,
    whose unpickling would import and call its constructor path) is refused."""
    path = tmp_path / "m.pt"
    torch.save({"model": torch.nn.Linear(2, 2)}, path)
    with pytest.raises(FormatError, match="refused by the weights-only torch loader .*Linear"):
        read_checkpoint(path)


def test_tensors_only_checkpoints_still_load(tmp_path):
    path = tmp_path / "ok.ptz"
    path.write_bytes(_ptz({"w": torch.arange(4.0), "b": torch.zeros(2, dtype=torch.float16)}))
    ck = read_checkpoint(path)
    assert ck.order == ["w", "b"] and torch.equal(ck.floats["w"], torch.arange(4.0))


# ----------------------------------------------------------------------------- the fuzz targets, under hypothesis


@pytest.mark.parametrize("target", sorted(targets.TARGETS))
def test_fuzz_targets_accept_their_seeds(target, tmp_path):
    seeds = {"header": make_corpus.artifacts(False), "manifest": make_corpus.artifacts(True),
             "rans": make_corpus.rans_seeds(), "rans_x32": make_corpus.rans_x32_seeds(),
             "bitpack": make_corpus.bitpack_seeds(),
             "streams": make_corpus.stream_seeds(), "crc": [bytes(range(256)) * 3]}[target]
    for s in seeds:
        targets.TARGETS[target](s)
    if target == "manifest":  # resealing keeps a valid artifact valid
        for s in seeds:
            assert targets.reseal(s) == s


_SEEDS = None


def _seed(i: int) -> bytes:
    global _SEEDS
    if _SEEDS is None:
        _SEEDS = make_corpus.artifacts(True)
    return _SEEDS[i % len(_SEEDS)]


@settings(max_examples=150)
@given(i=st.integers(0, 100), edits=st.lists(
    st.tuples(st.integers(0, 1 << 16), st.binary(min_size=0, max_size=4), st.integers(0, 4)), min_size=1, max_size=4))
def test_byte_mutations_behind_resealed_crcs_give_format_errors_or_load(i, edits):
    """Byte mutations (overwrite, insert, delete) of seed artifacts, CRCs recomputed afterwards,
    so the mutation reaches the manifest validators and the stream decoders. The target raises
    (failing the test) on anything but a GolfpackError or a consistent load."""
    data = bytearray(_seed(i))
    for pos, blob, drop in edits:
        pos %= len(data) + 1
        data[pos: pos + drop] = blob
    targets.manifest(bytes(data))
    targets.header(bytes(data))


# ----------------------------------------------------------------------------- compressed checkpoints


def _compressed(kind: str, data: bytes) -> bytes:
    import lzma

    return {"zstd": lambda b: zstandard.ZstdCompressor().compress(b), "xz": lzma.compress, "zlib": zlib.compress}[kind](data)


@pytest.mark.parametrize("kind", ["zstd", "xz", "zlib"])
def test_corrupt_or_truncated_compressed_checkpoints_are_format_errors(tmp_path, kind):
    """Regression: a corrupt zstd or xz .ptz raised zstandard.ZstdError / lzma.LZMAError."""
    buf = io.BytesIO()
    torch.save({"w": torch.arange(100.0)}, buf)
    good = _compressed(kind, buf.getvalue())
    path = tmp_path / "ck.ptz"
    path.write_bytes(good)
    assert torch.equal(read_checkpoint(path).floats["w"], torch.arange(100.0))
    for bad in (good[: len(good) // 2], good[:8] + bytes(len(good) - 8), good[:-1]):
        path.write_bytes(bad)
        with pytest.raises(FormatError):
            read_checkpoint(path)


@pytest.mark.parametrize("kind", ["zstd", "xz", "zlib"])
def test_decompression_streams_in_bounded_steps(kind):
    """Regression: stream_reader.read(8 GiB + 1) allocated 8 GiB for every zstd checkpoint, and every
    kind held the whole output (then a copy of it) in memory. Now 64 MiB of output costs under 16 MiB
    (1 MiB steps plus the coder's window: xz's default dictionary is 8 MiB)."""
    import tracemalloc

    from golfpack.torch_reader import decompress_to_file

    payload = b"PK\x03\x04" + bytes(64 << 20)
    src = io.BytesIO(_compressed(kind, payload))
    sink = hashlib.sha256()

    class Out:
        def write(self, b):
            sink.update(b)

    tracemalloc.start()
    try:
        assert decompress_to_file(src, Out(), "ck.ptz") == len(payload)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sink.digest() == hashlib.sha256(payload).digest()
    assert peak < 16 << 20, peak

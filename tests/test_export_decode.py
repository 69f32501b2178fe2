"""The exported script's decoder (golfpack/export/runtime/decode.py) against golfpack's own.

The runtime is numpy/torch (plus a C loop it compiles when a compiler exists); these tests exec
its complete source (every `#if` block), once per decoder path, and check, for every coder (raw, rans, rans_rc), scheme (float, int_rowscale, int_tensorscale,
int_groupscale, LQER) and float stream type and transform, that it decodes artifacts to the
tensors golfpack.codec decodes, bit for bit. A format change in either decoder fails here.
"""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from golfpack.codec.coders import StreamType, encode_stream
from golfpack.codec.container import (MANIFEST_LZMA, EncodedStream, EncodedTensor, build_artifact,
                                      parse_artifact)
from golfpack.export.needs import ALL_FLAGS
from golfpack.export.script import Settings, script_source


@pytest.fixture(scope="module", params=["native", "numpy"])
def rt(request):
    """The runtime, with its C loop (compiled by the system's cc) or its numpy decoder alone."""
    ns = {"__name__": "golfpack_runtime_under_test"}
    exec(compile(script_source(ALL_FLAGS, Settings()), "runtime", "exec"), ns)
    if request.param == "numpy":
        ns["NATIVE"][:] = [None]
    elif ns["native"]() is None:
        pytest.skip("no C compiler: the native rANS loop cannot be built here")
    return ns


FLOAT_NP = {"float16": np.float16, "float32": np.float32, "bfloat16": np.uint16, "float64": np.float64}


def _float_stream(rng, kind, n, coder, transform):
    vals = (rng.standard_normal(n) * 0.1).astype(np.float32)
    if kind == "bfloat16":
        vals = torch.from_numpy(vals).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    else:
        vals = vals.astype(FLOAT_NP[kind])
    stt = StreamType(kind, n)
    return EncodedStream(stt, coder, transform, encode_stream(vals, stt, coder, transform))


def _int_stream(rng, n, bits, coder, cols=0, spread=None):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    q = np.clip(np.rint(rng.standard_normal(n) * (spread or (hi / 3))), lo, hi).astype(np.int8)
    stt = StreamType("int", n, bits, row_len=cols)
    return EncodedStream(stt, coder, "none", encode_stream(q, stt, coder))


def _tensor(rng, name, kind, shape, bits, coder, fcoder="raw", transform="none", dtype="float32", rank=0,
            group=4, skind="float16"):
    n = math.prod(shape)
    cols = n // shape[0] if shape and shape[0] else 0
    if kind == "float":
        return EncodedTensor(name, shape, dtype, {"kind": "float"},
                             {"data": _float_stream(rng, skind, n, fcoder, transform)})
    scheme = {"kind": kind, "bits": bits}
    streams = {"symbols": _int_stream(rng, n, bits, coder, cols if coder == "rans_rc" else 0)}
    if kind == "int_rowscale":
        streams["scales"] = _float_stream(rng, skind, shape[0], fcoder, transform)
    elif kind == "int_tensorscale":
        streams["scales"] = _float_stream(rng, skind, 1, fcoder, transform)
    else:
        scheme["group"] = group
        streams["scales"] = _float_stream(rng, skind, shape[0] * -(-cols // group), fcoder, transform)
    if rank:
        scheme["lowrank"] = {"rank": rank, "bits": 6}
        N, K = shape
        streams["lowrank_a"] = _int_stream(rng, rank * N, 6, coder, N if coder == "rans_rc" else 0)
        streams["lowrank_b"] = _int_stream(rng, rank * K, 6, coder, K if coder == "rans_rc" else 0)
        streams["lowrank_a_scales"] = _float_stream(rng, skind, rank, fcoder, transform)
        streams["lowrank_b_scales"] = _float_stream(rng, skind, rank, fcoder, transform)
    return EncodedTensor(name, shape, dtype, scheme, streams)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.reshape(-1).view(torch.uint8),
                                                                    b.reshape(-1).view(torch.uint8))


def _check(rt, tensors, coding=MANIFEST_LZMA):
    data = build_artifact(tensors, config=None, source={}, manifest_coding=coding)
    art = parse_artifact(data)
    import tempfile, os
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(data)
    try:
        man, pay = rt["read_artifact"](f.name)
    finally:
        os.unlink(f.name)
    got = rt["decode_tensors"](man, pay)
    for name, t in art.tensors.items():
        e, arrs = got[name]
        if t.is_quantized:
            assert np.array_equal(arrs["symbols"], t.symbols().reshape(-1)), name
        assert _same(rt["dense"](e, arrs), t.dequantize()), name


@pytest.mark.parametrize("coder", ["raw", "rans", "rans_rc"])
@pytest.mark.parametrize("bits", [2, 4, 6, 8])
def test_every_coder_and_width(rt, coder, bits):
    rng = np.random.default_rng(bits)
    _check(rt, [_tensor(rng, "w", "int_rowscale", (24, 40), bits, coder),
                _tensor(rng, "big", "int_rowscale", (64, 96), bits, coder)])


@pytest.mark.parametrize("kind", ["int_rowscale", "int_tensorscale", "int_groupscale"])
@pytest.mark.parametrize("coder", ["raw", "rans", "rans_rc"])
def test_every_scheme(rt, kind, coder):
    rng = np.random.default_rng(7)
    _check(rt, [_tensor(rng, "a", kind, (16, 30), 5, coder, group=7), _tensor(rng, "b", kind, (8, 3, 5), 3, coder,
                                                                              group=4)])


@pytest.mark.parametrize("coder", ["raw", "rans", "rans_rc"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_lowrank(rt, coder, dtype):
    rng = np.random.default_rng(3)
    _check(rt, [_tensor(rng, "w", "int_rowscale", (32, 48), 4, coder, rank=4, dtype=dtype),
                _tensor(rng, "g", "int_groupscale", (16, 24), 4, coder, rank=2, group=8)])


@pytest.mark.parametrize("skind", ["float16", "float32", "bfloat16", "float64"])
@pytest.mark.parametrize("fcoder,transform", [("raw", "none"), ("rans", "none"), ("rans", "byteshuffle")])
def test_float_streams(rt, skind, fcoder, transform):
    rng = np.random.default_rng(11)
    _check(rt, [_tensor(rng, "f", "float", (33, 7), 0, "raw", fcoder, transform, dtype="float32", skind=skind),
                _tensor(rng, "s", "int_rowscale", (12, 20), 6, "rans", fcoder, transform, dtype="float16",
                        skind=skind if skind in ("float16", "float32") else "float16")])


def test_one_symbol_and_empty_streams(rt):
    rng = np.random.default_rng(0)
    zeros = np.zeros(300, np.int8)
    stt = StreamType("int", 300, 4, row_len=30)
    t = [EncodedTensor("z", (10, 30), "float32", {"kind": "int_rowscale", "bits": 4},
                       {"symbols": EncodedStream(stt, c, "none", encode_stream(zeros, stt, c)),
                        "scales": _float_stream(rng, "float16", 10, "rans", "none")}) for c in ("rans", "rans_rc")]
    t[1].name = "z2"
    t.append(_tensor(rng, "e", "float", (0, 4), 0, "raw", "rans"))
    _check(rt, t)


def test_zstd_manifest_is_refused_with_a_clear_error(rt, tmp_path):
    data = build_artifact([_tensor(np.random.default_rng(1), "w", "int_rowscale", (4, 8), 4, "rans")],
                          manifest_coding=1)
    p = tmp_path / "m.gp"
    p.write_bytes(data)
    with pytest.raises(rt["Bad"], match="zstd"):
        rt["read_artifact"](str(p))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(1, 40), cols=st.integers(1, 70), bits=st.integers(2, 8),
       coder=st.sampled_from(["raw", "rans", "rans_rc"]), spread=st.floats(0.05, 40.0))
def test_decoder_matches_golfpack_property(rt, seed, rows, cols, bits, coder, spread):
    rng = np.random.default_rng(seed)
    n = rows * cols
    stt = StreamType("int", n, bits, row_len=cols)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    q = np.clip(np.rint(rng.standard_normal(n) * spread), lo, hi).astype(np.int8)
    t = EncodedTensor("w", (rows, cols), "float32", {"kind": "int_rowscale", "bits": bits},
                      {"symbols": EncodedStream(stt, coder, "none", encode_stream(q, stt, coder)),
                       "scales": _float_stream(rng, "float16", rows, "raw", "none")})
    _check(rt, [t])


@pytest.mark.parametrize("coder", ["rans", "rans_rc"])
@pytest.mark.parametrize("cut", ["drop_word", "extra_word"])
def test_malformed_rans_payload_is_an_error(rt, tmp_path, coder, cut):
    """A stream whose words do not match its symbols (CRC made valid): one clear error, either path."""
    rng = np.random.default_rng(5)
    stt = StreamType("int", 4000, 6, row_len=40)
    q = np.clip(np.rint(rng.standard_normal(4000) * 9), -32, 31).astype(np.int8)
    data = encode_stream(q, stt, coder)
    data = data[:-4] if cut == "drop_word" else data + b"\x01\x02\x03\x04"
    t = EncodedTensor("w", (100, 40), "float32", {"kind": "int_rowscale", "bits": 6},
                      {"symbols": EncodedStream(stt, coder, "none", data),
                       "scales": _float_stream(rng, "float16", 100, "raw", "none")})
    p = tmp_path / "bad.gp"
    p.write_bytes(build_artifact([t], manifest_coding=MANIFEST_LZMA))
    man, pay = rt["read_artifact"](str(p))
    with pytest.raises(rt["Bad"], match="rANS"):
        rt["decode_tensors"](man, pay)

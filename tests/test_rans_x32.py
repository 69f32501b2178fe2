"""The rans_x32 stream (csrc/RANS.md section 7, issue 19): an independent pure-Python encoder and
decoder written from the spec text, golden vectors, round trips under every inner loop this CPU
has (scalar, AVX2, AVX-512, forced with rans_set_isa and compared bit for bit), hostile streams,
the packed-rows decoder, and the writer's opt-in (--fast-decode; the default output unchanged).
"""
from __future__ import annotations

import hashlib
import json
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from golfpack import _C
from golfpack.codec.coders import CODERS, StreamType, best_encoding, decode_stream, encode_stream
from golfpack.codec.container import MANIFEST_RAW, build_artifact, packed_rows, parse_artifact
from golfpack.codec.encode import encode_plan
from tests.test_rans import fmix64, laplace_int, py_symbol_hash, py_table, to_u

ISAS = ["scalar"] + (["avx2"] if _C.rans_cpu_has_avx2() else []) + (["avx512"] if _C.rans_cpu_has_avx512() else [])
M64 = (1 << 64) - 1
L = 1 << 16
P = 12
LANES = 32
K1 = 0x9E3779B97F4A7C15


@pytest.fixture(params=ISAS)
def isa(request):
    prev = _C.rans_set_isa(request.param)
    yield request.param
    _C.rans_set_isa(prev)


# ----------------------------------------------------------------------------- section 7, in Python

def tag16(h: int, j: int) -> int:
    return fmix64((h + (j + 1) * K1) & M64) & (L - 1)


def table_freqs(stream: bytes) -> list[int]:
    info = _C.rans_table_info(stream)
    f = [0] * 256
    for k, v in enumerate(info["freqs"]):
        f[info["lo"] + k] = v
    return f


def py_encode(symbols, freqs) -> bytes:
    """Section 7.6 with the given (normalized, P = 12) frequencies."""
    n = len(symbols)
    table = py_table(freqs, P, 1)  # lane code 0
    if n == 0 or sum(1 for f in freqs if f) == 1:
        return table
    cum = [0] * 257
    for s in range(256):
        cum[s + 1] = cum[s] + freqs[s]
    lanes = min(LANES, n)
    h = py_symbol_hash(bytes(symbols))
    x = [L + tag16(h, j) for j in range(LANES)]
    words = []
    for i in range(n - 1, -1, -1):
        j, s = i % lanes, symbols[i]
        f = freqs[s]
        if x[j] >= f << 20:
            words.append(x[j] & 0xFFFF)
            x[j] >>= 16
        x[j] = ((x[j] // f) << P) + (x[j] % f) + cum[s]
    out = bytearray(table)
    for j in range(lanes):
        out += x[j].to_bytes(4, "little")
    for w in reversed(words):
        out += w.to_bytes(2, "little")
    return bytes(out)


class Refused(Exception):
    pass


def py_decode(data: bytes, count: int) -> bytes:
    """Sections 7.2-7.5: the table (rules R1-R3 are the v1 parser's, used here through
    rans_table_info), X1-X7 checked in the order the text gives."""
    info = _C.rans_table_info(data)
    if info["precision"] not in (0, P) or (info["lanes"] not in (None, 1)):
        raise Refused("X1")
    payload = data[info["table_bytes"]:]
    if info["precision"] == 0:
        if count:
            raise Refused("X2")
        if payload:
            raise Refused("X3")
        return b""
    if count == 0:
        raise Refused("X2")
    freqs = table_freqs(data)
    if info["present"] == 1:
        if payload:
            raise Refused("X3")
        return bytes([info["lo"]]) * count
    lanes = min(LANES, count)
    if len(payload) < 4 * lanes or (len(payload) - 4 * lanes) % 2:
        raise Refused("X3")
    if count > 12 * 2**P * (len(payload) // 2 + 32):
        raise Refused("X2")
    x = [int.from_bytes(payload[4 * j:4 * j + 4], "little") for j in range(lanes)]
    if min(x) < L:
        raise Refused("X4")
    cum = [0] * 257
    for s in range(256):
        cum[s + 1] = cum[s] + freqs[s]
    owner = [0] * (1 << P)
    for s in range(256):
        for k in range(cum[s], cum[s + 1]):
            owner[k] = s
    pos, out = 4 * lanes, bytearray()
    for i in range(count):
        j = i % lanes
        slot = x[j] & ((1 << P) - 1)
        s = owner[slot]
        out.append(s)
        x[j] = freqs[s] * (x[j] >> P) + slot - cum[s]
        if x[j] < L:
            if pos + 2 > len(payload):
                raise Refused("X5")
            x[j] = (x[j] << 16) | int.from_bytes(payload[pos:pos + 2], "little")
            pos += 2
    if pos != len(payload):
        raise Refused("X6")
    h = py_symbol_hash(bytes(out))
    if any(x[j] != L + tag16(h, j) for j in range(lanes)):
        raise Refused("X7")
    return bytes(out)


def rule_of(msg: str) -> str:
    return msg.rsplit("[", 1)[1].rstrip("]")


# ----------------------------------------------------------------------------- golden vectors

_GOLDEN_SYMBOLS = np.array([3, 7, 7, 9, 3, 3, 7, 12] * 5, np.uint8)  # 40 symbols: 32 lanes + a tail
def test_golden_vector_small():
    data = _C.rans_x32_encode(_GOLDEN_SYMBOLS)
    assert data == GOLDEN_SMALL, data.hex()
    assert py_encode(list(_GOLDEN_SYMBOLS), table_freqs(data)) == data
    assert py_decode(data, _GOLDEN_SYMBOLS.size) == _GOLDEN_SYMBOLS.tobytes()


def test_golden_vector_int6():
    rng = np.random.default_rng(19)
    u = to_u(laplace_int(rng, 5000, 4.0, 6))
    data = _C.rans_x32_encode(u)
    assert (len(data), hashlib.sha256(data).hexdigest()) == GOLDEN_INT6, (len(data), hashlib.sha256(data).hexdigest())


# the 40 symbols above: table 4c 03 0c (P = 12, sparse, lo 3, hi 12), bitmap 51 02, four varint
# frequencies; then 32 u32 states and the u16 words
GOLDEN_SMALL = bytes.fromhex(
    "4c030c5102800c800c8004800476610900373b0900d7c909009b6d7800958209008cb30d00b3c80a0006ff4e0070c404"
    "001789030088080500fdec0e008f720300e1450300891b0300f06e0d003f1505001c3b0500c93b05002a5d090055e003"
    "0017740300e63a0400c6fe0a0014a0040043090400ace70300f4cc0c0090210400f7250500405703009f0e0d00")
# 5000 Laplace int6 symbols of seed 19: (bytes, sha256)
GOLDEN_INT6 = (2965, "6a0fc84d3f7c77c755855385c978761047d7885cf572c6ec3d4dcf109f415655")


# ----------------------------------------------------------------------------- round trips


def streams(rng, n):
    yield "laplace6", to_u(laplace_int(rng, n, 4.0, 6))
    yield "laplace4", to_u(laplace_int(rng, n, 1.0, 4))
    yield "int8", to_u(laplace_int(rng, n, 30.0, 8))
    yield "sparse", rng.choice(np.array([3, 40, 41, 200, 255], np.uint8), n, p=[0.5, 0.2, 0.1, 0.1, 0.1])
    yield "skew", rng.choice(np.array([7, 9], np.uint8), n, p=[0.999, 0.001])
    yield "uniform256", rng.integers(0, 256, n).astype(np.uint8)
    yield "one", np.full(n, 42, np.uint8)


@pytest.mark.parametrize("n", [0, 1, 2, 31, 32, 33, 63, 64, 65, 1000, 4099])
def test_python_reference_agrees(n):
    rng = np.random.default_rng(n)
    for name, u in streams(rng, n):
        data = _C.rans_x32_encode(u)
        if n:
            assert py_encode(list(u), table_freqs(data)) == data, name
        assert py_decode(data, n) == u.tobytes(), name
        assert np.array_equal(_C.rans_x32_decode_ref(data, n), u), name


@pytest.mark.parametrize("n", [0, 1, 5, 32, 33, 1000, 70001, 300_000])
def test_every_isa_decodes_bit_for_bit(isa, n):
    rng = np.random.default_rng(n + 1)
    for name, u in streams(rng, n):
        data = _C.rans_x32_encode(u)
        assert np.array_equal(_C.rans_x32_decode(data, n), u), (isa, name)


def test_size_cost_against_v1_is_small():
    rng = np.random.default_rng(2)
    u = to_u(laplace_int(rng, 1 << 20, 4.0, 6))
    x32, v1 = len(_C.rans_x32_encode(u)), len(_C.rans_encode(u))
    p15 = len(_C.rans_encode(u, 15, 8))
    assert v1 <= p15
    assert 0 < x32 / v1 - 1 < 0.0015, (x32, v1)  # the P = 12 loss and a 128-byte flush, RANS.md 7.6


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_round_trip_property(data):
    n = data.draw(st.integers(0, 3000))
    alphabet = data.draw(st.integers(1, 256))
    skew = data.draw(st.floats(0.0, 8.0))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    p = np.exp(-skew * np.arange(alphabet) / max(1, alphabet - 1) * 4)
    syms = rng.permutation(256)[:alphabet].astype(np.uint8)
    u = rng.choice(syms, n, p=p / p.sum()) if n else np.zeros(0, np.uint8)
    stream = _C.rans_x32_encode(u)
    for name in ISAS:
        prev = _C.rans_set_isa(name)
        try:
            assert np.array_equal(_C.rans_x32_decode(stream, n), u), name
        finally:
            _C.rans_set_isa(prev)
    assert np.array_equal(_C.rans_x32_decode_ref(stream, n), u)


def test_extreme_skew_and_count_bound():
    # One rare symbol in a long run: states shrink slowly, few words; the X2 bound must admit it.
    u = np.full(200_000, 5, np.uint8)
    u[123_457] = 6
    data = _C.rans_x32_encode(u)
    assert np.array_equal(_C.rans_x32_decode(data, u.size), u)
    assert py_decode(data, u.size) == u.tobytes()


# ----------------------------------------------------------------------------- hostile streams


def small_stream(n=300):
    rng = np.random.default_rng(5)
    u = to_u(laplace_int(rng, n, 3.0, 6))
    return u, _C.rans_x32_encode(u)


def test_every_single_byte_change_is_refused(isa):
    u, data = small_stream()
    undetected = []
    for pos in range(len(data)):
        for v in range(256):
            if v == data[pos]:
                continue
            bad = data[:pos] + bytes([v]) + data[pos + 1:]
            try:
                _C.rans_x32_decode(bad, u.size)
            except ValueError as e:
                assert str(e).startswith("rANS stream: ") and "\n" not in str(e)
            else:
                undetected.append((pos, v))
    assert undetected == []


def test_python_and_native_refuse_under_the_same_rule():
    u, data = small_stream(1000)
    cases = [data[:k] for k in range(len(data) - 1, len(data) - 40, -1)]
    cases += [data[:pos] + bytes([data[pos] ^ m]) + data[pos + 1:] for pos in range(len(data)) for m in (1, 0x80)]
    cases += [data + b"\0\0", data + b"\0"]
    seen = set()
    for bad in cases:
        try:
            native = _C.rans_x32_decode(bad, u.size)
        except ValueError as e:
            native_rule = rule_of(str(e))
        else:
            native_rule = None
        try:
            py = py_decode(bad, u.size)
            py_rule = None
        except Refused as e:
            py_rule = str(e)
        except ValueError as e:  # the table parser (R1-R3)
            py_rule = rule_of(str(e))
        assert native_rule == py_rule, (bad.hex(), native_rule, py_rule)
        if native_rule is None:
            assert native.tobytes() == py
        seen.add(native_rule)
    assert {"X3", "X4", "X5", "X6", "X7"} <= seen, seen


def test_counts():
    u, data = small_stream()
    for count in (u.size - 1, u.size + 1, 2**40 + 1):
        with pytest.raises(ValueError, match=r"^rANS stream: |\[X2\]$"):
            _C.rans_x32_decode(data, count)
    with pytest.raises(ValueError, match=r"\[X2\]$"):
        _C.rans_x32_decode(data, -1)
    with pytest.raises(ValueError, match=r"\[X2\]$"):  # far more than the payload can hold: before allocating
        _C.rans_x32_decode(data, 2**39)
    with pytest.raises(ValueError, match=r"\[X1\]$"):  # a v1 stream is not a rans_x32 one
        _C.rans_x32_decode(_C.rans_encode(u, 12, 8), u.size)


# ----------------------------------------------------------------------------- packed rows


def int_stream(rng, rows, cols, bits, scale):
    q = laplace_int(rng, rows * cols, scale, bits).reshape(rows, cols).astype(np.int8)
    return q, _C.rans_x32_encode((q.astype(np.int16) + 128).astype(np.uint8).ravel())


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7, 8])
def test_rows_equal_decode_then_pack(isa, bits):
    rng = np.random.default_rng(bits)
    shapes = [(3, 1), (2, 5), (7, 31), (4, 32), (5, 33), (9, 64), (3, 100), (40, 512), (5, 1536), (1, 40000),
              (0, 7), (6, 0)]
    jobs, want = [], []
    for rows, cols in shapes:
        q, stream = int_stream(rng, rows, cols, bits, 2.0 ** (bits - 2))
        jobs.append((stream, rows, cols, bits))
        want.append(_C.qpack_rows(q, bits))
    for threads in (1, 3):
        for (r, c), g, w in zip(shapes, _C.rans_x32_decode_rows(jobs, threads=threads), want):
            assert not isinstance(g, str), g
            assert g.shape == w.shape and np.array_equal(g, w), (r, c)


def test_rows_interleave_streams_of_different_lengths(isa):
    rng = np.random.default_rng(11)
    cases = [(rows, 512, bits) for rows, bits in
             zip((30, 31, 33, 40, 64, 17, 50, 45, 29, 61, 2), (6, 5, 7, 6, 8, 4, 6, 6, 3, 6, 6))]
    jobs, want = [], []
    for rows, cols, bits in cases:
        q, stream = int_stream(rng, rows, cols, bits, 2.0 ** (bits - 2))
        jobs.append((stream, rows, cols, bits))
        want.append(_C.qpack_rows(q, bits))
    for g, w in zip(_C.rans_x32_decode_rows(jobs), want):
        assert not isinstance(g, str), g
        assert np.array_equal(g, w)


def test_rows_report_each_broken_stream_and_decode_the_rest(isa):
    rng = np.random.default_rng(3)
    good = [int_stream(rng, 64, 256, 6, 6.0) for _ in range(5)]
    s0 = good[0][1]
    trunc, flipped = s0[:-2], s0[:-9] + bytes([s0[-9] ^ 0x10]) + s0[-8:]
    jobs = [(good[1][1], 64, 256, 6), (trunc, 64, 256, 6), (good[2][1], 64, 256, 6), (flipped, 64, 256, 6),
            (s0, 64, 255, 6), (good[3][1], 64, 256, 6)]
    res = _C.rans_x32_decode_rows(jobs)
    for k, idx in ((0, 1), (2, 2), (5, 3)):
        assert np.array_equal(res[k], _C.qpack_rows(good[idx][0], 6))
    for k, data, count in ((1, trunc, 64 * 256), (3, flipped, 64 * 256), (4, s0, 64 * 255)):
        assert isinstance(res[k], str) and res[k].startswith("rANS stream: ")
        with pytest.raises(ValueError) as e:
            _C.rans_x32_decode(data, count)
        assert str(e.value) == res[k]


def test_rows_reject_symbols_outside_the_bit_width(isa):
    q = np.full((4, 40), 5, np.int8)
    q[2, 3] = 40  # needs 7 bits
    stream = _C.rans_x32_encode((q.astype(np.int16) + 128).astype(np.uint8).ravel())
    [msg] = _C.rans_x32_decode_rows([(stream, 4, 40, 6)])
    assert msg == "rans_x32 stream decodes symbols outside the 6-bit range [S9]"
    [ok] = _C.rans_x32_decode_rows([(stream, 4, 40, 7)])
    assert np.array_equal(ok, _C.qpack_rows(q, 7))


def test_rows_argument_errors():
    with pytest.raises(ValueError, match="threads"):
        _C.rans_x32_decode_rows([], threads=0)
    with pytest.raises(ValueError, match="bits must be 2..8"):
        _C.rans_x32_decode_rows([(b"\x00", 0, 0, 9)])
    with pytest.raises(ValueError, match="2\\^40"):
        _C.rans_x32_decode_rows([(b"\x00", 2**30, 2**30, 6)])
    assert _C.rans_x32_decode_rows([]) == []


# ----------------------------------------------------------------------------- the writer's opt-in


def golden_plan(big: bool = False):
    """Int streams of several widths and sizes with their fp16 scales (the default-output golden);
    big: two more tensors large enough that rans_x32's 128-byte state flush is under 0.5%."""
    rng = np.random.default_rng(19)
    out = []
    shapes = [(64, 96, 6, 6.0), (32, 64, 4, 1.5), (8, 40, 8, 20.0), (3, 5, 5, 2.0), (1, 1, 2, 1.0)]
    for k, (rows, cols, bits, scale) in enumerate(shapes + ([(256, 256, 6, 6.0), (128, 512, 4, 1.5)] if big else [])):
        q = np.clip(np.rint(rng.laplace(size=rows * cols) * scale), -(1 << (bits - 1)),
                    (1 << (bits - 1)) - 1).astype(np.int8)
        s = (rng.random(rows) + 0.5).astype(np.float16)
        out.append((f"t{k}", (rows, cols), "float32", {"kind": "int_rowscale", "bits": bits},
                    {"symbols": (StreamType("int", q.size, bits, row_len=cols), q),
                     "scales": (StreamType("float16", rows), s)}))
    return out


# sha256 of golden_plan() encoded with golfpack's own coders by the commit before rans_x32 existed
# (a553f3e, /work/venv): the default writer must keep producing exactly these bytes.
DEFAULT_GOLDEN = (7103, "1d09b01392b567a6bcef46d28452bdcea02a6ee9dbcdbb693549fb03f00c9306")


def _artifact(tensors):
    return build_artifact(tensors, config={"d": 4}, manifest_coding=MANIFEST_RAW)


def test_default_output_is_unchanged():
    assert "rans_x32" not in CODERS
    data = _artifact(encode_plan(golden_plan(), ("raw", "rans", "rans_rc"), jobs=1))
    assert (len(data), hashlib.sha256(data).hexdigest()) == DEFAULT_GOLDEN


def test_fast_decode_takes_rans_x32_within_the_slack_and_decodes_the_same():
    plain = parse_artifact(_artifact(encode_plan(golden_plan(True), CODERS, jobs=1)))
    fast = parse_artifact(_artifact(encode_plan(golden_plan(True), CODERS, jobs=1, fast_decode=True)))
    used = {}
    for name, t in fast.tensors.items():
        s, p = t.streams["symbols"], plain.tensors[name].streams["symbols"]
        used[name] = s.coder
        if s.coder == "rans_x32":
            assert s.length <= p.length * 1.005
        else:  # refused: more than 0.5% larger than the smallest
            x32 = encode_stream(t.symbols(), StreamType("int", s.type.count, s.type.bits), "rans_x32")
            assert len(x32) > p.length * 1.005 and s.coder == p.coder
        assert np.array_equal(t.symbols(), plain.tensors[name].symbols())
        assert t.streams["scales"].coder == plain.tensors[name].streams["scales"].coder  # floats untouched
    assert used["t5"] == used["t6"] == "rans_x32" and used["t4"] != "rans_x32", used
    x32 = [t for t in fast.tensors.values() if t.streams["symbols"].coder == "rans_x32"]
    for t, rows in zip(x32, packed_rows(x32)):
        assert np.array_equal(rows, _C.qpack_rows(t.symbols().reshape(t.shape), t.streams["symbols"].type.bits))


def test_best_encoding_fast_decode_only_touches_int_streams():
    f = np.random.default_rng(0).standard_normal(5000).astype(np.float32)
    assert best_encoding(f, StreamType("float32", f.size), CODERS, fast_decode=True) == \
        best_encoding(f, StreamType("float32", f.size), CODERS)
    q = laplace_int(np.random.default_rng(1), 50_000, 4.0, 6).astype(np.int8)
    stq = StreamType("int", q.size, 6, row_len=500)
    coder, tf, data = best_encoding(q, stq, CODERS, fast_decode=True)
    assert coder == "rans_x32" and np.array_equal(decode_stream(data, stq, coder, tf), q)


@pytest.fixture(scope="module")
def tiny_src(tmp_path_factory):
    from planner_standin import save_safetensors, tiny_model

    # model_dim 128: the MLP linears hold 64 Ki symbols, where rans_x32's 128-byte state flush
    # is under the 0.5% slack (the default tiny model's 2 Ki-symbol linears would never take it)
    return save_safetensors(tiny_model(0, model_dim=128, vocab_size=128), tmp_path_factory.mktemp("x32") / "tiny.safetensors")


def _gp(capsys, *args):
    from golfpack.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


ENC = ["--bits", "6", "--method", "rtn", "--calib", "none", "--min-numel", "256", "--quiet", "--jobs", "1"]


def test_cli_fast_decode_and_export_recodes_it(tiny_src, tmp_path, capsys, one_torch_thread):
    from golfpack.codec.container import read_artifact
    from golfpack.export.needs import RUNTIME_CODERS
    from golfpack.export.record import shippable

    rc, out, err = _gp(capsys, "encode", tiny_src, "-o", tmp_path / "plain.gp", *ENC, "--json")
    assert rc == 0, err
    rc, out, err = _gp(capsys, "encode", tiny_src, "-o", tmp_path / "fast.gp", *ENC, "--fast-decode", "--json")
    assert rc == 0, err
    rep = json.loads(out)
    assert rep["coders"].get("rans_x32", 0) > 0, rep["coders"]
    plain, fast = read_artifact(tmp_path / "plain.gp"), read_artifact(tmp_path / "fast.gp")
    assert fast.file_bytes <= plain.file_bytes * 1.005
    for name, t in plain.tensors.items():
        assert torch_equal(t.dequantize(), fast.tensors[name].dequantize()), name
    # the exported script decodes raw, rans and rans_rc only: export re-codes rans_x32 streams
    shipped = parse_artifact(shippable((tmp_path / "fast.gp").read_bytes()))
    assert {s.coder for t in shipped.tensors.values() for s in t.streams.values()} <= set(RUNTIME_CODERS)
    for name, t in shipped.tensors.items():
        assert torch_equal(t.dequantize(), fast.tensors[name].dequantize()), name


def torch_equal(a, b) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and bool((a == b).all())


def test_cli_fast_decode_with_code_bytes_auto_is_one_clear_error(tiny_src, tmp_path, capsys):
    rc, out, err = _gp(capsys, "encode", tiny_src, "-o", tmp_path / "x.gp", *ENC, "--fast-decode",
                       "--budget", "12000", "--code-bytes", "auto")
    assert rc == 2
    assert err.strip().count("\n") == 0 and "--fast-decode" in err, err
    assert not (tmp_path / "x.gp").exists()

"""Fast rANS decode (issue 8): the AVX2 loop, the scalar loop and the pure-Python reference agree.

Every check runs once per inner loop this CPU has ('scalar' always, 'avx2' and 'avx512' when
available), forced with golfpack._C.rans_set_isa, so an AVX-512 machine tests all three. Also: the fused
rans_decode_rows (several streams interleaved, decoded straight into the packed row layout)
against rans_decode + qpack_rows, and hostile streams giving the same clean errors.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from golfpack import _C
from tests.test_rans import laplace_int, py_decode, to_u

ISAS = ["scalar"] + (["avx2"] if _C.rans_cpu_has_avx2() else []) + (["avx512"] if _C.rans_cpu_has_avx512() else [])


@pytest.fixture(params=ISAS)
def isa(request):
    prev = _C.rans_set_isa(request.param)
    assert _C.rans_isa() == request.param
    yield request.param
    _C.rans_set_isa(prev)


def tables(rng, n):
    """Symbol sets with dense, sparse, two-symbol, one-symbol and full-alphabet tables."""
    yield "laplace6", to_u(laplace_int(rng, n, 4.0, 6))
    yield "sparse", rng.choice(np.array([3, 40, 41, 200, 255], np.uint8), n, p=[0.5, 0.2, 0.1, 0.1, 0.1])
    yield "two", rng.choice(np.array([7, 9], np.uint8), n, p=[0.97, 0.03])
    yield "one", np.full(n, 77, np.uint8)
    yield "all256", rng.integers(0, 256, n, dtype=np.uint8)


@pytest.mark.parametrize("lanes", [1, 2, 4, 8])
@pytest.mark.parametrize("precision", [12, 13, 14, 15])
def test_all_paths_agree(isa, lanes, precision):
    rng = np.random.default_rng(lanes * 100 + precision)
    for n in (1, 5, 8, 9, 31, 64, 333, 4099):
        for name, sym in tables(rng, n):
            stream = _C.rans_encode(sym, precision, lanes)
            fast = _C.rans_decode(stream, n)
            assert np.array_equal(fast, sym), (name, n)
            assert np.array_equal(_C.rans_decode_ref(stream, n), sym)
            if n <= 333:
                assert py_decode(stream, n) == sym.tolist()


def test_long_stream_crosses_the_unchecked_loop(isa):
    """Long enough that almost everything runs in the unchecked (SIMD) loop; both ends checked."""
    rng = np.random.default_rng(1)
    sym = to_u(laplace_int(rng, 300_001, 5.0, 6))
    for lanes in (4, 8):
        stream = _C.rans_encode(sym, 0, lanes)
        assert np.array_equal(_C.rans_decode(stream, sym.size), sym)


def test_isa_switch_is_checked():
    with pytest.raises(ValueError, match="'auto', 'scalar', 'avx2' or 'avx512'"):
        _C.rans_set_isa("sse9")
    if not _C.rans_cpu_has_avx2():
        with pytest.raises(ValueError, match="no AVX2"):
            _C.rans_set_isa("avx2")
    if not _C.rans_cpu_has_avx512():
        with pytest.raises(ValueError, match="no AVX-512"):
            _C.rans_set_isa("avx512")
    prev = _C.rans_set_isa("auto")
    try:  # auto is a SIMD loop the CPU has (AVX-512 only on Intel, where it was measured faster)
        if not _C.rans_cpu_has_avx2():
            assert _C.rans_isa() == "scalar"
        elif not _C.rans_cpu_has_avx512():
            assert _C.rans_isa() == "avx2"
        else:
            assert _C.rans_isa() in ("avx2", "avx512")
        assert _C.rans_set_isa("scalar") == "auto" and _C.rans_isa() == "scalar"
    finally:
        _C.rans_set_isa(prev)


def small_stream(lanes=8, n=300):
    rng = np.random.default_rng(5)
    symbols = to_u(laplace_int(rng, n, 3.0, 6))
    return symbols, _C.rans_encode(symbols, 13, lanes)


@pytest.mark.parametrize("lanes", [4, 8])
def test_byte_changes_give_the_same_clean_errors(isa, lanes):
    """Each single-byte change (a sample of values per position) is rejected by the fast decoder
    exactly as by the reference decoder: same ValueError message."""
    symbols, stream = small_stream(lanes, 2000)
    n = len(symbols)
    for pos in range(len(stream)):
        for v in (stream[pos] ^ 0x01, stream[pos] ^ 0x80, (stream[pos] + 77) & 0xFF):
            bad = stream[:pos] + bytes([v]) + stream[pos + 1:]
            msgs = []
            for fn in (_C.rans_decode, _C.rans_decode_ref):
                with pytest.raises(ValueError) as e:
                    fn(bad, n)
                msgs.append(str(e.value))
            assert msgs[0] == msgs[1] and msgs[0].startswith("rANS stream: ")


def test_truncation_and_trailing_bytes(isa):
    symbols, stream = small_stream(8, 2000)
    for cut in range(0, len(stream), 7):
        with pytest.raises(ValueError, match="^rANS stream: "):
            _C.rans_decode(stream[:cut], len(symbols))
    with pytest.raises(ValueError, match="rANS stream: .*unread"):
        _C.rans_decode(stream + b"\x00" * 32, len(symbols))


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_round_trip_property(data):
    n = data.draw(st.integers(0, 3000))
    alphabet = data.draw(st.integers(1, 256))
    lanes = data.draw(st.sampled_from([0, 1, 2, 4, 8]))
    precision = data.draw(st.sampled_from([0, 12, 13, 14, 15]))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    sym = (rng.zipf(1.3, n) % alphabet).astype(np.uint8) if n else np.zeros(0, np.uint8)
    stream = _C.rans_encode(sym, precision, lanes)
    for isa in ISAS:
        prev = _C.rans_set_isa(isa)
        try:
            assert np.array_equal(_C.rans_decode(stream, n), sym)
            [rows] = _C.rans_decode_rows([(stream, 1, n, 8)])
            assert np.array_equal(rows[0, :n], (sym ^ 0x80))
        finally:
            _C.rans_set_isa(prev)


# ---------------------------------------------------------------------------- fused rows


def int_stream(rng, rows, cols, bits, scale):
    q = laplace_int(rng, rows * cols, scale, bits).reshape(rows, cols).astype(np.int8)
    return q, _C.rans_encode((q.astype(np.int16) + 128).astype(np.uint8).ravel(), 0, 0)


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7, 8])
def test_rows_equal_decode_then_pack(isa, bits):
    rng = np.random.default_rng(bits)
    shapes = [(3, 1), (2, 5), (7, 31), (4, 32), (5, 33), (9, 64), (3, 100), (40, 512), (5, 1536),
              (1, 40000), (0, 7), (6, 0)]
    jobs, want = [], []
    for rows, cols in shapes:
        q, stream = int_stream(rng, rows, cols, bits, 2.0 ** (bits - 2))
        jobs.append((stream, rows, cols, bits))
        want.append(_C.qpack_rows(q, bits))
    for threads in (1, 3):
        got = _C.rans_decode_rows(jobs, threads=threads)
        for (r, c), g, w in zip(shapes, got, want):
            assert not isinstance(g, str), g
            assert g.shape == w.shape and np.array_equal(g, w), (r, c)


def test_rows_interleave_up_to_eight_streams_of_different_lengths(isa):
    # More 8-lane streams than one SIMD loop takes (AVX2: 4, AVX-512: 8), of different lengths
    # and widths, so that groups form, shrink as streams end, and mix kernel and checked steps.
    rng = np.random.default_rng(11)
    cases = [(rows, 512, bits) for rows, bits in
             zip((30, 31, 33, 40, 64, 17, 50, 45, 29, 61, 2), (6, 5, 7, 6, 8, 4, 6, 6, 3, 6, 6))]
    jobs, want = [], []
    for rows, cols, bits in cases:
        q = laplace_int(rng, rows * cols, 2.0 ** (bits - 2), bits).reshape(rows, cols).astype(np.int8)
        stream = _C.rans_encode((q.astype(np.int16) + 128).astype(np.uint8).ravel(), 0, 8)
        jobs.append((stream, rows, cols, bits))
        want.append(_C.qpack_rows(q, bits))
    for threads in (1, 2):
        for g, w in zip(_C.rans_decode_rows(jobs, threads=threads), want):
            assert not isinstance(g, str), g
            assert np.array_equal(g, w)


def test_rows_report_each_broken_stream_and_decode_the_rest(isa):
    rng = np.random.default_rng(3)
    good, bad = [], []
    for k in range(6):
        q, stream = int_stream(rng, 64, 256, 6, 6.0)
        good.append((q, stream))
    q0, s0 = good[0]
    trunc = s0[:-4]
    flipped = s0[:-9] + bytes([s0[-9] ^ 0x10]) + s0[-8:]
    jobs = [(good[1][1], 64, 256, 6), (trunc, 64, 256, 6), (good[2][1], 64, 256, 6),
            (flipped, 64, 256, 6), (s0, 64, 255, 6), (good[3][1], 64, 256, 6)]
    res = _C.rans_decode_rows(jobs)
    for k, idx in ((0, 1), (2, 2), (5, 3)):
        assert np.array_equal(res[k], _C.qpack_rows(good[idx][0], 6))
    for k, data, count in ((1, trunc, 64 * 256), (3, flipped, 64 * 256), (4, s0, 64 * 255)):
        assert isinstance(res[k], str) and res[k].startswith("rANS stream: ")
        with pytest.raises(ValueError) as e:
            _C.rans_decode(data, count)
        assert str(e.value) == res[k]  # the same message as the plain decoder


def test_rows_reject_symbols_outside_the_bit_width(isa):
    q = np.full((4, 10), 5, np.int8)
    q[2, 3] = 40  # needs 7 bits
    stream = _C.rans_encode((q.astype(np.int16) + 128).astype(np.uint8).ravel(), 0, 0)
    [msg] = _C.rans_decode_rows([(stream, 4, 10, 6)])
    assert msg == "rans stream decodes symbols outside the 6-bit range [S9]"
    [ok] = _C.rans_decode_rows([(stream, 4, 10, 7)])
    assert np.array_equal(ok, _C.qpack_rows(q, 7))


def test_rows_argument_errors():
    with pytest.raises(ValueError, match="threads"):
        _C.rans_decode_rows([], threads=0)
    with pytest.raises(ValueError, match="bits must be 2..8"):
        _C.rans_decode_rows([(b"\x00", 0, 0, 9)])
    with pytest.raises(ValueError, match="2\\^40"):
        _C.rans_decode_rows([(b"\x00", 2**30, 2**30, 6)])
    with pytest.raises(TypeError, match="rANS stream"):
        _C.rans_decode_rows([(np.zeros(3, np.float32), 1, 3, 6)])
    assert _C.rans_decode_rows([]) == []


# ---------------------------------------------------------------------------- crc32


def test_crc32_matches_zlib():
    """golfpack._C.crc32 (PCLMULQDQ folding when available) == zlib.crc32: every length around
    the 16/64-byte fold boundaries, chained values, memoryview input."""
    import zlib

    rng = np.random.default_rng(9)
    for n in list(range(0, 200)) + [255, 256, 1000, 4096, 65537, (1 << 20) + 5]:
        b = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        for v in (0, 1, 0xDEADBEEF, 0xFFFFFFFF):
            assert _C.crc32(b, v) == zlib.crc32(b, v), (n, v)
    b = rng.integers(0, 256, 10_000, dtype=np.uint8).tobytes()
    assert _C.crc32(memoryview(b)[3:9000]) == zlib.crc32(b[3:9000])
    assert _C.crc32(b[5000:], _C.crc32(b[:5000])) == zlib.crc32(b)
    with pytest.raises(TypeError):
        _C.crc32(np.zeros(4, np.float32))

"""golfpack._C bit-packing: layout (golden vectors), fast == reference, round trips, errors.

Layout under test (csrc/core/bitpack.h): symbol i is stored as s & (2^b-1) in stream bits
[i*b, (i+1)*b), LSB first; stream bit k is bit k%8 of byte k//8; unused tail bits zero.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from golfpack import _C

WIDTHS = range(2, 9)
# Group sizes of the fast paths (2/byte, 8<->5 bytes, 4<->3 and 8<->6 bytes) and the
# 64-bit SWAR loads (8 input bytes): lengths around their multiples hit every tail.
BOUNDARY_LENGTHS = sorted({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 16, 17, 23, 24, 25,
                           31, 32, 33, 39, 40, 41, 47, 48, 49, 63, 64, 65, 127, 128, 129})


def sym_range(b):
    return -(1 << (b - 1)), (1 << (b - 1)) - 1


def random_symbols(rng, n, b):
    lo, hi = sym_range(b)
    return rng.integers(lo, hi + 1, size=n, dtype=np.int64).astype(np.int8)


# Hand-computed: stored value u = s mod 2^b, then sum(u_i << (i*b)) written little-endian.
GOLDEN = [
    # b=2: u = [1,3,0,2,1] -> 1 | 3<<2 | 0<<4 | 2<<6 = 0x8D, then 0x01
    (2, [1, -1, 0, -2, 1], b"\x8d\x01"),
    # b=3: u = [3,4,7] -> 3 | 4<<3 | 7<<6 = 0x1E3 -> E3 01 (9 bits, 7 unused zero bits)
    (3, [3, -4, -1], b"\xe3\x01"),
    # b=4: u = [7,8,15,0,5] -> 0x87, 0x0F, 0x05 (low nibble first)
    (4, [7, -8, -1, 0, 5], b"\x87\x0f\x05"),
    # b=5: u = [15,16,31,1] -> 15 | 16<<5 | 31<<10 | 1<<15 = 0xFE0F -> 0F FE 00
    (5, [15, -16, -1, 1], b"\x0f\xfe\x00"),
    # b=5, one full fast-path group: eight -1 -> 40 one-bits
    (5, [-1] * 8, b"\xff" * 5),
    # b=5, 8 symbols, only symbol 1 (bits 5..9) and symbol 7 (bits 35..39) set to 1
    (5, [0, 1, 0, 0, 0, 0, 0, 1], b"\x20\x00\x00\x00\x08"),
    # b=6: u = [31,32,63,1] -> 31 | 32<<6 | 63<<12 | 1<<18 = 0x07F81F -> 1F F8 07
    (6, [31, -32, -1, 1], b"\x1f\xf8\x07"),
    # b=6, 8 symbols (SWAR group): 1 at symbols 0 and 4 -> bits 0 and 24
    (6, [1, 0, 0, 0, 1, 0, 0, 0], b"\x01\x00\x00\x01\x00\x00"),
    # b=7: u = [63,64,127] -> 63 | 64<<7 | 127<<14 = 0x1FE03F -> 3F E0 1F
    (7, [63, -64, -1], b"\x3f\xe0\x1f"),
    # b=8: plain two's complement bytes
    (8, [127, -128, -1, 0], b"\x7f\x80\xff\x00"),
]


@pytest.mark.parametrize("bits,symbols,packed", GOLDEN)
def test_golden_vectors(bits, symbols, packed):
    s = np.array(symbols, dtype=np.int8)
    assert _C.pack_bits(s, bits).tobytes() == packed
    assert _C.pack_bits_ref(s, bits).tobytes() == packed
    assert _C.unpack_bits(packed, bits, len(symbols)).tolist() == symbols
    assert _C.unpack_bits_ref(packed, bits, len(symbols)).tolist() == symbols


@pytest.mark.parametrize("bits", WIDTHS)
@pytest.mark.parametrize("n", BOUNDARY_LENGTHS)
def test_boundary_lengths_round_trip(bits, n):
    rng = np.random.default_rng(1000 * bits + n)
    s = random_symbols(rng, n, bits)
    packed = _C.pack_bits(s, bits)
    assert packed.dtype == np.uint8 and packed.shape == ((n * bits + 7) // 8,)
    assert packed.tobytes() == _C.pack_bits_ref(s, bits).tobytes()
    if n * bits % 8:
        assert packed[-1] >> (n * bits % 8) == 0, "unused tail bits must be zero"
    out = _C.unpack_bits(packed, bits, n)
    assert out.dtype == np.int8
    np.testing.assert_array_equal(out, s)
    np.testing.assert_array_equal(_C.unpack_bits_ref(packed, bits, n), s)


@pytest.mark.parametrize("bits", WIDTHS)
def test_extreme_values(bits):
    lo, hi = sym_range(bits)
    s = np.array([lo, hi] * 37 + [lo], dtype=np.int8)
    packed = _C.pack_bits(s, bits)
    assert packed.tobytes() == _C.pack_bits_ref(s, bits).tobytes()
    np.testing.assert_array_equal(_C.unpack_bits(packed, bits, len(s)), s)


length = st.one_of(st.integers(0, 300), st.sampled_from(BOUNDARY_LENGTHS),
                   st.integers(0, 100_000))


@given(bits=st.integers(2, 8), n=length, seed=st.integers(0, 2**32 - 1))
def test_round_trip_and_fast_equals_reference(bits, n, seed):
    rng = np.random.default_rng(seed)
    s = random_symbols(rng, n, bits)
    packed = _C.pack_bits(s, bits)
    assert packed.tobytes() == _C.pack_bits_ref(s, bits).tobytes()
    np.testing.assert_array_equal(_C.unpack_bits(packed, bits, n), s)


@given(bits=st.integers(2, 8), data=st.binary(max_size=400), extra=st.integers(0, 3))
def test_unpack_arbitrary_bytes_fast_equals_reference(bits, data, extra):
    """Any byte string unpacks identically on both paths (nonzero tail bits ignored)."""
    count = max(0, len(data) * 8 // bits - extra)
    fast = _C.unpack_bits(data, bits, count)
    ref = _C.unpack_bits_ref(data, bits, count)
    np.testing.assert_array_equal(fast, ref)
    # Re-packing gives the input prefix with unused tail bits cleared.
    repacked = _C.pack_bits(fast, bits).tobytes()
    nbytes = (count * bits + 7) // 8
    assert repacked[: count * bits // 8] == data[: count * bits // 8]
    if count * bits % 8:
        keep = (1 << (count * bits % 8)) - 1
        assert repacked[nbytes - 1] == data[nbytes - 1] & keep


def test_accepts_strided_and_buffer_inputs():
    s = np.arange(-16, 16, dtype=np.int8)
    strided = np.repeat(s, 2)[::2]
    assert not strided.flags.c_contiguous
    packed = _C.pack_bits(strided, 6)
    assert packed.tobytes() == _C.pack_bits(s, 6).tobytes()
    for buf in (packed, packed.tobytes(), bytearray(packed.tobytes()), memoryview(packed)):
        np.testing.assert_array_equal(_C.unpack_bits(buf, 6, len(s)), s)


def test_unpack_ignores_extra_bytes():
    s = np.array([1, -2, 3], dtype=np.int8)
    packed = _C.pack_bits(s, 4).tobytes() + b"\xff\xff"
    np.testing.assert_array_equal(_C.unpack_bits(packed, 4, 3), s)


@pytest.mark.parametrize("bits", range(2, 8))
def test_out_of_range_symbol_names_index_and_value(bits):
    lo, hi = sym_range(bits)
    s = np.zeros(5000, dtype=np.int8)
    s[4321] = hi + 1
    s[4500] = lo - 1
    for fn in (_C.pack_bits, _C.pack_bits_ref):
        with pytest.raises(ValueError, match=rf"symbol {hi + 1} at index 4321 .* {bits} bits"):
            fn(s, bits)
    s[4321] = 0
    with pytest.raises(ValueError, match=rf"symbol {lo - 1} at index 4500"):
        _C.pack_bits(s, bits)


@pytest.mark.parametrize("bits", [-1, 0, 1, 9, 16])
def test_bad_widths(bits):
    with pytest.raises(ValueError, match="bits must be in 2..8"):
        _C.pack_bits(np.zeros(3, np.int8), bits)
    with pytest.raises(ValueError, match="bits must be in 2..8"):
        _C.unpack_bits(b"\x00" * 8, bits, 3)


@pytest.mark.parametrize("bits", WIDTHS)
def test_short_buffer_and_bad_count(bits):
    n = 41
    need = (n * bits + 7) // 8
    packed = _C.pack_bits(np.zeros(n, np.int8), bits).tobytes()
    for fn in (_C.unpack_bits, _C.unpack_bits_ref):
        with pytest.raises(ValueError, match=f"need {need} bytes, got {need - 1}"):
            fn(packed[:-1], bits, n)
        with pytest.raises(ValueError, match="count must be >= 0"):
            fn(packed, bits, -1)
        with pytest.raises(ValueError, match="too short"):
            fn(b"", bits, 2**50)
    with pytest.raises(ValueError, match="maximum"):
        _C.unpack_bits(packed, bits, 2**62)


def test_wrong_types():
    with pytest.raises(TypeError, match="int8"):
        _C.pack_bits(np.zeros(4, np.int16), 4)
    with pytest.raises(TypeError, match="int8"):
        _C.pack_bits([1, 2, 3], 4)
    with pytest.raises(ValueError, match="1-D"):
        _C.pack_bits(np.zeros((2, 2), np.int8), 4)
    with pytest.raises(TypeError, match="uint8 array"):
        _C.unpack_bits(np.zeros(4, np.uint16), 4, 2)
    with pytest.raises(TypeError):
        _C.unpack_bits("abc", 4, 2)

"""Native packed dequant-matmul (golfpack._C.qgemm_f32 and friends) against float64 references."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

C = pytest.importorskip("golfpack._C")

ALL_BITS = list(range(2, 9))


def stride_of(K, bits):
    return ((K * bits + 7) // 8 + 15) // 16 * 16


def rand_problem(rng, bits, N, K):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    q = rng.integers(lo, hi + 1, size=(N, K)).astype(np.int8)
    s = (rng.random(N) * 0.2 + 0.01).astype(np.float32)
    return q, s, C.qpack_rows(q, bits)


def dense64(q, s):
    return q.astype(np.float64) * s.astype(np.float64)[:, None]


def rel_err(got, ref):
    """Max abs error relative to the largest reference magnitude (0 for empty)."""
    if ref.size == 0:
        return 0.0
    return float(np.abs(got.astype(np.float64) - ref).max() / max(np.abs(ref).max(), 1e-30))


def pack_python(q, bits):
    """Independent bit-by-bit packer: symbol k at bits [k*b, (k+1)*b) LSB-first, rows padded to 16 B."""
    N, K = q.shape
    out = np.zeros((N, stride_of(K, bits)), np.uint8)
    for n in range(N):
        for k in range(K):
            v = int(q[n, k]) & ((1 << bits) - 1)
            for i in range(bits):
                if v >> i & 1:
                    bit = k * bits + i
                    out[n, bit // 8] |= 1 << (bit % 8)
    return out


@pytest.mark.parametrize("bits", ALL_BITS)
def test_stride_and_bit_layout(bits):
    rng = np.random.default_rng(bits)
    for K in (0, 1, 7, 8, 33, 130):
        assert C.qrow_stride(K, bits) == stride_of(K, bits)
        assert C.qrow_stride(K, bits) % C.QMATMUL_ROW_ALIGN == 0
        q, _, packed = rand_problem(rng, bits, 3, K)
        assert np.array_equal(packed, pack_python(q, bits))
        assert np.array_equal(C.qunpack_rows(packed, bits, K), q)


# (N, K): odd sizes, tile remainders, K > 256 (several K chunks), N > 256 (several
# N chunks in the transposed kernel), and rows whose data ends flush with the
# 16-byte stride (2b*K/16 = 16k bytes) so the bounded tail loads are exercised.
SHAPES = [(1, 1), (17, 33), (40, 257), (33, 300), (5, 600), (300, 19), (16, 16), (24, 64), (9, 128)]


@pytest.mark.parametrize("bits", ALL_BITS)
@pytest.mark.parametrize("M", [0, 1, 3, 17, 130])
def test_qgemm_and_transpose_match_float64(bits, M):
    rng = np.random.default_rng(1000 * bits + M)
    for N, K in SHAPES:
        q, s, packed = rand_problem(rng, bits, N, K)
        W = dense64(q, s)
        x = rng.standard_normal((M, K)).astype(np.float32)
        y = C.qgemm_f32(x, packed, s, bits, K)
        assert y.shape == (M, N) and y.dtype == np.float32
        assert rel_err(y, x.astype(np.float64) @ W.T) < 1e-5, (N, K)
        gy = rng.standard_normal((M, N)).astype(np.float32)
        gx = C.qgemm_t_f32(gy, packed, s, bits, K)
        assert gx.shape == (M, K)
        assert rel_err(gx, gy.astype(np.float64) @ W) < 1e-5, (N, K)


@pytest.mark.parametrize("bits", [3, 4, 8])
def test_native_matches_scalar_reference(bits):
    rng = np.random.default_rng(bits)
    for M, N, K in [(7, 17, 33), (300, 20, 21), (2, 3, 513)]:
        q, s, packed = rand_problem(rng, bits, N, K)
        x = rng.standard_normal((M, K)).astype(np.float32)
        gy = rng.standard_normal((M, N)).astype(np.float32)
        ref = C.qgemm_f32_ref(x, packed, s, bits, K)
        assert rel_err(C.qgemm_f32(x, packed, s, bits, K), ref.astype(np.float64)) < 1e-5
        assert rel_err(ref, x.astype(np.float64) @ dense64(q, s).T) < 1e-6
        reft = C.qgemm_t_f32_ref(gy, packed, s, bits, K)
        assert rel_err(C.qgemm_t_f32(gy, packed, s, bits, K), reft.astype(np.float64)) < 1e-5


def test_threads_are_bitwise_deterministic_and_out_is_used():
    rng = np.random.default_rng(3)
    q, s, packed = rand_problem(rng, 5, 70, 300)
    x = rng.standard_normal((600, 300)).astype(np.float32)
    y1 = C.qgemm_f32(x, packed, s, 5, 300, threads=1)
    out = np.full((600, 70), np.nan, np.float32)
    y2 = C.qgemm_f32(x, packed, s, 5, 300, out=out, threads=2)
    assert y2 is out or np.shares_memory(y2, out)
    assert np.array_equal(y1, out)
    gy = rng.standard_normal((600, 70)).astype(np.float32)
    assert np.array_equal(C.qgemm_t_f32(gy, packed, s, 5, 300, threads=1),
                          C.qgemm_t_f32(gy, packed, s, 5, 300, threads=2))


@pytest.mark.parametrize("bits", ALL_BITS)
def test_padding_content_is_ignored(bits):
    rng = np.random.default_rng(bits)
    K = 37
    q, s, packed = rand_problem(rng, bits, 20, K)
    dirty = packed.copy()
    used = (K * bits + 7) // 8
    dirty[:, used:] = 0xFF
    if K * bits % 8:  # the unused high bits of the last data byte
        dirty[:, used - 1] |= (0xFF << (K * bits % 8)) & 0xFF
    x = rng.standard_normal((9, K)).astype(np.float32)
    gy = rng.standard_normal((9, 20)).astype(np.float32)
    assert np.array_equal(C.qgemm_f32(x, packed, s, bits, K), C.qgemm_f32(x, dirty, s, bits, K))
    assert np.array_equal(C.qgemm_t_f32(gy, packed, s, bits, K), C.qgemm_t_f32(gy, dirty, s, bits, K))
    assert np.array_equal(C.dequant_rows(packed, s, bits, K, 0, 20), C.dequant_rows(dirty, s, bits, K, 0, 20))


@pytest.mark.parametrize("bits", ALL_BITS)
def test_dequant_rows(bits):
    rng = np.random.default_rng(bits)
    for N, K in [(1, 1), (19, 33), (40, 64), (7, 300)]:
        q, s, packed = rand_problem(rng, bits, N, K)
        W = dense64(q, s).astype(np.float32)
        assert np.array_equal(C.dequant_rows(packed, s, bits, K, 0, N), W)
        b, e = N // 3, N - N // 4
        out = np.empty((e - b, K), np.float32)
        C.dequant_rows(packed, s, bits, K, b, e, out=out)
        assert np.array_equal(out, W[b:e])
        assert C.dequant_rows(packed, s, bits, K, 2 if N > 2 else 0, 2 if N > 2 else 0).shape == (0, K)


def test_zero_sizes():
    rng = np.random.default_rng(0)
    q, s, packed = rand_problem(rng, 4, 5, 0)
    assert packed.shape == (5, 0)
    y = C.qgemm_f32(np.zeros((3, 0), np.float32), packed, s, 4, 0)
    assert y.shape == (3, 5) and not y.any()
    assert C.qgemm_t_f32(np.ones((3, 5), np.float32), packed, s, 4, 0).shape == (3, 0)
    q, s, packed = rand_problem(rng, 4, 0, 9)
    assert C.qgemm_f32(np.ones((3, 9), np.float32), packed, s, 4, 9).shape == (3, 0)
    gx = C.qgemm_t_f32(np.ones((3, 0), np.float32), packed, s, 4, 9)
    assert gx.shape == (3, 9) and not gx.any()


@settings(deadline=None)
@given(bits=st.integers(2, 8), M=st.integers(0, 20), N=st.integers(0, 40), K=st.integers(0, 90),
       seed=st.integers(0, 2**32 - 1))
def test_random_shapes_property(bits, M, N, K, seed):
    rng = np.random.default_rng(seed)
    q, s, packed = rand_problem(rng, bits, N, K)
    W = dense64(q, s)
    x = rng.standard_normal((M, K)).astype(np.float32)
    gy = rng.standard_normal((M, N)).astype(np.float32)
    assert rel_err(C.qgemm_f32(x, packed, s, bits, K), x.astype(np.float64) @ W.T) < 1e-5
    assert rel_err(C.qgemm_t_f32(gy, packed, s, bits, K), gy.astype(np.float64) @ W) < 1e-5
    assert np.array_equal(C.qunpack_rows(packed, bits, K), q)


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(0)
    q, s, packed = rand_problem(rng, 4, 8, 10)
    x = rng.standard_normal((3, 10)).astype(np.float32)
    with pytest.raises(TypeError, match="x must have dtype float32"):
        C.qgemm_f32(x.astype(np.float64), packed, s, 4, 10)
    with pytest.raises(TypeError, match="scales must have dtype float32"):
        C.qgemm_f32(x, packed, s.astype(np.float16), 4, 10)
    with pytest.raises(TypeError, match="packed must have dtype uint8"):
        C.qgemm_f32(x, packed.view(np.int8), s, 4, 10)
    with pytest.raises(ValueError, match="bits must be in 2..8"):
        C.qgemm_f32(x, packed, s, 9, 10)
    with pytest.raises(ValueError, match="bits must be in 2..8"):
        C.qpack_rows(q, 1)
    with pytest.raises(ValueError, match="x: dimension 1"):
        C.qgemm_f32(x[:, :9].copy(), packed, s, 4, 10)
    with pytest.raises(ValueError, match="packed: dimension 1"):
        C.qgemm_f32(x, packed, s, 4, 40)  # stride does not fit K
    with pytest.raises(ValueError, match="scales: dimension 0"):
        C.qgemm_f32(x, packed, s[:7].copy(), 4, 10)
    with pytest.raises(ValueError, match="C-contiguous"):
        C.qgemm_f32(np.asfortranarray(x), packed, s, 4, 10)
    with pytest.raises(ValueError, match="dimensions"):
        C.qgemm_f32(x.reshape(3, 10, 1), packed, s, 4, 10)
    with pytest.raises(ValueError, match="out: dimension"):
        C.qgemm_f32(x, packed, s, 4, 10, out=np.empty((3, 7), np.float32))
    y = np.zeros((3, 10), np.float32)
    with pytest.raises(ValueError, match="overlap"):
        C.qgemm_f32(y, packed, s, 4, 10, out=y.reshape(-1)[:24].reshape(3, 8))
    with pytest.raises(ValueError, match="writable"):
        ro = np.zeros((3, 8), np.float32)
        ro.flags.writeable = False
        C.qgemm_f32(x, packed, s, 4, 10, out=ro)
    with pytest.raises(ValueError, match="outside"):
        C.qpack_rows(np.array([[8]], np.int8), 4)
    with pytest.raises(ValueError, match="outside"):
        C.qpack_rows(np.array([[-3]], np.int8), 2)
    with pytest.raises(ValueError, match="row range"):
        C.dequant_rows(packed, s, 4, 10, 3, 9)
    with pytest.raises(ValueError, match="row range"):
        C.dequant_rows(packed, s, 4, 10, 5, 4)
    with pytest.raises(ValueError, match="K must be >= 0"):
        C.qunpack_rows(packed, 4, -1)


@pytest.mark.parametrize("bits", ALL_BITS)
def test_small_m_fused_path_matches_scalar_reference_and_threads(bits):
    """M <= 4 runs the fused decode+FMA kernels (qmatmul_small.h) on AVX2 machines: same
    results as the scalar reference, every K % 8 / K % 16 tail, bitwise equal across threads."""
    rng = np.random.default_rng(50 + bits)
    for M in (1, 2, 3, 4, 5):
        for N, K in [(3, 8), (70, 16), (9, 23), (130, 129), (33, 300), (5, 600), (24, 64)]:
            q, s, packed = rand_problem(rng, bits, N, K)
            x = rng.standard_normal((M, K)).astype(np.float32)
            gy = rng.standard_normal((M, N)).astype(np.float32)
            W = dense64(q, s)
            y1 = C.qgemm_f32(x, packed, s, bits, K, threads=1)
            assert rel_err(y1, C.qgemm_f32_ref(x, packed, s, bits, K).astype(np.float64)) < 1e-5, (M, N, K)
            assert rel_err(y1, x.astype(np.float64) @ W.T) < 1e-5
            assert np.array_equal(y1, C.qgemm_f32(x, packed, s, bits, K, threads=2))
            g1 = C.qgemm_t_f32(gy, packed, s, bits, K, threads=1)
            assert rel_err(g1, C.qgemm_t_f32_ref(gy, packed, s, bits, K).astype(np.float64)) < 1e-5, (M, N, K)
            assert rel_err(g1, gy.astype(np.float64) @ W) < 1e-5
            assert np.array_equal(g1, C.qgemm_t_f32(gy, packed, s, bits, K, threads=2))

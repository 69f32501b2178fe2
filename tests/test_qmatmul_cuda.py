"""CUDA dequant-matmul kernels (csrc/core/cuda/qmatmul.cu); skipped without a GPU build and device."""
import pytest
import torch

C = pytest.importorskip("golfpack._C")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not (torch.cuda.is_available() and getattr(C, "with_cuda", False)),
                       reason="needs a CUDA device and golfpack._C built with CUDA"),
]

from golfpack.model.packed import PackedLinear  # noqa: E402

DTYPES = {torch.float32: ("float32", 1e-5), torch.float16: ("float16", 1e-3), torch.bfloat16: ("bfloat16", 2e-3)}
# Non-multiples of the 64x64x16 tiles and of the warp width, plus multiples.
SHAPES = [(1, 1, 1), (3, 17, 33), (16, 40, 257), (17, 65, 100), (130, 64, 64), (70, 384, 384), (5, 1000, 37)]


def norm_rel(got, ref):
    """Frobenius-norm relative error (elementwise bf16 rounding alone is up to 2^-8)."""
    ref = ref.double()
    if ref.numel() == 0:
        return 0.0
    return float((got.double() - ref).norm() / ref.norm().clamp_min(1e-30))


def stream():
    return torch.cuda.current_stream().cuda_stream


def problem(bits, N, K, seed):
    g = torch.Generator().manual_seed(seed)
    layer = PackedLinear.from_dense(torch.randn(N, K, generator=g), bits).cuda()
    return layer, layer.dequantize().double()


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7, 8])
def test_forward_kernels_match_float64(bits, dtype):
    name, tol = DTYPES[dtype]
    for i, (M, N, K) in enumerate(SHAPES):
        layer, W = problem(bits, N, K, 100 * bits + i)
        x = torch.randn(M, K, device="cuda").to(dtype)
        ref = x.double() @ W.t()
        algos = [1, 2] if M <= 16 else [1]
        for algo in algos:
            out = torch.full((M, N), float("nan"), device="cuda", dtype=dtype)
            C.qgemm_cuda(x.data_ptr(), name, M, K, layer.packed.data_ptr(), layer.packed.shape[1],
                         layer.scales.data_ptr(), bits, N, out.data_ptr(), stream(), algo)
            torch.cuda.synchronize()
            assert norm_rel(out, ref) < tol, (M, N, K, algo)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("bits", [2, 5, 8])
def test_transposed_and_dequant_match_float64(bits, dtype):
    name, tol = DTYPES[dtype]
    for i, (M, N, K) in enumerate(SHAPES):
        layer, W = problem(bits, N, K, 7 * bits + i)
        gy = torch.randn(M, N, device="cuda").to(dtype)
        gx = torch.full((M, K), float("nan"), device="cuda", dtype=dtype)
        C.qgemm_t_cuda(gy.data_ptr(), name, M, N, layer.packed.data_ptr(), layer.packed.shape[1],
                       layer.scales.data_ptr(), bits, K, gx.data_ptr(), stream())
        d = torch.empty(N - N // 2, K, device="cuda", dtype=dtype)
        C.dequant_rows_cuda(layer.packed.data_ptr(), layer.packed.shape[1], layer.scales.data_ptr(), bits, K,
                            N // 2, N, d.data_ptr(), name, stream())
        torch.cuda.synchronize()
        assert norm_rel(gx, gy.double() @ W) < tol, (M, N, K)
        assert torch.equal(d, W[N // 2:].to(dtype)), (M, N, K)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("M", [1, 9, 40, 300])
def test_packed_linear_cuda_forward_backward(dtype, M):
    _, tol = DTYPES[dtype]
    g = torch.Generator().manual_seed(M)
    A = torch.nn.Parameter((torch.randn(96, 4, generator=g) * 0.05).cuda())
    B = torch.nn.Parameter((torch.randn(4, 80, generator=g) * 0.05).cuda())
    layer = PackedLinear.from_dense(torch.randn(96, 80, generator=g), 6, lowrank_a=A, lowrank_b=B).cuda()
    W = layer.dequantize().double()
    x = torch.randn(2, M, 80, device="cuda").to(dtype).requires_grad_(True)
    y = layer(x)
    assert y.dtype == dtype and y.shape == (2, M, 96)
    assert norm_rel(y, x.double() @ W.t()) < 2 * tol
    gy = torch.randn_like(y)
    y.backward(gy)
    assert norm_rel(x.grad, gy.double() @ W) < 2 * tol
    assert A.grad is not None and B.grad is not None


def test_cuda_bad_arguments():
    layer, _ = problem(4, 8, 10, 0)
    x = torch.randn(3, 10, device="cuda")
    out = torch.empty(3, 8, device="cuda")
    with pytest.raises(ValueError, match="stride"):
        C.qgemm_cuda(x.data_ptr(), "float32", 3, 11, layer.packed.data_ptr(), layer.packed.shape[1],
                      layer.scales.data_ptr(), 4, 8, out.data_ptr(), stream(), 0)
    with pytest.raises(ValueError, match="bits"):
        C.qgemm_cuda(x.data_ptr(), "float32", 3, 10, layer.packed.data_ptr(), layer.packed.shape[1],
                     layer.scales.data_ptr(), 1, 8, out.data_ptr(), stream(), 0)
    with pytest.raises(ValueError, match="dtype"):
        C.qgemm_cuda(x.data_ptr(), "float64", 3, 10, layer.packed.data_ptr(), layer.packed.shape[1],
                     layer.scales.data_ptr(), 4, 8, out.data_ptr(), stream(), 0)
    with pytest.raises(ValueError, match="M <= 16"):
        C.qgemm_cuda(x.data_ptr(), "float32", 17, 10, layer.packed.data_ptr(), layer.packed.shape[1],
                     layer.scales.data_ptr(), 4, 8, out.data_ptr(), stream(), 2)
    with pytest.raises(ValueError, match="null"):
        C.qgemm_cuda(0, "float32", 3, 10, layer.packed.data_ptr(), layer.packed.shape[1],
                     layer.scales.data_ptr(), 4, 8, out.data_ptr(), stream(), 0)

"""Packed linear layers: weights stay bit-packed, y = x . W_hat^T by dequant-matmul.

Layout (csrc/core/qmatmul.h): W_hat[n, k] = q[n, k] * scales[n], q a b-bit symbol
(b in 2..8) stored LSB-first in rows of ``qrow_stride(K, b)`` bytes (ceil(K*b/8)
rounded up to 16). An optional low-rank correction A [N, r], B [r, K] adds
A.B to the weight (LQER); it is applied as (x . B^T) . A^T and never merged.

Execution:
  CPU   small M  golfpack._C.qgemm_f32 / qgemm_t_f32 (OpenMP, AVX2 when present)
        large M  tile dequant (dequant_rows into a reusable fp32 buffer of
                 ``tile_rows`` rows) + torch.mm per tile; the dense weight is
                 never materialized. Crossover ``cpu_tile_min_m`` (see below).
  CUDA  M <= 16  qgemm_cuda small-M kernel; larger M: tile dequant into the
                 activation dtype + cuBLAS (``cuda_tile_min_m``), or the tiled
                 CUDA-core kernel below that.

Autograd: the packed weights are frozen (no gradient); grad_x flows through the
packed weights (the transposed kernels) and, when A/B are nn.Parameters,
ordinary autograd trains the low-rank factors (LoRA-style TTT).
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from golfpack.errors import GolfpackError

try:  # the extension is built by `pip install -e .`; import errors surface on use
    from golfpack import _C
except ImportError as exc:  # pragma: no cover - exercised only without a build
    _C = None
    _C_IMPORT_ERROR = exc

MIN_BITS, MAX_BITS = 2, 8
ArrayLike = Union[torch.Tensor, np.ndarray]


def _native():
    if _C is None:
        raise GolfpackError(f"golfpack._C is not built ({_C_IMPORT_ERROR}); run `pip install -e .`")
    return _C


def _check_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise GolfpackError(f"bits must be an integer in {MIN_BITS}..{MAX_BITS}, got {bits!r}")
    if not MIN_BITS <= int(bits) <= MAX_BITS:
        raise GolfpackError(f"bits must be in {MIN_BITS}..{MAX_BITS}, got {bits}")
    return int(bits)


def row_stride(in_features: int, bits: int) -> int:
    """Bytes per packed row: ceil(in_features*bits/8) rounded up to 16."""
    _check_bits(bits)
    if in_features < 0:
        raise GolfpackError(f"in_features must be >= 0, got {in_features}")
    return ((in_features * bits + 7) // 8 + 15) // 16 * 16


def pack_linear_weights(symbols: ArrayLike, scales: ArrayLike, bits: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pack integer symbols [N, K] (+ per-row scales [N]) into the kernel layout.

    Returns (packed uint8 [N, row_stride(K, bits)], scales float32 [N]), both on CPU.
    Symbols outside [-2^(bits-1), 2^(bits-1)-1] raise GolfpackError.
    """
    bits = _check_bits(bits)
    q = symbols.detach().cpu().numpy() if isinstance(symbols, torch.Tensor) else np.asarray(symbols)
    if q.ndim != 2:
        raise GolfpackError(f"symbols must be 2-D [out_features, in_features], got shape {tuple(q.shape)}")
    if not np.issubdtype(q.dtype, np.integer):
        raise GolfpackError(f"symbols must have an integer dtype, got {q.dtype}")
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if q.size and (q.min() < lo or q.max() > hi):
        bad = q[(q < lo) | (q > hi)].flat[0]
        raise GolfpackError(f"symbol {int(bad)} is outside [{lo}, {hi}] for {bits}-bit packing")
    s = row_scales(scales, q.shape[0])
    packed = _native().qpack_rows(np.ascontiguousarray(q, dtype=np.int8), bits)
    return torch.from_numpy(packed), torch.from_numpy(s.copy())


def row_scales(scales: ArrayLike, n: int) -> np.ndarray:
    """Per-row scales as the kernels take them: float32, contiguous, shape (n,), all finite
    (GolfpackError otherwise). May be a view of `scales`."""
    s = scales.detach().cpu().numpy() if isinstance(scales, torch.Tensor) else np.asarray(scales)
    if s.shape != (n,):
        raise GolfpackError(f"scales must have shape ({n},), got {tuple(s.shape)}")
    if not np.issubdtype(s.dtype, np.floating):
        raise GolfpackError(f"scales must be floating point, got {s.dtype}")
    s = np.ascontiguousarray(s, dtype=np.float32)
    if not np.isfinite(s).all():
        raise GolfpackError("scales contain NaN or infinity")
    return s


def quantize_rows_absmax(weight: torch.Tensor, bits: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-row absmax quantization: symbols int8 [N, K] in +-(2^(bits-1)-1), scales fp32 [N]."""
    bits = _check_bits(bits)
    if weight.dim() != 2 or not weight.is_floating_point():
        raise GolfpackError(f"weight must be a 2-D floating tensor, got {weight.dim()}-D {weight.dtype}")
    w = weight.detach().to(torch.float32).cpu()
    qmax = (1 << (bits - 1)) - 1
    absmax = w.abs().amax(dim=1) if w.shape[1] else torch.zeros(w.shape[0])
    scales = torch.where(absmax > 0, absmax / qmax, torch.ones_like(absmax))
    q = torch.round(w / scales[:, None]).clamp_(-qmax, qmax).to(torch.int8)
    return q, scales


# ----------------------------------------------------------------- products

def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def _cpu_row_tiles(layer: "PackedLinear"):
    """Yield (n0, n1, fp32 tile of rows n0..n1) of W_hat, ``tile_rows`` at a time, reusing one
    buffer: the large-M forward and backward both walk the weight this way, and the dense
    weight is never materialized whole. A tile is valid only until the next one is yielded."""
    N, K = layer.out_features, layer.in_features
    rows = min(layer.tile_rows, N)
    buf = torch.empty((rows, K), dtype=torch.float32)
    for n0 in range(0, N, rows):
        n1 = min(N, n0 + rows)
        tile = buf[: n1 - n0]
        _native().dequant_rows(_np(layer.packed), _np(layer.scales), layer.bits, K, n0, n1, out=_np(tile), threads=1)
        yield n0, n1, tile


def _cpu_forward(x: torch.Tensor, layer: "PackedLinear") -> torch.Tensor:
    C = _native()
    M, N, K = x.shape[0], layer.out_features, layer.in_features
    out = torch.empty((M, N), dtype=torch.float32)
    if M >= layer.cpu_tile_min_m and N and K:
        # Large M: dense GEMM on a dequantized tile; dequant cost / M per weight.
        for n0, n1, tile in _cpu_row_tiles(layer):
            torch.mm(x, tile.t(), out=out[:, n0:n1])  # strided view: MKL writes with ldc = N
        return out
    C.qgemm_f32(_np(x), _np(layer.packed), _np(layer.scales), layer.bits, K, out=_np(out),
                threads=torch.get_num_threads())
    return out


def _cpu_backward(gy: torch.Tensor, layer: "PackedLinear") -> torch.Tensor:
    C = _native()
    M, N, K = gy.shape[0], layer.out_features, layer.in_features
    if M >= layer.cpu_tile_min_m and N and K:
        gx = torch.zeros((M, K), dtype=torch.float32)
        for n0, n1, tile in _cpu_row_tiles(layer):
            gx.addmm_(gy[:, n0:n1], tile)
        return gx
    gx = torch.empty((M, K), dtype=torch.float32)
    C.qgemm_t_f32(_np(gy), _np(layer.packed), _np(layer.scales), layer.bits, K, out=_np(gx),
                  threads=torch.get_num_threads())
    return gx


_CUDA_DTYPES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def _cuda_dequant(layer: "PackedLinear", n0: int, n1: int, dtype: torch.dtype) -> torch.Tensor:
    out = torch.empty((n1 - n0, layer.in_features), dtype=dtype, device=layer.packed.device)
    _C.dequant_rows_cuda(layer.packed.data_ptr(), layer.packed.shape[1], layer.scales.data_ptr(), layer.bits,
                         layer.in_features, n0, n1, out.data_ptr(), _CUDA_DTYPES[dtype],
                         torch.cuda.current_stream().cuda_stream)
    return out


def _cuda_forward(x: torch.Tensor, layer: "PackedLinear") -> torch.Tensor:
    M, N, K = x.shape[0], layer.out_features, layer.in_features
    if M >= layer.cuda_tile_min_m and N and K:
        return x @ _cuda_dequant(layer, 0, N, x.dtype).t()  # transient; cuBLAS tensor cores
    out = torch.empty((M, N), dtype=x.dtype, device=x.device)
    _C.qgemm_cuda(x.data_ptr(), _CUDA_DTYPES[x.dtype], M, K, layer.packed.data_ptr(), layer.packed.shape[1],
                  layer.scales.data_ptr(), layer.bits, N, out.data_ptr(), torch.cuda.current_stream().cuda_stream)
    return out


def _cuda_backward(gy: torch.Tensor, layer: "PackedLinear") -> torch.Tensor:
    M, N, K = gy.shape[0], layer.out_features, layer.in_features
    if M >= layer.cuda_tile_min_m and N and K:
        return gy @ _cuda_dequant(layer, 0, N, gy.dtype)
    gx = torch.empty((M, K), dtype=gy.dtype, device=gy.device)
    _C.qgemm_t_cuda(gy.data_ptr(), _CUDA_DTYPES[gy.dtype], M, N, layer.packed.data_ptr(), layer.packed.shape[1],
                    layer.scales.data_ptr(), layer.bits, K, gx.data_ptr(), torch.cuda.current_stream().cuda_stream)
    return gx


class _PackedMatmul(torch.autograd.Function):
    """y = x . W_hat^T with frozen packed weights; backward gives grad_x only."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, layer: "PackedLinear") -> torch.Tensor:
        ctx.layer = layer
        if x.is_cuda:
            with torch.cuda.device(x.device):
                return _cuda_forward(x, layer)
        return _cpu_forward(x, layer)

    @staticmethod
    def backward(ctx, gy: torch.Tensor):
        layer = ctx.layer
        if not ctx.needs_input_grad[0]:
            return None, None
        gy = gy.contiguous()
        if gy.is_cuda:
            with torch.cuda.device(gy.device):
                return _cuda_backward(gy, layer), None
        return _cpu_backward(gy.to(torch.float32), layer), None


class PackedLinear(nn.Module):
    """A frozen linear layer whose weight stays bit-packed (see module docstring).

    Build with ``PackedLinear(packed, scales, bits, in_features)``,
    ``PackedLinear.from_symbols(symbols, scales, bits)`` or
    ``PackedLinear.from_dense(weight, bits)``. ``lowrank_a`` [N, r] and
    ``lowrank_b`` [r, K] add A.B to the weight; pass nn.Parameters to train them.
    """

    # Crossover measured by benchmarks/qmatmul_bench.py (2-core AMD EPYC dev box,
    # AVX2 path, 1 thread): at M=4096 the native kernel ran at 0.66-1.11x the
    # time of dense F.linear on every 7x384 shape and bits 4/6/8, and the tile
    # path (dequant_rows + torch.mm) was slower than native at every measured M
    # (1.03-1.52x dense at M=4096). So tiles only start beyond the measured range
    # (M >= 8192), where they bound scratch traffic. Override per instance.
    cpu_tile_min_m: int = 8192
    tile_rows: int = 256
    # Unmeasured guess until benchmarks/gpu_check.py runs on a GPU: the
    # CUDA-core kernels are meant for small M; cuBLAS wins beyond a few dozen rows.
    cuda_tile_min_m: int = 64

    def __init__(self, packed: torch.Tensor, scales: torch.Tensor, bits: int, in_features: int,
                 lowrank_a: Optional[torch.Tensor] = None, lowrank_b: Optional[torch.Tensor] = None,
                 bias: Optional[torch.Tensor] = None):
        super().__init__()
        bits = _check_bits(bits)
        if not isinstance(packed, torch.Tensor) or packed.dtype != torch.uint8 or packed.dim() != 2:
            raise GolfpackError("packed must be a 2-D uint8 tensor [out_features, row_stride]")
        stride = row_stride(int(in_features), bits)
        if packed.shape[1] != stride:
            raise GolfpackError(f"packed rows are {packed.shape[1]} bytes; {in_features} inputs at {bits} bits "
                                f"need a stride of {stride}")
        n = packed.shape[0]
        if not isinstance(scales, torch.Tensor) or scales.shape != (n,) or not scales.is_floating_point():
            raise GolfpackError(f"scales must be a floating tensor of shape ({n},)")
        if scales.device != packed.device:
            raise GolfpackError("packed and scales must be on the same device")
        self.bits = bits
        self.in_features = int(in_features)
        self.out_features = int(n)
        self.register_buffer("packed", packed.contiguous())
        self.register_buffer("scales", scales.detach().to(torch.float32).contiguous())
        if (lowrank_a is None) != (lowrank_b is None):
            raise GolfpackError("lowrank_a and lowrank_b must be given together")
        if lowrank_a is not None:
            if lowrank_a.dim() != 2 or lowrank_b.dim() != 2 or lowrank_a.shape[0] != n \
                    or lowrank_b.shape[1] != in_features or lowrank_a.shape[1] != lowrank_b.shape[0]:
                raise GolfpackError(f"low-rank factors must be A [{n}, r] and B [r, {in_features}], got "
                                    f"{tuple(lowrank_a.shape)} and {tuple(lowrank_b.shape)}")
        self._set_factor("lowrank_a", lowrank_a)
        self._set_factor("lowrank_b", lowrank_b)
        if bias is not None and (bias.dim() != 1 or bias.shape[0] != n):
            raise GolfpackError(f"bias must have shape ({n},), got {tuple(bias.shape)}")
        self._set_factor("bias", bias)

    def _set_factor(self, name: str, t: Optional[torch.Tensor]) -> None:
        if isinstance(t, nn.Parameter):
            self.register_parameter(name, t)
        else:
            self.register_buffer(name, None if t is None else t.detach().contiguous())

    # ------------------------------------------------------------ builders

    @classmethod
    def from_packed_rows(cls, packed: torch.Tensor, scales: torch.Tensor, bits: int, in_features: int) -> "PackedLinear":
        """The module ``PackedLinear(packed, scales, bits, in_features)`` builds (no low-rank term,
        no bias), for CPU rows and float32 contiguous scales as a decoder returns them: the same
        checks, the same attributes and buffers in the same order, but the buffers are put in
        place directly instead of through nn.Module.register_buffer and __setattr__, whose generic
        checks cost ~30 us per layer: a loader builds 50-120 of these per artifact."""
        bits = _check_bits(bits)
        if (type(packed) is not torch.Tensor or packed.dtype != torch.uint8 or packed.dim() != 2
                or packed.device.type != "cpu" or not packed.is_contiguous()):
            raise GolfpackError("packed must be a contiguous 2-D uint8 CPU tensor [out_features, row_stride]")
        stride = row_stride(int(in_features), bits)
        if packed.shape[1] != stride:
            raise GolfpackError(f"packed rows are {packed.shape[1]} bytes; {in_features} inputs at {bits} bits "
                                f"need a stride of {stride}")
        n = packed.shape[0]
        if (type(scales) is not torch.Tensor or scales.shape != (n,) or scales.dtype != torch.float32
                or scales.device.type != "cpu" or not scales.is_contiguous() or scales.requires_grad):
            raise GolfpackError(f"scales must be a contiguous float32 CPU tensor of shape ({n},)")
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer.__dict__.update(bits=bits, in_features=int(in_features), out_features=int(n))
        layer._buffers.update(packed=packed, scales=scales, lowrank_a=None, lowrank_b=None, bias=None)
        return layer

    @classmethod
    def from_symbols(cls, symbols: ArrayLike, scales: ArrayLike, bits: int, **kw) -> "PackedLinear":
        packed, s = pack_linear_weights(symbols, scales, bits)
        k = symbols.shape[1]
        return cls(packed, s, bits, k, **kw)

    @classmethod
    def from_dense(cls, weight: torch.Tensor, bits: int, **kw) -> "PackedLinear":
        """Per-row absmax quantization of a dense weight [N, K] (tests, benchmarks)."""
        q, s = quantize_rows_absmax(weight, bits)
        layer = cls.from_symbols(q, s, bits, **kw)
        return layer.to(weight.device)

    # ------------------------------------------------------------ inspection

    @property
    def rank(self) -> int:
        return 0 if self.lowrank_a is None else int(self.lowrank_a.shape[1])

    @property
    def nbytes_packed(self) -> int:
        """Bytes held by the packed weight and its scales (excluding low-rank/bias)."""
        return self.packed.numel() + 4 * self.scales.numel()

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
                f"rank={self.rank}, bias={self.bias is not None}, nbytes_packed={self.nbytes_packed}")

    def symbols(self) -> torch.Tensor:
        """Decoded int8 symbols [N, K] (debugging)."""
        return torch.from_numpy(_native().qunpack_rows(_np(self.packed.cpu()), self.bits, self.in_features))

    def dequantize(self, include_lowrank: bool = True) -> torch.Tensor:
        """The dense fp32 weight W_hat (+ A.B). Explicit materialization for tests/debug only."""
        w = self.symbols().to(torch.float32) * self.scales.cpu()[:, None]
        w = w.to(self.packed.device)
        if include_lowrank and self.lowrank_a is not None:
            w = w + self.lowrank_a.detach().float() @ self.lowrank_b.detach().float()
        return w

    # ------------------------------------------------------------ forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise GolfpackError(f"PackedLinear expects a tensor, got {type(x).__name__}")
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise GolfpackError(f"input's last dimension must be {self.in_features}, got shape {tuple(x.shape)}")
        if x.device != self.packed.device:
            raise GolfpackError(f"input is on {x.device} but the packed weight is on {self.packed.device}")
        if x.is_cuda:
            if not getattr(_native(), "with_cuda", False):
                raise GolfpackError("golfpack._C was built without CUDA; rebuild with nvcc to run on the GPU")
            if x.dtype not in _CUDA_DTYPES:
                raise GolfpackError(f"CUDA PackedLinear supports float32/float16/bfloat16 inputs, got {x.dtype}")
        elif x.dtype != torch.float32:
            raise GolfpackError(f"CPU PackedLinear computes in float32; got {x.dtype} (cast the input first)")
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features).contiguous()
        y = _PackedMatmul.apply(x2, self)
        if self.lowrank_a is not None:
            y = y + (x2 @ self.lowrank_b.to(x2.dtype).t()) @ self.lowrank_a.to(x2.dtype).t()
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*lead, self.out_features)


class PackedEmbedding(nn.Module):
    """A bit-packed token table W_hat [V, D] that serves as embedding and as tied output head.

    forward(idx) gathers the packed rows of idx and dequantizes only those; head(h) computes
    h . W_hat^T a tile of ``tile_rows`` vocabulary rows at a time (dequantize, then GEMM), so the
    whole dense table is never materialized. Gradients flow to h (TTT through the head); the
    table itself is frozen.

    Dequantized values are rounded to ``source_dtype`` before use: a dense model loaded from a
    checkpoint whose table was, say, bf16 computes with bf16(q * s), and so must we, or the
    packed model would score differently from the one its author evaluated.
    """

    tile_rows = 256

    def __init__(self, table: PackedLinear, source_dtype: torch.dtype = torch.float32):
        super().__init__()
        if table.rank or table.bias is not None:
            raise GolfpackError("PackedEmbedding takes a plain packed table (no low-rank term, no bias)")
        if not source_dtype.is_floating_point:
            raise GolfpackError(f"source_dtype must be a float dtype, got {source_dtype}")
        self.table = table
        self.source_dtype = source_dtype
        self.num_embeddings, self.embedding_dim = table.out_features, table.in_features

    def extra_repr(self) -> str:
        return (f"num_embeddings={self.num_embeddings}, embedding_dim={self.embedding_dim}, "
                f"bits={self.table.bits}, source_dtype={self.source_dtype}")

    def _round(self, w: torch.Tensor) -> torch.Tensor:
        return w if self.source_dtype == torch.float32 else w.to(self.source_dtype).to(torch.float32)

    def _dequant(self, packed: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        """fp32 [n, D] from n packed rows (any rows: a gather or a contiguous tile)."""
        n, K = packed.shape[0], self.embedding_dim
        if packed.is_cuda:
            out = torch.empty((n, K), dtype=torch.float32, device=packed.device)
            if n and K:
                _native().dequant_rows_cuda(packed.data_ptr(), packed.shape[1], scales.data_ptr(), self.table.bits,
                                            K, 0, n, out.data_ptr(), "float32",
                                            torch.cuda.current_stream().cuda_stream)
        else:
            out = torch.empty((n, K), dtype=torch.float32)
            if n and K:
                _native().dequant_rows(_np(packed), _np(scales), self.table.bits, K, 0, n, out=_np(out),
                                       threads=torch.get_num_threads())
        return self._round(out)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        if not isinstance(idx, torch.Tensor) or idx.dtype not in (torch.int64, torch.int32):
            raise GolfpackError("PackedEmbedding expects an int64/int32 tensor of token ids")
        flat = idx.reshape(-1).to(torch.int64)
        if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= self.num_embeddings):
            raise GolfpackError(f"token ids must lie in [0, {self.num_embeddings})")
        flat = flat.to(self.table.packed.device)
        rows = self.table.packed.index_select(0, flat).contiguous()
        scales = self.table.scales.index_select(0, flat).contiguous()
        return self._dequant(rows, scales).reshape(*idx.shape, self.embedding_dim)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Logits h . W_hat^T (fp32), one vocabulary tile at a time."""
        if h.shape[-1] != self.embedding_dim:
            raise GolfpackError(f"hidden size must be {self.embedding_dim}, got shape {tuple(h.shape)}")
        V, packed, scales = self.num_embeddings, self.table.packed, self.table.scales
        chunks = []
        for n0 in range(0, V, self.tile_rows):
            n1 = min(V, n0 + self.tile_rows)
            w = self._dequant(packed[n0:n1], scales[n0:n1])
            chunks.append(F.linear(h, w.to(h.dtype)))
        return torch.cat(chunks, dim=-1) if chunks else h.new_zeros(*h.shape[:-1], 0)


__all__ = ["PackedEmbedding", "PackedLinear", "pack_linear_weights", "quantize_rows_absmax", "row_stride"]

"""Checkpoint readers: the first stage of the pipeline.

Every source golfpack accepts becomes one `Checkpoint`: float tensors kept
bit-exact in their own dtype, plus the integer symbols a source already holds
(the challenge baseline's int8 + fp16 row scales), plus the model config when
the source carries one. Formats:

- torch ``.pt`` / ``.pth`` / ``.bin``: a state dict (or {"state_dict"|"model": ..., "config": ...}),
  loaded with ``weights_only=True``: no arbitrary unpickling.
- ``.safetensors`` and a sharded ``*.index.json``.
- a trainer output directory holding ``model.safetensors`` (+ ``config.json``).
- the baseline's ``int8_clean_per_row_v1`` ``.ptz``: zlib (or zstd / lzma) of torch.save(dict).
- a golfpack artifact (decoded through golfpack.codec.container).

A ``config.json`` beside a checkpoint file supplies the config when the file has none.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from golfpack import safetensors_io as safetensors_limits
from golfpack.errors import FormatError, GolfpackError
from golfpack.safe_json import loads_bounded
from golfpack.torch_reader import MAX_DECOMPRESSED, check_tensor, load_compressed_file, load_torch_file  # noqa: F401

ARTIFACT_MAGIC = b"GOLFPACK"
MAX_CONFIG_BYTES = 1 << 20
MAX_TENSORS = safetensors_limits.MAX_TENSORS
MAX_TOTAL_ELEMENTS = safetensors_limits.MAX_TOTAL_ELEMENTS
BASELINE_QUANT_FORMAT = "int8_clean_per_row_v1"


@dataclass
class QuantizedSource:
    """Integer symbols a source already holds: w = (symbols.float() * scale).to(dtype).

    scale is per row (shape [rows], broadcast over the other dims) or one value (shape []).
    """

    symbols: torch.Tensor  # int8, the tensor's shape
    scale: torch.Tensor  # float16 / float32, shape [rows] or []
    dtype: torch.dtype  # dtype of the dequantized tensor

    def dequantize(self) -> torch.Tensor:
        # Exactly the baseline's dequantize_state_dict_int8: fp32 product, then cast.
        q = self.symbols
        s = self.scale.to(torch.float32)
        if s.ndim > 0:
            w = q.float() * s.view(q.shape[0], *([1] * (q.ndim - 1)))
        else:
            w = q.float() * s
        return w.to(self.dtype).contiguous()


@dataclass
class Checkpoint:
    """A source checkpoint: float tensors (bit-exact) and pre-quantized tensors, in source order."""

    floats: dict[str, torch.Tensor] = field(default_factory=dict)
    quantized: dict[str, QuantizedSource] = field(default_factory=dict)
    # dtype a float tensor is cast to when dequantized (the baseline stores small tensors as fp16
    # and records their original dtype); absent = its own dtype.
    cast: dict[str, torch.dtype] = field(default_factory=dict)
    config: dict | None = None
    source_format: str = ""
    order: list[str] = field(default_factory=list)

    def names(self) -> list[str]:
        return list(self.order)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Dequantized float tensors, names and dtypes as the source's own loader gives them."""
        out = {}
        for name in self.order:
            if name in self.quantized:
                out[name] = self.quantized[name].dequantize()
            else:
                t = self.floats[name]
                out[name] = t.to(self.cast[name]).contiguous() if name in self.cast else t
        return out

    def num_params(self) -> int:
        return sum(t.numel() for t in self.floats.values()) + sum(q.symbols.numel() for q in self.quantized.values())


def is_artifact(path: str | os.PathLike) -> bool:
    p = Path(path)
    if not p.is_file():
        return False
    with open(p, "rb") as f:
        return f.read(len(ARTIFACT_MAGIC)) == ARTIFACT_MAGIC


def check_config_limits(config, where: str) -> None:
    """Refuse a model config whose sizes exceed golfpack.model.config.LIMITS (before anything is built from it)."""
    if not isinstance(config, dict):
        return
    from golfpack.model.config import limit_problems

    bad = limit_problems(config)
    if bad:
        raise FormatError(f"{where}: config field " + "; ".join(bad))


def _sidecar_config(path: Path) -> dict | None:
    from golfpack.input_files import read_regular

    cfg = path.parent / "config.json" if path.is_file() else path / "config.json"
    if cfg.is_file():
        obj = loads_bounded(read_regular(cfg, "config.json", MAX_CONFIG_BYTES), str(cfg))
        if not isinstance(obj, dict):
            raise FormatError(f"{cfg}: must hold a JSON object")
        check_config_limits(obj, str(cfg))
        return obj
    return None


def _config_from_metadata(meta: dict[str, str], path: Path) -> dict | None:
    for key in ("golfpack.config", "config"):
        if key in meta:
            obj = loads_bounded(meta[key], f"{path}: metadata {key!r}")
            if isinstance(obj, dict):
                check_config_limits(obj, f"{path}: metadata {key!r}")
                return obj
    return None


def _check_counts(n_tensors: int, n_elements: int, path: Path) -> None:
    if n_tensors > MAX_TENSORS:
        raise FormatError(f"{path}: {n_tensors} tensors, over the limit of {MAX_TENSORS} per checkpoint")
    if n_elements > MAX_TOTAL_ELEMENTS:
        raise FormatError(f"{path}: more than {MAX_TOTAL_ELEMENTS} (2^30) elements in all")


def _from_float_dict(sd: dict, fmt: str, path: Path) -> Checkpoint:
    ck = Checkpoint(source_format=fmt)
    _check_counts(len(sd), 0, path)
    total = 0
    for name, t in sd.items():
        if not isinstance(name, str) or not isinstance(t, torch.Tensor):
            raise FormatError(f"{path}: entry {str(name)[:80]!r} is {type(t).__name__}, expected a tensor")
        check_tensor(t, name, str(path))  # dense, CPU, known dtype, within its storage: before any copy
        total += t.numel()
        _check_counts(0, total, path)
        ck.floats[name] = t.detach().contiguous()
        ck.order.append(name)
    if not ck.order:
        raise FormatError(f"{path}: holds no tensors")
    if total == 0:
        raise FormatError(f"{path}: every tensor is empty (no parameters to encode)")
    return ck


def _from_baseline_dict(obj: dict, path: Path) -> Checkpoint:
    """The challenge baseline's int8_clean_per_row_v1 layout (field guide §3)."""
    fmt = obj.get("__quant_format__")
    if fmt != BASELINE_QUANT_FORMAT:
        raise FormatError(f"{path}: unsupported quantized format {fmt!r} (golfpack reads {BASELINE_QUANT_FORMAT!r})")
    try:
        quantized, scales, dtypes = obj["quantized"], obj["scales"], obj["dtypes"]
        passthrough = obj.get("passthrough", {})
    except KeyError as e:
        raise FormatError(f"{path}: {BASELINE_QUANT_FORMAT} dict lacks {e.args[0]!r}") from None
    orig = obj.get("passthrough_orig_dtypes", {}) or {}
    for key, v in (("quantized", quantized), ("scales", scales), ("dtypes", dtypes), ("passthrough", passthrough),
                   ("passthrough_orig_dtypes", orig)):
        if not isinstance(v, dict):
            raise FormatError(f"{path}: {BASELINE_QUANT_FORMAT} field {key!r} is a {type(v).__name__}, expected a dict")
    _check_counts(len(quantized) + len(passthrough), 0, path)
    for group in (quantized, scales, passthrough):
        for name, t in group.items():
            if isinstance(t, torch.Tensor):
                check_tensor(t, str(name)[:80], str(path))
    total = sum(t.numel() for g in (quantized, passthrough) for t in g.values() if isinstance(t, torch.Tensor))
    _check_counts(0, total, path)
    ck = Checkpoint(source_format="ptz:" + BASELINE_QUANT_FORMAT)
    for name, q in quantized.items():
        if not isinstance(name, str):
            raise FormatError(f"{path}: quantized tensor name {str(name)[:80]!r} is not a string")
        if name not in scales or name not in dtypes:
            raise FormatError(f"{path}: quantized tensor {name!r} has no scale or dtype entry")
        s = scales[name]
        if not isinstance(q, torch.Tensor) or q.dtype != torch.int8:
            raise FormatError(f"{path}: quantized tensor {name!r} is not int8")
        if not isinstance(s, torch.Tensor) or not s.is_floating_point():
            raise FormatError(f"{path}: scale of {name!r} is not a float tensor")
        if s.ndim > 0 and (q.ndim == 0 or s.numel() != q.shape[0]):
            raise FormatError(f"{path}: {name!r} has {s.numel()} scales for {q.shape[0] if q.ndim else 0} rows")
        dtype = getattr(torch, dtypes[name], None) if isinstance(dtypes[name], str) else None
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise FormatError(f"{path}: {name!r} has unknown original dtype {dtypes[name]!r}")
        s = s.reshape(-1) if s.ndim > 0 else s.reshape(())
        ck.quantized[name] = QuantizedSource(q.contiguous(), s.contiguous(), dtype)
        ck.order.append(name)
    for name, t in passthrough.items():
        if not isinstance(name, str) or not isinstance(t, torch.Tensor):
            raise FormatError(f"{path}: passthrough {name!r} is not a tensor")
        ck.floats[name] = t.detach().contiguous()
        od = orig.get(name)
        if isinstance(od, str):
            dt = getattr(torch, od, None)
            if not isinstance(dt, torch.dtype):
                raise FormatError(f"{path}: passthrough {name!r} has unknown original dtype {od!r}")
            if dt != t.dtype:
                ck.cast[name] = dt
        ck.order.append(name)
    return ck


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read any supported source into a Checkpoint (see the module docstring)."""
    from golfpack import safetensors_io

    path = Path(path)
    if not path.exists():
        raise GolfpackError(f"{path}: no such file or directory")
    if path.is_dir():
        # the trainer's single file, or the sharded layout (an index beside its shards)
        for st in (path / "model.safetensors", path / "model.safetensors.index.json"):
            if st.is_file():
                return read_checkpoint(st)
        raise GolfpackError(f"{path}: a directory checkpoint must hold model.safetensors "
                            "or model.safetensors.index.json")
    if is_artifact(path):
        from golfpack.codec.container import read_artifact

        return read_artifact(path).to_checkpoint()  # parse_artifact bounds its config too
    name = path.name.lower()
    if name.endswith(".json"):
        tensors, meta = safetensors_io.load_sharded(path)
        ck = _from_float_dict(tensors, "safetensors-sharded", path)
        ck.config = _config_from_metadata(meta, path)
    elif name.endswith(".safetensors"):
        tensors, meta = safetensors_io.load_file(path)
        ck = _from_float_dict(tensors, "safetensors", path)
        ck.config = _config_from_metadata(meta, path)
    else:
        from golfpack.input_files import open_regular

        with open_regular(path, "checkpoint") as (f, _size):
            magic = f.read(4)
        if magic == b"PK\x03\x04" or name.endswith((".pt", ".pth", ".bin")):  # torch.save's zip container
            obj = load_torch_file(path)
        else:  # .ptz and friends: compressed torch.save
            obj = load_compressed_file(path)
        if not isinstance(obj, dict):
            raise FormatError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
        if "__quant_format__" in obj:
            ck = _from_baseline_dict(obj, path)
        else:
            config = obj.get("config") if isinstance(obj.get("config"), dict) else None
            for key in ("state_dict", "model"):
                if isinstance(obj.get(key), dict):
                    obj = obj[key]
                    break
            ck = _from_float_dict(obj, "torch", path)
            ck.config = config
    if ck.config is None:
        ck.config = _sidecar_config(path)
    check_config_limits(ck.config, str(path))
    return ck


def load_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict | None]:
    """Dequantized float state dict and model config (or None) of any supported source."""
    ck = read_checkpoint(path)
    return ck.state_dict(), ck.config

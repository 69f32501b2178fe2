"""Hostile inputs golfpack's own fuzzers do not make: checkpoints, configs and shard indexes (issue 20).

Each case writes its files into a folder and returns the `golfpack` command line that reads them, a
regex the one error line must match (naming the field or property refused), and the hostile file the
line must name. `tests/test_hostile_inputs.py` runs every case in-process; `benchmarks/hostile_inputs.py`
runs each as a subprocess and measures its peak RSS. `scale` sizes the bombs and the tensor-count
case: the test suite uses small ones, the benchmark the issue's.
"""
from __future__ import annotations

import io
import json
import lzma
import os
import pickle
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch


@dataclass
class Case:
    name: str
    klass: str  # the issue's class
    build: Callable[[Path, dict], tuple[list[str], Path]]  # (folder, scale) -> (argv, hostile file)
    expect: str  # regex on the error line
    lowers_cap: bool = False  # run with MAX_DECOMPRESSED = scale["cap"] (when that is not None)


def _save(obj, path: Path) -> Path:
    torch.save(obj, path)
    return path


def _encode(src: Path, d: Path) -> list[str]:
    return ["encode", str(src), "-o", str(d / "out.gp"), "--lossless"]


def _st_write(path: Path, header: dict, data: bytes = b"") -> Path:
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + data)
    return path


def _valid_st(path: Path, meta: dict | None = None) -> Path:
    from golfpack.safetensors_io import save_file

    save_file({"w": torch.ones(4)}, path, metadata=meta)
    return path


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _pt_case(name, obj_fn, expect, klass="torch .pt"):
    def build(d: Path, scale: dict):
        return None, _save(obj_fn(d), d / f"{name}.pt")

    def wrap(d, scale):
        _, p = build(d, scale)
        return _encode(p, d), p

    return Case(name, klass, wrap, expect)


def _bomb(kind: str, size: int, zip_head: bool) -> bytes:
    """`size` zero bytes (after a zip local-file header if zip_head) compressed by `kind`, in 64 MiB steps."""
    head = b"PK\x03\x04" + bytes(26) if zip_head else b""
    step = bytes(64 << 20)
    if kind == "zlib":
        c = zlib.compressobj(9)
    elif kind == "xz":
        c = lzma.LZMACompressor(preset=6)
    else:
        import zstandard

        c = zstandard.ZstdCompressor(level=19).compressobj()
    parts = [c.compress(head)]
    left = size
    while left > 0:
        parts.append(c.compress(step[: min(left, len(step))]))
        left -= len(step)
    parts.append(c.flush())
    return b"".join(parts)


def _ptz_case(name, kind, zip_head, size_key, expect):
    def build(d: Path, scale: dict):
        p = d / f"{name}.ptz"
        p.write_bytes(_bomb(kind, scale[size_key], zip_head))
        return _encode(p, d), p

    return Case(name, ".ptz bomb", build, expect, lowers_cap=size_key == "past_cap")


def _st_case(name, header_fn, expect, data=b""):
    def build(d: Path, scale: dict):
        p = _st_write(d / f"{name}.safetensors", header_fn(scale), data)
        return _encode(p, d), p

    return Case(name, "safetensors", build, expect)


def _config_st_case(name, cfg_over, expect):
    def build(d: Path, scale: dict):
        from golfpack.model.config import GPTConfig

        cfg = GPTConfig().to_dict() | cfg_over
        p = _valid_st(d / f"{name}.safetensors", {"golfpack.config": json.dumps(cfg)})
        return _encode(p, d), p

    return Case(name, "model config", build, expect)


def _config_artifact_case(name, cfg_over, expect):
    def build(d: Path, scale: dict):
        from golfpack.checkpoint import Checkpoint
        from golfpack.codec.encode import encode_lossless
        from golfpack.model.config import GPTConfig

        cfg = GPTConfig().to_dict() | cfg_over
        ck = Checkpoint(floats={"w": torch.ones(4)}, order=["w"], config=cfg)
        # encode_lossless writes the config as given: what a hostile writer's artifact carries
        p = d / f"{name}.gp"
        p.write_bytes(encode_lossless(ck))
        return ["inspect", str(p)], p

    return Case(name, "model config", build, expect)


def _sharded_case(name, make_shard, expect):
    def build(d: Path, scale: dict):
        sub = d / name
        sub.mkdir()
        shard = make_shard(sub, d)
        idx = sub / "model.safetensors.index.json"
        wmap = {"w": shard} if isinstance(shard, str) else shard
        idx.write_text(json.dumps({"weight_map": wmap}))
        return _encode(idx, d), idx

    return Case(name, "sharded index", build, expect)


def _link(target):
    def make(sub: Path, d: Path):
        os.symlink(target(d) if callable(target) else target, sub / "s.safetensors")
        return "s.safetensors"

    return make


def _fifo(sub: Path, d: Path):
    os.mkfifo(sub / "s.safetensors")
    return "s.safetensors"


def _deflated_pt(d: Path) -> Path:
    """A torch.save zip re-packed with DEFLATE entries (torch.save stores entries uncompressed)."""
    src = _save({"w": torch.zeros(1000)}, d / "plain.pt")
    out = d / "deflated.pt"
    with zipfile.ZipFile(src) as zi, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zo:
        for info in zi.infolist():
            zo.writestr(info.filename, zi.read(info.filename))
    return out


def _sidecar_case():
    def build(d: Path, scale: dict):
        sub = d / "sidecar"
        sub.mkdir()
        p = _valid_st(sub / "model.safetensors")
        from golfpack.model.config import GPTConfig

        (sub / "config.json").write_text(json.dumps(GPTConfig().to_dict() | {"vocab_size": 10**9}))
        return _encode(p, d), sub / "config.json"

    return Case("config_json_vocab_1e9", "model config", build, r"config field vocab_size 1000000000 exceeds the limit")


def cases() -> list[Case]:
    out = [
        _pt_case("pt_stride0_2e40", lambda d: {"w": torch.zeros(1).as_strided((1 << 20, 1 << 20), (0, 0))},
                 r"tensor 'w' is an overlapping view \(shape \[1048576, 1048576\], stride \[0, 0\]\)"),
        _pt_case("pt_overlapping_view", lambda d: {"w": torch.zeros(4096, dtype=torch.uint8).as_strided((2048, 2048), (1, 1))},
                 r"tensor 'w' is an overlapping view"),
        _pt_case("pt_view_past_storage", _view_past_storage, r"a tensor's view reaches past the end of its storage"),
        _pt_case("pt_meta", lambda d: {"w": torch.empty(1 << 30, device="meta")}, r"tensor 'w' is on device 'meta'"),
        _pt_case("pt_sparse", lambda d: {"w": torch.eye(4).to_sparse()}, r"tensor 'w' has layout torch.sparse_coo"),
        _pt_case("pt_sparse_csr", lambda d: {"w": torch.eye(4).to_sparse_csr()}, r"tensor 'w' has layout torch.sparse_csr"),
        _pt_case("pt_quantized", lambda d: {"w": torch.quantize_per_tensor(torch.ones(4), 0.1, 0, torch.qint8)},
                 r"tensor 'w' is a torch quantized tensor"),
        _pt_case("pt_nested", lambda d: {"w": torch.nested.nested_tensor([torch.ones(2), torch.ones(3)])},
                 r"tensor 'w' is a nested tensor"),
        _pt_case("pt_complex", lambda d: {"w": torch.ones(2, dtype=torch.complex64)}, r"tensor 'w' has dtype torch.complex64"),
        _pt_case("pt_only_empty", lambda d: {"w": torch.ones(0), "b": torch.ones(0, 4)}, r"every tensor is empty"),
        _pt_case("pt_os_system", lambda d: {"w": torch.ones(2), "x": _Exploit(d / "pwned")},
                 r"refused by the weights-only torch loader \(.*system"),
        _pt_case("pt_module", lambda d: {"model": torch.nn.Linear(2, 2)}, r"refused by the weights-only torch loader \(.*Linear"),
        Case("pt_legacy_format", "torch .pt",
             lambda d, s: (_encode(p := _legacy(d), d), p), r"not a torch\.save zip file; the legacy"),
        Case("pt_plain_pickle", "torch .pt",
             lambda d, s: (_encode(p := _plain_pickle(d), d), p), r"not a torch\.save zip file"),
        Case("pt_deflated_zip", "torch .pt",
             lambda d, s: (_encode(p := _deflated_pt(d), d), p), r"zip entry '.*' is compressed \(method 8\)"),
        _ptz_case("ptz_zlib_zeros", "zlib", False, "bomb", r"decompressed zlib data is not a torch\.save zip"),
        _ptz_case("ptz_zstd_zeros", "zstd", False, "bomb", r"decompressed zstd data is not a torch\.save zip"),
        _ptz_case("ptz_xz_zeros", "xz", False, "bomb", r"decompressed xz data is not a torch\.save zip"),
        _ptz_case("ptz_zlib_zip_head", "zlib", True, "bomb", r"not a readable torch\.save zip"),
        _ptz_case("ptz_zstd_zip_head", "zstd", True, "bomb", r"not a readable torch\.save zip"),
        _ptz_case("ptz_xz_zip_head", "xz", True, "bomb", r"not a readable torch\.save zip"),
        _ptz_case("ptz_zlib_past_cap", "zlib", True, "past_cap", r"decompresses to more than \d+ bytes \(the cap\)"),
        _ptz_case("ptz_zstd_past_cap", "zstd", True, "past_cap", r"decompresses to more than \d+ bytes \(the cap\)"),
        _ptz_case("ptz_xz_past_cap", "xz", True, "past_cap", r"decompresses to more than \d+ bytes \(the cap\)"),
        _st_case("st_dtype_list", lambda s: {"w": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}},
                 r"tensor 'w': field 'dtype' \['F32'\] is not one of", data=bytes(4)),
        _st_case("st_shape_2e62", lambda s: {"w": {"dtype": "F32", "shape": [2**62, 2**62, 0], "data_offsets": [0, 0]}},
                 r"tensor 'w': field 'shape' must be a list of at most 8 integers in \[0, 2\^40\]"),
        _st_case("st_shape_product", lambda s: {"w": {"dtype": "U8", "shape": [2**20, 2**20, 2**20], "data_offsets": [0, 0]}},
                 r"tensor 'w': field 'shape' \[1048576, 1048576, 1048576\] holds \d+ elements, over the"),
        _st_case("st_shape_bool", lambda s: {"w": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}},
                 r"tensor 'w': field 'shape'", data=bytes(4)),
        _st_case("st_only_empty", lambda s: {f"t{i}": {"dtype": "F32", "shape": [0, 7], "data_offsets": [0, 0]} for i in range(3)},
                 r"every tensor is empty"),
        _st_case("st_many_tensors", lambda s: {f"t{i}": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}
                                              for i in range(s["tensors"])},
                 r"opens \d+ JSON objects, more than the limit of 65536 tensors per checkpoint"),
        _st_case("st_many_metadata", lambda s: {"__metadata__": {f"m{i}": "" for i in range(4 * s["tensors"])},
                                              "w": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}},
                 r"header holds \d+ names, more than the limit of 65536 tensors \(4 names each\) \+ 4096 metadata"),
        _st_case("st_offsets_strings", lambda s: {"w": {"dtype": "F32", "shape": [1], "data_offsets": ["0", "4"]}},
                 r"tensor 'w': field 'data_offsets' must be two integers", data=bytes(4)),
        _config_st_case("cfg_recur_repeats_1e12", dict(recur_start=0, recur_end=1, recur_repeats=10**12),
                        r"config field recur_repeats 1000000000000 exceeds the limit 64"),
        _config_st_case("cfg_num_layers_1e6", dict(num_layers=10**6), r"config field num_layers 1000000 exceeds the limit 256"),
        _config_st_case("cfg_model_dim_2e20", dict(model_dim=2**20), r"config field model_dim 1048576 exceeds the limit 16384"),
        _config_st_case("cfg_heads_1e5", dict(num_heads=10**5), r"config field num_heads 100000 exceeds the limit 256"),
        _config_st_case("cfg_mlp_mult_1e4", dict(mlp_mult=1e4), r"config field mlp_mult 10000.0 gives"),
        _config_st_case("cfg_seq_2e40", dict(rope_train_seq_len=2**40), r"config field rope_train_seq_len 1099511627776 exceeds"),
        _config_st_case("cfg_params_2e31", dict(vocab_size=2**18, model_dim=8192),
                        r"config field vocab_size 262144, num_layers 9, model_dim 8192 make about"),
        _config_artifact_case("artifact_cfg_num_layers_1e6", dict(num_layers=10**6),
                              r"manifest: config field num_layers 1000000 exceeds the limit 256"),
        _config_artifact_case("artifact_cfg_recur_1e12", dict(recur_start=0, recur_end=1, recur_repeats=10**12),
                              r"manifest: config field recur_repeats 1000000000000 exceeds"),
        _sidecar_case(),
        _sharded_case("shard_dev_zero", _link("/dev/zero"), r"shard 's\.safetensors' resolves to /dev/zero, outside the index's folder"),
        _sharded_case("shard_fifo", _fifo, r"shard 's\.safetensors' must be a regular file, but it is a FIFO"),
        _sharded_case("shard_symlink_out", _link(lambda d: _valid_st(d / "outside.safetensors")),
                      r"shard 's\.safetensors' resolves to .*outside\.safetensors, outside the index's folder"),
        _sharded_case("shard_name_path", lambda sub, d: "../x.safetensors", r"shard name '\.\./x\.safetensors' must be a plain file name"),
        Case("shard_index_many_names", "sharded index", _many_names_index,
             r"index holds \d+ names, more than the limit of 65536 tensors"),
        _sharded_case("shard_value_int", lambda sub, d: {"w": 7}, r"weight_map\['w'\] must be a shard file name, got 7"),
        _sharded_case("shard_value_list", lambda sub, d: {"w": ["a", "b"]}, r"weight_map\['w'\] must be a shard file name"),
        Case("st_fifo", "safetensors", lambda d, s: (_encode(p := _mkfifo(d / "f.safetensors"), d), p),
             r"safetensors file must be a regular file, but it is a FIFO"),
        Case("pt_fifo", "torch .pt", lambda d, s: (_encode(p := _mkfifo(d / "f.pt"), d), p),
             r"checkpoint must be a regular file, but it is a FIFO"),
    ]
    return out


def _many_names_index(d: Path, scale: dict):
    """A weight_map of scale["tensors"] names (one shard): 10^6 of them cost 300 MB as Python objects."""
    idx = d / "model.safetensors.index.json"
    idx.write_text(json.dumps({"weight_map": {f"t{i}": "s.safetensors" for i in range(scale["tensors"])}}))
    return _encode(idx, d), idx


def _view_past_storage(d: Path) -> dict:
    """A 777-float view saved with a 100-float storage (the storage shrunk under the view)."""
    base = torch.zeros(1000)
    view = base[:777]
    base.untyped_storage().resize_(400)
    return {"w": view}


def _mkfifo(p: Path) -> Path:
    os.mkfifo(p)
    return p


def _legacy(d: Path) -> Path:
    p = d / "legacy.pt"
    torch.save({"w": torch.ones(2)}, p, _use_new_zipfile_serialization=False)
    return p


def _plain_pickle(d: Path) -> Path:
    p = d / "plain.pt"
    p.write_bytes(pickle.dumps({"w": [1.0, 2.0]}))
    return p


# Sizes: the test suite's (fast) and the issue's (the benchmark's).
TEST_SCALE = {"bomb": 64 << 20, "past_cap": 3 << 20, "cap": 2 << 20, "tensors": 70_000}
ISSUE_SCALE = {"bomb": 2 << 30, "past_cap": (17 << 29), "cap": None, "tensors": 1_000_000}


__all__ = ["Case", "cases", "TEST_SCALE", "ISSUE_SCALE", "io"]

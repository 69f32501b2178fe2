"""`golfpack encode | decode | inspect` end to end, on synthetic and real checkpoints."""
import io
import json
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch

from golfpack import safetensors_io
from golfpack.checkpoint import read_checkpoint
from golfpack.errors import GolfpackError


def run_cli(*args, check=True):
    p = subprocess.run([sys.executable, "-m", "golfpack", *map(str, args)], capture_output=True, text=True, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"golfpack {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr}")
    return p


def bits_equal(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and (
        a.numel() == 0 or torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)))


def make_ptz(path, seed=0):
    """A small checkpoint in the baseline's int8_clean_per_row_v1 layout (written the baseline's way)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(48, 32, generator=g) * 0.05
    clip = torch.quantile(w.abs(), 0.9999984, dim=1)
    scale = torch.clamp(clip / 127, min=1 / 127).to(torch.float16)
    q = torch.clamp(torch.round(torch.clamp(w, -clip[:, None], clip[:, None]) / scale.float()[:, None]), -127, 127).to(torch.int8)
    obj = {
        "__quant_format__": "int8_clean_per_row_v1",
        "quantized": {"emb.weight": q},
        "scales": {"emb.weight": scale},
        "dtypes": {"emb.weight": "bfloat16"},
        "passthrough": {"gain": torch.randn(32, generator=g), "small": torch.randn(8, generator=g).half()},
        "passthrough_orig_dtypes": {"small": "float32"},
        "qmeta": {"emb.weight": {"scheme": "per_row", "axis": 0}},
    }
    buf = io.BytesIO()
    torch.save(obj, buf)
    path.write_bytes(zlib.compress(buf.getvalue(), 9))
    return obj


def test_encode_inspect_decode_ptz(tmp_path):
    src = tmp_path / "m.ptz"
    make_ptz(src)
    art = tmp_path / "m.gp"
    rep = json.loads(run_cli("encode", src, "-o", art, "--lossless", "--json").stdout)
    assert rep["artifact_bytes"] == art.stat().st_size
    assert rep["tensors"] == 3
    ins = json.loads(run_cli("inspect", art, "--json", "--verify").stdout)
    assert ins["verified"] and ins["artifact_bytes"] == art.stat().st_size
    row = {r["name"]: r for r in ins["tensors"]}["emb.weight"]
    assert row["bits"] == 8 and row["scheme"] == "int_rowscale" and row["h0_bytes"] > 0
    out = tmp_path / "m.safetensors"
    run_cli("decode", art, "-o", out)
    got, meta = safetensors_io.load_file(out)
    want = read_checkpoint(src).state_dict()
    assert set(got) == set(want)
    for k in want:
        assert bits_equal(got[k], want[k]), k
    assert got["small"].dtype == torch.float32  # recorded original dtype restored
    npz = tmp_path / "sym.npz"
    run_cli("decode", art, "--symbols", "-o", npz)
    z = np.load(npz)
    assert z["emb.weight.symbols"].dtype == np.int8 and z["emb.weight.symbols"].shape == (48, 32)


def test_safetensors_and_config_travel(tmp_path):
    ck_dir = tmp_path / "ckpt"
    ck_dir.mkdir()
    sd = {"a.weight": torch.randn(5, 7), "b": torch.randn(3).to(torch.bfloat16)}
    safetensors_io.save_file(sd, ck_dir / "model.safetensors")
    (ck_dir / "config.json").write_text(json.dumps({"model_dim": 7, "num_layers": 1}))
    art = tmp_path / "x.gp"
    run_cli("encode", ck_dir, "-o", art, "--lossless")
    out = tmp_path / "y.safetensors"
    run_cli("decode", art, "-o", out)
    got, meta = safetensors_io.load_file(out)
    assert json.loads(meta["golfpack.config"]) == {"model_dim": 7, "num_layers": 1}
    for k in sd:
        assert bits_equal(got[k], sd[k])


def test_pt_and_sharded_sources(tmp_path):
    sd = {"x": torch.randn(4, 4), "y": torch.arange(6, dtype=torch.float16)}
    torch.save({"state_dict": sd, "config": {"model_dim": 4}}, tmp_path / "m.pt")
    ck = read_checkpoint(tmp_path / "m.pt")
    assert ck.config == {"model_dim": 4} and bits_equal(ck.floats["x"], sd["x"])
    safetensors_io.save_file({"x": sd["x"]}, tmp_path / "s1.safetensors")
    safetensors_io.save_file({"y": sd["y"]}, tmp_path / "s2.safetensors")
    (tmp_path / "m.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "s1.safetensors", "y": "s2.safetensors"}}))
    art = tmp_path / "sh.gp"
    run_cli("encode", tmp_path / "m.safetensors.index.json", "-o", art, "--lossless")
    out = tmp_path / "o.safetensors"
    run_cli("decode", art, "-o", out)
    got, _ = safetensors_io.load_file(out)
    assert bits_equal(got["x"], sd["x"]) and bits_equal(got["y"], sd["y"])


def test_a_folder_with_a_sharded_index_is_a_checkpoint(tmp_path):
    """The shared 9x512 layout: model.safetensors.index.json beside its shards, the folder given."""
    d = tmp_path / "ck"
    d.mkdir()
    x = torch.randn(3, 5)
    safetensors_io.save_file({"x": x}, d / "model-00.safetensors")
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "model-00.safetensors"}}))
    assert bits_equal(read_checkpoint(d).floats["x"], x)
    (d / "model.safetensors.index.json").unlink()
    with pytest.raises(GolfpackError, match="model.safetensors.index.json"):
        read_checkpoint(d)


@pytest.mark.parametrize(
    "args, message",
    [
        (["encode", "{tmp}/missing.pt", "-o", "{tmp}/o.gp", "--lossless"], "no such file"),
        (["inspect", "{tmp}/garbage.gp"], "not a golfpack artifact"),
        (["decode", "{tmp}/garbage.gp", "-o", "{tmp}/o.safetensors"], "not a golfpack artifact"),
        (["encode", "{tmp}/garbage.gp", "-o", "{tmp}/o.gp", "--lossless"], "cannot be read|not a zlib"),
        (["encode", "{tmp}/m.ptz", "-o", "{tmp}/m.ptz", "--lossless"], "overwrite the input"),
        (["encode", "{tmp}/m.ptz", "-o", "{tmp}/nodir/o.gp", "--lossless"], "does not exist"),
        (["encode", "{tmp}/m.ptz", "-o", "{tmp}/o.gp"], "--lossless"),
    ],
)
def test_errors_are_one_clear_line(tmp_path, args, message):
    (tmp_path / "garbage.gp").write_bytes(b"\x00garbage" * 10)
    make_ptz(tmp_path / "m.ptz")
    before = (tmp_path / "m.ptz").read_bytes()
    p = run_cli(*[a.format(tmp=tmp_path) for a in args], check=False)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    import re

    assert re.search(message, lines[0]), lines[0]
    assert (tmp_path / "m.ptz").read_bytes() == before  # nothing the user had is lost


def test_corrupt_artifact_cli_error(tmp_path):
    make_ptz(tmp_path / "m.ptz")
    art = tmp_path / "m.gp"
    run_cli("encode", tmp_path / "m.ptz", "-o", art, "--lossless")
    data = bytearray(art.read_bytes())
    data[-3] ^= 0x10
    art.write_bytes(bytes(data))
    p = run_cli("inspect", art, "--verify", check=False)
    assert p.returncode == 2 and "checksum mismatch" in p.stderr and len(p.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_real_baseline_checkpoint_lossless(tmp_path, baseline_ptz):
    """Issue 2's bar: decodes identical to the .ptz's dequantized tensors and is <= 2,660,000 bytes."""
    art = tmp_path / "x.gp"
    rep = json.loads(run_cli("encode", baseline_ptz, "-o", art, "--lossless", "--json").stdout)
    assert rep["artifact_bytes"] <= 2_660_000, rep
    out = tmp_path / "x.safetensors"
    run_cli("decode", art, "-o", out)
    got, _ = safetensors_io.load_file(out)
    want = read_checkpoint(baseline_ptz).state_dict()
    assert list(got) == sorted(want)
    for k in want:
        assert bits_equal(got[k], want[k]), k

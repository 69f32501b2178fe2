"""`golfpack recode` / codec.recode: re-entropy-coding keeps every tensor bit-identical."""
import json

import numpy as np
import pytest
import torch

from golfpack.checkpoint import Checkpoint, QuantizedSource
from golfpack.codec.container import parse_artifact
from golfpack.codec.encode import encode_lossless
from golfpack.codec.recode import recode, stream_row_length
from golfpack.errors import GolfpackError
from tests.test_codec_cli import bits_equal, run_cli


def column_scaled_checkpoint():
    """A matrix whose columns alternate between two scales (rans_rc's column classes pay) + floats."""
    g = np.random.default_rng(3)
    ck = Checkpoint(source_format="test")
    scale = np.tile([0.3, 5.0], 48)
    q = np.clip(np.rint(g.laplace(size=(64, 96)) * scale), -31, 31).astype(np.int8)
    ck.quantized["w"] = QuantizedSource(torch.from_numpy(q), torch.from_numpy(g.uniform(0.01, 0.1, 64).astype(np.float16)),
                                        torch.float32)
    ck.floats["b"] = torch.linspace(-1, 1, 33, dtype=torch.bfloat16)
    ck.order = ["w", "b"]
    ck.config = {"model_dim": 96}
    return ck


def test_recode_keeps_tensors_and_uses_rans_rc():
    ck = column_scaled_checkpoint()
    old = encode_lossless(ck, coders=("raw", "rans"), jobs=1)
    new = recode(parse_artifact(old), jobs=1)
    a, b = parse_artifact(old), parse_artifact(new)
    b.verify()
    assert b.tensors["w"].streams["symbols"].coder == "rans_rc"
    assert len(new) < len(old)
    for name in ck.order:
        assert bits_equal(a.tensors[name].dequantize(), b.tensors[name].dequantize()), name
    np.testing.assert_array_equal(b.tensors["w"].symbols(), ck.quantized["w"].symbols.numpy())
    assert b.config == a.config and b.source == a.source
    # back to the old coders: the original bytes exactly (encoding is deterministic)
    assert recode(b, ("raw", "rans"), jobs=1) == old


def test_recode_rejects_unknown_coder():
    art = parse_artifact(encode_lossless(column_scaled_checkpoint(), jobs=1))
    with pytest.raises(GolfpackError, match="unknown coder"):
        recode(art, ("rans", "lz4"))


def test_stream_row_lengths_follow_format_layouts():
    class T:
        shape = (8, 4, 3)
    assert stream_row_length(T, "symbols") == 12
    assert stream_row_length(T, "lowrank_a") == 8  # A^T [r, N]
    assert stream_row_length(T, "lowrank_b") == 12  # B [r, K]
    assert stream_row_length(T, "scales") == 0
    T.shape = (5,)
    assert stream_row_length(T, "symbols") == 0


def test_recode_cli(tmp_path):
    from golfpack.codec.container import write_artifact
    src, out = tmp_path / "a.gp", tmp_path / "b.gp"
    write_artifact(src, encode_lossless(column_scaled_checkpoint(), coders=("raw", "rans"), jobs=1))
    rep = json.loads(run_cli("recode", src, "-o", out, "--json").stdout)
    assert rep["artifact_bytes"] == out.stat().st_size < src.stat().st_size
    assert rep["coders"].get("rans_rc") == 1
    p = run_cli("recode", src, "-o", src, check=False)  # refuses to overwrite its input
    assert p.returncode == 2 and p.stderr.strip()
    p = run_cli("recode", tmp_path / "missing.gp", "-o", tmp_path / "c.gp", check=False)
    assert p.returncode == 2 and "missing.gp" in p.stderr

"""Artifact -> GPT with PackedLinear layers (evaluate.packed_model) against the dense loader."""
import json

import numpy as np
import pytest
import torch

from golfpack.checkpoint import Checkpoint, QuantizedSource
from golfpack.codec.encode import encode_lossless
from golfpack.data.bytes import build_byte_tables
from golfpack.data.shards import write_shard
from golfpack.errors import GolfpackError
from golfpack.evaluate import evaluate
from golfpack.evaluate.packed_model import load_packed, packed_summary
from golfpack.model import GPT, GPTConfig, load
from golfpack.model.packed import PackedLinear

from eval_standin import doc_stream, tiny_tables

CFG = dict(vocab_size=40, num_layers=3, model_dim=32, num_heads=2, num_kv_heads=1)


def quantized_checkpoint(levels: int = 7, seed: int = 0, **over) -> tuple[Checkpoint, GPT]:
    """A tiny GPT whose linear weights sit on a per-row grid (symbols in +-levels)."""
    torch.manual_seed(seed)
    cfg = GPTConfig(**{**CFG, **over})
    model = GPT(cfg)
    ck = Checkpoint(config=cfg.to_dict(), source_format="test")
    linears = {n + ".weight" for n in model.linear_names}
    for name, t in model.state_dict().items():
        t = t + torch.randn_like(t) * 0.05  # zero-init projections would hide bugs
        if name in linears:
            scale = (t.abs().amax(dim=1) / levels).clamp_min(1e-3).to(torch.float16)
            q = torch.round(t / scale.float()[:, None]).clamp(-levels, levels).to(torch.int8)
            ck.quantized[name] = QuantizedSource(q, scale, torch.float32)
        else:
            ck.floats[name] = t.contiguous()
        ck.order.append(name)
    return ck, model


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    ck, _ = quantized_checkpoint()
    p = tmp_path_factory.mktemp("packed") / "tiny.golfpack"
    p.write_bytes(encode_lossless(ck, jobs=1))
    return p


def test_every_linear_is_packed_and_matches_the_dense_model(artifact):
    dense = load(artifact)
    packed = load_packed(artifact)
    names = dense.linear_names
    for n in names:
        assert isinstance(packed.get_submodule(n), PackedLinear)
    s = packed_summary(packed)
    assert s["packed_layers"] == len(names) == packed.packed_layers
    assert not any(isinstance(m, torch.nn.Linear) for m in packed.modules())
    x = torch.as_tensor(doc_stream(3, seed=1)[:50].astype(np.int64))[None]
    with torch.no_grad():
        a, b = dense(x), packed(x)
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    tok = doc_stream(30, seed=2)
    ra = evaluate(dense, tok, tiny_tables(), seq_len=32, stride=8)
    rb = evaluate(packed, tok, tiny_tables(), seq_len=32, stride=8)
    assert (ra.tokens, ra.bytes) == (rb.tokens, rb.bytes)
    assert rb.val_bpb == pytest.approx(ra.val_bpb, rel=1e-5)


def test_packed_weights_equal_the_artifact_grid(artifact):
    dense = load(artifact)
    packed = load_packed(artifact)
    for n in dense.linear_names:
        w = dense.get_submodule(n).weight
        assert torch.equal(packed.get_submodule(n).dequantize(), w), n


def test_a_baseline_format_ptz_packs_at_the_width_its_symbols_need(tmp_path):
    import io
    import zlib

    ck, _ = quantized_checkpoint(levels=1)  # ternary symbols: 2 bits suffice
    obj = {"__quant_format__": "int8_clean_per_row_v1", "quantized": {}, "scales": {}, "dtypes": {},
           "passthrough": {}}
    for name in ck.order:
        if name in ck.quantized:
            q = ck.quantized[name]
            obj["quantized"][name], obj["scales"][name], obj["dtypes"][name] = q.symbols, q.scale, "float32"
        else:
            obj["passthrough"][name] = ck.floats[name]
    buf = io.BytesIO()
    torch.save(obj, buf)
    p = tmp_path / "tiny.int8.ptz"
    p.write_bytes(zlib.compress(buf.getvalue(), 9))
    (tmp_path / "config.json").write_text(json.dumps(ck.config))
    m = load_packed(p)
    layers = [l for l in m.modules() if isinstance(l, PackedLinear)]
    assert len(layers) == len(m.linear_names) and {l.bits for l in layers} == {2}
    dense = load(p)
    x = torch.as_tensor(doc_stream(3, seed=4)[:40].astype(np.int64))[None]
    with torch.no_grad():
        assert torch.allclose(dense(x), m(x), atol=1e-4, rtol=1e-4)


def test_bad_inputs(artifact, tmp_path):
    with pytest.raises(GolfpackError, match="no such file"):
        load_packed(tmp_path / "missing.golfpack")
    with pytest.raises(GolfpackError):
        load_packed(artifact, config={**CFG, "model_dim": 64})
    with pytest.raises(GolfpackError, match="missing"):
        load_packed(artifact, config={**CFG, "num_layers": 4})


def test_cli_packed_equals_dense(artifact, tmp_path, sp1024_model, capsys):
    from golfpack.cli import main

    # The CLI builds byte tables from a SentencePiece model, so use a 1024-token artifact here.
    ck, _ = quantized_checkpoint(levels=127, seed=1, vocab_size=1024)
    art = tmp_path / "v1024.golfpack"
    art.write_bytes(encode_lossless(ck, jobs=1))
    shard = tmp_path / "val.bin"
    write_shard(shard, doc_stream(10, seed=3, vocab_size=1024))
    out = {}
    for flag in ([], ["--packed"]):
        rc = main(["eval", str(art), "--val", str(shard), "--tokenizer", str(sp1024_model), "--seq-len", "32",
                   "--device", "cpu", "--json"] + flag)
        assert rc == 0
        out[bool(flag)] = json.loads(capsys.readouterr().out)
    assert out[True]["packed"] and not out[False]["packed"]
    assert (out[True]["tokens"], out[True]["bytes"]) == (out[False]["tokens"], out[False]["bytes"])
    assert out[True]["val_bpb"] == pytest.approx(out[False]["val_bpb"], rel=1e-5)


def _lowrank_artifact(ck: Checkpoint, lowrank: dict[str, str]) -> bytes:
    """ck's lossless artifact with a rank-2 LQER term added to each tensor of `lowrank`
    (name -> the dtype the tensor then records)."""
    from golfpack.codec.coders import StreamType
    from golfpack.codec.container import build_artifact
    from golfpack.codec.encode import encode_plan, lossless_tensor

    rng = np.random.default_rng(0)
    plan = []
    for name in ck.order:
        n, shape, dtype, scheme, streams = lossless_tensor(ck, name)
        if name in lowrank:
            r, (rows, cols) = 2, shape
            scheme = {**scheme, "lowrank": {"rank": r, "bits": 6}}
            for role, count in (("lowrank_a", r * rows), ("lowrank_b", r * cols)):
                streams[role] = (StreamType("int", count, 6), rng.integers(-31, 32, count).astype(np.int8))
                streams[role + "_scales"] = (StreamType("float16", r), np.full(r, 1e-3, np.float16))
            dtype = lowrank[name]
        plan.append((n, shape, dtype, scheme, streams))
    # rans only: the fused prefetch decodes rANS-coded symbols (tiny streams would otherwise go raw)
    return build_artifact(encode_plan(plan, ("rans",), jobs=1), config=ck.config, source={"format": "test"})


def test_weights_that_stay_dense_are_not_decoded_into_packed_rows(tmp_path, monkeypatch):
    """load_packed prefetches packed rows only for the weights it packs: a token table with an LQER
    term and a linear whose recorded dtype is not float32 with one stay dense, and decoding their
    symbols into packed rows as well would be work thrown away."""
    import golfpack.codec.container as container

    ck, _ = quantized_checkpoint()
    t = ck.floats.pop("tok_emb.weight")
    scale = (t.abs().amax(dim=1) / 7).clamp_min(1e-3).to(torch.float16)
    ck.quantized["tok_emb.weight"] = QuantizedSource(
        torch.round(t / scale.float()[:, None]).clamp(-7, 7).to(torch.int8), scale, torch.float32)
    dense_slots = {"tok_emb.weight": "float32", "blocks.1.attn.c_q.weight": "bfloat16"}
    p = tmp_path / "lowrank.gp"
    p.write_bytes(_lowrank_artifact(ck, {**dense_slots, "blocks.0.mlp.fc.weight": "float32"}))
    prefetched = []
    real = container.packed_rows

    def spy(entries, threads=1):
        prefetched.extend(e.name for e in entries)
        return real(entries, threads)

    monkeypatch.setattr(container, "packed_rows", spy)
    m = load_packed(p)
    packed = {n + ".weight" for n in m.linear_names if isinstance(m.get_submodule(n), PackedLinear)}
    assert "blocks.0.mlp.fc.weight" in packed  # an LQER linear in float32 is packed (A, B applied)
    assert not set(dense_slots) & packed and not hasattr(m.tok_emb, "table")
    assert sorted(prefetched) == sorted(packed)
    dense = load(p)
    x = torch.as_tensor(doc_stream(3, seed=1)[:50].astype(np.int64))[None]
    with torch.no_grad():
        assert torch.allclose(dense(x), m(x), atol=1e-4, rtol=1e-4)

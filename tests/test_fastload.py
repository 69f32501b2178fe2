"""The fast load of issue 19: each shortcut against the slower code it stands in for.

- the manifest's fast tensor parse (container._fast_tensor) builds exactly what the checking
  parser builds, and accepts nothing that parser refuses;
- safe_json's vectorized bracket scan equals the regex scan, and the integer bounds hold with
  the parse_int hook skipped;
- PackedLinear.from_packed_rows builds the module the constructor builds;
- the skeleton built with layers.weights_on_meta has the meta-device model's tensors;
- load_packed gives the model (structure, tensors, logits) the pre-issue-19 loader gave: that
  loader is rebuilt here from public pieces (meta-mode skeleton, PackedLinear's constructor,
  load_state_dict(assign=True)), as it stood before this change.
"""
import copy
import random

import numpy as np
import pytest
import torch

from golfpack import _C
from golfpack.codec.coders import CODERS
from golfpack.codec.container import _fast_tensor, _parse_tensor, parse_artifact, read_artifact, row_scales_f32
from golfpack.codec.encode import encode_lossless
from golfpack.errors import FormatError, GolfpackError
from golfpack.evaluate.packed_model import load_packed
from golfpack.model import GPT, GPTConfig
from golfpack.model.layers import Linear, weights_on_meta
from golfpack.model.packed import PackedEmbedding, PackedLinear, row_stride
from golfpack.safe_json import _bracket_scan, _has_digit_run, _plain_scan, loads_bounded

from tests.test_eval_packed import _lowrank_artifact, quantized_checkpoint

CODER_SET = frozenset(CODERS)


def _manifest(data: bytes) -> dict:
    import json
    import struct

    import zstandard

    stored = struct.unpack_from("<I", data, 16)[0]
    return json.loads(zstandard.ZstdDecompressor().decompress(data[28:28 + stored]))


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """Artifacts of the tiny model: raw and rANS coded, one with LQER terms, one without a config."""
    d = tmp_path_factory.mktemp("fastload")
    ck, _ = quantized_checkpoint(levels=20)
    out = {}
    for name, coders in (("raw", ("raw",)), ("rans", ("rans",)), ("all", CODERS)):
        out[name] = d / f"{name}.gp"
        out[name].write_bytes(encode_lossless(ck, coders=coders, jobs=1))
    out["lowrank"] = d / "lowrank.gp"
    out["lowrank"].write_bytes(_lowrank_artifact(ck, {"blocks.0.mlp.fc.weight": "float32",
                                                      "blocks.1.attn.c_q.weight": "bfloat16"}))
    no_cfg = copy.copy(ck)
    no_cfg.config = None
    out["no_config"] = d / "no_config.gp"
    out["no_config"].write_bytes(encode_lossless(no_cfg, coders=("rans",), jobs=1))
    return out


# ----------------------------------------------------------------------------- manifest


def test_fast_tensor_parse_builds_what_the_checking_parser_builds(artifacts):
    fast_taken = 0
    for p in artifacts.values():
        man = _manifest(p.read_bytes())
        for d in man["tensors"]:
            slow = _parse_tensor(d, man["payload_bytes"])
            fast = _fast_tensor(d, man["payload_bytes"], CODER_SET)
            if fast is not None:
                fast_taken += 1
                assert fast == slow and list(fast.streams) == list(slow.streams), d["name"]
            else:  # only what the fast path leaves to the checking parser on purpose
                assert slow.rank or slow.kind not in ("float", "int_rowscale"), d["name"]
    assert fast_taken > 20


def _mutations(d: dict, rng: random.Random, n: int):
    """n copies of the tensor entry d, each with one field replaced, removed or added."""
    values = [None, True, False, 0, -1, 1, 2, 7, 8, 9, 2**32, 2**40, 2**40 + 1, 2**62, 0.5, "", "x", "int",
              "float16", "float32", "bfloat16", "rans", "raw", "none", "byteshuffle", [], [1], [2**41], {}, {"k": 1}]
    paths = []

    def walk(node, path):
        for k, v in (node.items() if isinstance(node, dict) else enumerate(node)):
            paths.append(path + (k,))
            if isinstance(v, (dict, list)):
                walk(v, path + (k,))

    walk(d, ())
    for _ in range(n):
        m = copy.deepcopy(d)
        for _ in range(rng.choice([1, 1, 2, 3])):
            path = rng.choice(paths)
            parent = m
            try:
                for k in path[:-1]:
                    parent = parent[k]
                parent[path[-1]]
            except (KeyError, IndexError, TypeError):  # an earlier edit removed or replaced it
                continue
            if not isinstance(parent, (dict, list)):
                continue
            op = rng.random()
            if op < 0.15 and isinstance(parent, dict):
                del parent[path[-1]]
            elif op < 0.3 and isinstance(parent, dict):
                parent[rng.choice(["extra", "bits", "meta", "lowrank", "group"])] = rng.choice(values)
            elif isinstance(parent[path[-1]], int) and not isinstance(parent[path[-1]], bool) and rng.random() < 0.5:
                parent[path[-1]] = rng.choice([-1, 1, 2**40]) * (1 if rng.random() < 0.5 else parent[path[-1]])
            else:
                parent[path[-1]] = rng.choice(values)
        yield m


def test_fast_tensor_parse_accepts_nothing_the_checking_parser_refuses(artifacts):
    rng = random.Random(0)
    man = _manifest(artifacts["rans"].read_bytes())
    entries = [d for d in man["tensors"] if _fast_tensor(d, man["payload_bytes"], CODER_SET) is not None]
    rowscale = [d for d in entries if d["scheme"]["kind"] == "int_rowscale"]
    floats = [d for d in entries if d["scheme"]["kind"] == "float"]
    assert rowscale and floats
    refused = 0
    for d in rowscale[:4] + floats[:2]:
        for m in _mutations(d, rng, 300):
            try:
                slow = _parse_tensor(m, man["payload_bytes"])
            except Exception:  # noqa: BLE001 - whatever the checking parser does with it, fast must not accept
                slow = None
                refused += 1
            fast = _fast_tensor(m, man["payload_bytes"], CODER_SET)
            assert fast is None or fast == slow, m
    assert refused > 500  # the mutations reach the checks


def _rowscale_entry(shape=(4, 8), scales_type="float16", scales_count=4, symbols=None) -> dict:
    stream = {"coder": "raw", "transform": "none", "offset": 0, "length": 0, "crc32": 0}
    return {"name": "w", "shape": list(shape), "dtype": "float32", "scheme": {"kind": "int_rowscale", "bits": 4},
            "streams": {"scales": {**stream, "type": scales_type, "count": scales_count},
                        "symbols": {**stream, "type": "int", "bits": 4, "count": 32, **(symbols or {})}}}


@pytest.mark.parametrize("entry, rule", [
    (_rowscale_entry(shape=(-4, -8), scales_count=-4), "shape"),  # negative dims whose product fits
    (_rowscale_entry(scales_type="bfloat16"), "scales must be float16 or float32"),
    (_rowscale_entry(symbols={"extra": 1}), "keys"),
    (_rowscale_entry(symbols={"count": True}), "count must be"),
    (_rowscale_entry(symbols={"coder": "lz4"}), "unknown coder"),
])
def test_fast_parse_leaves_hand_made_bad_entries_to_the_checking_parser(entry, rule):
    assert _fast_tensor(entry, 100, CODER_SET) is None
    with pytest.raises(FormatError, match=rule):
        _parse_tensor(entry, 100)
    good = _rowscale_entry()
    assert _fast_tensor(good, 100, CODER_SET) == _parse_tensor(good, 100) is not None


def test_fast_parse_keeps_the_stream_count_cap():
    """A zero-size matrix with 2^35 rows: its scales stream would hold 2^35 values (> 2^30)."""
    d = {"name": "w", "shape": [2**35, 0], "dtype": "float32", "scheme": {"kind": "int_rowscale", "bits": 4},
         "streams": {"scales": {"type": "float16", "count": 2**35, "coder": "raw", "transform": "none",
                                "offset": 0, "length": 0, "crc32": 0},
                     "symbols": {"type": "int", "bits": 4, "count": 0, "coder": "raw", "transform": "none",
                                 "offset": 0, "length": 0, "crc32": 0}}}
    assert _fast_tensor(d, 0, CODER_SET) is None
    with pytest.raises(FormatError, match="count"):
        _parse_tensor(d, 0)


def test_plain_bracket_scan_equals_the_regex_scan():
    rng = random.Random(1)
    compared = 0
    for _ in range(4000):
        text = "".join(rng.choice('[]{}:"a1, ') for _ in range(rng.randint(0, 60)))
        for size in (1, 3, 1 << 16):
            got = _plain_scan(text.encode(), 64, size)
            if got is not None:
                compared += 1
                assert got == _bracket_scan(text, 64), (text, size)
    assert compared > 3000
    assert _plain_scan(b'{"a\\"": [1]}', 64) is None  # an escape: the regex scan decides
    assert _plain_scan(b'{"a": "[[}', 64) is None  # an unpaired quote: likewise
    assert loads_bounded('{"a\\"[": [1]}', "t") == {'a"[': [1]}


def test_integer_bounds_hold_without_the_parse_int_hook():
    assert _has_digit_run(b'{"a": 1234567890123456789}', 19) and not _has_digit_run(b'{"a": 123456789012345678}', 19)
    assert loads_bounded('{"a": 123456789012345678}', "t") == {"a": 123456789012345678}
    assert loads_bounded('{"a": -9223372036854775808}', "t") == {"a": -2**63}
    assert loads_bounded('{"a": "12345678901234567890123", "b": 5}', "t")["b"] == 5
    with pytest.raises(FormatError, match="outside the signed 64-bit range"):
        loads_bounded('{"a": 9223372036854775808}', "t")
    with pytest.raises(FormatError, match="21 digits exceeds"):
        loads_bounded('{"a": 123456789012345678901}', "t")
    with pytest.raises(FormatError, match="6 digits exceeds"):
        loads_bounded('{"a": 123456}', "t", max_int_digits=5)
    with pytest.raises(FormatError, match="duplicate key"):
        loads_bounded(b'{"a": 1, "a": 2}', "t")


# ----------------------------------------------------------------------------- layers and skeleton


def test_from_packed_rows_builds_what_the_constructor_builds():
    rng = np.random.default_rng(0)
    for bits, (n, k) in ((4, (24, 40)), (7, (16, 33)), (8, (5, 16))):
        q = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), (n, k)).astype(np.int8)
        rows = torch.from_numpy(_C.qpack_rows(q, bits))
        s = torch.rand(n, dtype=torch.float32) + 0.1
        ref, fast = PackedLinear(rows, s, bits, k), PackedLinear.from_packed_rows(rows, s, bits, k)
        assert list(fast.__dict__) == list(ref.__dict__)
        assert {a: v for a, v in fast.__dict__.items() if not a.startswith("_")} == \
            {a: v for a, v in ref.__dict__.items() if not a.startswith("_")}
        assert list(fast._buffers) == list(ref._buffers) and fast._parameters == ref._parameters == {}
        assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(fast._buffers.values(),
                                                                                  ref._buffers.values()))
        x = torch.randn(3, k)
        assert torch.equal(fast(x), ref(x)) and repr(fast) == repr(ref)
    with pytest.raises(GolfpackError, match="stride"):
        PackedLinear.from_packed_rows(rows[:, :8], s, 8, 16)
    with pytest.raises(GolfpackError, match="float32"):
        PackedLinear.from_packed_rows(rows, s.double(), 8, 16)
    with pytest.raises(GolfpackError, match="contiguous"):
        PackedLinear.from_packed_rows(torch.zeros(16, 5, dtype=torch.uint8).t(), s, 8, 16)
    with pytest.raises(GolfpackError, match="bits"):
        PackedLinear.from_packed_rows(rows, s, 9, 16)


@pytest.mark.parametrize("over", [{}, dict(bigram_buckets=64, bigram_dim=16), dict(ve_layers=[1, 2], ve_dim=8),
                                  dict(gated_attention=True, attn_gate_bias=True), dict(tie_embeddings=False),
                                  dict(smear_gate=True, value_residual=True)])
def test_weights_on_meta_skeleton_has_the_meta_models_tensors(over):
    cfg = GPTConfig(vocab_size=40, num_layers=3, model_dim=32, num_heads=2, num_kv_heads=1, **over)
    with torch.device("meta"):
        ref = GPT(cfg)
    with weights_on_meta():
        fast = GPT(cfg)
    rs, fs = ref.state_dict(keep_vars=True), fast.state_dict(keep_vars=True)
    assert list(rs) == list(fs) and fast.linear_names == ref.linear_names
    for k in rs:
        assert (rs[k].shape, rs[k].dtype, type(rs[k]), rs[k].requires_grad) == \
            (fs[k].shape, fs[k].dtype, type(fs[k]), fs[k].requires_grad), k
        owner = fast.get_submodule(k.rpartition(".")[0]) if "." in k else fast
        big = isinstance(owner, (torch.nn.Linear, torch.nn.Embedding))
        assert fs[k].is_meta == big, k  # the layers' tensors without data, every other one real
        if not big:
            assert torch.equal(fs[k], GPT(cfg).state_dict()[k]) or "gate" in k, k  # at their init values
    for n in fast.linear_names:
        a, b = ref.get_submodule(n), fast.get_submodule(n)
        assert type(a) is type(b) and list(a.__dict__) == list(b.__dict__), n
    plain = Linear(4, 3)  # outside the context: an ordinary, initialized CPU layer
    assert not plain.weight.is_meta and plain.weight.abs().sum() > 0 and plain.bias is not None


# ----------------------------------------------------------------------------- load_packed, before and after


def _load_packed_before(path):
    """load_packed as it was before issue 19's fast load (fused path), from public pieces."""
    from golfpack.codec.container import packed_rows
    from golfpack.model.load import as_config, infer_config

    art = read_artifact(path)
    cfg = as_config(art.config) if art.config is not None else infer_config(
        {k: torch.empty(e.shape, device="meta") for k, e in art.tensors.items()})
    with torch.device("meta"):
        model = GPT(cfg)
    emb = "tok_emb.weight"

    def packable(key, module):
        e = art.tensors[key]
        if module is not None and getattr(module, "bias", None) is not None or not e.is_rowscale_matrix:
            return False
        return not (e.rank and (key == emb or e.dtype != "float32"))

    keys = [n + ".weight" for n in model.linear_names if packable(n + ".weight", model.get_submodule(n))]
    keys += [emb] if packable(emb, None) else []
    direct = [k for k in keys if art.tensors[k].packs_directly]
    rows = dict(zip(direct, packed_rows([art.tensors[k] for k in direct])))
    consumed = set()

    def build(key):
        e = art.tensors[key]
        lr = e.lowrank()
        a, b = lr if lr is not None else (None, None)
        if key in rows:
            return PackedLinear(torch.from_numpy(rows[key]), e.scales().to(torch.float32), e.bits, e.shape[1],
                                lowrank_a=a, lowrank_b=b)
        return PackedLinear.from_symbols(e.symbols(), e.scales().to(torch.float32), e.bits, lowrank_a=a, lowrank_b=b)

    def pack(slot, module):
        if slot + ".weight" not in keys:
            return None
        consumed.add(slot + ".weight")
        return build(slot + ".weight")

    n_packed = model.replace_linears(pack)
    if emb in keys:
        model.tok_emb = PackedEmbedding(build(emb), source_dtype={"float32": torch.float32, "bfloat16": torch.bfloat16,
                                                                  "float16": torch.float16}[art.tensors[emb].dtype])
        consumed.add(emb)
    rest = {k: art.tensors[k].dequantize().to(v.dtype).contiguous()
            for k, v in model.state_dict().items() if k not in consumed and v.is_meta}
    model.load_state_dict(rest, strict=False, assign=True)
    model.packed_layers = n_packed
    return model.eval()


@pytest.mark.parametrize("which", ["raw", "rans", "all", "lowrank", "no_config"])
def test_load_packed_gives_the_model_the_loader_before_it_gave(artifacts, which):
    before, after = _load_packed_before(artifacts[which]), load_packed(artifacts[which])
    assert after.packed_layers == before.packed_layers > 0
    mb, ma = dict(before.named_modules()), dict(after.named_modules())
    assert list(mb) == list(ma)
    for name in mb:
        assert type(mb[name]) is type(ma[name]) and mb[name].training is ma[name].training is False, name
        assert list(mb[name]._parameters) == list(ma[name]._parameters), name
        assert list(mb[name]._buffers) == list(ma[name]._buffers), name
    sb, sa = before.state_dict(keep_vars=True), after.state_dict(keep_vars=True)
    assert list(sb) == list(sa)
    for k in sb:
        assert type(sb[k]) is type(sa[k]) and sb[k].requires_grad == sa[k].requires_grad, k
        assert sb[k].dtype == sa[k].dtype and torch.equal(sb[k], sa[k]), k
    idx = torch.tensor([[1, 5, 9, 2, 33, 7, 0, 12]])
    with torch.no_grad():
        assert torch.equal(before(idx), after(idx))
    assert torch.equal(before(idx, idx).detach(), after(idx, idx).detach())  # loss, with autograd on


def test_row_scales_f32_refuses_a_nan_scale_by_name(tmp_path):
    import zlib

    from tests.test_container import _rebuild

    ck, _ = quantized_checkpoint(levels=20)
    name = "blocks.1.mlp.proj.weight"
    data = encode_lossless(ck, coders=("raw",), jobs=1)  # the writer refuses a NaN scale: put one in after
    man, art = _manifest(data), parse_artifact(data)
    payload = bytearray(data[art.header_bytes:])
    s = next(d for d in man["tensors"] if d["name"] == name)["streams"]["scales"]
    assert s["type"] == "float16" and s["coder"] == "raw"
    payload[s["offset"] + 6:s["offset"] + 8] = np.array([np.nan], np.float16).tobytes()  # row 3
    s["crc32"] = zlib.crc32(payload[s["offset"]:s["offset"] + s["length"]])
    p = tmp_path / "nan.gp"
    p.write_bytes(_rebuild(man, bytes(payload)))
    art = parse_artifact(p.read_bytes())
    entries = [e for e in art.tensors.values() if e.is_rowscale_matrix]
    with pytest.raises(FormatError, match=f"tensor '{name}': scales stream holds NaN"):
        row_scales_f32(entries)
    with pytest.raises(FormatError, match=f"tensor '{name}': scales stream holds NaN"):
        load_packed(p)
    good = [e for e in entries if e.name != name]
    for e, s in zip(good, row_scales_f32(good)):
        assert s.dtype == torch.float32 and torch.equal(s, e.scales().to(torch.float32)), e.name
    assert row_stride(16, 4) == 16  # (the packed layout these layers hold)


def test_the_loaded_model_keeps_no_view_of_the_file(artifacts, tmp_path):
    """The loaded model depends on nothing of the file: truncated in place after the load, every
    tensor still works (a mapped file left in the model would crash with SIGBUS)."""
    import shutil
    import subprocess
    import sys

    p = tmp_path / "mapped.gp"
    shutil.copy(artifacts["all"], p)
    code = (
        "import sys, torch\n"
        "from golfpack.evaluate.packed_model import load_packed\n"
        "m = load_packed(sys.argv[1])\n"
        "open(sys.argv[1], 'wb').close()\n"  # truncated to 0 bytes in place
        "s = sum(float(t.float().sum()) for t in m.state_dict().values())\n"
        "print(float(m(torch.tensor([[1, 2, 3]])).sum()), s)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    with pytest.raises(FormatError, match="shorter than the 28-byte header"):
        p.write_bytes(b"GOLFPACK")
        load_packed(p)

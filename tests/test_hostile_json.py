"""Hostile JSON with valid checksums (issue 12): one clear FormatError, never a traceback.

A hostile writer computes correct CRCs, so every case here is a *forged*
artifact: a valid one whose manifest text is rewritten and whose header CRC is
recomputed (FORMAT.md section 1). Then the same bounds for every other JSON
golfpack reads (safetensors headers and metadata, config.json, sharded
indexes, GPTConfig and training configs), and the writer refusing what the
reader would.
"""
import json
import re
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from golfpack import safetensors_io
from golfpack.checkpoint import read_checkpoint
from golfpack.cli import main
from golfpack.codec.coders import StreamType, encode_stream
from golfpack.codec.container import (
    HEADER,
    MANIFEST_RAW,
    MANIFEST_ZSTD,
    EncodedStream,
    EncodedTensor,
    build_artifact,
    parse_artifact,
    read_artifact,
)
from golfpack.errors import FormatError, GolfpackError
from golfpack.model import GPTConfig
from golfpack.safe_json import check_value, loads_bounded

# ----------------------------------------------------------------------------- forging


def _tensors(meta):
    q = np.array([[-2, -1, 0, 1], [1, 1, -2, 0], [0, 0, 0, -1]], dtype=np.int8)
    scales = np.array([0.5, 0.25, 1.0], dtype=np.float16)
    bias = np.array([1.0, -2.0], dtype=np.float32)
    st_q, st_s, st_b = StreamType("int", 12, 2), StreamType("float16", 3), StreamType("float32", 2)
    return [
        EncodedTensor("w", (3, 4), "float32", {"kind": "int_rowscale", "bits": 2}, {
            "symbols": EncodedStream(st_q, "raw", "none", encode_stream(q.reshape(-1), st_q, "raw")),
            "scales": EncodedStream(st_s, "raw", "none", encode_stream(scales, st_s, "raw")),
        }, meta=meta),
        EncodedTensor("b", (2,), "float32", {"kind": "float"}, {
            "data": EncodedStream(st_b, "raw", "none", encode_stream(bias, st_b, "raw")),
        }),
    ]


def build(meta=None, config=None, source=None, coding=MANIFEST_RAW) -> bytes:
    return build_artifact(_tensors(meta or {"x": "HOLE_M"}), config=config or {"model_dim": 4, "c": "HOLE_C"},
                          source=source or {"format": "test", "s": "HOLE_S"}, manifest_coding=coding)


BASE = build()
_STORED = int.from_bytes(BASE[16:20], "little")
BASE_TEXT = BASE[28 : 28 + _STORED].decode()
PAYLOAD = BASE[28 + _STORED :]


def forge(text: str, coding: int) -> bytes:
    """An artifact whose manifest is `text`, stored raw (0) or as zstd (1), with a valid header CRC."""
    raw = text.encode("utf-8", "surrogatepass")
    stored = zstandard.ZstdCompressor(level=3, write_content_size=True).compress(raw) if coding else raw
    head = HEADER.pack(b"GOLFPACK", 1, 0, coding, 0, 0, len(stored), len(raw), 0)[:-4]
    return head + struct.pack("<I", zlib.crc32(stored, zlib.crc32(head))) + stored + PAYLOAD


def sub1(text: str, old: str, new: str) -> str:
    assert text.count(old) >= 1, old
    return text.replace(old, new, 1)


def at(place: str, value: str) -> str:
    """The base manifest with `value` (JSON text) at config.c, source.s or tensors[0].meta.x."""
    return sub1(BASE_TEXT, {"config": '"HOLE_C"', "source": '"HOLE_S"', "meta": '"HOLE_M"'}[place], value)


PATHS = {"config": r"config\.c", "source": r"source\.s", "meta": r"tensors\[0\]\.meta\.x"}
BIG = "7" * 5000


def deep(n: int, kind: str) -> str:
    return "[" * n + "]" * n if kind == "[" else '{"a":' * n + "0" + "}" * n


CASES = {  # name -> (manifest text, regex the one-line message must match)
    "int5000-meta": (at("meta", BIG), r"manifest: tensors\[0\]\.meta\.x: integer literal of 5000 digits exceeds the 20-digit limit"),
    "int5000-payload_bytes": (re.sub(r'"payload_bytes":\d+', f'"payload_bytes":{BIG}', BASE_TEXT),
                              r"manifest: payload_bytes: integer literal of 5000 digits"),
    "int5000-offset": (sub1(BASE_TEXT, '"offset":0', f'"offset":{BIG}'),
                       r"manifest: tensors\[0\]\.streams\.scales\.offset: integer literal of 5000 digits"),
    "int5000-shape": (sub1(BASE_TEXT, '"shape":[3,4]', f'"shape":[3,{BIG}]'),
                      r"manifest: tensors\[0\]\.shape\[1\]: integer literal of 5000 digits"),
    "int64-overflow-meta": (at("meta", str(2**63)), r"tensors\[0\]\.meta\.x: integer of 64 bits is outside"),
    "shape-2^41": (sub1(BASE_TEXT, '"shape":[2]', f'"shape":[{2**41}]'), r"tensor 'b': shape .*\[0, 2\^40\]"),
    "shape-2^63": (sub1(BASE_TEXT, '"shape":[2]', f'"shape":[0,{2**63}]'), r"tensors\[1\]\.shape\[1\]: integer"),
    "offset-2^41": (sub1(BASE_TEXT, '"offset":0', f'"offset":{2**41}'), r"stream 'scales': offset 2199023255552 outside \[0, 2\^40\]"),
    "payload_bytes-2^41": (re.sub(r'"payload_bytes":\d+', f'"payload_bytes":{2**41}', BASE_TEXT),
                           r"manifest: payload_bytes 2199023255552 outside \[0, 2\^40\]"),
    "dup-key-meta": (at("meta", '{"k":1,"k":2}'), r"tensors\[0\]\.meta\.x: duplicate key 'k'"),
    "lone-surrogate-meta": (at("meta", '"\\ud800"'), r"tensors\[0\]\.meta\.x: string holds a lone surrogate"),
}
for place in ("config", "source", "meta"):
    for n in (5000, 100_000):
        CASES[f"deep{n}-{place}"] = (at(place, deep(n, "[")), PATHS[place] + r"\[0\].*nested deeper than 64 levels")
    CASES[f"deep5000obj-{place}"] = (at(place, deep(5000, "{")), PATHS[place] + r"\.a\.a.*nested deeper than 64 levels")
    for lit, msg in (("NaN", "non-finite number NaN"), ("Infinity", "non-finite number Infinity"),
                     ("-Infinity", "non-finite number -Infinity"), ("1e400", "number 1e400 overflows"),
                     ("-1e400", "number -1e400 overflows")):
        CASES[f"{lit}-{place}"] = (at(place, f"[1,{lit}]"), PATHS[place] + r"\[1\]: " + msg)


def test_forge_itself_is_faithful():
    """The unmodified manifest, re-forged both ways, parses: so every rejection below is the hostile content."""
    for coding in (MANIFEST_RAW, MANIFEST_ZSTD):
        art = parse_artifact(forge(BASE_TEXT, coding))
        art.verify()
        assert art.tensors["w"].meta == {"x": "HOLE_M"} and art.source["s"] == "HOLE_S"


@pytest.mark.parametrize("coding", [MANIFEST_RAW, MANIFEST_ZSTD])
@pytest.mark.parametrize("case", sorted(CASES))
def test_forged_manifest_gives_one_format_error(case, coding, tmp_path):
    text, pattern = CASES[case]
    data = forge(text, coding)
    with pytest.raises(FormatError) as e:
        parse_artifact(data)
    assert re.search(pattern, str(e.value)), str(e.value)
    assert "\n" not in str(e.value) and len(str(e.value)) < 400
    p = tmp_path / "forged.gp"
    p.write_bytes(data)
    with pytest.raises(FormatError, match="^" + re.escape(f"{p}: manifest: ")) as e2:
        read_artifact(p)
    assert re.search(pattern, str(e2.value)), str(e2.value)


def _one_line_error(capsys, argv, pattern, command):
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2, (rc, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"golfpack {command}: error: "), lines[0]
    assert re.search(pattern, lines[0]), lines[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_forged_manifest_cli_inspect_and_decode(case, tmp_path, capsys):
    text, pattern = CASES[case]
    for coding in (MANIFEST_RAW, MANIFEST_ZSTD):
        art = tmp_path / f"forged{coding}.gp"
        art.write_bytes(forge(text, coding))
        _one_line_error(capsys, ["inspect", str(art), "--verify"], pattern, "inspect")
        _one_line_error(capsys, ["inspect", str(art), "--json"], pattern, "inspect")
        out = tmp_path / "x.safetensors"
        _one_line_error(capsys, ["decode", str(art), "-o", str(out)], pattern, "decode")
        assert not out.exists()


EVAL_CASES = ["int5000-meta", "int5000-payload_bytes", "deep100000-config", "NaN-source", "1e400-meta"]


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("case", EVAL_CASES)
def test_forged_manifest_cli_eval(case, packed, tmp_path, capsys, sp1024_model):
    from golfpack.data.shards import write_shard

    shard = tmp_path / "val.bin"
    write_shard(shard, np.array([1, 5, 6, 7, 8, 9] * 20, dtype=np.uint16))
    text, pattern = CASES[case]
    art = tmp_path / "forged.gp"
    art.write_bytes(forge(text, MANIFEST_ZSTD))
    argv = ["eval", str(art), "--val", str(shard), "--tokenizer", str(sp1024_model), "--device", "cpu"]
    _one_line_error(capsys, argv + (["--packed"] if packed else []), pattern, "eval")


@pytest.mark.parametrize("case", ["deep100000-config", "int5000-meta"])
def test_no_traceback_in_a_real_process(case, tmp_path):
    text, pattern = CASES[case]
    art = tmp_path / "forged.gp"
    art.write_bytes(forge(text, MANIFEST_ZSTD))
    p = subprocess.run([sys.executable, "-m", "golfpack", "inspect", str(art), "--verify"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(pattern, lines[0]), p.stderr


def test_depth_limit_is_exact_and_shared_by_reader_and_writer():
    # meta.x sits at depth 4 (manifest > tensors > tensor > meta): 60 more levels fit, 61 do not.
    for n, ok in ((60, True), (61, False)):
        value = 0
        for _ in range(n):
            value = [value]
        text = at("meta", json.dumps(value))
        if ok:
            assert parse_artifact(forge(text, MANIFEST_RAW)).tensors["w"].meta["x"] == value
            assert parse_artifact(build(meta={"x": value})).tensors["w"].meta["x"] == value
        else:
            with pytest.raises(FormatError, match="nested deeper than 64"):
                parse_artifact(forge(text, MANIFEST_RAW))
            with pytest.raises(GolfpackError, match=r"tensors\[0\]\.meta\.x.*nested deeper than 64"):
                build(meta={"x": value})


def test_integer_limit_is_the_int64_range_on_both_sides():
    for v in (2**63 - 1, -(2**63)):
        assert parse_artifact(forge(at("meta", str(v)), MANIFEST_RAW)).tensors["w"].meta["x"] == v
        assert parse_artifact(build(meta={"x": v})).tensors["w"].meta["x"] == v
    for v in (2**63, -(2**63) - 1, 10**30):
        with pytest.raises(FormatError, match=r"tensors\[0\]\.meta\.x"):
            parse_artifact(forge(at("meta", str(v)), MANIFEST_RAW))
        with pytest.raises(GolfpackError, match=r"tensors\[0\]\.meta\.x: integer"):
            build(meta={"x": v})


# ----------------------------------------------------------------------------- the writer


@pytest.mark.parametrize("kw, pattern", [
    (dict(meta={"x": float("nan")}), r"manifest: tensors\[0\]\.meta\.x: non-finite number nan"),
    (dict(meta={"x": [1, float("-inf")]}), r"tensors\[0\]\.meta\.x\[1\]: non-finite"),
    (dict(meta={"x": 2**63}), r"tensors\[0\]\.meta\.x: integer of 64 bits"),
    (dict(meta={"x": 10**5000}), r"tensors\[0\]\.meta\.x: integer of 16610 bits"),
    (dict(meta={"x": "a\ud800"}), r"tensors\[0\]\.meta\.x: string holds a lone surrogate"),
    (dict(meta={"x": {1: 2}}), r"tensors\[0\]\.meta\.x: key 1 is not a string"),
    (dict(meta={"x": np.float32(1.0)}), r"tensors\[0\]\.meta\.x: a float32 is not a JSON value"),
    (dict(config={"model_dim": float("inf")}), r"manifest: config\.model_dim: non-finite"),
    (dict(source={"format": "t", "deep": json.loads(deep(70, "["))}), r"manifest: source\.deep\[0\].*nested deeper than 64"),
])
def test_writer_refuses_what_the_reader_would(kw, pattern):
    with pytest.raises(GolfpackError, match=pattern):
        build(**kw)


def test_writer_refuses_a_cycle_and_huge_shape_dims():
    cyc = []
    cyc.append(cyc)
    with pytest.raises(GolfpackError, match="nested deeper than 64"):
        build(meta={"x": cyc})
    t = _tensors({})
    t[1].shape = (0, 2**41)
    with pytest.raises(GolfpackError, match=r"tensor 'b': shape .* outside \[0, 2\^40\]"):
        build_artifact(t)


# ----------------------------------------------------------------------------- property: hostile values in meta

_LEAF = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.integers(15, 6000).map(lambda n: "9" * n),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "-0", "-0.0", "1E+308", "2e308",
                     "null", "true", "false", "0.1", "123456789012345678901", "-9223372036854775808"]),
    st.floats(allow_nan=False, allow_infinity=False).map(json.dumps),
    st.text(max_size=20).map(json.dumps),
    st.text(max_size=20).map(lambda s: json.dumps(s, ensure_ascii=False)),
    st.sampled_from(['"\\ud800"', '"\\udfff"', '"a\\udc00b"', '"\\ud83d\\ude00"', '"\\u0000"', '"\\ud83d"',
                     '"\\uDBFF\\uDFFF"', '"\u2028\U0010ffff"', '"\\""']),
    st.integers(1000, 300_000).map(lambda n: json.dumps("x" * n)),
)
_KEY = st.one_of(st.text(max_size=6), st.sampled_from(["\\ud800", "k"])).map(
    lambda k: '"' + k + '"' if k.startswith("\\") else json.dumps(k))


def _container(children):
    return st.one_of(
        st.lists(children, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.lists(st.tuples(_KEY, children), max_size=4).map(lambda kv: "{" + ",".join(f"{k}:{v}" for k, v in kv) + "}"),
    )


@st.composite
def hostile_json(draw):
    inner = draw(st.recursive(_LEAF, _container, max_leaves=8))
    n = draw(st.sampled_from([0, 0, 1, 30, 59, 60, 61, 64, 200, 5000, 100_000]))
    if draw(st.booleans()):
        return "[" * n + inner + "]" * n
    return '{"d":' * n + inner + "}" * n


@given(hostile_json(), st.sampled_from([MANIFEST_RAW, MANIFEST_ZSTD]))
def test_hostile_meta_parses_and_round_trips_or_is_one_format_error(value, coding):
    try:
        art = parse_artifact(forge(at("meta", value), coding))
    except FormatError as e:
        assert "\n" not in str(e) and str(e).startswith("manifest")
        return
    got = art.tensors["w"].meta["x"]
    # Accepted: the writer must accept it too (it refuses what the reader would), and it round-trips.
    again = parse_artifact(build(meta={"x": got}, coding=coding))
    assert again.tensors["w"].meta["x"] == got
    assert got == json.loads(value)  # and it is what plain JSON means by that text


@given(hostile_json())
def test_loads_bounded_never_raises_anything_else(text):
    try:
        obj = loads_bounded(text, "x")
    except FormatError:
        return
    check_value(obj, "x")  # whatever the reader accepts, the writer-side check accepts


# ----------------------------------------------------------------------------- every other JSON golfpack reads


def _safetensors_with_header(path, edit):
    """A valid one-tensor safetensors file whose header JSON text is rewritten by `edit`."""
    import torch

    safetensors_io.save_file({"t": torch.arange(4, dtype=torch.float32)}, path, metadata={"m": "HOLE"})
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = edit(data[8 : 8 + n].decode().rstrip(" ")).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header + data[8 + n :])


SAFETENSORS_CASES = [
    (lambda h: sub1(h, '"shape":[4]', f'"shape":[{BIG}]'), r"t\.shape\[0\]: integer literal of 5000 digits"),
    (lambda h: sub1(h, '"data_offsets":[0,16]', f'"data_offsets":[0,{BIG}]'), r"t\.data_offsets\[1\]: integer literal"),
    (lambda h: sub1(h, '"HOLE"', deep(100_000, "[")), r"__metadata__\.m\[0\].*nested deeper than 64"),
    (lambda h: sub1(h, '"HOLE"', "NaN"), r"__metadata__\.m: non-finite number NaN"),
    (lambda h: sub1(h, '"HOLE"', "1e400"), r"__metadata__\.m: number 1e400 overflows"),
    (lambda h: sub1(h, '"HOLE"', '"\\udfff"'), r"__metadata__\.m: string holds a lone surrogate"),
]


@pytest.mark.parametrize("edit, pattern", SAFETENSORS_CASES)
def test_safetensors_header_is_bounded(edit, pattern, tmp_path, capsys):
    p = tmp_path / "m.safetensors"
    _safetensors_with_header(p, edit)
    with pytest.raises(FormatError, match=re.escape(str(p)) + ": safetensors header: " + pattern):
        safetensors_io.load_file(p)
    _one_line_error(capsys, ["encode", str(p), "-o", str(tmp_path / "o.gp"), "--lossless"], pattern, "encode")


HOSTILE_CONFIGS = [
    ('{"model_dim": ' + BIG + "}", r"model_dim: integer literal of 5000 digits"),
    ('{"mlp_mult": NaN}', r"mlp_mult: non-finite number NaN"),
    ('{"rope_base": 1e400}', r"rope_base: number 1e400 overflows"),
    ('{"x": ' + deep(100_000, "[") + "}", r"x\[0\].*nested deeper than 64"),
    ('{"x": ' + deep(5000, "{") + "}", r"x\.a\.a.*nested deeper than 64"),
    ('{"a": 1, "a": 2}', r"duplicate key 'a'"),
    (b'{"a": "\xff"}', r"not valid UTF-8"),
]


@pytest.mark.parametrize("text, pattern", HOSTILE_CONFIGS)
def test_config_json_sidecar_is_bounded(text, pattern, tmp_path, capsys):
    import torch

    d = tmp_path / "ck"
    d.mkdir()
    safetensors_io.save_file({"t": torch.zeros(2)}, d / "model.safetensors")
    cfg = d / "config.json"
    cfg.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(FormatError, match=re.escape(str(cfg)) + ": " + pattern):
        read_checkpoint(d)
    _one_line_error(capsys, ["encode", str(d), "-o", str(tmp_path / "o.gp"), "--lossless"], pattern, "encode")


@pytest.mark.parametrize("text, pattern", [c for c in HOSTILE_CONFIGS if isinstance(c[0], str)])
def test_safetensors_metadata_config_is_bounded(text, pattern, tmp_path):
    import torch

    p = tmp_path / "m.safetensors"
    safetensors_io.save_file({"t": torch.zeros(2)}, p, metadata={"golfpack.config": text})
    with pytest.raises(FormatError, match=re.escape(str(p)) + ": metadata 'golfpack.config': " + pattern):
        read_checkpoint(p)


@pytest.mark.parametrize("text, pattern", HOSTILE_CONFIGS + [
    ('{"weight_map": {"t": "s.safetensors"}, "metadata": {"n": ' + BIG + "}}", r"metadata\.n: integer literal"),
])
def test_sharded_index_is_bounded(text, pattern, tmp_path, capsys):
    import torch

    safetensors_io.save_file({"t": torch.zeros(2)}, tmp_path / "s.safetensors")
    idx = tmp_path / "m.safetensors.index.json"
    idx.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(FormatError, match=re.escape(str(idx)) + ": index: " + pattern):
        read_checkpoint(idx)
    _one_line_error(capsys, ["encode", str(idx), "-o", str(tmp_path / "o.gp"), "--lossless"], pattern, "encode")


@pytest.mark.parametrize("text, pattern", HOSTILE_CONFIGS)
def test_gptconfig_from_json_is_bounded(text, pattern):
    with pytest.raises(FormatError, match="malformed GPTConfig JSON: " + pattern):
        GPTConfig.from_json(text)


@pytest.mark.parametrize("field, value, pattern", [
    ("num_layers", 10**5000, r"num_layers must be int \(64-bit\) \(got a 16610-bit integer\)"),
    ("bos_id", -(10**5000), r"bos_id must be int"),
    ("mlp_mult", 10**400, r"mlp_mult must be float \(finite\)"),
    ("qk_gain_init", float("nan"), r"qk_gain_init must be float \(finite\)"),
    ("rope_base", float("inf"), r"rope_base must be float"),
    ("ve_layers", [2**64], r"ve_layers must be ints"),
], ids=lambda v: "huge" if isinstance(v, int) and v.bit_length() > 64 else None)
def test_gptconfig_from_dict_with_huge_or_non_finite_values(field, value, pattern):
    with pytest.raises(GolfpackError, match=pattern):
        GPTConfig.from_dict({field: value})


@pytest.mark.parametrize("text, pattern", HOSTILE_CONFIGS + [
    ('{"train": {"steps": ' + BIG + "}}", r"train\.steps: integer literal of 5000 digits"),
    ('{"train": {"matrix_lr": Infinity}}', r"train\.matrix_lr: non-finite number Infinity"),
])
def test_train_config_file_is_bounded(text, pattern, tmp_path, capsys):
    from golfpack.train.cli import load_configs

    cfg = tmp_path / "cfg.json"
    cfg.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(FormatError, match=re.escape(str(cfg)) + ": " + pattern):
        load_configs(cfg)
    argv = ["train", "--config", str(cfg), "--data", str(tmp_path / "none.bin"), "--out", str(tmp_path / "o")]
    _one_line_error(capsys, argv, pattern, "train")


@pytest.mark.parametrize("text, pattern", HOSTILE_CONFIGS[:4])
def test_eval_config_flag_is_bounded(text, pattern, tmp_path, capsys, sp1024_model):
    from golfpack.data.shards import write_shard

    shard = tmp_path / "val.bin"
    write_shard(shard, np.array([1, 5, 6, 7] * 20, dtype=np.uint16))
    art = tmp_path / "a.gp"
    art.write_bytes(BASE)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(text)
    argv = ["eval", str(art), "--val", str(shard), "--tokenizer", str(sp1024_model), "--config", str(cfg)]
    _one_line_error(capsys, argv, re.escape(str(cfg)) + ": malformed GPTConfig JSON: " + pattern, "eval")


def test_loads_bounded_names_what_and_converts_every_json_error():
    with pytest.raises(FormatError, match=r"^thing: not valid JSON \(Expecting"):
        loads_bounded("{", "thing")
    with pytest.raises(FormatError, match=r"^thing: not valid UTF-8"):
        loads_bounded(b"\x80", "thing")
    with pytest.raises(FormatError, match=r"^thing: \[0\]\[0\]\[0\]\[0\]\[0\]\[0\]\.\.\.: JSON nested deeper than 64 levels"):
        loads_bounded("[" * 1_000_000, "thing")  # unbalanced and huge: refused before json.loads recurses
    with pytest.raises(FormatError, match=r'^thing: \["odd key"\]\.k: non-finite'):
        loads_bounded('{"odd key": {"k": -Infinity}}', "thing")
    # brackets inside strings do not count toward depth; escaped quotes do not end a string
    s = '["' + "[{" * 1000 + '\\"' + "[" * 100 + '"]'
    assert loads_bounded(s, "x") == json.loads(s)
    # 20 digits pass the digit bound but not the int64 range; 21 fail the digit bound first
    with pytest.raises(FormatError, match="64-bit range"):
        loads_bounded("1" + "0" * 19, "x")
    with pytest.raises(FormatError, match="21 digits"):
        loads_bounded("1" + "0" * 20, "x")


@pytest.mark.parametrize("line", [
    '{"text": "a", "n": ' + "9" * 5000 + "}",
    "[" * 100000 + "]" * 100000,
])
def test_corpus_jsonl_with_hostile_values_gives_one_clear_error(tmp_path, line):
    """golfpack data tokenize reads JSONL corpora from users: huge integers and deep nesting give
    a FormatError naming the file and line, never ValueError/RecursionError."""
    from golfpack.data.corpus import iter_documents

    p = tmp_path / "c.jsonl"
    p.write_text('{"text": "fine"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(FormatError, match=r"c\.jsonl:2: invalid JSON"):
        list(iter_documents(p))

"""`golfpack bench decode` and the fused decode path it measures (issue 8).

The fused path (rANS symbols straight into packed rows, load_packed(fused=True)) must give the
very same model as the per-tensor path, at every thread count and ISA, and a corrupt symbol
stream must give one FormatError naming its tensor. The CLI: --json keys, bad input -> exit 2
with one line. Timings are not asserted (benchmarks/RESULTS.md holds them).
"""
import json
import subprocess
import sys

import pytest
import torch

from golfpack import _C
from golfpack.codec.container import packed_rows, read_artifact
from golfpack.codec.encode import encode_lossless
from golfpack.errors import FormatError
from golfpack.evaluate.packed_model import load_packed
from golfpack.model.packed import PackedLinear

from tests.test_eval_packed import quantized_checkpoint


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    ck, _ = quantized_checkpoint(levels=20, num_layers=2)
    p = tmp_path_factory.mktemp("bench_decode") / "tiny.golfpack"
    p.write_bytes(encode_lossless(ck, coders=("rans",), jobs=1))
    return p


def same_model(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


def test_fused_equals_per_tensor_path(artifact):
    art = read_artifact(artifact)
    direct = [e for e in art.tensors.values() if e.packs_directly]
    assert len(direct) == 2 * 6  # every linear of the 2 blocks goes the fused way
    ref = load_packed(artifact, fused=False)
    for isa in ["scalar"] + (["avx2"] if _C.rans_cpu_has_avx2() else []) + (
            ["avx512"] if _C.rans_cpu_has_avx512() else []):
        prev = _C.rans_set_isa(isa)
        try:
            for threads in (1, 2):
                m = load_packed(artifact, threads=threads)
                same_model(m, ref)
        finally:
            _C.rans_set_isa(prev)
    assert all(isinstance(m.get_submodule(n), PackedLinear) for n in m.linear_names)
    for e, rows in zip(direct, packed_rows(direct)):
        assert torch.equal(torch.from_numpy(rows), torch.from_numpy(_C.qpack_rows(e.symbols(), e.bits)))


def test_corrupt_symbols_stream_names_the_tensor(artifact, tmp_path):
    art = read_artifact(artifact)
    e = next(e for e in art.tensors.values() if e.packs_directly and e.name.endswith("mlp.fc.weight"))
    s = e.streams["symbols"]
    data = bytearray(artifact.read_bytes())
    pos = art.header_bytes + s.offset + s.length - 3
    data[pos] ^= 0x20
    bad = tmp_path / "bad.golfpack"
    bad.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=f"tensor '{e.name}': symbols stream checksum mismatch"):
        load_packed(bad)


def test_packed_rows_rejects_other_tensors(artifact):
    art = read_artifact(artifact)
    other = next(e for e in art.tensors.values() if not e.packs_directly)
    with pytest.raises(Exception, match="cannot be decoded straight into packed rows"):
        packed_rows([other])


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "golfpack", "bench", "decode", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def test_cli_json(artifact):
    p = run_cli(artifact, "--reps", "1", "--threads", "2", "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    for key in ("artifact_bytes", "decode_ms_median", "threads", "decode_cpu_ms_median", "stages_cpu_ms",
                "configs", "kernel", "crc", "symbols"):
        assert key in r, key
    assert r["artifact_bytes"] == artifact.stat().st_size and r["threads"] == 2
    assert r["weights_identical"] is True
    assert {"crc+rans+pack", "manifest", "read", "model skeleton", "packed layers", "scales",
            "other tensors"} <= set(r["stages_cpu_ms"])
    assert 0 < r["rest_cpu_ms_median"] < r["decode_cpu_ms_median"]  # the load less its symbol stage
    assert "unfused" in r["configs"] and r["configs"]["unfused"]["decode_ms_median"] > 0
    assert r["kernel"]["symbols"] == r["symbols"]


@pytest.mark.parametrize("args, message", [
    (["missing.golfpack"], "no such artifact file"),
    (["NOTART", "--reps", "1"], "not a golfpack artifact"),
    (["ART", "--reps", "0"], "--reps must be >= 1"),
    (["ART", "--threads", "0"], "--threads must be >= 1"),
    (["TRUNC"], "truncated"),
])
def test_cli_errors_are_one_line(artifact, tmp_path, capsys, args, message):
    from golfpack.cli import main

    notart = tmp_path / "x.bin"
    notart.write_bytes(b"not an artifact at all")
    trunc = tmp_path / "t.golfpack"
    trunc.write_bytes(artifact.read_bytes()[:-10])
    subst = {"ART": artifact, "NOTART": notart, "TRUNC": trunc, "missing.golfpack": tmp_path / "missing.golfpack"}
    rc = main(["bench", "decode", *[str(subst.get(a, a)) for a in args]])
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err


def rebuilt(artifact, tmp_path, bits=None, name=None, edit=None):
    """The artifact rebuilt with valid CRCs: every int_rowscale tensor declared `bits` wide (its
    symbols, +-20, fit 6 bits), and `edit(bytes) -> bytes` applied to tensor `name`'s symbols."""
    from dataclasses import replace

    from golfpack.codec.container import EncodedStream, EncodedTensor, build_artifact

    art = read_artifact(artifact)
    tensors = []
    for e in art.tensors.values():
        scheme, streams = dict(e.scheme), {}
        for role, s in e.streams.items():
            data, st = e.stream_bytes(role), s.type
            if role == "symbols" and bits and e.kind == "int_rowscale":
                scheme["bits"], st = bits, replace(st, bits=bits)
            if e.name == name and role == "symbols":
                data = edit(data)
            streams[role] = EncodedStream(st, s.coder, s.transform, data)
        tensors.append(EncodedTensor(e.name, e.shape, e.dtype, scheme, streams, e.meta))
    p = tmp_path / f"rebuilt{bits}.golfpack"
    p.write_bytes(build_artifact(tensors, config=art.config, source=art.source))
    return p


@pytest.mark.parametrize("bits", [6, 7])
def test_fused_equals_per_tensor_path_narrow_symbols(artifact, tmp_path, bits):
    p = rebuilt(artifact, tmp_path, bits)
    ref = load_packed(p, fused=False)
    same_model(load_packed(p), ref)
    assert {m.bits for m in ref.modules() if isinstance(m, PackedLinear)} == {bits}


def test_bad_rans_stream_with_valid_crc_same_error_both_paths(artifact, tmp_path):
    art = read_artifact(artifact)
    e = next(e for e in art.tensors.values() if e.packs_directly and e.name.endswith("attn.proj.weight"))
    wide = e.symbols().copy()
    wide.flat[7] = 40  # fits int8, not 6 bits
    cases = [
        (lambda d: d[:-4], "rANS stream: truncated"),
        (lambda d: _C.rans_encode((wide.astype("int16") + 128).astype("uint8").ravel(), 0, 0),
         "rans stream decodes symbols outside the 6-bit range"),
    ]
    for edit, msg in cases:
        p = rebuilt(artifact, tmp_path, 6, e.name, edit)
        errors = []
        for fused in (True, False):
            with pytest.raises(FormatError) as err:
                load_packed(p, fused=fused)
            errors.append(str(err.value))
        assert errors[0] == errors[1], errors
        assert f"tensor '{e.name}': symbols stream: {msg}" in errors[0]


def test_fused_rans_rc_equals_per_tensor_path(artifact, tmp_path):
    """rans_rc symbol streams (codec/rans_rc.py) also decode straight into packed rows, bit for bit
    as decoding them and packing; a payload cut short (CRC resealed) is one FormatError naming the
    tensor on both paths."""
    from golfpack.codec.container import parse_artifact, write_artifact
    from golfpack.codec.recode import recode

    p = tmp_path / "rc.golfpack"
    write_artifact(p, recode(read_artifact(artifact), ("rans_rc",), jobs=1))
    art = read_artifact(p)
    direct = [e for e in art.tensors.values() if e.packs_directly]
    assert len(direct) == 2 * 6 and all(e.streams["symbols"].coder == "rans_rc" for e in direct)
    same_model(load_packed(p), load_packed(p, fused=False))
    same_model(load_packed(p), load_packed(artifact, fused=False))
    for e, rows in zip(direct, packed_rows(direct)):
        assert torch.equal(torch.from_numpy(rows), torch.from_numpy(_C.qpack_rows(e.symbols(), e.bits)))
    name = next(e.name for e in direct if e.name.endswith("mlp.fc.weight"))
    bad = rebuilt(p, tmp_path, 0, name, lambda d: d[:-4])
    assert parse_artifact(bad.read_bytes()).tensors[name].streams["symbols"].coder == "rans_rc"
    for fused in (True, False):
        with pytest.raises(FormatError, match=f"tensor .{name}.: symbols stream: rans_rc stream: rANS stream: truncated"):
            load_packed(bad, fused=fused)

    # A table with no present symbol parses but fails the integer rebuild: still one FormatError
    # naming the tensor, the same on both paths (not the native ValueError).
    def empty_table(d):
        from golfpack.codec import rans_rc

        n = art.tensors[name].numel
        m, payload = rans_rc.parse(d, n)
        m.codes = m.codes.copy()
        m.codes[0, :] = 255
        return rans_rc.serialize(m, bytes(payload))

    bad = rebuilt(p, tmp_path, 0, name, empty_table)
    for fused in (True, False):
        with pytest.raises(FormatError, match=f"tensor .{name}.: symbols stream: rans_rc stream: rANS stream: "
                                              "table 0 has no present symbol"):
            load_packed(bad, fused=fused)


def test_fused_rans_x32_equals_per_tensor_path(artifact, tmp_path):
    """rans_x32 symbol streams (csrc/RANS.md section 7) decode straight into packed rows under
    every ISA, bit for bit as the v1 artifact; a payload cut short (CRC resealed) is one
    FormatError naming the tensor on both paths; bench decode times their kernel."""
    from golfpack.codec.container import write_artifact
    from golfpack.codec.recode import recode

    p = tmp_path / "x32.golfpack"
    write_artifact(p, recode(read_artifact(artifact), ("rans_x32",), jobs=1))
    art = read_artifact(p)
    direct = [e for e in art.tensors.values() if e.packs_directly]
    assert len(direct) == 2 * 6 and all(e.streams["symbols"].coder == "rans_x32" for e in direct)
    ref = load_packed(artifact, fused=False)
    for isa in ["scalar"] + (["avx2"] if _C.rans_cpu_has_avx2() else []) + (
            ["avx512"] if _C.rans_cpu_has_avx512() else []):
        prev = _C.rans_set_isa(isa)
        try:
            same_model(load_packed(p), ref)
        finally:
            _C.rans_set_isa(prev)
    same_model(load_packed(p, fused=False), ref)
    name = next(e.name for e in direct if e.name.endswith("mlp.fc.weight"))
    bad = rebuilt(p, tmp_path, 0, name, lambda d: d[:-2])
    for fused in (True, False):
        with pytest.raises(FormatError, match=f"tensor .{name}.: symbols stream: rANS stream: truncated .*\\[X5\\]"):
            load_packed(bad, fused=fused)
    r = run_cli(p, "--reps", "1", "--json")
    assert r.returncode == 0, r.stderr
    k = json.loads(r.stdout)["kernel"]
    assert k["rans_x32_streams"] == 12 and k["rans_x32_symbols"] == sum(e.numel for e in direct)
    assert k["rans_x32_rows_scalar_MBps"] > 0

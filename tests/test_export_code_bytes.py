"""Code bytes: the planner reserves exactly the exported script's size; the script stays small."""
import json

import pytest

from golfpack.cli import main as golfpack_main
from golfpack.export.needs import ALL_FLAGS
from golfpack.export.script import Settings, build_script

from test_export_record import tiny_artifact  # noqa: F401


@pytest.fixture(scope="module")
def tiny_ckpt(tiny_artifact):
    return tiny_artifact.parent / "ckpt"


def test_submit_reserves_exactly_the_scripts_size(tiny_ckpt, tmp_path, capsys):
    from golfpack.codec.container import read_artifact

    out = tmp_path / "rec"
    budget = 100_000
    assert golfpack_main(["submit", str(tiny_ckpt), "-o", str(out), "--budget", str(budget), "--method", "rtn",
                          "--calib", "none", "--quiet", "--json", "--ttt", "lora"]) == 0
    sub = json.loads(capsys.readouterr().out)
    script = (out / "train_gpt.py").stat().st_size
    art = read_artifact(out / "model.gp")
    assert sub["bytes_code"] == script == art.source["planner"]["code_bytes"]
    assert sub["bytes_model"] == (out / "model.gp").stat().st_size
    assert sub["bytes_total"] == script + sub["bytes_model"] <= budget


def test_encode_code_bytes_auto_then_export_fits(tiny_ckpt, tmp_path, capsys):
    from golfpack.codec.container import read_artifact

    art_p = tmp_path / "a.gp"
    budget = 90_000
    assert golfpack_main(["encode", str(tiny_ckpt), "-o", str(art_p), "--budget", str(budget), "--code-bytes", "auto",
                          "--method", "rtn", "--calib", "none", "--quiet", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    art = read_artifact(art_p)
    assert {s.coder for t in art.tensors.values() for s in t.streams.values()} <= {"raw", "rans", "rans_rc"}
    assert open(art_p, "rb").read()[12] == 2  # the LZMA manifest the record ships
    assert golfpack_main(["export", str(art_p), "-o", str(tmp_path / "rec"), "--json"]) == 0
    sub = json.loads(capsys.readouterr().out)
    assert sub["bytes_model"] == rep["artifact_bytes"]  # shipped as planned, not recoded
    assert sub["bytes_code"] <= rep["code_bytes"] and sub["bytes_total"] <= budget


def test_code_bytes_auto_refuses_coders_the_script_lacks(tiny_ckpt, tmp_path):
    assert golfpack_main(["encode", str(tiny_ckpt), "-o", str(tmp_path / "a.gp"), "--budget", "90000",
                          "--code-bytes", "auto", "--coders", "rans,zstd", "--method", "rtn", "--calib", "none",
                          "--quiet"]) == 2


def test_script_size_limits():
    """Issue 22: decode + model + sliding eval <= 25,000 B; with LoRA TTT <= 32,000 B (every coder,
    scheme and model feature in, so any artifact's script is at most this)."""
    base = ALL_FLAGS - {"lora", "plain", "doc"}
    assert len(build_script(base, Settings())) <= 25_000
    assert len(build_script(base | {"lora"}, Settings(ttt={"x": 1}))) <= 32_000


def test_unused_blocks_are_not_shipped():
    small = build_script({"rans", "sliding", "softcap"}, Settings())
    big = build_script({"rans", "rans_rc", "raw", "sliding", "softcap", "lowrank", "lora"}, Settings())
    assert len(small) < len(big)


def test_no_native_leaves_the_c_loop_out(tiny_artifact):
    from golfpack.export.record import plan_record

    data = tiny_artifact.read_bytes()
    from golfpack.export.script import script_source

    _, with_c, flags, st = plan_record(data)
    _, without, flags2, _ = plan_record(data, native=False)
    assert "native" in flags and "native" not in flags2
    assert "#include" in script_source(flags, st) and "#include" not in script_source(flags2, st)
    assert len(without) < len(with_c)

"""`golfpack encode --budget/--bits/--code-bytes/--calib`, `inspect` with planner choices and
`golfpack rd` on tiny GPTs. Mostly in-process (golfpack.cli.main: same argument parsing and error
handling as the console script, without a 2-3 s interpreter start per call)."""
import json
import subprocess
import sys

import pytest

from golfpack.cli import main
from golfpack.codec.container import read_artifact
from golfpack.data.shards import write_shard

from planner_standin import save_safetensors, tiny_model, tiny_tokenizer, val_tokens

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# --min-numel 256: the tiny model's linears (512-2048 elements) are planned; --tolerance 0.02: see
# tests/test_planner.py (0.5% of a few KB is finer than this model's candidate steps)
QUICK = ["--min-numel", "256", "--tolerance", "0.02", "--quiet", "--jobs", "1"]


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    return save_safetensors(tiny_model(0), tmp_path_factory.mktemp("cli") / "tiny.safetensors")


def gp(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def encode_json(capsys, *args) -> dict:
    rc, out, err = gp(capsys, "encode", *args, "--json")
    assert rc == 0, err
    return json.loads(out)


def test_encode_to_a_budget_prints_the_plan(src, tmp_path, capsys):
    art = tmp_path / "a.gp"
    rep = encode_json(capsys, src, "-o", art, "--budget", "1.2e4", "--calib", "none", "--method", "rtn", *QUICK)
    assert rep["artifact_bytes"] == art.stat().st_size and rep["code_bytes"] == 0
    assert rep["total_bytes"] == rep["artifact_bytes"] and 12000 * 0.98 <= rep["total_bytes"] <= 12000
    assert rep["bits_per_param"] == pytest.approx(8 * rep["artifact_bytes"] / rep["params"])
    assert rep["budget"] == 12000 and rep["within_budget"] and rep["method"] == "rtn" and rep["calibration"] is None
    names = [r["name"] for r in rep["plan"]]
    assert names == list(read_artifact(art).tensors)
    row = {r["name"]: r for r in rep["plan"]}["blocks.0.mlp.fc.weight"]
    assert row["choice"]["method"] == "rtn" and 2 <= row["choice"]["bits"] <= 8 and row["label"].startswith("rtn int")
    assert "measured_dloss" not in rep  # nothing to measure without calibration


def test_code_bytes_are_subtracted_from_the_budget(src, tmp_path, capsys):
    art = tmp_path / "a.gp"
    rep = encode_json(capsys, src, "-o", art, "--budget", "12000", "--code-bytes", "1_000", "--calib", "none",
                      "--method", "rtn", *QUICK)
    assert rep["code_bytes"] == 1000 and rep["total_bytes"] == rep["artifact_bytes"] + 1000 == art.stat().st_size + 1000
    assert 12000 * 0.98 <= rep["total_bytes"] <= 12000
    # auto: the size of the train_gpt.py `golfpack export` writes for this plan (golfpack.export.plan)
    from golfpack.checkpoint import read_checkpoint
    from golfpack.export.needs import RUNTIME_CODERS
    from golfpack.export.plan import reserve

    auto = reserve(read_checkpoint(src), RUNTIME_CODERS, lqer=True).code_bytes
    rep = encode_json(capsys, src, "-o", art, "--budget", str(auto + 12000), "--code-bytes", "auto", "--calib", "none",
                      "--method", "rtn", *QUICK)
    assert rep["code_bytes"] == auto > 5000 and rep["total_bytes"] == rep["artifact_bytes"] + auto
    assert (auto + 12000) * 0.98 <= rep["total_bytes"] <= auto + 12000


def test_self_calibrated_gptq_reports_the_measured_loss_change(src, tmp_path, capsys):
    art = tmp_path / "a.gp"
    rep = encode_json(capsys, src, "-o", art, "--budget", "9000", "--calib", "self", "--calib-seqs", "4",
                      "--calib-len", "16", *QUICK)
    assert rep["method"] == "gptq" and rep["calibration"]["source"] == "self" and rep["calibration"]["tokens"] == 64
    assert rep["total_bytes"] <= 9000 and rep["predicted_dloss"] > 0
    assert isinstance(rep["measured_dloss"], float)
    assert any(r["choice"]["method"] == "gptq" for r in rep["plan"])


def test_a_fixed_recipe_and_inspect_show_the_choices(src, tmp_path, capsys):
    art = tmp_path / "a.gp"
    rep = encode_json(capsys, src, "-o", art, "--bits", "5,attn=4:sdclip:3,embed=keep", "--calib", "none",
                      "--method", "rtn", *QUICK)
    assert rep["budget"] is None and "within_budget" in rep
    rc, out, err = gp(capsys, "inspect", art, "--json")
    assert rc == 0, err
    rows = {r["name"]: r for r in json.loads(out)["tensors"]}
    assert rows["blocks.0.mlp.fc.weight"]["choice"] == {"method": "rtn", "bits": 5, "clip": "mse"}
    assert rows["blocks.1.attn.c_v.weight"]["choice"] == {"method": "rtn", "bits": 4, "clip": "sdclip:3"}
    assert rows["blocks.1.attn.c_v.weight"]["bits"] == 4 and rows["blocks.1.attn.c_v.weight"]["pred_dloss"] > 0
    assert rows["tok_emb.weight"]["choice"] is None and rows["tok_emb.weight"]["scheme"] == "float"
    assert rows["blocks.0.attn_scale"]["choice"] is None and rows["blocks.0.attn_scale"]["pred_dloss"] is None
    rc, out, err = gp(capsys, "inspect", art)
    assert rc == 0, err
    lines = out.splitlines()
    assert "planner choice" in lines[0] and "pred dloss" in lines[0]
    fc = next(line for line in lines if line.startswith("blocks.0.mlp.fc.weight"))
    assert "rtn int5 mse" in fc
    assert "keep" in next(line for line in lines if line.startswith("tok_emb.weight"))
    # a lossless artifact has no planner columns
    rc, _, _ = gp(capsys, "encode", src, "-o", tmp_path / "l.gp", "--lossless", "--quiet")
    rc, out, _ = gp(capsys, "inspect", tmp_path / "l.gp")
    assert rc == 0 and "planner choice" not in out


@pytest.mark.parametrize("args, message", [
    (["--lossless", "--budget", "9000"], "--lossless cannot be combined with --budget or --bits"),
    (["--lossless", "--bits", "6"], "--lossless cannot be combined"),
    ([], "choose an encoding mode"),
    (["--budget", "abc"], "--budget: 'abc' is not a number of bytes"),
    (["--budget", "1e3.5"], "is not a number of bytes"),
    (["--budget", "0", "--calib", "none", "--method", "rtn"], "--budget must be at least 1 byte"),
    (["--budget", "100.5"], "not a whole, non-negative number of bytes"),
    (["--budget", "1000", "--calib", "none", "--method", "rtn"], "cannot fit the budget of 1,000 bytes"),
    (["--budget", "9000", "--code-bytes", "9000", "--calib", "none", "--method", "rtn"], "leave nothing"),
    (["--budget", "9000", "--code-bytes", "-5"], "--code-bytes: '-5' is not a whole, non-negative number"),
    (["--bits", "mlp=9"], r"--bits: bit width 9 outside 2..8 in 'mlp=9'"),
    (["--budget", "9000", "--bits", "x=abc"], "is not a bit width"),
    (["--budget", "9000", "--method", "gptq", "--calib", "none"], "--method gptq needs calibration"),
    (["--bits", "6", "--calib", "none"], "--method gptq needs calibration"),  # gptq is the default method
    (["--budget", "9000", "--calib", "/nonexistent/train_000.bin"], "shard not found: /nonexistent/train_000.bin"),
    (["--budget", "9000", "--min-bits", "5", "--max-bits", "4", "--calib", "none", "--method", "rtn"], "--min-bits/--max-bits"),
    (["--budget", "9000", "--tolerance", "1.5", "--calib", "none", "--method", "rtn"], "--tolerance must be a fraction"),
    (["--budget", "9000", "--lqer-ranks", "4,x", "--calib", "none", "--method", "rtn"], "--lqer-ranks"),
    (["--budget", "9000", "--lqer-bits", "9", "--calib", "none", "--method", "rtn"], "--lqer-bits must be 2..8"),
    (["--budget", "9000", "--tune-seqs", "8"], "--tune-seqs needs --tune-epochs > 0"),
    (["--budget", "9000", "--tune-seqs", "1", "--tune-epochs", "1"], "--tune-seqs must be in [2, 2^20]"),
    (["--budget", "9000", "--tune-seqs", "8", "--tune-epochs", "1", "--calib", "self"], "pass --calib SHARD"),
])
def test_encode_errors_are_one_line_and_exit_2(src, tmp_path, capsys, args, message):
    rc, out, err = gp(capsys, "encode", src, "-o", tmp_path / "x.gp", *args, "--min-numel", "256", "--quiet")
    assert rc == 2 and out == ""
    assert err.startswith("golfpack encode: error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert not (tmp_path / "x.gp").exists()


def test_a_real_process_exits_2_without_a_traceback(src, tmp_path):
    p = subprocess.run([sys.executable, "-m", "golfpack", "encode", str(src), "-o", str(tmp_path / "x.gp"),
                        "--budget", "1000", "--calib", "none", "--method", "rtn", "--min-numel", "256", "--quiet"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.count("\n") == 1 and "cannot fit the budget of 1,000 bytes" in p.stderr


@pytest.fixture(scope="module")
def rd_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("rd")
    # rd plans with the default min_numel (4096; it has no --min-numel), so this model is twice as
    # wide: c_q, proj, fc and the table reach 4096 elements
    src = save_safetensors(tiny_model(1, model_dim=64), d / "wide.safetensors")
    sp = tiny_tokenizer(d / "sp.model")
    write_shard(d / "val.bin", val_tokens(sp))
    return src, sp, d / "val.bin"


def test_rd_sweeps_budgets_and_plots(rd_inputs, tmp_path, capsys):
    src, sp, val = rd_inputs
    png = tmp_path / "rd.png"
    rc, out, err = gp(capsys, "rd", src, "--val", val, "--tokenizer", sp, "--budgets", "40%,55%", "--max-tokens", "256",
                      "--seq-len", "32", "--calib", "self", "--calib-seqs", "2", "--calib-len", "16", "--tolerance",
                      "0.05", "--threads", "1", "--plot", png, "--json")
    assert rc == 0, err
    res = json.loads(out)
    size = src.stat().st_size
    budgets = [int(size * 0.40), int(size * 0.55)]
    assert [r["budget"] for r in res["rows"]] == budgets
    for r, b in zip(res["rows"], budgets):
        assert r["total_bytes"] <= b and r["tokens"] == 256 and 0 < r["val_bpb"] < 50
        assert r["delta_bpb"] == pytest.approx(r["val_bpb"] - res["reference"]["val_bpb"])
    assert res["reference"]["total_bytes"] == size and res["plot"] == str(png)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_rd_errors(rd_inputs, tmp_path, capsys):
    src, sp, val = rd_inputs
    common = [src, "--val", val, "--tokenizer", sp, "--calib", "none", "--method", "rtn"]
    for extra, message in ((["--budgets", "abc"], "--budgets: 'abc' is not a number of bytes"),
                           (["--budgets", "10%", "--plot", tmp_path / "x.jpg"], "--plot writes a PNG"),
                           (["--budgets", ","], "give at least one budget"),
                           # rd shares encode's planner options (codec.cli.add_planner_arguments)
                           (["--budgets", "10%", "--tolerance", "0"], "--tolerance must be a fraction"),
                           (["--budgets", "10%", "--min-numel", "0"], "--min-numel must be >= 1"),
                           (["--budgets", "10%", "--min-bits", "6", "--max-bits", "3"], "--min-bits/--max-bits")):
        rc, out, err = gp(capsys, "rd", *common, *extra)
        assert rc == 2 and message in err and err.count("\n") == 1, err

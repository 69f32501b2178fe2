"""golfpack bench: the dispatcher, the peer pipelines (round trips, the baseline's exact export), CLI errors."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from golfpack.bench import peer_codecs as C
from golfpack.cli import main as gp_main


def _sd(seed=0, rows=96, cols=64):
    g = torch.Generator().manual_seed(seed)
    return {
        "tok_emb.weight": (torch.randn(rows * 12, cols, generator=g) * 0.02).to(torch.bfloat16),
        "blocks.0.attn.c_q.weight": torch.randn(rows * 12, cols, generator=g) * 0.05,
        "blocks.0.mlp.fc.weight": torch.randn(rows * 12, cols, generator=g) * 0.05,
        "blocks.0.attn_scale": torch.ones(cols),
        "blocks.0.other_small": torch.randn(cols, generator=g),
    }


# ----------------------------------------------------------------------------- quantizers vs references


def test_baseline_int8_matches_a_float64_scalar_reference():
    w = torch.randn(5, 300, dtype=torch.float32) * torch.tensor([0.001, 0.01, 0.5, 2.0, 30.0])[:, None]
    q, s = C.baseline_int8(w)
    for i in range(5):
        a = np.sort(np.abs(w[i].double().numpy()))
        pos = (a.size - 1) * 0.9999984  # linear interpolation, as numpy's default percentile
        c = a[int(np.floor(pos))] + (a[min(int(np.floor(pos)) + 1, a.size - 1)] - a[int(np.floor(pos))]) * (pos % 1)
        scale = max(c / 127, 1 / 127)
        assert abs(float(s[i]) - np.float16(scale)) <= 1e-3 * scale
        ref = np.clip(np.round(np.clip(w[i].double().numpy(), -c, c) / np.float32(max(np.float32(c) / 127, 1 / 127))),
                      -127, 127)
        assert np.abs(q[i].numpy() - ref).max() <= 1  # float32 vs float64 ties only


def test_baseline_floor_gives_small_rows_the_fixed_step():
    w = torch.full((1, 100), 0.25)
    q, s = C.baseline_int8(w)
    assert float(s[0]) == pytest.approx(1 / 127, rel=1e-3)
    assert int(q.abs().max()) == 32  # 0.25 * 127 rounds to 32: only ~±32 levels used


def test_sdclip_step_is_k_std_over_qmax():
    w = torch.randn(4, 1000)
    s = C.sdclip_scales(w, 6, 12.85)
    ref = 12.85 * w.double().std(dim=1, unbiased=False) / 31
    assert torch.allclose(s.double(), ref, rtol=1e-3)


def test_best_percentile_never_worse_than_absmax():
    w = torch.randn(16, 512) ** 3
    q, s = C.best_percentile_int(w, 6)
    qa, sa = C.best_percentile_int(w, 6, pcts=(100.0,))
    err = ((q.float() * s.float()[:, None] - w) ** 2).sum(1)
    erra = ((qa.float() * sa.float()[:, None] - w) ** 2).sum(1)
    assert bool((err <= erra + 1e-6).all())
    assert int(q.abs().max()) <= 31


def test_greedy_l1_order_is_a_permutation_and_greedy():
    rng = np.random.default_rng(0)
    rows = rng.integers(-5, 6, size=(40, 16)).astype(np.int8)
    order = C.greedy_l1_order(rows)
    assert sorted(order.tolist()) == list(range(40)) and order[0] == 0
    seen = {int(order[0])}
    for i in range(1, 40):  # each step goes to an unvisited row at the least L1 distance
        prev = rows[order[i - 1]].astype(int)
        best = min(np.abs(rows[j].astype(int) - prev).sum() for j in range(40) if j not in seen)
        assert np.abs(rows[order[i]].astype(int) - prev).sum() == best
        seen.add(int(order[i]))


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("p", [p for p in C.PIPELINES if p.quantize != "gptq"], ids=lambda p: p.key)
def test_pipeline_round_trip_is_exact(p):
    sd = _sd()
    obj = C.quantized_dict(p.quantize, sd)
    back = C.dequantize_dict(p.deserialize(p.serialize(obj)))
    ref = C.dequantize_dict(obj)
    assert set(back) == set(sd)
    for k in sd:
        assert back[k].dtype == sd[k].dtype and torch.equal(back[k], ref[k]), k
    assert back["blocks.0.attn_scale"].dtype == torch.float32  # control tensors stay fp32


def test_gptq_family_uses_hessians_and_round_trips():
    sd = _sd()
    hs = {}
    for k in ("blocks.0.attn.c_q.weight", "tok_emb.weight"):
        x = torch.randn(400, sd[k].shape[1], dtype=torch.float64)
        hs[k] = x.T @ x / 400
    obj = C.quantized_dict("gptq", sd, hs)
    assert int(obj["quantized"]["blocks.0.attn.c_q.weight"].abs().max()) <= 31
    assert int(obj["quantized"]["tok_emb.weight"].abs().max()) <= 127
    d = next(p for p in C.PIPELINES if p.key == "d")
    back = C.dequantize_dict(d.deserialize(d.serialize(obj)))
    assert all(torch.equal(back[k], v) for k, v in C.dequantize_dict(obj).items())
    with pytest.raises(Exception, match="Hessians"):
        C.quantized_dict("gptq", sd, None)


@pytest.mark.skipif(not C.lrzip_available(), reason="lrzip is not installed (apt-get install lrzip)")
def test_pergroup_lrzip_round_trip():
    obj = C.quantized_dict("sdclip", _sd(1))
    blob = C.pergroup_bytes(obj)
    assert blob[:4] == b"PGRP"
    back = C.dequantize_dict(C.pergroup_obj(blob))
    assert all(torch.equal(back[k], v) for k, v in C.dequantize_dict(obj).items())


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(1, 40), st.sampled_from([torch.float16, torch.float32, torch.int8]))
def test_byte_shuffle_round_trip(rows, cols, dtype):
    t = (torch.randn(rows, cols) * 50).to(dtype)
    raw = C._shuffle(t)
    assert raw.dtype == torch.uint8 and raw.numel() == t.numel() * t.element_size()
    assert torch.equal(C._unshuffle(raw, dtype, t.shape), t)


def test_baseline_pipeline_reproduces_the_real_ptz_symbols(baseline_ptz):
    from golfpack.checkpoint import read_checkpoint

    ck = read_checkpoint(baseline_ptz)
    obj = C.quantized_dict("baseline", ck.state_dict())
    for name, qs in ck.quantized.items():  # our export of the dequantized weights is the baseline's own
        assert torch.equal(obj["quantized"][name], qs.symbols), name
        assert torch.equal(obj["scales"][name], qs.scale), name


# ----------------------------------------------------------------------------- CLI


def _run(argv, capsys):
    rc = gp_main(argv)
    return rc, capsys.readouterr()


def test_bench_module_absent_says_so(capsys, monkeypatch):
    import golfpack.bench.cli as bc

    monkeypatch.setattr(bc, "BENCHMARKS", bc.BENCHMARKS + (("nosuch", "a benchmark not in this build"),))
    rc, cap = _run(["bench", "nosuch", "x.gp", "--json"], capsys)
    assert rc == 2 and "not available" in cap.err and cap.out == ""  # no numbers it did not measure


@pytest.mark.parametrize("argv,msg", [
    (["--pipelines", "a,z"], "unknown"),
    (["--seq-len", "0"], "--seq-len"),
    (["--bisect-tol", "2"], "--bisect-tol"),
    (["--plot", "x.jpg"], "PNG"),
    (["--peer-bits", "9"], "--peer-bits"),
    (["--peer-bits", "5,x"], "--peer-bits"),
    (["--budget-fracs", "0.5,3"], "--budget-fracs"),
    (["--budget-fracs", "0.5", "--pipelines", "c,d"], "pipeline a"),
])
def test_bench_peers_bad_options(tmp_path, capsys, argv, msg):
    from golfpack.data.shards import write_shard

    ck = tmp_path / "m.pt"
    torch.save({"w": torch.zeros(2, 2)}, ck)
    write_shard(tmp_path / "v.bin", [1, 5, 6])
    write_shard(tmp_path / "t.bin", [1, 5, 6])
    (tmp_path / "sp.model").write_bytes(b"x")
    rc, cap = _run(["bench", "peers", str(ck), "--val", str(tmp_path / "v.bin"), "--tokenizer",
                    str(tmp_path / "sp.model"), "--calib", str(tmp_path / "t.bin"), *argv], capsys)
    assert rc == 2 and msg in cap.err and len(cap.err.strip().splitlines()) == 1


def test_bench_peers_out_dir_is_created_and_a_file_refused(tmp_path, capsys):
    from golfpack.data.shards import write_shard

    ck = tmp_path / "m.pt"
    torch.save({"w": torch.zeros(2, 2)}, ck)
    write_shard(tmp_path / "v.bin", [1, 5, 6])
    write_shard(tmp_path / "t.bin", [1, 5, 6])
    (tmp_path / "sp.model").write_bytes(b"x")
    (tmp_path / "afile").write_bytes(b"keep")
    base = ["bench", "peers", str(ck), "--val", str(tmp_path / "v.bin"), "--tokenizer", str(tmp_path / "sp.model"),
            "--calib", str(tmp_path / "t.bin")]
    rc, cap = _run(base + ["--out-dir", str(tmp_path / "afile")], capsys)
    assert rc == 2 and "not a directory" in cap.err and (tmp_path / "afile").read_bytes() == b"keep"
    # a new folder is made before the run starts (the run itself then fails on the fake tokenizer)
    _run(base + ["--out-dir", str(tmp_path / "new" / "deep")], capsys)
    assert (tmp_path / "new" / "deep").is_dir()


@pytest.mark.parametrize("bits", [4, 5, 7, 8])
def test_bit_width_variants_move_along_the_rate_axis(bits):
    """c/d at other widths: symbols within the width's range, the step k*std/qmax (so one bit more
    halves it), the embedding still int8 k 20, and the round trip exact."""
    sd = _sd(2)
    qmax = 2 ** (bits - 1) - 1
    obj = C.quantized_dict("sdclip", sd, bits=bits)
    w = sd["blocks.0.mlp.fc.weight"]
    q = obj["quantized"]["blocks.0.mlp.fc.weight"]
    s = obj["scales"]["blocks.0.mlp.fc.weight"].double()
    assert int(q.abs().max()) <= qmax
    assert torch.allclose(s, C.SDCLIP_K * w.double().std(dim=1, unbiased=False) / qmax, rtol=1e-2)
    assert int(obj["quantized"]["tok_emb.weight"].abs().max()) <= 127
    six = C.quantized_dict("sdclip", sd, bits=6)
    assert torch.equal(obj["quantized"]["tok_emb.weight"], six["quantized"]["tok_emb.weight"])
    err = (C.dequantize_dict(obj)["blocks.0.mlp.fc.weight"] - w).pow(2).mean()
    err6 = (C.dequantize_dict(six)["blocks.0.mlp.fc.weight"] - w).pow(2).mean()
    assert (err < err6) if bits > 6 else (err > err6)
    c = next(p for p in C.PIPELINES if p.key == "c")
    back = C.dequantize_dict(c.deserialize(c.serialize(obj)))
    assert all(torch.equal(back[k], v) for k, v in C.dequantize_dict(obj).items())


def test_bit_width_variants_refused_outside_their_families():
    with pytest.raises(Exception, match="2..8"):
        C.quantized_dict("sdclip", _sd(), bits=9)
    with pytest.raises(Exception, match="no bit-width variants"):
        C.quantized_dict("baseline", _sd(), bits=5)


def test_interp_bpb_is_linear_in_log_bytes():
    from golfpack.bench.peers import _interp_bpb

    pts = [{"bytes": 1000, "val_bpb": 2.0}, {"bytes": 4000, "val_bpb": 1.0}]
    assert _interp_bpb(pts, 2000) == pytest.approx(1.5)
    assert _interp_bpb(pts, 1000) == pytest.approx(2.0)
    assert _interp_bpb(pts, 500) is None and _interp_bpb(pts, 8000) is None  # no extrapolation


def test_bench_peers_refuses_val_as_calibration(tmp_path, capsys):
    from golfpack.data.shards import write_shard

    ck = tmp_path / "m.pt"
    torch.save({"w": torch.zeros(2, 2)}, ck)
    write_shard(tmp_path / "v.bin", [1, 5, 6])
    (tmp_path / "sp.model").write_bytes(b"x")
    rc, cap = _run(["bench", "peers", str(ck), "--val", str(tmp_path / "v.bin"), "--tokenizer",
                    str(tmp_path / "sp.model"), "--calib", str(tmp_path / "v.bin")], capsys)
    assert rc == 2 and "training shard" in cap.err


def test_bench_peers_missing_source(tmp_path, capsys):
    rc, cap = _run(["bench", "peers", str(tmp_path / "nope.ptz"), "--val", "v.bin", "--tokenizer", "sp.model"],
                   capsys)
    assert rc == 2 and "not found" in cap.err


def test_bench_eval_missing_input_is_one_line(tmp_path, capsys):
    rc, cap = _run(["bench", "eval", "--ckpt", str(tmp_path / "nope.ptz"), "--json"], capsys)
    assert rc == 2 and "not found" in cap.err


def test_bench_entropy_bad_reps_is_one_line(tmp_path, capsys):
    # the full benchmark codes ~30 MB of symbols with brotli-11 and lzma-9: a manual run, not a unit test
    rc, cap = _run(["bench", "entropy", "--ckpt", str(tmp_path / "absent.ptz"), "--reps", "0", "--json"], capsys)
    assert rc == 2 and "--reps" in cap.err and cap.out == ""


def test_bench_entropy_coders_round_trip():
    import numpy as np

    from golfpack.bench.entropy import coders, h0_bytes

    u = (np.random.default_rng(0).laplace(0, 3, 20000).round().clip(-31, 31) + 128).astype(np.uint8)
    for name, (enc, dec) in coders().items():
        b = enc(u)
        out = dec(b, len(u))
        out = out if isinstance(out, np.ndarray) else np.frombuffer(bytes(out), np.uint8)
        assert np.array_equal(out, u), name
        assert len(b) > 0.99 * h0_bytes(u), name  # nothing codes below the order-0 bound of iid symbols


def test_scripts_still_run_as_wrappers(tmp_path):
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    p = subprocess.run([sys.executable, str(repo / "benchmarks" / "eval_throughput.py"), "--ckpt",
                        str(tmp_path / "nope")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "not found" in p.stderr

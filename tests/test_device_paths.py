"""Calibration, GPTQ, tuning and the planner on a `device`: the same code on every device.

On a machine without a GPU these tests run the device-generic code with an explicit CPU device and
the torch reference loop that CUDA takes (GPTQ's `native=False`), and compare against the default
path; the CUDA tests repeat the comparison on a GPU and skip without one (benchmarks/gpu_check.sh
runs them on the first machine that has one). CUDA and CPU float64 agree to rounding, so symbols
are compared up to a small fraction of rounding ties, statistics to a relative tolerance.
"""
import pytest
import torch

from golfpack.codec import calib as C
from golfpack.codec import gptq as G
from golfpack.codec.planner import PlannerConfig, plan
from golfpack.model.load import from_state_dict

from planner_standin import MIN_NUMEL, checkpoint_of, random_tokens, tiny_model

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (benchmarks/gpu_check.sh)")


def _seqs():
    return C.sequences_from_tokens(random_tokens(4000, 3), 8, 24, seed=3)


def _same_stats(a, b, rel):
    assert set(a.stats) == set(b.stats)
    for name in a.stats:
        for field in ("H", "G", "grad", "F_lookup"):
            x, y = getattr(a.stats[name], field), getattr(b.stats[name], field)
            assert (x is None) == (y is None), (name, field)
            if x is None:
                continue
            assert x.device.type == "cpu" and y.device.type == "cpu"  # statistics always come back on the CPU
            scale = float(x.abs().max()) or 1.0
            assert float((x - y).abs().max()) <= rel * scale, (name, field)
    assert a.base_loss == pytest.approx(b.base_loss, rel=rel)


def test_calibration_on_an_explicit_cpu_device_is_the_default_path():
    model = tiny_model(1)
    a = C.collect(model, _seqs())
    b = C.collect(model, _seqs(), device="cpu")
    _same_stats(a, b, 0.0)
    assert next(model.parameters()).device.type == "cpu"


@cuda
def test_calibration_on_cuda_matches_the_cpu():
    model = tiny_model(1)
    a = C.collect(model, _seqs())
    b = C.collect(model, _seqs(), device="cuda")
    _same_stats(a, b, 1e-4)
    assert next(model.parameters()).device.type == "cpu"  # the model is left where it was


def _problem(n=48, k=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) * 0.05
    x = torch.randn(512, k, generator=g, dtype=torch.float64) @ torch.randn(k, k, generator=g, dtype=torch.float64)
    return w, x.T @ x / 512


def test_gptq_torch_loop_that_cuda_runs_equals_the_native_loop():
    """The loop CUDA runs (torch ops, native=False) is the native kernel's reference, on the CPU here."""
    w, H = _problem()
    ref = G.gptq_quantize(w, H, 4)
    n, k = w.shape
    h, dead, perm, U = G._prepared(H, k, G.GPTQConfig())
    W = w.double()
    if perm is not None:
        W = W[:, perm]
    s = G._expand_scales(ref.scales, n, k, None)
    if perm is not None:
        s = s[:, perm]
    qm = torch.full((n, 1), float(G.qmax(4)), dtype=torch.float64)
    torch_q = G._column_loop(W.clone().contiguous(), s.contiguous(), qm, U, G.GPTQConfig().block_size, None, None,
                             perm, n, native=False)
    if perm is not None:
        torch_q = torch_q[:, torch.argsort(perm)]
    assert torch.equal(torch_q.to(torch.int8), ref.symbols)


@cuda
def test_gptq_on_cuda_matches_the_cpu():
    w, H = _problem(seed=1)
    for bits in (3, 5, 8):
        a = G.gptq_quantize(w, H, bits)
        b = G.gptq_quantize(w, H, bits, device="cuda")
        assert b.symbols.device.type == "cpu" and torch.equal(a.scales, b.scales)
        # float64 on both; only rounding ties may differ, and a tie moves later columns a little
        assert float((a.symbols != b.symbols).float().mean()) < 0.01, bits


def _plan(device):
    model = tiny_model(2)
    ck = checkpoint_of(model)
    cal = C.collect(from_state_dict(ck.state_dict(), ck.config), _seqs())
    cfg = PlannerConfig(method="gptq", min_numel=MIN_NUMEL, jobs=1, lqer_ranks=(), tolerance=0.02, device=device,
                        tune_epochs=2, tune_lr=3e-3)
    return plan(ck, 12_000, cal, cfg)


def test_planner_with_an_explicit_cpu_device_is_the_default_plan():
    a, b = _plan(None), _plan("cpu")
    assert a.artifact == b.artifact
    assert "tune" in a.report["stage_seconds"]


@cuda
def test_planner_on_cuda_lands_in_the_window_like_the_cpu():
    a, b = _plan(None), _plan("cuda")
    for r in (a.report, b.report):
        assert r["within_tolerance"]
    assert abs(a.report["predicted_dloss"] - b.report["predicted_dloss"]) <= 0.05 * abs(a.report["predicted_dloss"]) + 1e-6

"""End-to-end training on synthetic shards: the loss falls, the checkpoint loads, DDP matches 1 process."""
import json
import os
import socket

import numpy as np
import pytest
import torch

from golfpack.cli import main
from golfpack.data.shards import write_shard
from golfpack.errors import GolfpackError
from golfpack.model import GPT, GPTConfig
from golfpack.safetensors_io import load_file
from golfpack.train.config import TrainConfig
from golfpack.train.trainer import build_model, param_groups, train


pytestmark = pytest.mark.usefixtures("one_torch_thread")

CFG = dict(vocab_size=64, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1)


def markov_tokens(n: int, seed: int = 0) -> np.ndarray:
    """A low-entropy chain: next = (5 * t + 3) mod 64 with prob 0.9, else uniform. BOS (1) every 97 tokens."""
    rng = np.random.default_rng(seed)
    t = np.empty(n, dtype=np.int64)
    t[0] = 1
    for i in range(1, n):
        t[i] = (5 * t[i - 1] + 3) % 64 if rng.random() < 0.9 else rng.integers(0, 64)
    t[::97] = 1
    return t


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    write_shard(d / "train.bin", markov_tokens(40_000, 0))
    write_shard(d / "val.bin", markov_tokens(4_000, 1))
    return d


def _tcfg(**kw):
    base = dict(batch_tokens=512, seq_len=32, steps=20, warmdown_steps=5, log_every=5, val_tokens=0,
                matrix_lr=0.02, tied_embed_lr=0.05, scalar_lr=0.02, muon_momentum_warmup_steps=0, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def test_loss_falls_and_checkpoint_round_trips(synth, tmp_path):
    cfg = GPTConfig(**CFG)
    out = tmp_path / "ck"
    log = train(cfg, _tcfg(ema_decay=0.8), synth / "train.bin", out, val=synth / "val.bin", show_progress=False)
    losses = log["losses"]
    assert len(losses) == 20 and log["steps"] == 20 and log["weights"] == "ema"
    assert np.mean(losses[-5:]) < losses[0] - 1.0, losses  # starts near ln 64 = 4.16
    assert log["final"]["val_loss"] < losses[0] - 1.0
    sd, meta = load_file(out / "model.safetensors")
    assert GPTConfig.from_json(meta["golfpack.config"]) == cfg
    assert GPTConfig.from_json((out / "config.json").read_text()) == cfg
    model = GPT(cfg)
    model.load_state_dict(sd, strict=True)
    assert all(t.dtype == torch.float32 for t in sd.values())
    # the saved (EMA) weights are the ones the final val scored
    saved = json.loads((out / "train_log.json").read_text())
    assert saved["final"]["val_loss"] == pytest.approx(log["final"]["val_loss"])
    val = torch.from_numpy(markov_tokens(4_000, 1))
    n = (val.numel() - 1) // 32 * 32
    with torch.no_grad():
        loss = model(val[:n].reshape(-1, 32), val[1 : n + 1].reshape(-1, 32)).item()
    assert loss == pytest.approx(log["final"]["val_loss"], rel=1e-5)


def test_training_is_deterministic_and_leaves_global_rng_alone(synth):
    torch.manual_seed(99)
    state = torch.get_rng_state()
    a = train(GPTConfig(**CFG), _tcfg(steps=4), synth / "train.bin", None, show_progress=False)
    assert torch.equal(torch.get_rng_state(), state)
    b = train(GPTConfig(**CFG), _tcfg(steps=4), synth / "train.bin", None, show_progress=False)
    assert a["losses"] == b["losses"]


def test_param_groups_follow_the_baseline_split():
    m = build_model(GPTConfig(**CFG, tie_embeddings=False), seed=0)
    g = {k: {n for n, _ in v} for k, v in param_groups(m).items()}
    assert g["embed"] == {"tok_emb.weight"} and g["head"] == {"lm_head.weight"}
    assert "blocks.0.attn.c_q.weight" in g["matrix"] and "blocks.1.mlp.proj.weight" in g["matrix"]
    assert {"skip_weights", "blocks.0.attn.q_gain", "blocks.0.resid_mix"} <= g["scalar"]
    assert sum(len(v) for v in g.values()) == len(list(m.parameters()))


def test_qat_swa_run_and_cli(synth, tmp_path, capsys):
    cfg = {**CFG, "train": {"batch_tokens": 256, "seq_len": 32, "steps": 6, "warmdown_steps": 4, "swa_every": 1,
                            "qat_bits": {"attn": 6, "mlp": 6, "emb": 8}, "qat_start": 0.5, "log_every": 2}}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    rc = main(["train", "--config", str(tmp_path / "cfg.json"), "--data", str(synth / "train.bin"),
               "--out", str(tmp_path / "o"), "--val", str(synth / "val.bin"), "--device", "cpu", "--json", "--quiet"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 6 and summary["weights"] == "swa"
    log = json.loads((tmp_path / "o" / "train_log.json").read_text())
    assert log["qat"]["start_step"] == 3 and "tok_emb.weight" in log["qat"]["tensors"]
    assert log["swa_snapshots"] == 3  # warmdown steps 3..5 -> snapshots after steps 4, 5, 6
    sd, _ = load_file(tmp_path / "o" / "model.safetensors")
    assert not any("parametrizations" in k for k in sd)


def test_bad_inputs(synth, tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({**CFG, "train": {"lr": 1}}))
    assert main(["train", "--config", str(tmp_path / "c.json"), "--data", str(synth), "--out", str(tmp_path)]) == 2
    with pytest.raises(GolfpackError, match="outside the model's vocab"):
        train(GPTConfig(**{**CFG, "vocab_size": 32}), _tcfg(), synth / "train.bin", None, show_progress=False)
    with pytest.raises(GolfpackError, match="steps or minutes"):
        TrainConfig(steps=0)
    with pytest.raises(GolfpackError, match="qat_bits"):
        TrainConfig(qat_bits={"attn": 1})


# ---------------------------------------------------------------- DDP (gloo, 2 CPU processes)
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, data, out, tcfg_dict):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    train(GPTConfig(**CFG), TrainConfig(**tcfg_dict), data, out, show_progress=False)


@pytest.mark.slow
def test_two_process_gloo_matches_single_process(synth, tmp_path):
    import torch.multiprocessing as mp

    tcfg = _tcfg(steps=3, warmdown_steps=2, grad_clip=1.0, muon_dtype="fp32").to_dict()
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(synth / "train.bin"), str(tmp_path / "ddp"), tcfg),
             nprocs=2, join=True)
    torch.set_num_threads(1)
    single = train(GPTConfig(**CFG), TrainConfig(**tcfg), synth / "train.bin", tmp_path / "one", show_progress=False)
    ddp = json.loads((tmp_path / "ddp" / "train_log.json").read_text())
    assert ddp["world_size"] == 2 and len(ddp["losses"]) == 3
    np.testing.assert_allclose(ddp["losses"], single["losses"], atol=1e-4, rtol=0)
    a, _ = load_file(tmp_path / "ddp" / "model.safetensors")
    b, _ = load_file(tmp_path / "one" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-4, rtol=0)
    # the weights did move (the comparison is not trivially between two inits)
    init = build_model(GPTConfig(**CFG), seed=3).state_dict()
    assert not torch.allclose(a["blocks.0.attn.c_q.weight"], init["blocks.0.attn.c_q.weight"])

"""Loading: infer_config, strict state-dict checks, load() precedence, and the real baseline checkpoint."""
import io
import sys
import types
import zlib

import numpy as np
import pytest
import torch

from golfpack.errors import GolfpackError
from golfpack.model import GPT, GPTConfig, check_state_dict, from_state_dict, infer_config, load


pytestmark = pytest.mark.usefixtures("one_torch_thread")


PG_7x384 = GPTConfig(num_layers=7, model_dim=384, num_heads=8, num_kv_heads=4, mlp_mult=2.0, vocab_size=1024)
SMALL = GPTConfig(vocab_size=64, num_layers=3, model_dim=32, num_heads=4, num_kv_heads=2)


def random_state_dict(cfg: GPTConfig, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model = GPT(cfg)
    return {k: torch.randn_like(v) * 0.1 for k, v in model.state_dict().items()}


def test_infer_config_baseline_shapes():
    sd = random_state_dict(PG_7x384)
    assert infer_config(sd) == PG_7x384
    assert infer_config(random_state_dict(GPTConfig())) == GPTConfig()
    assert infer_config(random_state_dict(GPTConfig(mlp_mult=3.0, num_layers=10))).mlp_hidden == 1536


def test_infer_config_odd_mlp_width():
    cfg = SMALL.replace(mlp_mult=1000 / 384, model_dim=384, num_heads=8)
    assert cfg.mlp_hidden in (999, 1000)
    inferred = infer_config(random_state_dict(cfg))
    assert inferred.mlp_hidden == cfg.mlp_hidden


def test_missing_q_gain_is_named():
    sd = random_state_dict(SMALL)
    # q_gain is the only tensor that reveals the head count; without it the base's count is used
    stripped = {k: v for k, v in sd.items() if not k.endswith("q_gain")}
    with pytest.raises(GolfpackError, match="missing tensors: blocks.0.attn.q_gain"):
        infer_config(stripped, base=SMALL)


def test_from_state_dict_round_trip_and_eval_mode():
    sd = random_state_dict(SMALL, seed=1)
    model = from_state_dict(sd)
    assert not model.training and model.config == SMALL
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k])
    idx = torch.randint(0, 64, (1, 9))
    ref = GPT(SMALL)
    ref.load_state_dict(sd)
    torch.testing.assert_close(model(idx), ref(idx), rtol=0, atol=0)


def test_from_state_dict_with_dict_config_and_prefix():
    sd = random_state_dict(SMALL)
    wrapped = {"_orig_mod." + k: v for k, v in sd.items()}
    assert from_state_dict(wrapped, SMALL.to_dict()).config == SMALL


@pytest.mark.parametrize(
    "mutate, messages",
    [
        (lambda sd: sd.pop("blocks.1.mlp.fc.weight"), ["missing tensors: blocks.1.mlp.fc.weight"]),
        (lambda sd: sd.update({"mtp_heads.0.weight": torch.zeros(64, 32), "skip_gates": torch.zeros(1, 32)}),
         ["unexpected tensors: mtp_heads.0.weight, skip_gates"]),
        (lambda sd: sd.update({"blocks.0.attn_scale": torch.zeros(31)}),
         ["blocks.0.attn_scale has shape [31], model expects [32]"]),
        (lambda sd: sd.update({"blocks.2.attn.c_q.weight": torch.zeros(32, 32, dtype=torch.int8)}),
         ["blocks.2.attn.c_q.weight has dtype torch.int8"]),
    ],
)
def test_mismatches_are_named(mutate, messages):
    sd = random_state_dict(SMALL)
    mutate(sd)
    for call in (lambda: from_state_dict(sd, SMALL), lambda: infer_config(sd)):
        with pytest.raises(GolfpackError) as e:
            call()
        for m in messages:
            assert m in str(e.value)


def test_infer_config_structural_errors():
    sd = random_state_dict(SMALL)
    with pytest.raises(GolfpackError, match="tok_emb.weight' is missing"):
        infer_config({k: v for k, v in sd.items() if k != "tok_emb.weight"})
    gap = {k: v for k, v in sd.items() if not k.startswith("blocks.1.")}
    with pytest.raises(GolfpackError, match=r"missing blocks \[1\]"):
        infer_config(gap)
    with pytest.raises(GolfpackError, match="no blocks"):
        infer_config({"tok_emb.weight": sd["tok_emb.weight"]})
    bad_kv = dict(sd, **{"blocks.0.attn.c_k.weight": torch.zeros(12, 32)})
    with pytest.raises(GolfpackError, match="not a multiple of head_dim 8"):
        infer_config(bad_kv)


def test_check_state_dict_wrong_config():
    sd = random_state_dict(SMALL)
    with pytest.raises(GolfpackError, match="missing tensors: blocks.3"):
        check_state_dict(SMALL.replace(num_layers=4), sd)


def test_load_uses_checkpoint_reader_and_config_precedence(monkeypatch, tmp_path):
    sd = random_state_dict(SMALL)
    stored = SMALL.replace(activation="leaky_relu2").to_dict()
    calls = []

    def fake_reader(path):
        calls.append(path)
        return dict(sd), stored

    fake = types.ModuleType("golfpack.checkpoint")
    fake.load_state_dict = fake_reader
    monkeypatch.setitem(sys.modules, "golfpack.checkpoint", fake)
    p = tmp_path / "m.pt"
    assert load(p).config.activation == "leaky_relu2"  # the stored config wins over inference
    assert load(p, config=SMALL).config == SMALL  # an explicit config wins over the stored one
    fake.load_state_dict = lambda path: (dict(sd), None)
    assert load(p).config == SMALL  # inferred from shapes
    assert calls == [p, p]
    fake.load_state_dict = lambda path: (dict(sd), {"num_layer": 3})
    with pytest.raises(GolfpackError, match="unknown GPTConfig keys: num_layer"):
        load(p)


# ----------------------------------------------------------------------------- the real checkpoint
def _read_baseline_ptz(path) -> dict:
    """Private reader for the baseline int8_clean_per_row_v1 .ptz (test-only; golfpack.checkpoint owns the real one)."""
    obj = torch.load(io.BytesIO(zlib.decompress(path.read_bytes())), map_location="cpu", weights_only=True)
    assert obj["__quant_format__"] == "int8_clean_per_row_v1"
    sd = {}
    for name, q in obj["quantized"].items():
        dtype = obj["dtypes"][name]
        dtype = dtype if isinstance(dtype, torch.dtype) else getattr(torch, str(dtype).removeprefix("torch."))
        sd[name] = (q.float() * obj["scales"][name].float()[:, None]).to(dtype)
    sd.update(obj["passthrough"])
    return sd


def test_real_baseline_checkpoint_loads(baseline_ptz, c4_val_shard):
    """The real .ptz loads through golfpack.model.load with the right inferred config.

    The full c4_val loss (3.363521, README) is asserted once, by the evaluator's
    real-checkpoint test (tests/test_eval_real.py), to keep CI to one full pass.
    Here: both loaders agree bit for bit, and a 4-window loss is in the right range.
    """
    from golfpack.model import load

    model = load(baseline_ptz)
    assert model.config == PG_7x384.replace(vocab_size=1024)
    assert model.num_params() == 7_630_520
    ref = from_state_dict(_read_baseline_ptz(baseline_ptz))
    tokens = np.fromfile(c4_val_shard, dtype="<u2", offset=1024)[: 4 * 512 + 1].astype(np.int64)
    tok = torch.from_numpy(tokens)
    x, y = tok[:-1].view(-1, 512), tok[1:].view(-1, 512)
    with torch.inference_mode():
        a = model(x, y, reduction="none").double()
        b = ref(x, y, reduction="none").double()
    assert torch.equal(a, b)
    assert 2.5 < a.mean().item() < 4.5

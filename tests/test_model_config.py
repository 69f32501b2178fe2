"""GPTConfig: defaults = baseline, validation messages, JSON round trip."""
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from golfpack.errors import GolfpackError
from golfpack.model import GPTConfig

FULL = dict(
    vocab_size=64, num_layers=6, model_dim=32, num_heads=4, num_kv_heads=2, mlp_mult=3.0,
    activation="leaky_relu2", leaky_slope=0.5, tie_embeddings=False, logit_softcap=15.0,
    rope_dims=4, rope_train_seq_len=16, qk_norm=True, unet_skips=True, bos_id=1,
    bigram_buckets=32, bigram_dim=8, smear_gate=True, smear_mode="add", xsa=True, xsa_layers=[4, 5],
    value_residual=True, ve_layers=[4, 5], ve_dim=8, recur_start=2, recur_end=3, recur_repeats=3,
    parallel_residual_start=4, gated_attention=True, attn_gate_dim=12, attn_gate_bias=False, ln_scale=True,
)


def test_defaults_are_the_challenge_baseline():
    c = GPTConfig()
    assert (c.vocab_size, c.num_layers, c.model_dim, c.num_heads, c.num_kv_heads) == (1024, 9, 512, 8, 4)
    assert (c.head_dim, c.kv_dim, c.mlp_hidden) == (64, 256, 1024)
    assert c.tie_embeddings and c.unet_skips and c.qk_norm and c.logit_softcap == 30.0
    assert c.layer_schedule() == list(range(9))
    assert (c.num_encoder_layers, c.num_skip_weights) == (4, 4)
    flags = ("smear_gate", "xsa", "value_residual", "gated_attention", "ln_scale")
    assert not any(getattr(c, f) for f in flags)
    assert c.bigram_buckets == 0 and c.ve_layers == () and c.recur_start is None
    assert c.parallel_residual_start is None and c.rope_dims is None


@pytest.mark.parametrize("cfg", [GPTConfig(), GPTConfig(**FULL)])
def test_json_round_trip(cfg):
    text = cfg.to_json()
    back = GPTConfig.from_json(text)
    assert back == cfg
    assert back.to_json() == text
    assert GPTConfig.from_dict(json.loads(text)) == cfg


def test_full_config_derived_values():
    c = GPTConfig(**FULL)
    assert c.layer_schedule() == [0, 1, 2, 3, 2, 3, 2, 3, 4, 5]
    assert c.num_encoder_layers == 5 and c.num_skip_weights == 5
    assert c.xsa_layer_set() == {4, 5} and c.ve_layers == (4, 5)
    assert c.mlp_hidden == 96


def test_softcap_zero_means_off():
    assert GPTConfig(logit_softcap=0).logit_softcap is None
    assert GPTConfig(logit_softcap=None).logit_softcap is None


def test_unknown_keys_rejected():
    d = GPTConfig().to_dict()
    d["n_layer"] = 3
    d["zzz"] = 1
    with pytest.raises(GolfpackError, match="unknown GPTConfig keys: n_layer, zzz"):
        GPTConfig.from_dict(d)


def test_malformed_json():
    with pytest.raises(GolfpackError, match="malformed"):
        GPTConfig.from_json("{not json")
    with pytest.raises(GolfpackError, match="JSON object"):
        GPTConfig.from_json("[1, 2]")


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(model_dim=30), "not divisible by num_heads"),
        (dict(num_kv_heads=3), "not divisible by num_kv_heads"),
        (dict(model_dim=24, num_heads=8), "head_dim 3 must be even"),
        (dict(num_layers=0), "num_layers must be >= 1"),
        (dict(mlp_mult=0.0), "mlp_mult"),
        (dict(mlp_mult=float("nan")), "mlp_mult"),
        (dict(activation="gelu"), "activation 'gelu'"),
        (dict(logit_softcap=-1.0), "logit_softcap"),
        (dict(rope_dims=3), "rope_dims must be even"),
        (dict(rope_dims=128), "rope_dims must be even and in [2, head_dim=64]"),
        (dict(rope_dims=2, rope_train_seq_len=1024), ">= 4 rotated dims"),
        (dict(bos_id=1024), "bos_id 1024 outside vocab"),
        (dict(bigram_buckets=1), "bigram_buckets"),
        (dict(xsa_layers=(1,)), "xsa_layers is set but xsa is False"),
        (dict(xsa=True, xsa_layers=(9,)), "xsa_layers [9] outside [0, 9)"),
        (dict(ve_layers=(3, 3)), "duplicates"),
        (dict(ve_layers=(-1,)), "ve_layers [-1] outside"),
        (dict(recur_start=2), "given together"),
        (dict(recur_start=5, recur_end=3), "recurrence range [5, 3] invalid"),
        (dict(recur_repeats=2), "recur_repeats > 1 needs"),
        (dict(recur_start=1, recur_end=2, recur_repeats=0), "recur_repeats must be >= 1"),
        (dict(parallel_residual_start=9), "parallel_residual_start 9 outside"),
        (dict(attn_gate_dim=8), "gated_attention is False"),
        (dict(gated_attention=True, attn_gate_dim=513), "attn_gate_dim must be in"),
        (dict(smear_mode="mean"), "smear_mode"),
        (dict(num_layers="7"), "num_layers must be int"),
        (dict(tie_embeddings=1), "tie_embeddings must be bool"),
        (dict(mlp_mult=True), "mlp_mult must be float"),
        (dict(ve_layers=(1.5,)), "ve_layers must be ints"),
        (dict(activation=None), "activation may not be null"),
    ],
)
def test_inconsistent_values_rejected(changes, message):
    with pytest.raises(GolfpackError) as e:
        GPTConfig(**changes)
    assert message in str(e.value)


def test_replace_revalidates():
    with pytest.raises(GolfpackError):
        GPTConfig().replace(num_heads=7)


@given(
    layers=st.integers(1, 8), heads=st.sampled_from([1, 2, 4]), kv_div=st.sampled_from([1, 2, 4]),
    mult=st.floats(0.25, 4.0, allow_nan=False), data=st.data(),
)
def test_random_valid_configs_round_trip(layers, heads, kv_div, mult, data):
    kv = max(1, heads // kv_div)
    start = data.draw(st.none() | st.integers(0, layers - 1))
    kw = dict(num_layers=layers, model_dim=16 * heads, num_heads=heads, num_kv_heads=kv, mlp_mult=mult,
              vocab_size=50, bos_id=data.draw(st.integers(0, 49)))
    if start is not None:
        end = data.draw(st.integers(start, layers - 1))
        kw.update(recur_start=start, recur_end=end, recur_repeats=data.draw(st.integers(1, 3)))
    kw["ve_layers"] = data.draw(st.lists(st.integers(0, layers - 1), unique=True, max_size=3))
    c = GPTConfig(**kw)
    assert GPTConfig.from_json(c.to_json()) == c
    sched = c.layer_schedule()
    assert sorted(set(sched)) == list(range(layers))
    assert c.num_skip_weights == len(sched) // 2


@pytest.mark.parametrize("field, value", [("num_layers", 10**6), ("recur_repeats", 10**12), ("model_dim", 2**20),
                                          ("vocab_size", 10**9), ("num_heads", 10**5), ("rope_train_seq_len", 2**40)])
def test_gptconfig_itself_refuses_sizes_over_the_limits(field, value):
    """GPTConfig's own validation applies LIMITS (the checkpoint readers also check the raw dict first,
    but a config built in Python or from `--config CFG.json` has only this guard)."""
    from golfpack.model.config import LIMITS

    over = {field: value}
    if field == "recur_repeats":
        over.update(recur_start=0, recur_end=1)
    with pytest.raises(GolfpackError, match=rf"{field} {value} exceeds the limit {LIMITS[field]}"):
        GPTConfig(**over)
    with pytest.raises(GolfpackError, match=rf"{field} {value} exceeds the limit"):
        GPTConfig.from_json(json.dumps(GPTConfig().to_dict() | over))

"""Shared test fixtures.

Real material (the challenge tokenizer, shards, the 7x384 checkpoint) is read
from ../shared/data at test time and never committed; tests that need it skip
with a reason when it is absent. GOLFPACK_SHARED overrides the location.
"""
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("GOLFPACK_SHARED", REPO.parent / "shared")) / "data"

# Hypothesis profiles: "ci" is the default and runs >= 200 examples per property
# (issue 2's floor); "fuzz" is for long local runs (HYPOTHESIS_PROFILE=fuzz).
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "fuzz", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def shared_file(rel: str) -> Path:
    """Path of a file under ../shared/data, or skip the test with a clear reason."""
    p = SHARED_DATA / rel
    if not p.exists():
        pytest.skip(f"needs ../shared/data/{rel} (not present on this machine)")
    return p


@pytest.fixture
def baseline_ptz() -> Path:
    return shared_file("checkpoints/pg_baseline_7x384_sp1024.int8.ptz")


@pytest.fixture
def sp1024_model() -> Path:
    return shared_file("tokenizers/fineweb_1024_bpe.model")


@pytest.fixture
def c4_val_shard() -> Path:
    return shared_file("shards/c4_val_sp1024.bin")


@pytest.fixture
def one_torch_thread():
    """Tiny models: intra-op threads only add OpenMP hand-off stalls, and on a shared,
    loaded CPU an oversubscribed pool makes small steps 100x slower. Restored afterwards."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

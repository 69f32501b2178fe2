"""A 2-process gloo run (torchrun) gives bit-identical results to one process."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("eval_dist_worker.py")


def _env():
    env = dict(os.environ)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process_exactly(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    subprocess.run([sys.executable, str(WORKER), str(one)], check=True, env=_env(), timeout=300)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(WORKER), str(two)],
        env=_env(), timeout=300, capture_output=True, text=True,
    )
    if proc.returncode != 0:
        pytest.fail(f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    ref = json.loads((one / "rank0.json").read_text())
    r0 = json.loads((two / "rank0.json").read_text())
    r1 = json.loads((two / "rank1.json").read_text())
    for mode in ref:
        assert ref[mode]["world_size"] == 1 and r0[mode]["world_size"] == 2
        for key in ("val_loss", "val_bpb", "tokens", "bytes"):
            assert r0[mode][key] == ref[mode][key], (mode, key)  # float.hex: bit-identical
            assert r1[mode][key] == ref[mode][key], (mode, key)

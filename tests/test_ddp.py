"""DDP: two gloo processes under torchrun produce the weights of one process with the same global batch.

Tolerance: every weight within 1e-5 absolute (float32; the only difference is the order in
which the two halves of each gradient are summed).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from worldgym.model import checkpoint
from worldgym.config_io import dump_yaml
from worldgym.model.networks import Model
from worldgym.policies.builtin import StickyRandomPolicy
from worldgym.play.record import record
from worldgym.training.recipes import tiny_config
from worldgym.envs.twins import PixelTwin

TOLERANCE = 1e-5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(), reason="needs gloo")
def test_two_gloo_processes_match_one(tmp_path):
    env = PixelTwin("CartPole", height=32, width=32)
    record(env, StickyRandomPolicy(env.action_space), tmp_path / "data", episodes=4, seed=0, max_steps=20)
    # one optimizer step of every stage, global batches divisible by 2
    cfg = dataclasses.replace(tiny_config(), ae_steps=1, ae_batch=8, dyn_steps=1, dyn_batch=4, sf_steps=1, sf_batch=4, warmup=1)
    dump_yaml(cfg, tmp_path / "ddp.yaml")
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not found")
    common = [str(tmp_path / "ddp.yaml"), "--data", str(tmp_path / "data")]
    envs = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "worldgym.cli", "train", *common, "--out", str(tmp_path / "one")], check=True, env=envs, timeout=300)
    subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "worldgym.cli", "train", *common, "--out", str(tmp_path / "two")],
        check=True, env={**envs, "MASTER_PORT": str(free_port())}, timeout=300,
    )  # fmt: skip
    one, two = checkpoint.load(tmp_path / "one" / "model"), checkpoint.load(tmp_path / "two" / "model")
    worst = 0.0
    for name, a in one.state_dict().items():
        b = two.state_dict()[name]
        if a.is_floating_point():
            worst = max(worst, float((a - b).abs().max()) if a.numel() else 0.0)
        else:
            assert torch.equal(a, b), name
    assert worst <= TOLERANCE, f"max weight difference {worst:.3g} > {TOLERANCE}"
    # and the step did change the weights (the comparison is not between two untouched models)
    torch.manual_seed(cfg.seed)
    fresh = Model(one.config)
    assert any(not torch.equal(v, fresh.state_dict()[k]) for k, v in one.state_dict().items() if "latent" not in k)

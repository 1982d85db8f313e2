"""TorchRLWorldModelEnv: check_env_specs for batch sizes () and (16,), partial "_reset", seeding,
snapshots, and a Collector smoke run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchrl.envs.utils import check_env_specs

from worldgym.envs.env import WorldModelEnv
from worldgym.envs.torchrl_env import TorchRLWorldModelEnv

from conftest import tiny_model


@pytest.mark.parametrize("batch_size", [(), (16,)])
def test_check_env_specs(model, batch_size):
    env = TorchRLWorldModelEnv(model, batch_size=batch_size, max_episode_steps=50)
    check_env_specs(env, seed=0)
    assert env.batch_size == torch.Size(batch_size) and env.batch_locked


@pytest.mark.parametrize("kind", ["box", "multi_binary", "multi_discrete"])
def test_check_env_specs_other_action_kinds_and_latents(kind):
    from worldgym.model.actions import ActionConfig

    action = {
        "box": ActionConfig(kind="box", n=2),
        "multi_binary": ActionConfig(kind="multi_binary", n=3),
        "multi_discrete": ActionConfig(kind="multi_discrete", nvec=[3, 2]),
    }[kind]
    env = TorchRLWorldModelEnv(tiny_model(action=action), batch_size=(2,), obs_type="latent")
    check_env_specs(env, seed=0)


def test_partial_reset_leaves_other_rows_bit_identical(model):
    env = TorchRLWorldModelEnv(model, batch_size=(4,))
    env.set_seed(0)
    td = env.rand_step(env.reset())
    nxt = td["next"].clone()
    before = env.engine.get_state([1, 2])
    mask = torch.tensor([True, False, False, True])[:, None]
    out = env.reset(nxt.clone().set("_reset", mask))
    keep = ~mask[:, 0]
    assert torch.equal(out["pixels"][keep], nxt["pixels"][keep])
    assert not out["done"][mask[:, 0]].any()
    after = env.engine.get_state([1, 2])
    assert all(torch.equal(before["cache"][k], after["cache"][k]) for k in before["cache"])
    assert all(torch.equal(a, b) for a, b in zip(before["rng"], after["rng"]))
    bank = model.start_frames[:, -1]
    assert any(torch.equal(out["pixels"][0], f) for f in bank)


def test_seeding_is_deterministic_and_row_i_matches_a_gymnasium_env_seeded_seed_plus_i(model):
    def run(seed):
        env = TorchRLWorldModelEnv(model, batch_size=(3,))
        env.set_seed(seed)
        actions = torch.tensor([[0, 1, 2], [2, 2, 1], [1, 0, 0]])
        td = env.reset()
        outs = [td["pixels"].clone()]
        for a in actions:
            td = env.step(td.set("action", a))
            outs.append(td["next", "pixels"].clone())
            td = td["next"].exclude("reward", "done", "terminated", "truncated")
        return torch.stack(outs)

    a, b, c = run(7), run(7), run(8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    for i in range(3):
        single = WorldModelEnv(model)
        assert np.array_equal(single.reset(seed=7 + i)[0], a[0, i].numpy())  # same start draw per row


def test_snapshot_round_trip(model):
    env = TorchRLWorldModelEnv(model, batch_size=(2,))
    env.set_seed(3)
    td = env.rand_step(env.reset())
    snap = env.get_state()
    action = torch.tensor([1, 2])
    first = env.step(td["next"].clone().set("action", action))["next", "pixels"].clone()
    env.set_state(snap)
    second = env.step(td["next"].clone().set("action", action))["next", "pixels"].clone()
    assert torch.equal(first, second)


@pytest.mark.filterwarnings("ignore:Creating .*WeightUpdater:DeprecationWarning")  # torchrl's own, on import
def test_collector_smoke(model):
    from torchrl.collectors import Collector

    env = TorchRLWorldModelEnv(model, batch_size=(4,), obs_type="latent", sampler_steps=1, max_episode_steps=20)
    env.set_seed(0)
    collector = Collector(env, policy=None, frames_per_batch=64, total_frames=256)
    frames = 0
    try:
        for batch in collector:
            assert batch["next", "observation"].isfinite().all()
            frames += batch.numel()
    finally:
        collector.shutdown()
    assert frames >= 256

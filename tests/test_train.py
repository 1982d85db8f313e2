"""Trainer: configs are dataclass dumps, resume repeats an uninterrupted run exactly, self-forcing runs the engine's computation."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from worldgym import checkpoint
from worldgym.config_io import load_yaml
from worldgym.engine import WorldModel
from worldgym.policies import StickyRandomPolicy
from worldgym.record import record
from worldgym.train import SelfForcingLoss, TrainConfig, cartpole_config, dynamics_batch, Data, tiny_config, train
from worldgym.twins import PixelTwin

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Six real CartPole episodes at 32x32, at most 20 steps each."""
    env = PixelTwin("CartPole", height=32, width=32)
    path = tmp_path_factory.mktemp("data") / "cartpole32"
    record(env, StickyRandomPolicy(env.action_space), path, episodes=6, seed=0, max_steps=20)
    return path


def test_configs_are_dumps_of_the_dataclasses():
    assert load_yaml(TrainConfig, CONFIGS / "cartpole.yaml") == cartpole_config()
    assert load_yaml(TrainConfig, CONFIGS / "tiny.yaml") == tiny_config()


def state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def losses(run: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [(r["stage"], r["step"], r["loss"]) for r in rows]


def test_resume_repeats_the_uninterrupted_run(data, tmp_path):
    cfg = tiny_config()
    whole = train(cfg, data, tmp_path / "whole")
    # the same run, interrupted twice (inside the autoencoder and inside dynamics), then resumed
    part = tmp_path / "part"
    train(cfg, data, part, stop_after=3)
    saved = checkpoint.load(part / "checkpoint")
    assert saved.extra == {"stage": "autoencoder", "step": 3, "data": str(data)}
    assert (part / "optimizer.safetensors").is_file()
    train(cfg, data, part, stop_after=3)
    assert checkpoint.load(part / "checkpoint").extra["stage"] == "dynamics"
    resumed = train(cfg, data, part)
    a, b = checkpoint.load(whole), checkpoint.load(resumed)
    for k, v in state(a).items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert losses(tmp_path / "whole") == losses(part)
    # the start bank holds real first frames, the latent statistics were measured
    assert b.start_frames.float().mean() > 100 and not torch.equal(b.autoencoder.latent_std, torch.ones_like(b.autoencoder.latent_std))


def test_self_forcing_rollout_is_the_engine_rollout(data):
    """The self-forcing loss generates exactly the blocks WorldModel.step generates (same noise, same actions)."""
    cfg = tiny_config()
    torch.manual_seed(0)
    model = checkpoint.load(train(dataclasses.replace(cfg, dyn_steps=2, sf_steps=0), data, Path(data).parent / "sf"))
    d = Data(data, cfg.model.action)
    latents = torch.cat([model.autoencoder.encode(d.frames[i : i + 64]) for i in range(0, len(d.frames), 64)]).detach()
    g = torch.Generator().manual_seed(3)
    batch = dynamics_batch(d, latents, g, 2, 6, cfg)
    # the engine's noise: row i's generator seeded with i, one (N, C) draw per step
    N, C = cfg.model.autoencoder.tokens, cfg.model.autoencoder.latent_channels
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    noise = torch.stack([torch.stack([torch.randn(N, C, generator=gg) for _ in range(5)]) for gg in gens])  # (B, 5, N, C)
    batch["noise"] = torch.cat([torch.zeros(2, 1, N, C), noise], 1)
    loss_module = SelfForcingLoss(model, cfg)
    loss, _ = loss_module(batch, {"frames": 1.0})
    loss.backward()
    wm = WorldModel(model, batch_size=2)
    idx, _ = d.sequences(torch.Generator().manual_seed(3), 2, 6)
    wm.reset(None, d.frames[idx[:, :1]], seeds=[0, 1])
    steps = [wm.step(batch["actions"][:, t, 0].tolist()).latents for t in range(1, 6)]
    torch.testing.assert_close(loss_module.last_rollout, torch.stack(steps, 1), atol=1e-5, rtol=1e-5)
    assert all(p.grad is not None for p in model.dynamics.parameters())

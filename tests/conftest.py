"""Shared fixtures: tiny models (2 layers, 32 dims, 16x16 frames) so the suite runs in minutes on a CPU."""

from __future__ import annotations

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import pytest
import torch

# tiny models gain nothing from intra-op threads, and spinning OpenMP workers slow a shared machine down
torch.set_num_threads(1)

from worldgym.model.actions import ActionConfig
from worldgym.model.autoencoder import AutoencoderConfig
from worldgym.model.dynamics import DynamicsConfig
from worldgym.model.networks import Model, WorldModelConfig
from worldgym.model.sampler import SamplerConfig


def tiny_config(
    action: ActionConfig | None = None,
    sink: int = 1,
    window: int = 3,
    steps: int = 2,
    train_frames: int = 16,
    fused: bool = False,
    patch: int = 1,
    residual: bool | str = False,
) -> WorldModelConfig:
    return WorldModelConfig(
        name="Tiny",
        autoencoder=AutoencoderConfig(frame_height=16, frame_width=16, latent_channels=4, widths=[8, 8]),
        dynamics=DynamicsConfig(dim=32, depth=2, heads=2, sink=sink, window=window, train_frames=train_frames, fused_commit=fused, patch=patch, residual=bool(residual), residual_base=residual or "copy"),
        action=action or ActionConfig(kind="discrete", n=3),
        sampler=SamplerConfig(steps=steps),
        start_bank=4,
    )


def randomized(model: Model, seed: int = 0, std: float = 0.2) -> Model:
    """Give every parameter random values, so zero-initialised adaLN gates do not hide any path."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std + (1.0 if name.endswith("norm.weight") else 0.0))
        model.start_frames.copy_(torch.randint(0, 256, model.start_frames.shape, generator=g, dtype=torch.uint8))
    return model


def tiny_model(seed: int = 0, **kwargs) -> Model:
    return randomized(Model(tiny_config(**kwargs)), seed)


@pytest.fixture
def model() -> Model:
    return tiny_model()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Six real CartPole episodes at 32x32 with their simulator states, at most 20 steps each."""
    from worldgym.envs.twins import PixelTwin
    from worldgym.play.record import record
    from worldgym.policies.builtin import StickyRandomPolicy

    env = PixelTwin("CartPole", height=32, width=32)
    path = tmp_path_factory.mktemp("data") / "cartpole32"
    record(env, StickyRandomPolicy(env.action_space), path, episodes=6, seed=0, max_steps=20)
    return path

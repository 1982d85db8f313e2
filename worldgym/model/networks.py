"""The trainable networks of one world model (autoencoder + dynamics) and the config that builds them.

`Model` holds weights and a small bank of start frames; it keeps no episode state. The
engine (engine.py) owns a cache and runs the model; checkpoint.py saves and loads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from worldgym.model.actions import ActionConfig
from worldgym.model.autoencoder import Autoencoder, AutoencoderConfig
from worldgym.model.dynamics import Dynamics, DynamicsConfig
from worldgym.model.sampler import SamplerConfig


@dataclass
class WorldModelConfig:
    """Everything needed to build a world model.

    Attributes:
        name: short name, used for the Gymnasium id ``worldgym/<name>-v0``.
        autoencoder: frame size and latent layout.
        dynamics: transformer and attention context sizes.
        action: the action space.
        sampler: default denoising schedule.
        context_frames: frames a reset pre-fills the cache with.
        start_bank: number of start contexts stored with the weights.
        fps: frames per second of the source environment (for rendering).
        real_twin: Gymnasium id of the real environment this model imitates ("" if none).
        reward_range: (low, high) clip for predicted rewards.
    """

    name: str = "untitled"
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    dynamics: DynamicsConfig = field(default_factory=DynamicsConfig)
    action: ActionConfig = field(default_factory=ActionConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    context_frames: int = 1
    start_bank: int = 16
    fps: int = 50
    real_twin: str = ""
    reward_range: list[float] = field(default_factory=lambda: [-1.0, 1.0])

    def __post_init__(self) -> None:
        if self.context_frames < 1:
            raise ValueError(f"context_frames must be >= 1, got {self.context_frames}")
        if self.context_frames > self.dynamics.sink + self.dynamics.window:
            raise ValueError(
                f"context_frames={self.context_frames} exceeds the cache (sink + window = "
                f"{self.dynamics.sink + self.dynamics.window})"
            )


class Model(nn.Module):
    """Autoencoder + dynamics of one world model, and its bank of start contexts."""

    def __init__(self, config: WorldModelConfig) -> None:
        super().__init__()
        self.config = config
        ae = config.autoencoder
        self.autoencoder = Autoencoder(ae)
        self.dynamics = Dynamics(config.dynamics, config.action, ae.grid, ae.latent_channels)
        bank = torch.zeros(config.start_bank, config.context_frames, ae.frame_height, ae.frame_width, 3, dtype=torch.uint8)
        self.register_buffer("start_frames", bank)  # (K, F, H, W, 3): contexts a reset can start from

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

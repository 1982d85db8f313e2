"""Few-step flow-matching sampler: a pure schedule function and a loop. It never sees pixels or the cache.

Flow matching interpolates ``x_t = (1 - t) * x0 + t * noise`` from data (t = 0) to noise
(t = 1). The dynamics predicts the clean block ``x0`` from ``x_t``; the sampler walks the
probability-flow ODE from t = 1 to 0 with Euler steps on the implied velocity
``(x_t - x0) / t``. With one step this is a single denoising pass; more steps trade time
for quality. All randomness comes from explicit per-row ``torch.Generator`` objects.

Dimension letters: B batch rows, N tokens, C latent channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch


@dataclass
class SamplerConfig:
    """How a block is denoised.

    Attributes:
        steps: denoising passes per block (1-4 for play and RL, more for quality).
        shift: schedule shift; > 1 spends more steps at high noise (as in SD3 / Wan).
        commit_noise: noise level the commit pass is run at (0 = clean).
    """

    steps: int = 2
    shift: float = 1.0
    commit_noise: float = 0.0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"sampler steps must be >= 1, got {self.steps}")
        if self.shift <= 0:
            raise ValueError(f"sampler shift must be > 0, got {self.shift}")
        if not 0.0 <= self.commit_noise < 1.0:
            raise ValueError(f"commit_noise must be in [0, 1), got {self.commit_noise}")


def flow_schedule(steps: int, shift: float = 1.0) -> list[float]:
    """Noise levels from 1 down to 0, ``steps + 1`` values: ``t = s*u / (1 + (s-1)*u)``, u uniform."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    out = []
    for i in range(steps + 1):
        u = 1.0 - i / steps
        out.append(shift * u / (1.0 + (shift - 1.0) * u))
    return out


def draw_noise(generators: Sequence[torch.Generator], shape: tuple[int, ...], device: torch.device | str) -> torch.Tensor:
    """One standard normal tensor of ``shape`` per generator, stacked: (len(generators), *shape).

    Row i holds exactly ``torch.randn(shape, generator=generators[i])``, drawn in place (no stack).
    """
    out = torch.empty((len(generators), *shape), device=device)
    for row, g in zip(out, generators):
        row.normal_(generator=g)
    return out


def sample(denoise: Callable[[torch.Tensor, float], torch.Tensor], noise: torch.Tensor, schedule: list[float]) -> torch.Tensor:
    """Run the Euler loop from ``noise`` (B, N, C) at t = schedule[0] down to t = schedule[-1] = 0.

    Args:
        denoise: ``(x_t, t) -> predicted x0``, the same shape as x_t.
        noise: starting sample at the first noise level.
        schedule: output of `flow_schedule`.
    """
    x = noise
    for t, t_next in zip(schedule[:-1], schedule[1:]):
        # 1. predict the clean block from the current sample
        x0 = denoise(x, t)
        # 2. step the ODE to the next level (the last step lands on x0 itself)
        x = x0 if t_next == 0.0 else x + (t_next - t) * (x - x0) / t
    return x

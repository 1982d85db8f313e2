"""Rotary position embedding over time and the latent grid (3-axis RoPE).

The head dimension is split into pairs; ``Dh/2 - 2*(Dh/2 // 3)`` pairs rotate with the
temporal position, the rest are shared equally between the grid row and the grid column
(the split Wan-style video transformers use). Temporal positions are *window-relative*
(see cache.py): the dynamics never asks for a position beyond ``sink + window``, so the
table here is small and a rollout of any length only sees positions it was trained on.

Dimension letters: B batch, P temporal positions, N tokens per frame, L sequence length,
H heads, Dh head dim.
"""

from __future__ import annotations

import torch
from torch import nn


class Rotary(nn.Module):
    """Precomputed cos/sin tables for temporal positions ``0..max_time-1`` over an (h, w) grid."""

    def __init__(self, head_dim: int, grid: tuple[int, int], max_time: int, base: float = 100.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"head_dim must be even for rotary embeddings, got {head_dim}")
        pairs = head_dim // 2
        spatial = pairs // 3
        temporal = pairs - 2 * spatial
        h, w = grid

        def freqs(n: int) -> torch.Tensor:
            return 1.0 / (base ** (torch.arange(n, dtype=torch.float64) / max(n, 1)))

        t = torch.arange(max_time, dtype=torch.float64)[:, None, None] * freqs(temporal)  # (P, 1, temporal)
        ys = torch.arange(h, dtype=torch.float64).repeat_interleave(w)  # (N,) grid row of each token
        xs = torch.arange(w, dtype=torch.float64).repeat(h)  # (N,) grid column of each token
        sy = ys[:, None] * freqs(spatial)  # (N, spatial)
        sx = xs[:, None] * freqs(spatial)  # (N, spatial)
        n = h * w
        angles = torch.cat(
            [t.expand(max_time, n, temporal), sy.expand(max_time, n, spatial), sx.expand(max_time, n, spatial)], dim=-1
        )  # (P, N, Dh/2)
        self.max_time = max_time
        self.tokens = n
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def tables(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Temporal positions (..., F) of whole frames -> cos, sin of shape (..., F*N, 1, Dh/2)."""
        if positions.numel() and int(positions.max()) >= self.max_time:
            raise IndexError(f"temporal position {int(positions.max())} beyond the table of {self.max_time}")
        cos = self.cos[positions]  # (..., F, N, Dh/2)
        sin = self.sin[positions]
        shape = (*positions.shape[:-1], positions.shape[-1] * self.tokens, 1, cos.shape[-1])
        return cos.reshape(shape), sin.reshape(shape)  # (..., F*N, 1, Dh/2)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, L, H, Dh) by tables broadcastable to (B, L, 1, Dh/2) ("rotate half" layout)."""
    x1, x2 = x.chunk(2, dim=-1)  # (B, L, H, Dh/2) each
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)  # (B, L, H, Dh)

"""Rotary position embedding over time and the latent grid (3-axis RoPE).

The head dimension is split into pairs; ``Dh/2 - 2*(Dh/2 // 3)`` pairs rotate with the
temporal position, the rest are shared equally between the grid row and the grid column
(the split Wan-style video transformers use). Only *distances* between temporal positions reach the attention scores, and the
dynamics never lets a query sit more than ``sink + window`` blocks from a key it reads
(see cache.py), so a rollout of any length only sees distances it was trained on. Training
reads the small precomputed table (`tables`); inference rotates by a block counter that
grows with the rollout (`at`), whose angles are computed in float64 from the integer
position so they stay exact (to float32 rounding) at any position the engine allows.

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
        self.register_buffer("time_freqs", freqs(temporal), persistent=False)  # (temporal,) float64
        self.register_buffer("grid_cos", angles[0, :, temporal:].cos().float(), persistent=False)  # (N, 2*spatial)
        self.register_buffer("grid_sin", angles[0, :, temporal:].sin().float(), persistent=False)
        # `at_full`'s layout [cos, cos] / [-sin, sin] as one angle per pair slot: position * freq + grid angle
        no_grid, no_time = torch.zeros(2 * spatial, dtype=torch.float64), torch.zeros(n, temporal, dtype=torch.float64)
        self.register_buffer("full_freqs", torch.cat([freqs(temporal), no_grid] * 2), persistent=False)  # (Dh,)
        self.register_buffer("full_grid", torch.cat([no_time, angles[0, :, temporal:]] * 2, -1), persistent=False)  # (N, Dh)
        self.register_buffer("full_sign", torch.cat([-torch.ones(pairs), torch.ones(pairs)]), persistent=False)  # (Dh,)

    def tables(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Temporal positions (..., F) of whole frames -> cos, sin of shape (..., F*N, 1, Dh/2)."""
        if positions.numel() and int(positions.max()) >= self.max_time:
            raise IndexError(f"temporal position {int(positions.max())} beyond the table of {self.max_time}")
        cos = self.cos[positions]  # (..., F, N, Dh/2)
        sin = self.sin[positions]
        shape = (*positions.shape[:-1], positions.shape[-1] * self.tokens, 1, cos.shape[-1])
        return cos.reshape(shape), sin.reshape(shape)  # (..., F*N, 1, Dh/2)


    def at(self, positions: torch.Tensor, grid: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Any integer temporal positions (..., F) -> cos, sin (..., F*N, 1, Dh/2), equal to `tables` where both apply.

        With ``grid=False`` the grid pairs do not rotate (cos 1, sin 0): a pure move in time,
        for re-rotating keys that already carry their grid rotation.
        """
        angles = positions.to(torch.float64)[..., None] * self.time_freqs  # (..., F, temporal)
        n, spatial = self.tokens, self.grid_cos.shape[-1]
        lead = (*positions.shape, n)
        gcos = self.grid_cos if grid else torch.ones_like(self.grid_cos)
        gsin = self.grid_sin if grid else torch.zeros_like(self.grid_sin)
        cos = torch.cat([angles.cos().float()[..., None, :].expand(*lead, -1), gcos.expand(*lead, spatial)], -1)
        sin = torch.cat([angles.sin().float()[..., None, :].expand(*lead, -1), gsin.expand(*lead, spatial)], -1)
        shape = (*positions.shape[:-1], positions.shape[-1] * n, 1, cos.shape[-1])
        return cos.reshape(shape), sin.reshape(shape)  # (..., F*N, 1, Dh/2)


    def at_full(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`at`'s tables laid out for `rotate_full`: cos (..., F*N, 1, Dh) = [cos, cos], sin (..., F*N, 1, Dh) = [-sin, sin].

        The same values `rotate` builds from `at`'s half tables, made once per pass instead of
        once per layer (fewer operators for a dispatch-bound step). Many positions (a large batch, whose rows
        share a few) are made once per distinct position and gathered: the same values, a fraction of the work.
        """
        if positions.numel() > 16:
            distinct, inverse = torch.unique(positions, return_inverse=True)  # (U,), positions' shape
            cos, sin = self.full_tables(distinct[:, None])  # (U, N, 1, Dh)
            shape = (*positions.shape[:-1], positions.shape[-1] * self.tokens, 1, cos.shape[-1])
            inverse = inverse.flatten()
            return cos.index_select(0, inverse).reshape(shape), sin.index_select(0, inverse).reshape(shape)  # (..., F*N, 1, Dh)
        return self.full_tables(positions)

    def full_tables(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`at_full`'s tables computed for every position as given (no search for shared positions)."""
        # position * freq in the temporal slots, the grid angle in the others: each slot's angle exactly as `at` makes it
        angles = torch.addcmul(self.full_grid, positions.to(torch.float64)[..., None, None], self.full_freqs)  # (..., F, N, Dh)
        cos, sin = angles.cos().float(), angles.sin().float().mul_(self.full_sign)  # (..., F, N, Dh)
        shape = (*positions.shape[:-1], positions.shape[-1] * self.tokens, 1, cos.shape[-1])
        return cos.reshape(shape), sin.reshape(shape)  # (..., F*N, 1, Dh)


def rotate_full(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (..., Dh) by full tables broadcastable to (..., Dh) (`Rotary.at_full`'s [cos, cos] and [-sin, sin])."""
    if cos.dtype != x.dtype:
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    swapped = x.roll(x.shape[-1] // 2, dims=-1)  # (x2, x1)
    return torch.addcmul(x * cos, swapped, sin)  # (x1 cos - x2 sin, x2 cos + x1 sin)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (..., Dh) by tables broadcastable to (..., Dh/2) ("rotate half" layout), e.g. (B, L, H, Dh) by (B, L, 1, Dh/2)."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    full_cos = torch.cat([cos, cos], dim=-1)  # (..., Dh): tables are small, the rotated tensor is not
    signed_sin = torch.cat([-sin, sin], dim=-1)
    return rotate_full(x, full_cos, signed_sin)

"""The KV cache: preallocated keys/values of committed blocks, an attention sink plus a rolling window.

Each batch row keeps the first ``sink`` blocks of its episode forever and the last
``window`` blocks after them in a ring. Keys are stored *un-rotated*; the dynamics
rotates them by their position inside the current window at attention time, so positions
stay in ``[0, sink + window]`` however long the rollout runs. Alongside the keys and
values the cache keeps each block's clean latents and action (for ``recache``).

The cache never advances itself: the engine (engine.py) calls `append` once per
committed block and `reset_rows` / `keep_sink_and_last` / `set_rows` for flushes and
snapshots. Nothing here runs a network.

Dimension letters: L layers, B batch rows, S+W slots, N tokens per block, H heads,
Dh head dim, C latent channels, A action width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class CacheView:
    """The cache of every row in temporal order, as attention reads it.

    Attributes:
        k: un-rotated keys (L, B, (S+W)*N, H, Dh); slot order = temporal position.
        v: values (L, B, (S+W)*N, H, Dh).
        valid: (B, (S+W)*N) True where a token holds a committed block.
        filled: (B,) number of valid blocks = temporal position of the next block.
    """

    k: torch.Tensor
    v: torch.Tensor
    valid: torch.Tensor
    filled: torch.Tensor


class KVCache:
    """Sink + rolling-window cache for ``batch_size`` rows, all tensors allocated once."""

    def __init__(
        self,
        *,
        layers: int,
        batch_size: int,
        sink: int,
        window: int,
        tokens: int,
        heads: int,
        head_dim: int,
        latent_channels: int,
        action_width: int,
        action_dtype: torch.dtype,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if sink < 0 or window < 1:
            raise ValueError(f"cache needs sink >= 0 and window >= 1, got sink={sink}, window={window}")
        self.sink, self.window, self.tokens = sink, window, tokens
        self.slots = sink + window
        shape = (layers, batch_size, self.slots, tokens, heads, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)  # (L, B, S+W, N, H, Dh)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.latents = torch.zeros(batch_size, self.slots, tokens, latent_channels, device=device)  # (B, S+W, N, C)
        self.actions = torch.zeros(batch_size, self.slots, action_width, device=device, dtype=action_dtype)
        self.null = torch.zeros(batch_size, self.slots, device=device, dtype=torch.bool)  # (B, S+W)
        self.count = torch.zeros(batch_size, device=device, dtype=torch.int64)  # blocks committed since reset
        self._rows = torch.arange(batch_size, device=device)
        self._offsets = torch.arange(window, device=device)

    @property
    def batch_size(self) -> int:
        return self.count.shape[0]

    def nbytes(self) -> int:
        """Bytes held by the cache's tensors (constant for its lifetime)."""
        return sum(t.numel() * t.element_size() for t in (self.k, self.v, self.latents, self.actions, self.null, self.count))

    def filled(self) -> torch.Tensor:
        """(B,) number of blocks a row can attend to = position of its next block."""
        return self.count.clamp(max=self.slots)

    def order(self) -> torch.Tensor:
        """(B, S+W) slot index of each temporal position (positions past ``filled`` point at unused slots)."""
        s, w = self.sink, self.window
        start = (self.count - w).clamp(min=s)  # (B,) first block number still in the window
        blocks = start[:, None] + self._offsets  # (B, W)
        ring = s + (blocks - s) % w  # (B, W)
        sink = self._offsets.new_tensor(range(s)).expand(self.batch_size, s)  # (B, S)
        return torch.cat([sink, ring], dim=1)  # (B, S+W)

    def view(self, rows: torch.Tensor | None = None) -> CacheView:
        """Gather rows' blocks (default all) into temporal order for attention (a copy; the cache is unchanged)."""
        rows = self._rows if rows is None else rows
        order = self.order()[rows]  # (R, S+W)
        k = self.k[:, rows[:, None], order]  # (L, R, S+W, N, H, Dh)
        v = self.v[:, rows[:, None], order]
        L, B, P, N, H, D = k.shape
        positions = torch.arange(P, device=order.device)
        filled = self.filled()[rows]
        valid = (positions[None, :] < filled[:, None]).repeat_interleave(N, dim=1)  # (B, (S+W)*N)
        return CacheView(k.reshape(L, B, P * N, H, D), v.reshape(L, B, P * N, H, D), valid, filled)

    def write_slot(self) -> torch.Tensor:
        """(B,) slot the next committed block of each row goes to (evicting the oldest window block when full)."""
        c = self.count
        return torch.where(c < self.sink, c, self.sink + (c - self.sink) % self.window)

    def append(
        self,
        k: torch.Tensor,
        v: torch.Tensor,
        latents: torch.Tensor,
        actions: torch.Tensor,
        null: torch.Tensor,
        rows: torch.Tensor | None = None,
    ) -> None:
        """Commit one block per row: k, v (L, R, N, H, Dh), latents (R, N, C), actions (R, A), null (R,).

        ``rows`` (R,) selects the rows written (default all); other rows are untouched.
        """
        rows = self._rows if rows is None else rows
        slot = self.write_slot()[rows]  # (R,)
        self.k[:, rows, slot] = k.to(self.k.dtype)
        self.v[:, rows, slot] = v.to(self.v.dtype)
        self.latents[rows, slot] = latents.float()
        self.actions[rows, slot] = actions.to(self.actions.dtype)
        self.null[rows, slot] = null
        self.count[rows] += 1

    def reset_rows(self, rows: torch.Tensor) -> None:
        """Flush rows (R,) to the freshly built state: zeros everywhere, count 0."""
        for t in (self.k, self.v):
            t[:, rows] = 0
        for t in (self.latents, self.actions, self.null, self.count):
            t[rows] = 0

    def keep_sink_and_last(self, rows: torch.Tensor) -> None:
        """KV flush: keep the sink blocks and the newest block of rows (R,), drop the rest of the window."""
        for r in rows.tolist():
            c = int(self.count[r])
            if c <= self.sink + 1:
                continue
            s = self.sink
            last = s + (c - 1 - s) % self.window  # slot of the newest block (c > s + 1, so it is in the ring)
            self.k[:, r, s] = self.k[:, r, last].clone()
            self.v[:, r, s] = self.v[:, r, last].clone()
            self.latents[r, s] = self.latents[r, last].clone()
            self.actions[r, s] = self.actions[r, last].clone()
            self.null[r, s] = self.null[r, last].clone()
            for t in (self.k, self.v):
                t[:, r, s + 1 :] = 0
            for t in (self.latents, self.actions, self.null):
                t[r, s + 1 :] = 0
            self.count[r] = s + 1

    def get_rows(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """A deep copy of rows (R,): everything needed to restore them later."""
        return {
            "k": self.k[:, rows].clone(),
            "v": self.v[:, rows].clone(),
            "latents": self.latents[rows].clone(),
            "actions": self.actions[rows].clone(),
            "null": self.null[rows].clone(),
            "count": self.count[rows].clone(),
        }

    def set_rows(self, rows: torch.Tensor, state: dict[str, torch.Tensor]) -> None:
        """Restore rows (R,) from `get_rows` output (which may come from other rows or another cache)."""
        expected = {"k", "v", "latents", "actions", "null", "count"}
        if set(state) != expected:
            raise ValueError(f"cache state must have keys {sorted(expected)}, got {sorted(state)}")
        if state["k"].shape[2:] != self.k.shape[2:] or state["k"].shape[1] != len(rows):
            raise ValueError(
                f"cache state of shape {tuple(state['k'].shape)} does not fit {len(rows)} rows of a cache "
                f"shaped {tuple(self.k.shape)}; snapshots only restore into an engine of the same model"
            )
        self.k[:, rows] = state["k"].to(self.k)
        self.v[:, rows] = state["v"].to(self.v)
        self.latents[rows] = state["latents"].to(self.latents)
        self.actions[rows] = state["actions"].to(self.actions)
        self.null[rows] = state["null"].to(self.null)
        self.count[rows] = state["count"].to(self.count)

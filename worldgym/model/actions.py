"""Actions: the one place that defines both an action's Gymnasium space and its embedding.

An `ActionConfig` declares the kind of action a world model takes:

- ``discrete``: one of ``n`` choices (``Discrete(n)``), e.g. CartPole's push left / right.
- ``multi_discrete``: one choice per axis (``MultiDiscrete(nvec)``), e.g. (up/none/down, left/none/right).
- ``multi_binary``: keys held at once (``MultiBinary(n)``), e.g. a keyboard combination W+Shift.
- ``box``: a continuous vector (``Box(low, high, (n,), float32)``).

`ActionEmbedding` maps a batch of actions to one conditioning vector per batch row; the
dynamics network adds it to the noise-level embedding that drives adaLN. Every kind also
has a learned *null* embedding, used for context frames whose action is unknown (the
first frame of an episode). `to_tensor` validates user actions and turns them into the
tensor layout the embedding reads. Dimension letters: B batch rows, D model width.
"""

from __future__ import annotations

import operator

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

KINDS = ("discrete", "multi_discrete", "multi_binary", "box")


@dataclass
class ActionConfig:
    """What actions a world model takes.

    Attributes:
        kind: one of ``discrete``, ``multi_discrete``, ``multi_binary``, ``box``.
        n: number of choices (discrete), keys (multi_binary) or dimensions (box).
        nvec: choices per axis (multi_discrete only).
        low: lower bound of every dimension (box only).
        high: upper bound of every dimension (box only).
    """

    kind: str = "discrete"
    n: int = 2
    nvec: list[int] = field(default_factory=list)
    low: float = -1.0
    high: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"action kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "multi_discrete":
            if not self.nvec or any(int(v) < 1 for v in self.nvec):
                raise ValueError(f"multi_discrete actions need nvec with entries >= 1, got {self.nvec!r}")
            self.nvec = [int(v) for v in self.nvec]
        elif self.n < 1:
            raise ValueError(f"action n must be >= 1, got {self.n}")
        if self.kind == "box" and not self.low < self.high:
            raise ValueError(f"box actions need low < high, got low={self.low}, high={self.high}")

    @property
    def width(self) -> int:
        """Number of numbers in one action as `to_tensor` lays it out."""
        if self.kind == "discrete":
            return 1
        if self.kind == "multi_discrete":
            return len(self.nvec)
        return self.n

    def space(self) -> gym.Space:
        """The Gymnasium space of one action."""
        if self.kind == "discrete":
            return gym.spaces.Discrete(self.n)
        if self.kind == "multi_discrete":
            return gym.spaces.MultiDiscrete(np.array(self.nvec, dtype=np.int64))
        if self.kind == "multi_binary":
            return gym.spaces.MultiBinary(self.n)
        return gym.spaces.Box(self.low, self.high, (self.n,), np.float32)

    def null_action(self) -> np.ndarray:
        """A valid do-nothing action in the space's own layout (0 / zeros / box centre)."""
        if self.kind == "discrete":
            return np.int64(0)
        if self.kind == "multi_discrete":
            return np.zeros(len(self.nvec), np.int64)
        if self.kind == "multi_binary":
            return np.zeros(self.n, np.int8)
        return np.full(self.n, (self.low + self.high) / 2, np.float32)


class InvalidActionError(gym.error.InvalidAction):
    """An action that is not in the model's action space. Picklable (one str argument)."""


class _SpaceName:
    """Formats as the Gymnasium space of an action config, building it only when formatted (for error messages)."""

    def __init__(self, config: ActionConfig) -> None:
        self.config = config

    def __format__(self, spec: str) -> str:
        return format(str(self.config.space()), spec)


def validate_action(config: ActionConfig, action: Any, name: str = "action") -> np.ndarray:
    """Check one action against the space and return it as a numpy array.

    ``name`` is what the error calls the action (``"actions[3]"`` for a row of a batch).

    Raises:
        InvalidActionError: naming the action and the space, for None, wrong type, shape,
            dtype, out-of-range or non-finite values.
    """
    space = _SpaceName(config)  # the space itself is built only for an error message
    if action is None:
        raise InvalidActionError(f"{name} must be an element of {space}, got None")
    if isinstance(action, torch.Tensor):
        action = action.detach().cpu().numpy()
    if config.kind == "discrete":
        if isinstance(action, (bool, np.bool_)) or not isinstance(action, (int, np.integer, np.ndarray)):
            raise InvalidActionError(f"{name} must be an int in [0, {config.n}), got {action!r} for {space}")
        arr = np.asarray(action)
        if arr.shape != () or not np.issubdtype(arr.dtype, np.integer):
            raise InvalidActionError(f"{name} must be an int in [0, {config.n}), got {action!r} for {space}")
        if not 0 <= int(arr) < config.n:
            raise InvalidActionError(f"{name} must be an int in [0, {config.n}), got {action!r} for {space}")
        return arr.astype(np.int64)
    arr = np.asarray(action)
    shape = (config.width,)
    if arr.shape != shape:
        raise InvalidActionError(f"{name} must have shape {shape} for {space}, got shape {arr.shape}: {action!r}")
    if config.kind == "box":
        if not np.issubdtype(arr.dtype, np.floating) and not np.issubdtype(arr.dtype, np.integer):
            raise InvalidActionError(f"{name} must be a float array for {space}, got dtype {arr.dtype}: {action!r}")
        if not np.all(np.isfinite(arr)):
            raise InvalidActionError(f"{name} must be finite for {space}, got {action!r}")
        if np.any(arr < config.low) or np.any(arr > config.high):
            raise InvalidActionError(f"{name} must lie in [{config.low}, {config.high}] for {space}, got {action!r}")
        return arr.astype(np.float32)
    if not np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.bool_:
        raise InvalidActionError(f"{name} must be an integer array for {space}, got dtype {arr.dtype}: {action!r}")
    high = np.array(config.nvec) if config.kind == "multi_discrete" else 2
    if np.any(arr < 0) or np.any(arr >= high):
        raise InvalidActionError(f"{name} out of range for {space}, got {action!r}")
    return arr.astype(np.int64)


def _discrete_indices(rows: list[Any], n: int) -> list[int] | None:
    """The rows as ints when every one is a valid discrete action (an int, numpy int or 0-d integer array in
    [0, n), not a bool); else None, and `validate_action` says what is wrong."""
    out = []
    for a in rows:
        if isinstance(a, bool):
            return None
        try:
            i = operator.index(a)
        except TypeError:
            return None
        if not 0 <= i < n:
            return None
        out.append(i)
    return out


def to_tensor(config: ActionConfig, actions: Any, batch_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Validate a batch of actions and lay them out for `ActionEmbedding`.

    Args:
        config: the model's action config.
        actions: a sequence (or array) of ``batch_size`` actions, each in the space.
        batch_size: expected number of rows.
        device: where the tensor goes.

    Returns:
        ``(B, width)`` float32 for box, else ``(B, width)`` int64.
    """
    if isinstance(actions, torch.Tensor):
        actions = actions.detach().cpu().numpy()
    if isinstance(actions, np.ndarray) and config.kind == "discrete" and actions.ndim == 1:
        rows = list(actions)
    elif isinstance(actions, np.ndarray) and actions.ndim >= 1:
        rows = list(actions)
    elif isinstance(actions, (list, tuple)):
        rows = list(actions)
    else:
        raise InvalidActionError(f"expected a batch of {batch_size} actions, got {actions!r}")
    if len(rows) != batch_size:
        raise InvalidActionError(f"expected a batch of {batch_size} actions, got {len(rows)}")
    if config.kind == "discrete" and (ints := _discrete_indices(rows, config.n)) is not None:  # the common case, no numpy
        return torch.tensor(ints, dtype=torch.int64, device=device)[:, None]  # (B, 1)
    checked = np.stack([np.atleast_1d(validate_action(config, a, f"actions[{i}]")) for i, a in enumerate(rows)])  # (B, width)
    dtype = torch.float32 if config.kind == "box" else torch.int64
    return torch.as_tensor(checked, dtype=dtype, device=device)


class ActionEmbedding(nn.Module):
    """Actions (B, width) -> conditioning vectors (B, D); ``null`` rows get the learned null vector."""

    def __init__(self, config: ActionConfig, dim: int) -> None:
        super().__init__()
        self.config = config
        if config.kind == "discrete":
            self.table = nn.Embedding(config.n, dim)
        elif config.kind == "multi_discrete":
            self.offsets = [0]
            for v in config.nvec[:-1]:
                self.offsets.append(self.offsets[-1] + v)
            self.register_buffer("offset", torch.tensor(self.offsets, dtype=torch.int64), persistent=False)
            self.table = nn.Embedding(sum(config.nvec), dim)
        else:  # multi_binary keys and box values both enter through a linear map
            self.proj = nn.Sequential(nn.Linear(config.n, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.null = nn.Parameter(torch.zeros(dim))

    def forward(self, actions: torch.Tensor, is_null: torch.Tensor | None = None) -> torch.Tensor:
        """Embed ``actions`` (B, width); rows where ``is_null`` (B,) is True get the null vector."""
        kind = self.config.kind
        if kind == "discrete":
            emb = self.table(actions[:, 0])  # (B, D)
        elif kind == "multi_discrete":
            emb = self.table(actions + self.offset).sum(dim=1)  # (B, D)
        elif kind == "multi_binary":
            emb = self.proj(actions.float())  # (B, D)
        else:
            mid, half = (self.config.high + self.config.low) / 2, (self.config.high - self.config.low) / 2
            emb = self.proj((actions - mid) / half)  # (B, D), inputs scaled to [-1, 1]
        if is_null is not None:
            emb = torch.where(is_null[:, None], self.null.to(emb.dtype).expand_as(emb), emb)
        return emb

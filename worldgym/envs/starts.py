"""Start contexts for neural envs drawn from recorded real episodes.

A neural env's ``reset`` pre-fills its cache from a start context. By default that is an
entry of the model's small bank of real episode *starts*. `StartBank.from_datasets`
instead cuts windows of ``context`` consecutive real frames (and the actions that led to
them) at random points inside recorded episodes, so imagined episodes begin in the states
real play visits: a pole already leaning, a cart already moving. This is how Dreamer and
DIAMOND train agents in imagination: short imagined rollouts that start from real
observed states, bootstrapped by a value function at the horizon, instead of long
rollouts from the initial state in which model error compounds.

Pass a bank as ``starts=`` to `WorldModelEnv`, `WorldModelVectorEnv` or
`TorchRLWorldModelEnv`; ``options={"start_index": k}`` then picks entry k of it.

Dimension letters: K entries, F context frames, H/W frame size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from worldgym.data.dataset import load as load_dataset


@dataclass(frozen=True)
class StartBank:
    """K start contexts of F frames each.

    Attributes:
        frames: (K, F, H, W, 3) uint8, oldest first.
        actions: (K, F, *action_shape) the action that led to each frame (the first is
            ignored by the engine), or None (contexts committed without actions).
    """

    frames: torch.Tensor
    actions: torch.Tensor | None = None

    def __post_init__(self) -> None:
        f = self.frames
        if f.dim() != 5 or f.shape[-1] != 3 or f.dtype != torch.uint8 or f.shape[0] < 1 or f.shape[1] < 1:
            raise ValueError(f"StartBank frames must be uint8 (K, F, H, W, 3) with K, F >= 1, got {tuple(f.shape)} {f.dtype}")
        if self.actions is not None and tuple(self.actions.shape[:2]) != tuple(f.shape[:2]):
            raise ValueError(
                f"StartBank actions must start with (K, F) = {tuple(f.shape[:2])} (one action per frame), "
                f"got {tuple(self.actions.shape)}"
            )

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def entry(self, k: int) -> tuple[torch.Tensor, list | None]:
        """Frames (F, H, W, 3) and actions (list of F, or None) of entry ``k``."""
        acts = None if self.actions is None else [a.tolist() if a.dim() else a.item() for a in self.actions[k]]
        return self.frames[k], acts

    @classmethod
    def concat(cls, banks: Sequence["StartBank"]) -> "StartBank":
        """One bank holding every entry of ``banks`` in order; they must share the frame and action shapes."""
        if not banks:
            raise ValueError("StartBank.concat needs at least one bank")
        shapes = {(tuple(b.frames.shape[1:]), None if b.actions is None else tuple(b.actions.shape[1:])) for b in banks}
        if len(shapes) != 1:
            raise ValueError(f"StartBank.concat needs banks of one frame and action shape, got {sorted(shapes, key=str)}")
        actions = None if banks[0].actions is None else torch.cat([b.actions for b in banks])
        return cls(torch.cat([b.frames for b in banks]), actions)

    @classmethod
    def from_datasets(
        cls,
        paths: str | Path | Sequence[str | Path],
        context: int,
        size: int = 1024,
        seed: int = 0,
        frame_size: tuple[int, int] | None = None,
    ) -> "StartBank":
        """``size`` windows of ``context`` consecutive frames, uniform over every window of every episode.

        A window ends on a frame in which the episode is still running (never on a terminal
        frame), so every imagined episode starts alive. Windows are cut with a generator
        seeded by ``seed``; datasets are verified (sha256) when loaded and never modified.

        Args:
            paths: dataset folder(s) written by ``worldgym record``.
            context: frames per window (the model's context; the last one is the first observation).
            size: number of windows K.
            seed: seed of the window draw.
            frame_size: (H, W) the frames must have (the model's); a mismatch is an error.
        """
        if context < 1 or size < 1:
            raise ValueError(f"context and size must be >= 1, got context={context}, size={size}")
        paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
        if not paths:
            raise ValueError("StartBank.from_datasets needs at least one dataset folder")
        episodes = [ep for p in paths for ep in load_dataset(p).episodes]
        # window ends: frame j of an episode with T actions, j in [context-1, T-1] (frame T may be terminal)
        ends = [(e, j) for e, ep in enumerate(episodes) for j in range(context - 1, len(ep))]
        if not ends:
            raise ValueError(f"no episode in {[str(p) for p in paths]} has {context + 1} frames or more; lower the context")
        shape = episodes[0].observations.shape[1:]
        if frame_size is not None and tuple(shape[:2]) != tuple(frame_size):
            raise ValueError(
                f"dataset frames are {tuple(shape[:2])}, the model needs {tuple(frame_size)}; record at the model's frame size"
            )
        rng = np.random.default_rng(seed)
        pick = rng.integers(len(ends), size=size)
        frames = np.empty((size, context, *shape), dtype=np.uint8)
        act_shape = episodes[0].actions.shape[1:]
        actions = np.zeros((size, context, *act_shape), dtype=episodes[0].actions.dtype)
        for k, i in enumerate(pick):
            e, j = ends[i]
            ep = episodes[e]
            frames[k] = ep.observations[j - context + 1 : j + 1]
            lo = j - context + 1  # frame f > 0 was reached by action f - 1
            for c in range(context):
                if lo + c > 0:
                    actions[k, c] = ep.actions[lo + c - 1]
        return cls(torch.from_numpy(frames), torch.from_numpy(actions))

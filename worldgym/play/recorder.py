"""Recording what the player plays: every episode to the dataset format (`worldgym.data.dataset`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from worldgym.policies.agents import PlayerError


@dataclass
class EpisodeBuffer:
    """One episode as played: T+1 observations, T actions/rewards/flags, and its reset seed."""

    seed: int | None
    observations: list = field(default_factory=list)
    actions: list = field(default_factory=list)
    rewards: list = field(default_factory=list)
    terminations: list = field(default_factory=list)
    truncations: list = field(default_factory=list)
    states: list = field(default_factory=list)  # the source env's state per observation (real twins), else None


class DatasetRecorder:
    """Write every played episode with `worldgym.data.dataset.DatasetWriter`.

    An episode cut short by R, Esc or the end of the run is written with its last step
    marked truncated; an episode with no step is dropped. The writer opens with the first
    finished episode, so a session that records nothing never replaces a dataset at ``path``.
    """

    def __init__(self, path: str | Path, env: gym.Env, metadata: dict):
        try:
            from worldgym.data.dataset import DatasetWriter
        except ImportError as e:
            raise PlayerError(f"recording needs worldgym.data.dataset, which cannot be imported: {e}") from e
        json.dumps(metadata)  # fail now, not after playing
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._open = lambda: DatasetWriter(path, env.observation_space, env.action_space, metadata)
        self.writer: Any = None
        self.episode: EpisodeBuffer | None = None
        self.episodes = 0

    def start(self, obs: np.ndarray, seed: int | None, state: np.ndarray | None = None) -> None:
        self.finish()
        self.episode = EpisodeBuffer(seed, [np.asarray(obs).copy()], states=[state])

    def add(
        self,
        action: Any,
        reward: float,
        terminated: bool,
        truncated: bool,
        obs: np.ndarray,
        state: np.ndarray | None = None,
    ) -> None:
        assert self.episode is not None, "start() before add()"
        ep = self.episode
        ep.states.append(state)
        ep.actions.append(np.asarray(action).copy())
        ep.rewards.append(float(reward))
        ep.terminations.append(bool(terminated))
        ep.truncations.append(bool(truncated))
        ep.observations.append(np.asarray(obs).copy())
        if terminated or truncated:
            self.finish()

    def finish(self) -> None:
        """Write the current episode (if it has a step), marking an unfinished one truncated."""
        ep, self.episode = self.episode, None
        if ep is None or not ep.actions:
            return
        if not (ep.terminations[-1] or ep.truncations[-1]):
            ep.truncations[-1] = True
        if self.writer is None:
            self.writer = self._open()
        self.writer.add_episode(
            np.stack(ep.observations),
            np.stack(ep.actions),
            np.asarray(ep.rewards, dtype=np.float32),
            np.asarray(ep.terminations, dtype=bool),
            np.asarray(ep.truncations, dtype=bool),
            seed=ep.seed,
            states=None if any(s is None for s in ep.states) else np.stack(ep.states),
        )
        self.episodes += 1

    def close(self) -> None:
        self.finish()
        if self.writer is not None:
            self.writer.close()

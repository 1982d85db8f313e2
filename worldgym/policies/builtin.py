"""Policies that drive recordings: random, sticky-random, a world's scripted controller or explorer, a per-episode mix, or your own.

A policy is an object with ``reset(rng)`` (called at the start of every episode with a
``numpy.random.Generator``) and ``__call__(observation, info) -> action``. All randomness
comes from the generator handed to ``reset``, so a recording is reproducible from its
seed. `make_policy` builds one from a name (``random``, ``sticky``, ``controller``,
``mix``, ``crafter_explorer``) or from ``module:function``, a factory ``function(action_space) -> policy`` for a
trained policy (for example a PPO actor loaded from your own checkpoint).
"""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium as gym
import numpy as np

from worldgym.worlds.cartpole import CartPoleController


class RandomPolicy:
    """Uniform random actions from the action space."""

    def __init__(self, action_space: gym.Space) -> None:
        self.action_space = action_space
        self.rng = np.random.default_rng(0)

    def reset(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.action_space.seed(int(rng.integers(2**31)))

    def __call__(self, observation: np.ndarray, info: dict) -> Any:
        return self.action_space.sample()


class StickyRandomPolicy(RandomPolicy):
    """Random actions that are held: repeat the previous action with probability ``repeat``."""

    def __init__(self, action_space: gym.Space, repeat: float = 0.8) -> None:
        super().__init__(action_space)
        self.repeat = repeat
        self.last: Any = None

    def reset(self, rng: np.random.Generator) -> None:
        super().reset(rng)
        self.last = None

    def __call__(self, observation: np.ndarray, info: dict) -> Any:
        if self.last is None or self.rng.random() >= self.repeat:
            self.last = self.action_space.sample()
        return self.last


class MixPolicy:
    """Per episode, one of: random, sticky-random, or a noisy controller with a random target.

    The mix gives a CartPole dataset both short falling episodes (terminations by angle)
    and long balancing ones that wander to the track edges (terminations by position).
    """

    def __init__(self, action_space: gym.Space, weights: tuple[float, float, float] = (0.25, 0.25, 0.5)) -> None:
        self.members = [RandomPolicy(action_space), StickyRandomPolicy(action_space), CartPoleController()]
        self.weights = np.asarray(weights) / np.sum(weights)
        self.current: Any = self.members[0]

    def reset(self, rng: np.random.Generator) -> None:
        k = int(rng.choice(len(self.members), p=self.weights))
        self.current = self.members[k]
        if k == 1:
            self.current.repeat = float(rng.uniform(0.5, 0.95))
        if k == 2:
            self.current.noise = float(rng.uniform(0.05, 0.5))
        self.current.reset(rng)

    def __call__(self, observation: np.ndarray, info: dict) -> Any:
        return self.current(observation, info)


POLICIES = ("random", "sticky", "controller", "mix", "crafter_explorer")


def make_policy(name: str, action_space: gym.Space) -> Any:
    """A policy by name (see `POLICIES`), ``policy:PATH`` (a policy folder saved by an agent in ``agents/``)
    or ``module:function`` (a factory taking the action space)."""
    if name.startswith("policy:"):
        from worldgym.policies.saved import PolicyError, load_policy

        try:
            return load_policy(name.partition(":")[2])
        except (PolicyError, OSError) as e:
            raise PolicyError(f"cannot load policy folder {name.partition(':')[2]!r}: {e}") from e
    if name == "random":
        return RandomPolicy(action_space)
    if name == "sticky":
        return StickyRandomPolicy(action_space)
    if name == "controller":
        return CartPoleController()
    if name == "mix":
        return MixPolicy(action_space)
    if name == "crafter_explorer":  # walks, collects, places and crafts (worldgym.worlds.crafter)
        from worldgym.worlds.crafter import CrafterExplorer

        return CrafterExplorer(action_space)
    from worldgym.policies.saved import PolicyError  # a ValueError; imported here, as it imports torch

    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise PolicyError(f"cannot load policy factory {name!r}: {e}") from e
        return factory(action_space)
    raise PolicyError(f"policy must be one of {POLICIES}, 'policy:PATH' or 'module:function', got {name!r}")

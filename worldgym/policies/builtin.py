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


class BurstPolicy:
    """A base policy interrupted by bursts: at each step, with probability ``p_burst``, one random action is held for 3-15 steps.

    Agents trained in imagination hold actions for many steps from states a balancing policy
    reaches (the dream policy of the model-based loop holds one action 6-8 steps after
    dithering); random and sticky episodes only hold from the episode start, and a
    controller never holds. Bursts over a controller record how the world answers
    sustained actions from the middle of an episode, and how it recovers after.

    Args:
        base: the policy between bursts (a callable ``(obs, info) -> action`` with ``reset(rng)``).
        action_space: the space the burst actions are drawn from.
        p_burst: probability per step of starting a burst.
        hold: (shortest, longest) burst length in steps, drawn uniformly.
    """

    def __init__(self, base: Any, action_space: gym.Space, p_burst: float = 0.04, hold: tuple[int, int] = (3, 15)) -> None:
        self.base, self.action_space, self.p_burst, self.hold = base, action_space, p_burst, hold
        self.rng = np.random.default_rng(0)
        self.left, self.action = 0, None

    def reset(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.action_space.seed(int(rng.integers(2**31)))
        self.base.reset(rng)
        self.left, self.action = 0, None

    def __call__(self, observation: np.ndarray, info: dict) -> Any:
        base_action = self.base(observation, info)  # the base keeps its own state (e.g. frame differences) every step
        if self.left == 0 and self.rng.random() < self.p_burst:
            self.left, self.action = int(self.rng.integers(self.hold[0], self.hold[1] + 1)), self.action_space.sample()
        if self.left > 0:
            self.left -= 1
            return self.action
        return base_action


POLICIES = ("random", "sticky", "controller", "mix", "bursts", "crafter_explorer")


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
    if name == "bursts":  # CartPole's controller (random actions mixed in) interrupted by held random actions
        return BurstPolicy(CartPoleController(noise=0.1), action_space)
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

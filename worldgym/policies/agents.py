"""The agents the player, `worldgym record` and `worldgym rollout` can load: any callable obs -> action.

- ``random``: uniform random actions; ``scripted``: CartPole balanced from pixels (`worldgym.worlds.cartpole.ScriptedCartPole`);
- a `worldgym.policies.builtin` name (sticky, controller, mix) or ``policy:PATH`` (a policy folder
  saved by an agent in ``agents/``);
- ``module:callable``: any importable function, or a class/factory returning one.
"""

from __future__ import annotations

import copy
import importlib
import inspect
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from worldgym.config_io import UserError

Policy = Callable[[Any], Any]


class PlayerError(UserError, RuntimeError):
    """The player cannot start (bad env, bad agent spec, no way to record)."""


class RandomPolicy:
    """Uniform random actions from a seeded copy of the action space."""

    def __init__(self, space: gym.Space, seed: int | None = None):
        self.space = space
        self.space.seed(seed)

    def __call__(self, obs: Any) -> Any:
        return self.space.sample()


def required_args(fn: Callable) -> int:
    """How many positional arguments ``fn`` needs (1 when it cannot be inspected)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in params if p.kind in kinds and p.default is inspect.Parameter.empty)


def load_agent(spec: str, env: gym.Env, seed: int | None = None) -> Policy:
    """An agent from ``random``, ``scripted`` (CartPole from pixels), a `worldgym.policies.builtin` name, ``policy:PATH``
    (a policy folder saved by an agent in ``agents/``) or ``module:callable``.

    ``module:callable`` imports ``module`` and takes attribute ``callable``: a function
    ``obs -> action``, or a class/factory called with no arguments that returns one.
    """
    if spec == "random":
        return RandomPolicy(copy.deepcopy(env.action_space), seed)
    if spec == "scripted":
        if not isinstance(env.action_space, gym.spaces.Discrete) or env.action_space.n != 2:
            raise PlayerError(f"the scripted agent plays CartPole (Discrete(2)); this env takes {env.action_space}")
        from worldgym.worlds.cartpole import ScriptedCartPole

        return ScriptedCartPole()
    module_name, _, attr = spec.partition(":")
    if module_name == "policy" or not module_name or not attr:
        try:  # the recording policies by name (sticky, controller, mix), where worldgym.policies.builtin has them
            from worldgym.policies.builtin import make_policy

            return make_policy(spec, copy.deepcopy(env.action_space))
        except (ImportError, ValueError) as e:
            raise PlayerError(
                f"--agent must be random, scripted, a worldgym.policies.builtin name, policy:PATH or module:callable, got {spec!r} ({e})"
            ) from e
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise PlayerError(f"cannot load agent {spec!r}: {e}") from e
    if isinstance(obj, type):
        obj = obj()
    if not callable(obj):
        raise PlayerError(f"agent {spec!r} is a {type(obj).__name__}, not a callable obs -> action")
    return obj

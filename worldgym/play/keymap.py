"""Keymaps: which held keys make which action, for any Gymnasium action space.

A `Keymap` is a plain dataclass; ``assets/keymaps/<Env>.yaml`` files are dumps of it,
one per environment (``CartPole.yaml``) plus one generic default per action-space kind
(``discrete.yaml``, ``multi_discrete.yaml``, ``multi_binary.yaml``, ``box.yaml``).
Key names are pygame's (``pygame.key.name``): ``left``, ``a``, ``space``, ``left shift``;
a combination is written ``up+left``. What a binding's value means depends on the kind:

- ``discrete``: the action index. The binding with the most keys that are all held wins
  (so ``up+left`` beats ``up``); among equals, the one with the most recently pressed key.
- ``multi_binary``: a bit index (or list of bit indices) set while held; held bindings OR.
- ``multi_discrete``: ``[axis, choice]``; a negative choice counts from the end of the
  axis (``-1`` is the last choice). Held bindings compose; on one axis the latest wins.
- ``box``: ``[dimension, amount]``; held bindings add up and the sum is clipped to the box.

``idle`` lists the actions used when no bound key is held, cycled one per step; empty
means the kind's neutral action (``0``, all zeros, the middle choice of every axis, or the
box point nearest zero). CartPole has no null action, so its keymap alternates left and
right pushes. ``player_keys`` moves the player's own commands (``PLAYER_KEYS``: R reset,
P pause, N step, Tab agent, Esc quit) to other keys, so a game's own layout may use those
keys (Crafter sleeps on Tab and places on R and P); the player's keys cannot be bound.
This module knows key names and action spaces, never pygame events or windows.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from gymnasium import spaces

from worldgym.config_io import ConfigError, UserError, load_yaml
from worldgym.paths import assets_dir

log = logging.getLogger(__name__)

KINDS = ("discrete", "multi_discrete", "multi_binary", "box")
PLAYER_KEYS = {"reset": "r", "pause": "p", "step": "n", "agent": "tab", "quit": "escape"}  # command -> key name
KEYMAP_DIR = assets_dir() / "keymaps"


class MissingKeysToAction(UserError, ValueError):
    """No way to play this env from the keyboard (Gymnasium's ``play`` raises an error of the same name)."""


@dataclass
class Keymap:
    """Key bindings for one environment (a plain dump of this class is a keymap YAML file).

    Attributes:
        kind: the action-space kind it is written for: discrete, multi_discrete, multi_binary or box.
        bindings: key or ``key+key`` combination -> value (meaning per kind, see the module docstring).
        idle: actions cycled one per step while no bound key is held; empty = the kind's neutral action.
        description: one line for the player's help and HUD.
        player_keys: player command (reset, pause, step, agent, quit) -> the key that gives it,
            for the commands moved away from their default key (`PLAYER_KEYS`).
    """

    kind: str = "discrete"
    bindings: dict[str, Any] = field(default_factory=dict)
    idle: list[Any] = field(default_factory=list)
    description: str = ""
    player_keys: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"keymap kind must be one of {KINDS}, got {self.kind!r}")
        for command, key in self.player_keys.items():
            if command not in PLAYER_KEYS:
                raise ValueError(f"player_keys: unknown player command {command!r}; the commands are {list(PLAYER_KEYS)}")
            if not isinstance(key, str) or len(split_combo(key)) != 1:
                raise ValueError(f"player_keys: {command} takes one key name (pygame's, e.g. 'backspace'), got {key!r}")
        controls = self.controls()
        by_key: dict[str, list[str]] = {}
        for command, key in controls.items():
            by_key.setdefault(key, []).append(command)
        clash = {key: commands for key, commands in by_key.items() if len(commands) > 1}
        if clash:
            raise ValueError(f"player_keys: one key per player command, got {clash}; move one of them to another key")
        for combo in self.bindings:
            for key in split_combo(combo):
                if key in by_key:
                    raise ValueError(
                        f"key {key!r} in binding {combo!r} is reserved by the player for {by_key[key][0]} "
                        f"({', '.join(f'{k} {c}' for c, k in controls.items())}); bind another key, "
                        f"or move the player's command with player_keys: {{{by_key[key][0]}: KEY}}"
                    )

    def controls(self) -> dict[str, str]:
        """Player command -> key name: `PLAYER_KEYS` with this keymap's ``player_keys`` applied."""
        return {command: self.player_keys.get(command, key).strip().lower() for command, key in PLAYER_KEYS.items()}


def split_combo(combo: str) -> frozenset[str]:
    """``"up+left"`` -> ``{"up", "left"}``; key names are lower-cased, ``+`` alone stays a key."""
    parts = [p.strip().lower() for p in re.split(r"(?<=.)\+(?=.)", str(combo))]
    if not parts or any(not p for p in parts):
        raise ValueError(f"bad key combination {combo!r}: write keys joined by '+', e.g. 'up+left'")
    return frozenset(parts)


def space_kind(space: spaces.Space) -> str:
    """The keymap kind of a Gymnasium action space, or a ValueError naming the supported ones."""
    if isinstance(space, spaces.Discrete):
        return "discrete"
    if isinstance(space, spaces.MultiDiscrete):
        return "multi_discrete"
    if isinstance(space, spaces.MultiBinary):
        return "multi_binary"
    if isinstance(space, spaces.Box):
        return "box"
    raise MissingKeysToAction(
        f"the keyboard player supports Discrete, MultiDiscrete, MultiBinary and Box actions, got {space}"
    )


def keymap_path(name: str) -> Path:
    """Where the keymap of env ``name`` (``CartPole``) or kind ``name`` (``discrete``) lives."""
    return KEYMAP_DIR / f"{name}.yaml"


def env_name(env_id: str) -> str:
    """``worldgym/CartPoleReal-v0`` -> ``CartPole``: the name keymaps are filed under."""
    name = env_id.rsplit("/", 1)[-1]
    name = re.sub(r"-v\d+$", "", name)
    return re.sub(r"Real$", "", name)


def load_keymap(path: str | Path) -> Keymap:
    """Read a keymap YAML file; unknown keys or a bad kind raise `ConfigError`."""
    try:
        return load_yaml(Keymap, path)
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from e


def find_keymap(names: str | Sequence[str] | None, space: spaces.Space) -> tuple[Keymap, Path]:
    """The first ``assets/keymaps/<name>.yaml`` of ``names`` (env ids or names), else the default for the space's kind.

    Pass a neural env's own name and then its real twin's, so a model of CartPole uses CartPole's keys.
    """
    kind = space_kind(space)
    names = [names] if isinstance(names, str) else [n for n in names or [] if n]
    for name in names:
        path = keymap_path(env_name(name))
        if path.is_file():
            return load_keymap(path), path
    path = keymap_path(kind)
    if not path.is_file():
        raise MissingKeysToAction(f"no keymap for {names or 'this env'} and no default {path}; pass --keymap PATH.yaml")
    return load_keymap(path), path


class ActionMapper:
    """A `Keymap` compiled against one action space: ``mapper.action(held)`` -> a valid action.

    Args:
        keymap: the bindings.
        space: the env's action space; its kind must match the keymap's.
        strict: raise on bindings outside the space (env keymaps). Generic defaults pass
            False: bindings the space cannot take (digit 7 for Discrete(2)) are dropped.
    """

    def __init__(self, keymap: Keymap, space: spaces.Space, strict: bool = True):
        kind = space_kind(space)
        if keymap.kind != kind:
            raise ValueError(f"keymap is written for {keymap.kind} actions but the env takes {kind} actions ({space})")
        self.keymap, self.space, self.kind = keymap, space, kind
        self.bindings: list[tuple[frozenset[str], Any]] = []
        for combo, value in keymap.bindings.items():
            try:
                self.bindings.append((split_combo(combo), self._compile(value)))
            except ValueError as e:
                if strict:
                    raise ValueError(f"keymap binding {combo!r}: {e}") from e
                log.debug("dropping binding %r: %s", combo, e)
        if not self.bindings:
            raise MissingKeysToAction(f"keymap has no binding usable with {space}; pass --keymap PATH.yaml")
        self.idle = [self._check(a) for a in keymap.idle] or [self.neutral()]
        self.keys = frozenset().union(*(keys for keys, _ in self.bindings))
        self._idle_index = 0

    # -- compile ----------------------------------------------------------------------
    def _compile(self, value: Any) -> Any:
        """Check one binding value against the space; returns the value in a canonical form."""
        space = self.space
        if self.kind == "discrete":
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"a discrete binding is an action index, got {value!r}")
            if not space.start <= value < space.start + space.n:
                raise ValueError(f"action must be in [{space.start}, {space.start + space.n}), got {value}")
            return int(value)
        if self.kind == "multi_binary":
            bits = [value] if isinstance(value, (int, np.integer)) else list(value)
            n = int(np.prod(space.shape))
            if not bits or any(not 0 <= int(b) < n for b in bits):
                raise ValueError(f"a multi_binary binding is a bit index (or list) in [0, {n}), got {value!r}")
            return [int(b) for b in bits]
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ValueError(f"a {self.kind} binding is [index, value], got {value!r}")
        index, amount = value
        size = len(space.nvec) if self.kind == "multi_discrete" else int(np.prod(space.shape))
        if not 0 <= int(index) < size:
            raise ValueError(f"index must be in [0, {size}), got {index}")
        if self.kind == "multi_discrete":
            n = int(space.nvec[int(index)])
            choice = int(amount) + n if int(amount) < 0 else int(amount)
            if not 0 <= choice < n:
                raise ValueError(f"axis {index} has {n} choices, got {amount}")
            return (int(index), choice)
        return (int(index), float(amount))

    def _check(self, action: Any) -> Any:
        action = int(action) if self.kind == "discrete" else np.asarray(action, dtype=self.space.dtype)
        if not self.space.contains(action):
            raise ValueError(f"idle action {action!r} is not in {self.space}")
        return action

    def neutral(self) -> Any:
        """The action of nothing pressed for this kind (see the module docstring)."""
        space = self.space
        if self.kind == "discrete":
            return int(space.start)
        if self.kind == "multi_binary":
            return np.zeros(space.shape, dtype=space.dtype)
        if self.kind == "multi_discrete":
            return np.asarray(np.asarray(space.nvec) // 2, dtype=space.dtype)
        return np.clip(np.zeros(space.shape, dtype=space.dtype), space.low, space.high)

    # -- map --------------------------------------------------------------------------
    def action(self, held: Sequence[str]) -> Any:
        """The action for the keys ``held``, ordered oldest press first (unbound keys are ignored).

        With no binding held, returns the next idle action (the idle list is cycled per call).
        """
        held = [k.lower() for k in held]
        order = {k: i for i, k in enumerate(held)}
        active = [(keys, value) for keys, value in self.bindings if keys <= order.keys()]
        if not active:
            action = self.idle[self._idle_index % len(self.idle)]
            self._idle_index += 1
            return action.copy() if isinstance(action, np.ndarray) else action
        self._idle_index = 0
        # most keys first, then most recently pressed: the last element wins
        active.sort(key=lambda kv: (len(kv[0]), max(order[k] for k in kv[0])))
        if self.kind == "discrete":
            return active[-1][1]
        if self.kind == "multi_binary":
            action = np.zeros(self.space.shape, dtype=self.space.dtype)
            flat = action.reshape(-1)
            for _, bits in active:
                flat[bits] = 1
            return action
        if self.kind == "multi_discrete":
            action = self.neutral()
            for _, (axis, choice) in active:
                action[axis] = choice
            return action
        action = self.neutral().astype(np.float64).reshape(-1)
        for _, (dim, amount) in active:
            action[dim] += amount
        return np.clip(action.reshape(self.space.shape), self.space.low, self.space.high).astype(self.space.dtype)

    def describe(self) -> str:
        """One line per action: the keys that give it, for ``--help``-like listings."""
        by_value: dict[str, list[str]] = {}
        for keys, value in self.bindings:
            by_value.setdefault(repr(value), []).append("+".join(sorted(keys)))
        return "; ".join(f"{' / '.join(keys)} -> {value}" for value, keys in by_value.items())

"""A world's left-right mirror symmetry, and what worldgym does with it.

Some worlds look and behave the same in a mirror: flip every frame of a CartPole episode
left to right, swap "push left" and "push right", negate the state, and the result is
another episode the physics could have produced. A twin declares this in its spec
(``mirror: {actions: [1, 0], state_sign: [-1, -1, -1, -1]}``) and worldgym uses it twice:

- **Data.** `mirror_dataset` writes the mirror image of a recording (``worldgym dataset
  mirror``). Training a world model on both halves gives it no side to prefer: a model
  trained on the recordings alone can let the pole fall more easily to one side, and an
  agent trained in it learns that side's habits, which reality punishes on that side
  (BENCHMARKS.md, "A mirror").
- **Decisions.** A policy whose ``policy.json`` holds ``mirror`` acts on the frame and on its
  mirror image at once (`worldgym.policies.model_state.MirroredPolicy`): two filters, the
  mirrored one fed flipped frames and the permuted actions, and the scores of the two summed
  with the mirrored one's actions permuted back. An error the agent makes to one side is
  cancelled to first order by its error on the mirrored side.

Nothing here knows CartPole: a mirror is a permutation of the discrete actions and, if the
recordings carry states, a sign per state entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from worldgym.config_io import ConfigError


@dataclass(frozen=True)
class Mirror:
    """A left-right mirror symmetry of a world with discrete actions.

    Attributes:
        actions: ``actions[a]`` is the action that, in the mirror image, does what ``a`` does
            (a permutation of ``range(n)``; ``[1, 0]`` swaps CartPole's two pushes).
        state_sign: the mirror image of a recorded state ``s`` is ``s * state_sign`` (one entry per
            state dimension), or None when the recordings carry no state to mirror.
    """

    actions: tuple[int, ...]
    state_sign: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        actions = tuple(int(a) for a in self.actions)
        if sorted(actions) != list(range(len(actions))) or len(actions) < 1:
            raise ConfigError(f"mirror.actions must be a permutation of 0..n-1 (the action each action becomes in the mirror), got {list(self.actions)}")
        if any(actions[actions[a]] != a for a in range(len(actions))):
            raise ConfigError(f"mirror.actions must undo itself (mirroring twice is no change): {list(actions)} maps some a to b but b not back to a")
        object.__setattr__(self, "actions", actions)
        if self.state_sign is not None:
            sign = tuple(float(s) for s in self.state_sign)
            if not sign or any(s not in (-1.0, 1.0) for s in sign):
                raise ConfigError(f"mirror.state_sign must be a list of -1 and 1, one per state dimension, got {list(self.state_sign)}")
            object.__setattr__(self, "state_sign", sign)

    @property
    def n_actions(self) -> int:
        return len(self.actions)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | "Mirror") -> "Mirror":
        if isinstance(d, Mirror):
            return d
        if not isinstance(d, dict) or "actions" not in d or set(d) - {"actions", "state_sign"}:
            raise ConfigError(f"a mirror is {{actions: [...], state_sign: [...] (optional)}}, got {d!r}")
        return cls(tuple(d["actions"]), None if d.get("state_sign") is None else tuple(d["state_sign"]))

    def to_dict(self) -> dict[str, Any]:
        return {"actions": list(self.actions), **({"state_sign": list(self.state_sign)} if self.state_sign is not None else {})}

    def frames(self, frames: np.ndarray) -> np.ndarray:
        """Frames (..., H, W, 3) flipped left to right (a contiguous copy)."""
        return np.ascontiguousarray(np.asarray(frames)[..., ::-1, :])

    def action(self, actions: Any) -> Any:
        """The mirror image of an action (an int) or of an array of actions."""
        table = np.asarray(self.actions)
        if isinstance(actions, (int, np.integer)):
            return int(table[int(actions)])
        a = np.asarray(actions)
        if a.size and (a.min() < 0 or a.max() >= self.n_actions):
            raise ValueError(f"expected actions in [0, {self.n_actions}) for a mirror of {self.n_actions} actions, got values in [{a.min()}, {a.max()}]")
        return table[a]

    def state(self, states: np.ndarray) -> np.ndarray:
        """States (..., S) times ``state_sign``."""
        if self.state_sign is None:
            raise ValueError("this mirror has no state_sign: it cannot mirror recorded states; add state_sign to the twin's mirror")
        s = np.asarray(states)
        if s.shape[-1] != len(self.state_sign):
            raise ValueError(f"expected states with {len(self.state_sign)} entries (mirror.state_sign), got shape {s.shape}")
        return (s * np.asarray(self.state_sign, dtype=s.dtype)).astype(s.dtype)


def dataset_mirror(source: str | Path) -> Mirror:
    """The mirror of the twin a dataset was recorded from: its ``metadata.twin.mirror``, else the mirror of the twin
    its ``metadata.env`` (``real:NAME``) names."""
    from worldgym.data.dataset import _read_manifest
    from worldgym.worlds import TWINS, find_twin

    metadata = _read_manifest(Path(source))["metadata"]
    twin = metadata.get("twin")
    if isinstance(twin, dict) and twin.get("mirror") is not None:
        return Mirror.from_dict(twin["mirror"])
    env = str(metadata.get("env", ""))
    name = env.split(":", 1)[1] if env.startswith("real:") else ""
    try:
        spec = find_twin(name, TWINS) if name else None
    except ConfigError:
        spec = None
    if spec is None or spec.mirror is None:
        why = f"its twin {name!r} declares no mirror" if spec is not None else f"it was not recorded from a known real twin (metadata env {env!r})"
        raise ConfigError(f"dataset {source}: {why}; pass the mirror yourself (--actions, and --state-sign if it has states)")
    return Mirror.from_dict(spec.mirror)


def mirror_dataset(source: str | Path, out: str | Path, mirror: Mirror | None = None) -> dict[str, Any]:
    """Write the mirror image of dataset ``source`` at ``out``: every frame flipped, every action and state mirrored.

    Rewards, terminations, truncations and seeds are kept; steps recorded past an end are
    mirrored too. ``mirror`` defaults to the one the source's twin declares. Written atomically
    (`DatasetWriter`); ``out`` must not exist yet. Returns ``{"episodes": E, "steps": T}``.
    """
    from worldgym.data.dataset import AfterEnd, DatasetWriter, load
    from gymnasium import spaces

    out = Path(out)
    if out.exists():
        raise ConfigError(f"{out} exists; expected a new folder for the mirrored dataset (remove it or pick another --out)")
    mirror = mirror or dataset_mirror(source)
    ds = load(source)
    if not isinstance(ds.action_space, spaces.Discrete) or int(ds.action_space.n) != mirror.n_actions:
        raise ConfigError(f"dataset {source} has action space {ds.action_space}; the mirror permutes {mirror.n_actions} discrete actions")
    with DatasetWriter(out, ds.observation_space, ds.action_space, {**ds.metadata, "mirror_of": str(source), "mirror": mirror.to_dict()}) as writer:
        for ep in ds:
            states = None if ep.states is None else mirror.state(np.asarray(ep.states))
            tail = ep.after_end
            if tail is not None:  # the steps past the end, mirrored as the episode is
                tail = AfterEnd(mirror.frames(tail.observations), mirror.action(np.asarray(tail.actions)), tail.rewards, tail.terminations,
                                None if tail.states is None else mirror.state(np.asarray(tail.states)))  # fmt: skip
            writer.add_episode(mirror.frames(ep.observations), mirror.action(np.asarray(ep.actions)), ep.rewards, ep.terminations, ep.truncations, ep.seed, states, tail)
    return {"episodes": len(ds), "steps": ds.total_steps}


def mirror_from_cli(args: Any) -> int:
    """``worldgym dataset mirror PATH --source SRC [--actions 1,0 --state-sign=-1,-1,-1,-1]``: print the summary."""
    import json

    from worldgym.config_io import UserError

    if not args.source:
        raise UserError("mirror needs --source DATASET (the recording to mirror) and PATH (the new folder)")
    mirror = None
    if args.actions is not None:
        try:
            actions = [int(a) for a in args.actions.split(",")]
            sign = None if args.state_sign is None else [float(v) for v in args.state_sign.split(",")]
        except ValueError as e:
            raise UserError(f"--actions and --state-sign take comma-separated numbers, e.g. --actions 1,0 --state-sign=-1,-1,-1,-1 ({e})") from e
        mirror = Mirror.from_dict({"actions": actions, "state_sign": sign})
    elif args.state_sign is not None:
        raise UserError("--state-sign needs --actions too (or neither: the source twin's mirror)")
    summary = mirror_dataset(args.source, args.path, mirror)
    print(json.dumps({"written": args.path, "mirror_of": args.source, **summary}, indent=1))
    return 0

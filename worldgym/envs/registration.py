"""Gymnasium ids for every shipped world model, its real twin, and a generic id for any checkpoint.

Registered by ``import worldgym``:

* ``worldgym/<config.name>-v0`` for each folder in ``assets/models/*/`` (entry point
  `worldgym.envs.env:WorldModelEnv`, vector entry point
  `worldgym.envs.vector_env:WorldModelVectorEnv`), with ``max_episode_steps`` taken from the
  real twin's `TwinSpec` when ``config.real_twin`` names one;
* ``worldgym/<Name>Real-v0`` for each real twin in `worldgym.envs.twins.TWINS` and each twin
  config file ``<Name>.yaml`` (`worldgym.worlds.spec.twin_dirs`), at the frame size of the
  shipped model that imitates it (the spec's otherwise), when the modules it requires are
  installed (``worldgym/CrafterReal-v0`` needs ``worldgym[crafter]``);
* ``worldgym/WorldModel-v0``: any checkpoint, ``gym.make("worldgym/WorldModel-v0", checkpoint=path)``;
* the former ids of renamed shipped models (`ALIASES`), registered to the same folder:
  ``worldgym/CartPoleFast-v0`` is ``worldgym/CartPole-v0`` (the 4-token model it was shipped as
  before it became the default; the 16-token model it replaced is ``worldgym/CartPole16-v0``).

Registration reads only each model's small ``config.json`` and the twin config files; no
weights are loaded or hashed, no env is built, torch and the twins' optional packages are
not imported, so ``import worldgym`` stays cheap.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import gymnasium as gym

from worldgym.config_io import ConfigError
from worldgym.paths import model_dirs
from worldgym.worlds import TWINS, TwinSpec, load_twin, twin_files

log = logging.getLogger(__name__)

ENTRY_POINT = "worldgym.envs.env:WorldModelEnv"
VECTOR_ENTRY_POINT = "worldgym.envs.vector_env:WorldModelVectorEnv"
TWIN_ENTRY_POINT = "worldgym.envs.twins:PixelTwin"
ALIASES = {"CartPoleFast": "CartPole"}  # former model name -> the shipped model's name now (same folder, same env)


def shipped_models(assets: Path | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """(folder, config dict) of every model folder (shipped, then the user's) with a readable config.json, sorted by folder."""
    roots = model_dirs() if assets is None else [assets / "models"]
    found = []
    for folder in [f for root in roots for f in sorted(root.glob("*/"))]:
        path = folder / "config.json"
        if not path.is_file():
            continue
        try:
            config = json.loads(path.read_text())["config"]
            if not isinstance(config.get("name"), str) or not isinstance(config.get("autoencoder"), dict):
                raise KeyError("config needs a 'name' string and an 'autoencoder' dict")
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("skipping model %s: unreadable config.json (%s)", folder, e)
            continue
        found.append((folder, config))
    return found


def known_twins() -> dict[str, TwinSpec]:
    """Every twin by name: the worlds' own, then the twin config files (an unreadable one is skipped with a warning)."""
    twins = dict(TWINS)
    for name, path in twin_files().items():
        if name in twins:
            continue
        try:
            twins[name] = load_twin(path)
        except ConfigError as e:
            log.warning("skipping twin config %s: %s", path, e)
    return twins


def twin_spec(env_id: str) -> TwinSpec | None:
    """The `TwinSpec` behind a registered ``worldgym/<Name>Real-v0`` id; None for any other id (or an unknown one)."""
    spec = gym.registry.get(env_id)
    if spec is None or spec.entry_point != TWIN_ENTRY_POINT:
        return None
    return known_twins().get(spec.kwargs.get("name", ""))


def register_all(assets: Path | None = None) -> list[str]:
    """Register every shipped model, every real twin and the generic id; returns the ids (idempotent)."""
    ids = []

    def add(env_id: str, **kwargs: Any) -> None:
        if env_id in gym.registry:
            return
        gym.register(env_id, **kwargs)
        ids.append(env_id)

    add("worldgym/WorldModel-v0", entry_point=ENTRY_POINT, vector_entry_point=VECTOR_ENTRY_POINT)
    twin_sizes: dict[str, tuple[int, int]] = {}
    twins = known_twins()
    named: dict[str, Path] = {}  # model name -> the folder that registered it (shipped models come first)
    for folder, config in shipped_models(assets):
        if config["name"] in named:
            log.warning("model %s is named %r like %s, which already has worldgym/%s-v0: it is not registered; "
                        "rename it (config.name) or make it by path: gym.make('worldgym/WorldModel-v0', checkpoint=%r)",
                        folder, config["name"], named[config["name"]], config["name"], str(folder))  # fmt: skip
            continue
        named[config["name"]] = folder
        twin = config.get("real_twin", "")
        spec = twins.get(twin)
        if twin and spec is None:
            log.warning("model %s names real twin %r, which worldgym does not know", folder, twin)
        ae = config["autoencoder"]
        if spec is not None:
            twin_sizes.setdefault(twin, (int(ae.get("frame_height", 64)), int(ae.get("frame_width", 64))))
        names = [config["name"]] + [old for old, now in ALIASES.items() if now == config["name"]]
        for name in names:
            add(
                f"worldgym/{name}-v0",
                entry_point=ENTRY_POINT,
                vector_entry_point=VECTOR_ENTRY_POINT,
                max_episode_steps=None if spec is None else spec.max_episode_steps,
                kwargs={"checkpoint": str(folder)},
            )
    for name, spec in twins.items():
        if spec.missing():
            continue  # its optional extra is not installed: nothing to make
        height, width = twin_sizes.get(name, (spec.height, spec.width))
        add(
            f"worldgym/{name}Real-v0",
            entry_point=TWIN_ENTRY_POINT,
            max_episode_steps=spec.max_episode_steps,
            kwargs={"name": name, "height": height, "width": width},
        )
    return ids


def twin_frame_skip(env_id: str) -> dict[str, int]:
    """``{"frame_skip": k}`` for policy.json when the twin repeats each action k > 1 source steps (`load_policy` then holds actions k frames on the every-frame env)."""
    spec = twin_spec(env_id)
    return {"frame_skip": spec.frame_skip} if spec is not None and spec.frame_skip > 1 else {}


def twin_mirror(env_id: str) -> dict[str, Any]:
    """The mirror the twin ``env_id`` declares (`TwinSpec.mirror`); `ConfigError` if it declares none."""
    spec = twin_spec(env_id)
    if spec is None or spec.mirror is None:
        raise ConfigError(f"--mirror needs a real twin that declares its mirror symmetry (TwinSpec.mirror), and {env_id} does not")
    return dict(spec.mirror)

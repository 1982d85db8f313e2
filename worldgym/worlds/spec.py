"""`TwinSpec`: how a source environment is turned into the pixels of a real twin, and the twin config files.

A twin is known by name (``worldgym/<Name>Real-v0``) from one of two places:

- a world module's ``TWIN`` (`worldgym.worlds.TWINS`: CartPole, Crafter), or
- a twin config file ``<Name>.yaml``, a plain dump of `TwinSpec`, in one of `twin_dirs`:
  the checkout's ``configs/twins/`` and the user's twins directory (``WORLDGYM_TWINS``, else
  ``$XDG_DATA_HOME/worldgym/twins``). ``worldgym record --env gym:ID --twin FILE.yaml`` reads
  any such file directly.

This module reads YAML and checks names; it never imports or builds a source env.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worldgym.config_io import ConfigError, load_yaml
from worldgym.paths import PACKAGE

PIXELS = ("render", "observation")


@dataclass(frozen=True)
class TwinSpec:
    """How to turn a source env into pixels (a ``configs/twins/<Name>.yaml`` file is a plain dump of it).

    Attributes:
        source_id: Gymnasium id of the source environment (``module:id`` imports ``module`` first,
            e.g. ``ale_py:ALE/Pong-v5``), or ``module:Class`` of a `gymnasium.Env` class that is not
            registered (``worldgym.worlds.crafter:CrafterEnv``).
        crop_rows: (top, bottom) rows of the source frame kept before resizing (None = all).
        max_episode_steps: the twin's time limit (None = the source's own, or none).
        crop_cols: (left, right) columns kept before resizing (None = all).
        frame_skip: source steps per twin step (the action repeats, rewards add up, an episode end stops it).
        height, width: the twin's default frame size (a shipped model of the twin overrides it).
        pixels: ``render`` (the source renders ``rgb_array`` frames) or ``observation`` (the source
            observes RGB frames, (h, w, 3) uint8).
        make_kwargs: keyword arguments for the source env (``gymnasium.make`` or the class).
        requires: modules the source needs (``ale_py``, ``crafter``); the twin is registered only
            when they are installed, and making it without them says what to install.
        extra: the ``pip install`` extra that brings them, e.g. ``worldgym[atari]``.
        mirror: the world's left-right mirror symmetry, if it has one (`worldgym.worlds.symmetry.Mirror`):
            ``{actions: [1, 0], state_sign: [-1, -1, -1, -1]}`` for CartPole. ``worldgym dataset mirror``
            and mirrored policies read it.
    """

    source_id: str
    crop_rows: tuple[int, int] | None = None
    max_episode_steps: int | None = None
    crop_cols: tuple[int, int] | None = None
    frame_skip: int = 1
    height: int = 64
    width: int = 64
    pixels: str = "render"
    make_kwargs: dict[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    extra: str = ""
    mirror: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        for name in ("crop_rows", "crop_cols"):
            value = getattr(self, name)
            if value is not None:
                if len(value) != 2 or not 0 <= int(value[0]) < int(value[1]):
                    raise ValueError(f"{name} must be [start, stop] with 0 <= start < stop, got {value!r}")
                object.__setattr__(self, name, (int(value[0]), int(value[1])))
        object.__setattr__(self, "requires", tuple(self.requires))
        if not self.source_id:
            raise ValueError("source_id must name a Gymnasium id or a module:Class, got ''")
        if self.pixels not in PIXELS:
            raise ValueError(f"pixels must be one of {PIXELS}, got {self.pixels!r}")
        if int(self.frame_skip) < 1 or int(self.height) < 1 or int(self.width) < 1:
            raise ValueError(f"frame_skip, height and width must be >= 1, got {self.frame_skip}, {self.height}, {self.width}")
        if self.mirror is not None:
            from worldgym.worlds.symmetry import Mirror

            object.__setattr__(self, "mirror", Mirror.from_dict(self.mirror).to_dict())

    def missing(self) -> list[str]:
        """The required modules that are not installed (found without importing them)."""
        return [m for m in self.requires if importlib.util.find_spec(m) is None]


def user_twins_dir() -> Path:
    """The user's twin config files (``WORLDGYM_TWINS``, else ``$XDG_DATA_HOME/worldgym/twins``)."""
    if os.environ.get("WORLDGYM_TWINS"):
        return Path(os.environ["WORLDGYM_TWINS"])
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "worldgym" / "twins"


def twin_dirs() -> list[Path]:
    """Folders of ``<Name>.yaml`` twin config files: the checkout's ``configs/twins``, then the user's."""
    return [PACKAGE.parent / "configs" / "twins", user_twins_dir()]


def load_twin(path: str | Path) -> TwinSpec:
    """Read one twin config file (raises `ConfigError` naming the file and the bad key)."""
    import yaml

    try:
        return load_yaml(TwinSpec, path)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML ({' '.join(str(e).split())}); write a plain dump of TwinSpec") from e


def twin_files() -> dict[str, Path]:
    """Twin name -> config file, over `twin_dirs` (the first file of a name wins)."""
    found: dict[str, Path] = {}
    for folder in twin_dirs():
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            found.setdefault(path.stem, path)
    return found


def find_twin(name: str, known: dict[str, TwinSpec]) -> TwinSpec:
    """The spec of twin ``name``: a world's own (``known``), else its config file; `ConfigError` naming both otherwise."""
    if name in known:
        return known[name]
    files = twin_files()
    if name in files:
        return load_twin(files[name])
    raise ConfigError(
        f"no real twin named {name!r}; known twins: {sorted(set(known) | set(files))} "
        f"(add a twin config file {name}.yaml to one of {[str(d) for d in twin_dirs()]})"
    )

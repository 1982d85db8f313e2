"""Where worldgym finds its files: the shipped assets and the user's own models directory.

Layer 0 (standard library only). Two places hold models that registration turns into
``worldgym/<Name>-v0`` ids:

- **shipped assets** (models, start banks, policies, keymaps): inside the installed
  package (``worldgym/assets/``, which a wheel carries) or, in a source checkout, the
  repository's ``assets/`` folder. ``WORLDGYM_ASSETS`` points elsewhere.
- **user models**: ``WORLDGYM_MODELS`` if set, else ``$XDG_DATA_HOME/worldgym/models``
  (``~/.local/share/worldgym/models`` by default). ``worldgym train --install NAME``
  writes there; every folder in it with a ``config.json`` registers beside the shipped ones.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def assets_dir() -> Path:
    """The shipped assets folder (``WORLDGYM_ASSETS``, the installed package's, or the checkout's)."""
    if os.environ.get("WORLDGYM_ASSETS"):
        return Path(os.environ["WORLDGYM_ASSETS"])
    packaged = PACKAGE / "assets"
    if (packaged / "models").is_dir():
        return packaged
    return PACKAGE.parent / "assets"


def user_models_dir() -> Path:
    """The user's own models (``WORLDGYM_MODELS``, else ``$XDG_DATA_HOME/worldgym/models``)."""
    if os.environ.get("WORLDGYM_MODELS"):
        return Path(os.environ["WORLDGYM_MODELS"])
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "worldgym" / "models"


def model_dirs() -> list[Path]:
    """Folders whose sub-folders are model checkpoints, shipped first, then the user's."""
    return [assets_dir() / "models", user_models_dir()]

"""worldgym: neural world models as environments for RL code, keyboard players and dataset scripts.

    import gymnasium as gym
    import worldgym  # registers worldgym/<Name>-v0 for every installed model and its real twin

The engine (`worldgym.engine.WorldModel`) runs one latent block of action-conditioned
generation per step against a bounded KV cache; the envs wrap it for Gymnasium and TorchRL.
The public names below are imported on first use, so ``import worldgym`` stays cheap
(it reads each model's small config.json and imports no torch).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "WorldModel": "worldgym.engine",
    "WorldModelEnv": "worldgym.envs.env",
    "WorldModelVectorEnv": "worldgym.envs.vector_env",
    "TorchRLWorldModelEnv": "worldgym.envs.torchrl_env",
    "StartBank": "worldgym.envs.starts",
    "set_threads": "worldgym.model.hardware",
    "load_policy": "worldgym.policies.saved",
    "save_policy": "worldgym.policies.saved",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'worldgym' has no attribute {name!r}")


from worldgym.envs.registration import register_all as _register_all  # noqa: E402

_register_all()

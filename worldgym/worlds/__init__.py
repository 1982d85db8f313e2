"""The worlds worldgym knows by name: each one's twin spec, state probe and scripted controllers.

One module per world (`cartpole`). A world module depends on nothing else in worldgym but
`TwinSpec`, so every layer above (envs, policies, evaluation) may look a world up here.
`TWINS` maps a twin name (``worldgym/<Name>Real-v0``) to its spec.
"""

from worldgym.worlds import cartpole
from worldgym.worlds.spec import TwinSpec

TWINS: dict[str, TwinSpec] = {
    "CartPole": cartpole.TWIN,
}

__all__ = ["TWINS", "TwinSpec", "cartpole"]

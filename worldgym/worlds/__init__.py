"""The worlds worldgym knows by name: each one's twin spec, state probe and scripted controllers.

One module per world (`cartpole`, `crafter`). A world module depends on nothing else in
worldgym but `TwinSpec`, so every layer above (envs, policies, evaluation) may look a world
up here. `TWINS` maps a twin name (``worldgym/<Name>Real-v0``) to its spec; twins defined
by config files (``configs/twins/<Name>.yaml``) are found by `find_twin` and `twin_files`.
"""

from worldgym.worlds import cartpole, crafter
from worldgym.worlds.spec import TwinSpec, find_twin, load_twin, twin_files

TWINS: dict[str, TwinSpec] = {
    "CartPole": cartpole.TWIN,
    "Crafter": crafter.TWIN,
}

__all__ = ["TWINS", "TwinSpec", "cartpole", "crafter", "find_twin", "load_twin", "twin_files"]

"""worldgym: neural world models as environments for RL code, keyboard players and dataset scripts.

    import gymnasium as gym
    import worldgym  # registers worldgym/<Name>-v0 for every shipped model and its real twin

The engine (`worldgym.engine.WorldModel`) runs one latent block of action-conditioned
generation per step against a bounded KV cache; the envs wrap it for Gymnasium and TorchRL.
"""

__version__ = "0.1.0"

from worldgym.registration import register_all as _register_all

_register_all()

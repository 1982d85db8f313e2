"""`worldgym.policy_io`: the stable import path of saved policies (`load_policy`, `save_policy`).

The code lives in `worldgym.policies.saved`; this module re-exports it so that
``from worldgym.policy_io import load_policy`` and agent specs such as
``worldgym.policy_io:CartPolePPO`` keep working.
"""

from worldgym.policies.saved import *  # noqa: F401,F403
from worldgym.policies.saved import __all__  # noqa: F401

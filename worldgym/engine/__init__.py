"""The world-model engine: `WorldModel`, the only code that advances, flushes or restores the KV cache.

`world_model` holds the engine (reset, step, observe, flush, recache, snapshots); `fused`
the fused-commit sampling pass it runs for models with ``dynamics.fused_commit``.
"""

from worldgym.engine.world_model import DTYPES, NotResetError, NumericsError, StepResult, WorldModel

__all__ = ["DTYPES", "NotResetError", "NumericsError", "StepResult", "WorldModel"]

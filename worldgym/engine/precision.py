"""The precision an engine runs in when asked for ``dtype="auto"``, and how it was chosen.

`choose_dtype` resolves a requested dtype with `worldgym.model.hardware.resolve_dtype`:
``WORLDGYM_AUTO_DTYPE`` when set, else the CPU's flags. Where the flags cannot tell (a CPU
with avx512_bf16 and no AMX, stepping 32 rows or more: bfloat16 measured 20 % slower than
float32 on one such Intel Xeon and 25 % faster on an AMD EPYC), it times a few engine steps
of this model at this batch size in both precisions (`measure_step_ms`) and keeps the faster
one. A measurement is made once per process for each model shape, batch size, device,
thread count and engine mode, logged, and returned with the choice, so every run can report
what it ran in (``WorldModel.dtype_choice``, ``env.unwrapped.dtype_choice``, `worldgym bench`).

The measurement steps throwaway engines whose caches are marked full of zeros: the cost of a
step in a long episode, never the state of a real rollout. It takes about 10 steps of each
(0.5-1 s for CartPole at 256 envs on 2 idle cores). ``WORLDGYM_AUTO_DTYPE=float32`` (or
``bfloat16``) skips it and fixes the choice on every machine.

Dimension letters: B batch rows.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from worldgym.model.hardware import AUTO_DTYPE_ENV, auto_rule, forced_auto_dtype, resolve_dtype
from worldgym.model.networks import Model
from worldgym.model.sampler import SamplerConfig

log = logging.getLogger(__name__)

BF16_MARGIN = 0.95  # bfloat16 must step in under 95 % of float32's time to be chosen (float32 is the reference)
ROUNDS = 4  # timed steps of each precision, alternated (the fastest of each counts: robust to load spikes)

_measured: dict[tuple, dict[str, float]] = {}  # (model shape, batch, device, threads, mode) -> step ms per dtype


def choose_dtype(
    model: Model,
    batch_size: int,
    device: torch.device,
    dtype: str = "auto",
    *,
    sampler: SamplerConfig | None = None,
    features: bool = False,
    reencode: bool = False,
) -> dict[str, Any]:
    """The precision of an engine of ``batch_size`` rows of ``model``, and the record of how it was chosen.

    Returns:
        ``{"dtype": "float32" | "bfloat16", "requested": dtype, "how": ...}`` where ``how`` is
        "requested" (an explicit dtype), the name of the environment variable, "hardware" (the
        CPU's flags or the device decided) or "measured"; a measured choice adds ``step_ms``,
        the fastest step of each precision in milliseconds.
    """
    record: dict[str, Any] = {"requested": dtype}
    if dtype != "auto":
        record.update(dtype=resolve_dtype(dtype), how="requested")
    elif forced_auto_dtype() is not None:
        record.update(dtype=forced_auto_dtype(), how=AUTO_DTYPE_ENV)
    elif auto_rule(device, batch_size) != "measure":
        record.update(dtype=auto_rule(device, batch_size), how="hardware")
    else:
        sampler = sampler or model.config.sampler
        key = (repr(model.config.autoencoder), repr(model.config.dynamics), repr(model.config.action), sampler.steps,
               batch_size, str(device), torch.get_num_threads(), features, reencode)  # fmt: skip
        if key not in _measured:
            _measured[key] = measure_step_ms(model, batch_size, device, sampler=sampler, features=features, reencode=reencode)
            ms = _measured[key]
            log.info(
                "dtype='auto' for %d rows: one step %.1f ms in float32, %.1f ms in bfloat16 (set %s to fix the choice)",
                batch_size, ms["float32"], ms["bfloat16"], AUTO_DTYPE_ENV,
            )  # fmt: skip
        ms = _measured[key]
        faster = "bfloat16" if ms["bfloat16"] < BF16_MARGIN * ms["float32"] else "float32"
        record.update(dtype=faster, how="measured", step_ms=dict(ms))
    return record


def measure_step_ms(
    model: Model,
    batch_size: int,
    device: torch.device,
    *,
    sampler: SamplerConfig | None = None,
    features: bool = False,
    reencode: bool = False,
) -> dict[str, float]:
    """The fastest of ``ROUNDS`` steps (pixels out, a full window) of engines in float32 and in bfloat16, in ms."""
    from worldgym.engine.world_model import WorldModel  # the engine calls this module while it is built

    space = model.config.action.space()
    space.seed(0)
    actions = [space.sample() for _ in range(batch_size)]
    engines = {}
    for name in ("float32", "bfloat16"):
        engine = WorldModel(model, batch_size, device=device, dtype=name, sampler=sampler, features=features, reencode=reencode)
        engine.cache.count.fill_(engine.cache.slots)  # every row as deep in its episode as the window holds
        engine.cache.pos.fill_(engine.cache.slots)
        engine.pending["has"].fill_(engine.fused)
        engine.is_reset.fill_(True)
        engines[name] = engine
    best = {name: float("inf") for name in engines}
    for i in range(ROUNDS + 1):  # the first round warms up
        for name, engine in engines.items():
            start = time.perf_counter()
            engine.step(actions)
            if i:
                best[name] = min(best[name], (time.perf_counter() - start) * 1e3)
    return best

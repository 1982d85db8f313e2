"""What runs fastest on this machine: the precision ``dtype="auto"`` resolves to, and torch's thread count.

Two choices that depend on the hardware and on the batch, not on the model's weights:

- `resolve_dtype`: ``"auto"`` -> ``"bfloat16"`` or ``"float32"``, from ``WORLDGYM_AUTO_DTYPE``,
  the CPU's flags (or the CUDA device) and the number of rows stepped together, or where
  the flags cannot tell, from a measurement the engine makes (`auto_rule`);
- `set_threads`: torch's intra-op thread count, which is process-global.

This module never imports the engine or an env; they call it.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Callable

import torch

DTYPE_CHOICES = ("auto", "float32", "bfloat16")
AUTO_BF16_MIN_BATCH = 32  # below this many rows float32 measured faster even with AMX (see auto_rule)
AUTO_DTYPE_ENV = "WORLDGYM_AUTO_DTYPE"  # "float32" or "bfloat16": what dtype="auto" resolves to, on any machine


# the flags that decide what runs fastest here (see auto_rule)
RELEVANT_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")


def _cpuinfo_field(name: str, cpuinfo: str | None) -> str | None:
    """The value of the first ``name`` line of ``/proc/cpuinfo`` (or of the given text); None if absent."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        if not sys.platform.startswith("linux") or not path.is_file():
            return None
        try:
            cpuinfo = path.read_text()
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU feature flags of the first ``flags`` line of ``/proc/cpuinfo`` (or of the given text).

    Returns an empty set where there is no such file (macOS, Windows) or no flags line.
    """
    return set((_cpuinfo_field("flags", cpuinfo) or "").split())


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name (``/proc/cpuinfo``'s ``model name``), else `platform.processor()` or the machine type."""
    return _cpuinfo_field("model name", cpuinfo) or platform.processor() or platform.machine() or "unknown"


def cpu_summary(cpuinfo: str | None = None) -> dict[str, object]:
    """The CPU model and which of `RELEVANT_FLAGS` it has: what a benchmark figure needs beside it.

    Returns:
        ``{"model": str, "flags": {flag: bool for RELEVANT_FLAGS}, "amx": bool}``.
    """
    flags = cpu_flags(cpuinfo)
    return {
        "model": cpu_model(cpuinfo),
        "flags": {f: f in flags for f in RELEVANT_FLAGS},
        "amx": {"amx_bf16", "amx_tile"} <= flags,
    }


def auto_rule(device: str | torch.device = "cpu", batch_size: int = 1, cpuinfo: str | None = None) -> str:
    """What the hardware alone says ``dtype="auto"`` should be: "float32", "bfloat16", or "measure".

    - CPU, fewer than ``AUTO_BF16_MIN_BATCH`` (32) rows: float32. Small steps are
      dispatch-bound and autocast adds operators: one CartPole env stepped in 4.2 ms in bf16
      against 2.6 ms in float32 on an AMX Xeon, and float32 stayed ahead up to 16 envs there.
    - CPU with AMX (``amx_bf16`` and ``amx_tile`` in ``/proc/cpuinfo``), 32 rows or more:
      bfloat16 (CartPole at 256 envs on 2 cores of an AMX Xeon: 7,500-8,000 env-steps/s
      against 4,900-5,250 in float32; 1 thread: 1,910 vs 1,470 at 32 envs).
    - CPU with ``avx512_bf16`` but no AMX, 32 rows or more: "measure". Such CPUs disagree: on
      a 2-core Intel Xeon bf16 ran about 20 % slower than float32 at 256 envs, on a 2-core AMD
      EPYC about 25 % faster; the engine times both (`worldgym.engine.precision`).
    - any other CPU: float32 (bf16 without hardware support measured 2.5x slower).
    - CUDA: bf16 where the device supports it (``torch.cuda.is_bf16_supported()``).
    - any other device: float32.
    """
    kind = torch.device(device).type
    if kind == "cuda":
        return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    if kind != "cpu" or batch_size < AUTO_BF16_MIN_BATCH:
        return "float32"
    flags = cpu_flags(cpuinfo)
    if {"amx_bf16", "amx_tile"} <= flags:
        return "bfloat16"
    return "measure" if "avx512_bf16" in flags else "float32"


def forced_auto_dtype() -> str | None:
    """The precision ``WORLDGYM_AUTO_DTYPE`` fixes ``dtype="auto"`` to ("float32" or "bfloat16"), or None when unset."""
    value = os.environ.get(AUTO_DTYPE_ENV, "").strip()
    if not value:
        return None
    if value not in DTYPE_CHOICES[1:]:
        raise ValueError(f"{AUTO_DTYPE_ENV} must be 'float32' or 'bfloat16' (or unset), got {value!r}")
    return value


def resolve_dtype(
    dtype: str,
    device: str | torch.device = "cpu",
    batch_size: int = 1,
    cpuinfo: str | None = None,
    measure: Callable[[], str] | None = None,
) -> str:
    """The precision a world model runs in: ``dtype`` itself, or for ``"auto"`` the one that runs faster here.

    ``"auto"`` is, in this order: the value of the environment variable ``WORLDGYM_AUTO_DTYPE``
    when set (reproducible runs on any machine); the hardware's rule (`auto_rule`); and where
    the rule says "measure", ``measure()`` (the engine times one step of both precisions,
    `worldgym.engine.precision`), or float32 without one.

    Args:
        dtype: "auto", "float32" or "bfloat16".
        device: where the model runs.
        batch_size: rows stepped together (1 for a single env, ``num_envs`` for a vector env).
        cpuinfo: the text of ``/proc/cpuinfo`` to read the flags from (None = this machine's).
        measure: called when the rule cannot decide; returns "float32" or "bfloat16".

    Returns:
        "float32" or "bfloat16".
    """
    if dtype not in DTYPE_CHOICES:
        raise ValueError(f"dtype must be one of {list(DTYPE_CHOICES)}, got {dtype!r}")
    if dtype != "auto":
        return dtype
    forced = forced_auto_dtype()
    if forced is not None:
        return forced
    rule = auto_rule(device, batch_size, cpuinfo)
    if rule != "measure":
        return rule
    return measure() if measure is not None else "float32"


def set_threads(threads: int | None) -> None:
    """Set torch's intra-op CPU thread count (None leaves torch's setting as it is).

    ``torch.set_num_threads`` is process-global: every model, env and agent network in the
    process then uses ``threads`` threads, whichever env or call set it.

    On a 2-core machine that other processes keep busy, torch's default (one thread per
    core) stalls: the threads wait for each other at every operator. Measured with the
    4-token CartPole (then CartPoleFast) in float32 under a load average of 5-7 on 2 cores:
    one env 215 env-steps/s with 1 thread against 69 with 2; 64 envs 1,660 against 390; 256
    envs 2,370 against 300.
    On an idle machine 2 threads help large batches (BENCHMARKS.md's figures are 2-thread
    runs). Use 1 thread when other work shares the cores (envs in parallel processes, a
    training run beside the env).

    Args:
        threads: an int >= 1, or None.
    """
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an int >= 1 or None (leave torch's setting), got {threads!r}")
    torch.set_num_threads(threads)

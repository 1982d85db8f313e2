"""Soak run: step one env for a long time with periodic resets and record resident memory.

Not a test (nothing is timed or asserted): it prints the RSS curve so a leak shows as a
slope. Run it as::

    python -m worldgym.evaluation.soak --steps 100000 --reset-every 1000 --checkpoint cartpole

Without ``--checkpoint`` it builds a small random model (2 layers, 32 dims, 16x16
frames, sink 1 + window 3) so it runs anywhere. Memory is read from
``/proc/self/status`` (VmRSS), so it works without psutil on Linux.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from typing import Any

import numpy as np
import torch


def rss_mib() -> float:
    """Resident set size of this process in MiB (Linux /proc; NaN elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def small_model(seed: int = 0) -> Any:
    """A small random world model (the test suite's tiny config) for soak runs without a shipped checkpoint."""
    from worldgym.model.actions import ActionConfig
    from worldgym.model.autoencoder import AutoencoderConfig
    from worldgym.model.dynamics import DynamicsConfig
    from worldgym.model.networks import Model, WorldModelConfig
    from worldgym.model.sampler import SamplerConfig

    config = WorldModelConfig(
        name="Soak",
        autoencoder=AutoencoderConfig(frame_height=16, frame_width=16, latent_channels=4, widths=[8, 8]),
        dynamics=DynamicsConfig(dim=32, depth=2, heads=2, sink=1, window=3, train_frames=16),
        action=ActionConfig(kind="discrete", n=3),
        sampler=SamplerConfig(steps=2),
        start_bank=4,
    )
    model = Model(config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        model.start_frames.copy_(torch.randint(0, 256, model.start_frames.shape, generator=g, dtype=torch.uint8))
    return model


def soak(
    checkpoint: str | None,
    steps: int,
    reset_every: int,
    samples: int = 20,
    seed: int = 0,
    obs_type: str = "rgb",
    sampler_steps: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Step a `WorldModelEnv` ``steps`` times, resetting every ``reset_every`` steps; return the RSS curve.

    Returns:
        {"steps", "reset_every", "rss_mib": [(step, MiB), ...], "warm_mib", "end_mib",
        "slope_bytes_per_step" (least squares over the second half), "wall_s", "cache_bytes"}.
    """
    from worldgym.envs.env import WorldModelEnv

    env = WorldModelEnv(checkpoint if checkpoint else small_model(seed), obs_type=obs_type, sampler_steps=sampler_steps)
    env.action_space.seed(seed)
    env.reset(seed=seed)
    every = max(1, steps // samples)
    curve = []
    start = time.perf_counter()
    for t in range(1, steps + 1):
        _, _, _, _, _ = env.step(env.action_space.sample())
        if t % reset_every == 0:
            env.reset()
        if t % every == 0:
            gc.collect()
            curve.append((t, rss_mib()))
            if progress:
                print(f"step {t:>8}  rss {curve[-1][1]:8.1f} MiB  {time.perf_counter() - start:7.0f} s", flush=True)
    wall = time.perf_counter() - start
    env.close()
    half = [(s, m) for s, m in curve if s >= steps // 2]
    slope = float(np.polyfit([s for s, _ in half], [m for _, m in half], 1)[0] * 2**20) if len(half) >= 2 else float("nan")
    return {
        "steps": steps,
        "reset_every": reset_every,
        "rss_mib": curve,
        "warm_mib": curve[0][1],
        "end_mib": curve[-1][1],
        "slope_bytes_per_step": slope,
        "wall_s": wall,
        "cache_bytes": int(env.engine.cache.nbytes()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worldgym.evaluation.soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="checkpoint folder or shipped model name (default: a small random model)")
    parser.add_argument("--steps", type=int, default=100_000, help="env steps to run")
    parser.add_argument("--reset-every", type=int, default=1000, help="reset the env every this many steps")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--obs-type", default="rgb", choices=["rgb", "latent"], help="observation type (latent skips the decoder)")
    parser.add_argument("--sampler-steps", type=int, default=None, help="denoising passes per step (default: the model's)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = soak(
        args.checkpoint, args.steps, args.reset_every, obs_type=args.obs_type, sampler_steps=args.sampler_steps, progress=not args.json
    )
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"rss after warm-up {result['warm_mib']:.1f} MiB, at end {result['end_mib']:.1f} MiB, "
        f"slope over 2nd half {result['slope_bytes_per_step']:.2f} bytes/step, "
        f"{result['steps']} steps in {result['wall_s']:.0f} s, cache {result['cache_bytes']} bytes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

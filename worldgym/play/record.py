"""Record N episodes from a real twin or a neural env into a worldgym dataset (see worldgym/data/dataset.py).

Examples:
    worldgym record --env real:CartPole --episodes 400 --policy mix --seed 0 --out runs/data/cartpole
    worldgym record --env worldgym/CartPole-v0 --episodes 10 --policy controller --out runs/data/dream

``--env real:NAME`` records the pixel twin of a source env (twins.py) and stores its
state vector per frame; any other id goes through ``gymnasium.make``. Episode i is reset
with seed ``seed + i``; an episode still running after ``--max-steps`` is cut and marked
truncated. The dataset is written to ``OUT.partial`` and renamed to ``OUT`` only when
every episode is written, so an interrupted recording leaves the previous ``OUT`` valid.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from worldgym.config_io import UserError
from worldgym.data.dataset import DatasetWriter
from worldgym.policies.builtin import POLICIES, make_policy


def make_env(env_id: str, height: int = 64, width: int = 64) -> gym.Env:
    """``real:NAME`` -> a `PixelTwin`; anything else -> ``gymnasium.make(env_id)`` (worldgym ids registered)."""
    if env_id.startswith("real:"):
        from worldgym.envs.twins import TWINS, PixelTwin

        if env_id[5:] not in TWINS:
            raise UserError(f"--env {env_id!r}: no real twin named {env_id[5:]!r}; known: {', '.join('real:' + t for t in sorted(TWINS))}")
        return PixelTwin(env_id[5:], height=height, width=width)
    import worldgym.envs.registration  # noqa: F401  (registers worldgym/* ids)

    try:
        return gym.make(env_id)
    except gym.error.UnregisteredEnv as e:
        known = ", ".join(sorted(k for k in gym.registry if k.startswith("worldgym/")))
        raise UserError(f"--env {env_id!r}: {e} Registered worldgym envs: {known}; or real:NAME for a pixel twin") from e


class Progress:
    """A one-line progress bar on stderr (a CLI helper; silent when ``enabled`` is False)."""

    def __init__(self, total: int, label: str, enabled: bool = True) -> None:
        self.total, self.label, self.enabled = total, label, enabled
        self.start = time.time()
        self.last = 0.0

    def update(self, done: int, extra: str = "") -> None:
        now = time.time()
        if not self.enabled or (now - self.last < 0.5 and done < self.total):
            return
        self.last = now
        frac = done / max(self.total, 1)
        bar = "#" * int(30 * frac)
        rate = done / max(now - self.start, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else 0.0
        sys.stderr.write(f"\r{self.label} [{bar:<30}] {done}/{self.total} {extra} eta {eta:.0f}s ")
        if done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def record(
    env: gym.Env,
    policy: Any,
    out: str | Path,
    episodes: int,
    seed: int = 0,
    max_steps: int = 500,
    metadata: dict | None = None,
    progress: Callable[[int, str], None] | None = None,
) -> Path:
    """Record ``episodes`` episodes of ``policy`` in ``env`` to the dataset folder ``out``; returns its path."""
    meta = {"seed": seed, "max_steps": max_steps, **(metadata or {})}
    total_steps = 0
    with DatasetWriter(out, env.observation_space, env.action_space, meta) as writer:
        for i in range(episodes):
            ep_seed = seed + i
            obs, info = env.reset(seed=ep_seed)
            policy.reset(np.random.default_rng([seed, i]))
            frames, actions, rewards, terms, truncs = [obs], [], [], [], []
            states = [info["state"]] if "state" in info else None
            for t in range(max_steps):
                action = policy(obs, info)
                obs, reward, terminated, truncated, info = env.step(action)
                frames.append(obs)
                actions.append(action)
                rewards.append(reward)
                terms.append(terminated)
                truncs.append(truncated or (t == max_steps - 1 and not terminated))
                if states is not None:
                    states.append(info["state"])
                if terminated or truncated:
                    break
            writer.add_episode(
                np.stack(frames), np.asarray(actions), np.asarray(rewards, np.float32), np.asarray(terms),
                np.asarray(truncs), seed=ep_seed, states=None if states is None else np.stack(states),
            )  # fmt: skip
            total_steps += len(actions)
            if progress is not None:
                progress(i + 1, f"{total_steps} steps")
    return Path(out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default="real:CartPole", help="real:NAME for a pixel twin, or a Gymnasium id")
    parser.add_argument("--episodes", type=int, default=100, help="number of episodes")
    parser.add_argument("--policy", default="mix", help=f"one of {POLICIES}, policy:PATH (a folder saved by agents/) or module:function")
    parser.add_argument("--seed", type=int, default=0, help="episode i is reset with seed + i")
    parser.add_argument("--max-steps", type=int, default=500, help="cut (truncate) episodes after this many steps")
    parser.add_argument("--size", type=int, default=64, help="frame height and width of a real twin")
    parser.add_argument("--out", required=True, help="dataset folder to write")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    env = make_env(args.env, args.size, args.size)
    policy = make_policy(args.policy, env.action_space)
    bar = Progress(args.episodes, "record", enabled=not args.quiet)
    t0 = time.time()
    path = record(
        env, policy, args.out, args.episodes, args.seed, args.max_steps,
        metadata={"env": args.env, "policy": args.policy, "command": " ".join(sys.argv)},
        progress=bar.update,
    )  # fmt: skip
    env.close()
    from worldgym.data.dataset import check

    summary = check(path)
    print(f"wrote {path}: {summary['episodes']} episodes, {summary['steps']} steps in {time.time() - t0:.1f}s")
    return 0

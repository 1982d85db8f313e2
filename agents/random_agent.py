"""Random agent: uniform random actions in a neural env or its real twin, the floor every agent must beat.

    python agents/random_agent.py --env worldgym/CartPole-v0 --episodes 100
    python agents/random_agent.py --env worldgym/CartPoleReal-v0 --episodes 100

Runs ``--num-envs`` envs as one Gymnasium vector env (for a neural env the native batched
`WorldModelVectorEnv`: one model forward for all envs) with NEXT_STEP autoreset, and
prints the mean return of the first ``--episodes`` episodes that end. Results go to
``<run-dir>/result.json``.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import worldgym  # registers worldgym/<Name>-v0 and worldgym/<Name>Real-v0
from worldgym.config_io import parse_cli


@dataclass
class Args:
    env: str = "worldgym/CartPole-v0"
    """env id (neural or real twin) or a checkpoint folder"""
    episodes: int = 100
    """episodes to finish"""
    num_envs: int = 8
    """envs stepped together"""
    max_episode_steps: int = 500
    """time limit for a checkpoint folder (registered ids use their own)"""
    seed: int = 0
    """seed of the envs and the action sampler"""
    threads: int = 1
    """torch intra-op threads"""
    run_dir: str = "runs/agents/random"
    """where result.json goes"""



def make_envs(env: str, num_envs: int, max_episode_steps: int) -> gym.vector.VectorEnv:
    """A vector env: native batched for neural envs (``vector_entry_point``), synchronous for the rest."""
    if Path(env).is_dir():
        return gym.make_vec("worldgym/WorldModel-v0", num_envs, vectorization_mode="vector_entry_point",
                            checkpoint=env, max_episode_steps=max_episode_steps)  # fmt: skip
    if gym.registry[env].vector_entry_point is not None:
        return gym.make_vec(env, num_envs, vectorization_mode="vector_entry_point")
    return gym.make_vec(env, num_envs, vectorization_mode="sync")


if __name__ == "__main__":
    args = parse_cli(Args, __doc__)
    torch.set_num_threads(args.threads)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    envs = make_envs(args.env, args.num_envs, args.max_episode_steps)
    envs.action_space.seed(args.seed)

    # ROLLOUT: random actions; Gymnasium 1.x NEXT_STEP autoreset (the step after a done is a reset step)
    obs, info = envs.reset(seed=args.seed)
    episode_return = np.zeros(args.num_envs)
    episode_length = np.zeros(args.num_envs, dtype=np.int64)
    autoreset = np.zeros(args.num_envs, dtype=bool)
    returns, lengths, steps = [], [], 0
    start = time.time()
    while len(returns) < args.episodes:
        obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
        live = ~autoreset  # rows whose step was a real step, not the reset of a finished episode
        steps += int(live.sum())
        episode_return[live] += reward[live]
        episode_length[live] += 1
        done = (terminated | truncated) & live
        for i in np.flatnonzero(done):
            returns.append(float(episode_return[i]))
            lengths.append(int(episode_length[i]))
        episode_return[done], episode_length[done] = 0.0, 0
        autoreset = done
    wall = time.time() - start
    envs.close()

    # LOG
    returns = returns[: args.episodes]
    result = {"command": command, "env": args.env, "episodes": len(returns), "return_mean": float(np.mean(returns)),
              "return_std": float(np.std(returns)), "length_mean": float(np.mean(lengths[: args.episodes])),
              "env_steps": steps, "wall_s": round(wall, 1)}  # fmt: skip
    Path(args.run_dir).mkdir(parents=True, exist_ok=True)
    (Path(args.run_dir) / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"random agent on {args.env}: mean return {result['return_mean']:.1f} +- {result['return_std']:.1f} "
          f"over {len(returns)} episodes ({steps} steps, {wall:.1f}s)")  # fmt: skip

"""Scripted agent: a CartPole balance controller that reads the state from the pixels, in the neural env or its real twin.

    python agents/scripted_agent.py --env worldgym/CartPole-v0 --episodes 20
    python agents/scripted_agent.py --env worldgym/CartPoleReal-v0 --episodes 20

The controller measures cart position and pole angle on each frame with the state probe
(`worldgym.worlds.cartpole.CartPoleProbe`: colour masks, no network), takes velocities from frame
differences (smoothed), and pushes toward ``theta + a*theta_dot + b*x + c*x_dot > 0``. It sees
only pixels in both envs (``--use-true-state`` lets it read ``info["state"]`` of the real
twin instead), so the same controller measures how well the neural env keeps the
physics a hand-written policy relies on. Results go to ``<run-dir>/result.json``.
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
from worldgym.worlds.cartpole import CartPoleProbe


@dataclass
class Args:
    env: str = "worldgym/CartPole-v0"
    """env id (neural or real twin, RGB observations) or a checkpoint folder"""
    episodes: int = 20
    """episodes to run"""
    max_episode_steps: int = 500
    """time limit for a checkpoint folder (registered ids use their own)"""
    angle_gain: float = 0.2
    """weight of the pole's angular velocity (rad/s) against its angle (rad)"""
    smoothing: float = 0.5
    """exponential smoothing of the velocities measured by frame differences (0 = none; pixels are coarse)"""
    position_gain: float = 0.03
    """weight of the cart position (m): steers the cart back to the centre"""
    velocity_gain: float = 0.1
    """weight of the cart velocity (m/s)"""
    use_true_state: bool = False
    """read info['state'] when the env gives it (real twin) instead of the pixels"""
    seed: int = 0
    """episode i is reset with seed + i"""
    threads: int = 1
    """torch intra-op threads"""
    run_dir: str = "runs/agents/scripted"
    """where result.json goes"""



if __name__ == "__main__":
    args = parse_cli(Args, __doc__)
    torch.set_num_threads(args.threads)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    if Path(args.env).is_dir():
        env = gym.make("worldgym/WorldModel-v0", checkpoint=args.env, max_episode_steps=args.max_episode_steps)
    else:
        env = gym.make(args.env)
    if not isinstance(env.action_space, gym.spaces.Discrete) or env.action_space.n != 2:
        sys.exit(f"the scripted agent plays CartPole (Discrete(2): 0 left, 1 right); {args.env} takes {env.action_space}")
    probe = CartPoleProbe()
    dt = 1.0 / env.metadata.get("render_fps", 50)  # CartPole's tau: 0.02 s per step

    returns, steps, unreadable = [], 0, 0
    start = time.time()
    for episode in range(args.episodes):
        obs, info = env.reset(seed=args.seed + episode)
        previous, velocity, total, done = None, np.zeros(2), 0.0, False
        while not done:
            # 1. state: from info["state"] if allowed and present, else from the pixels (velocities by differences)
            if args.use_true_state and "state" in info:
                x, x_dot, theta, theta_dot = np.asarray(info["state"], dtype=np.float64)
            else:
                x, theta = probe(obs[None])[0]
                if not np.isfinite([x, theta]).all():
                    unreadable += 1
                    x, theta = (0.0, 0.0) if previous is None else previous
                if previous is not None:
                    measured = np.array([x - previous[0], theta - previous[1]]) / dt
                    velocity = args.smoothing * velocity + (1.0 - args.smoothing) * measured
                x_dot, theta_dot = velocity
                previous = (x, theta)
            # 2. act: push toward where the pole will be, and back toward the centre
            u = theta + args.angle_gain * theta_dot + args.position_gain * x + args.velocity_gain * x_dot
            obs, reward, terminated, truncated, info = env.step(int(u > 0))
            total += float(reward)
            steps += 1
            done = terminated or truncated
        returns.append(total)
    wall = time.time() - start
    env.close()

    result = {"command": command, "env": args.env, "episodes": len(returns), "return_mean": float(np.mean(returns)),
              "return_std": float(np.std(returns)), "env_steps": steps, "unreadable_frames": unreadable, "wall_s": round(wall, 1)}  # fmt: skip
    Path(args.run_dir).mkdir(parents=True, exist_ok=True)
    (Path(args.run_dir) / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"scripted agent on {args.env}: mean return {result['return_mean']:.1f} +- {result['return_std']:.1f} "
          f"over {len(returns)} episodes ({steps} steps, {unreadable} unreadable frames, {wall:.1f}s)")  # fmt: skip

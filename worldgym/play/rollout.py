"""Roll a world model out under a policy, beside its real twin: returns, speed and a GIF of real vs neural frames.

Each episode resets the real twin with a seed, starts the neural env from the twin's
first frame, and drives both with one policy: the policy sees each env's own frames
(the scripted CartPole agent reads the pole's lean from pixels). An episode ends in each
env by its own termination (the neural env's predicted termination) or at --max-steps.
Works headless: nothing opens a window.

Example:
  worldgym rollout CartPole --episodes 3 --gif rollout.gif
  worldgym rollout path/to/checkpoint --agent random --episodes 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", default="CartPole", help="shipped model name or checkpoint folder")
    parser.add_argument("--episodes", type=int, default=3, help="episodes to roll out")
    parser.add_argument("--agent", default="scripted", help="scripted (CartPole from pixels), random, a worldgym.policies.builtin name, policy:PATH (a folder saved by agents/) or module:callable")
    parser.add_argument("--max-steps", type=int, default=500, help="step limit per episode")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode; episode i uses seed + i")
    parser.add_argument("--gif", default="", help="write real | neural frames side by side to this .gif/.mp4")
    parser.add_argument("--gif-steps", type=int, default=150, help="steps of the first episode written to the GIF")
    parser.add_argument("--no-twin", action="store_true", help="roll out the neural env alone")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for one small env)")


def run_episode(env: gym.Env, policy: Any, seed: int, max_steps: int, options: dict | None = None) -> tuple[float, int, list[np.ndarray], list[float]]:
    """One episode; returns (return, steps, frames, step seconds)."""
    from worldgym.policies.agents import required_args

    if hasattr(policy, "reset"):  # reset() or reset(rng), as worldgym.policies.builtin's policies take
        policy.reset(np.random.default_rng(seed)) if required_args(policy.reset) else policy.reset()
    takes_info = required_args(policy) >= 2  # obs -> action, or (obs, info) -> action
    obs, info = env.reset(seed=seed, options=options)
    frames, times, total = [np.asarray(obs).copy()], [], 0.0
    for _ in range(max_steps):
        action = policy(obs, info) if takes_info else policy(obs)
        t = time.perf_counter()
        obs, reward, terminated, truncated, info = env.step(action)
        times.append(time.perf_counter() - t)
        total += float(reward)
        frames.append(np.asarray(obs).copy())
        if terminated or truncated:
            break
    return total, len(times), frames, times


def run(args: argparse.Namespace) -> int:
    from worldgym.model.checkpoint import resolve
    from worldgym.envs.env import WorldModelEnv
    from worldgym.policies.agents import load_agent
    from worldgym.play.player import compose
    from worldgym.envs.twins import TWINS, PixelTwin

    torch.set_num_threads(args.threads)
    neural = WorldModelEnv(checkpoint=resolve(args.model), render_mode="rgb_array")
    config = neural.model.config
    ae = config.autoencoder
    twin = None
    if not args.no_twin and config.real_twin in TWINS:
        twin = PixelTwin(config.real_twin, ae.frame_height, ae.frame_width)
    print(f"model {config.name} ({neural.model.num_parameters():,} parameters, {ae.frame_height}x{ae.frame_width} frames, "
          f"sampler {config.sampler.steps} step(s)); agent {args.agent}; real twin: {config.real_twin if twin else 'none'}")
    rows, all_times, gif_pairs = [], [], []
    for i in range(args.episodes):
        seed = args.seed + i
        options = None
        real_return = real_steps = None
        real_frames: list[np.ndarray] = []
        if twin is not None:
            real_return, real_steps, real_frames, _ = run_episode(twin, load_agent(args.agent, twin, seed), seed, args.max_steps)
            options = {"frames": real_frames[0]}  # the neural env starts from the twin's first frame
        ret, steps, frames, times = run_episode(neural, load_agent(args.agent, neural, seed), seed, args.max_steps, options)
        all_times += times
        rows.append((seed, ret, steps, real_return, real_steps))
        line = f"episode {i} (seed {seed}): neural return {ret:.0f} in {steps} steps"
        if twin is not None:
            line += f"; real return {real_return:.0f} in {real_steps} steps"
        print(line)
        if i == 0:
            gif_pairs = [(real_frames[min(k, len(real_frames) - 1)] if twin else None, frames[min(k, len(frames) - 1)])
                         for k in range(min(args.gif_steps, max(len(frames), len(real_frames))))]
    ms = [t * 1e3 for t in all_times]
    print(f"neural mean return {statistics.mean(r[1] for r in rows):.1f}"
          + (f", real mean return {statistics.mean(r[3] for r in rows):.1f}" if twin else ""))
    print(f"neural step time: p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms "
          f"({1000 / np.percentile(ms, 50):.0f} steps/s, one env, pixels out, {len(ms)} steps)")
    if args.gif:
        from worldgym.data.video import open_video

        writer = open_video(args.gif, fps=min(config.fps, 30))
        for real, fake in gif_pairs:
            writer.append(compose([real, fake] if real is not None else [fake], scale=3))
        writer.close()
        print(f"wrote {args.gif}: {'real (left) | neural (right), ' if twin else ''}{len(gif_pairs)} frames of episode 0")
    neural.close()
    if twin is not None:
        twin.close()
    return 0

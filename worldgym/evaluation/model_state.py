"""What the world model's state tells an agent, and how far imagination strays from it on a policy's own states.

Two measurements for a ``model_state_mlp`` policy (`worldgym.policies.model_state`) on a
real env whose ``info["state"]`` holds the true state (worldgym's real twins do):

- **readout**: a ridge regression from the filter's features to the true state, fitted on
  70 % of the steps and scored (R², rmse per state dimension) on the rest: how much of the
  state the observation carries, linearly.
- **one-step shift**: along real episodes of the policy, at every step the filter is
  snapshotted, the model generates the next block under the action taken and commits it
  (imagined features), the filter is restored and commits the real frame (real features).
  A readout fitted on the real features reads both; the report gives each one's rmse, the
  mean error of each state dimension, and how often the policy's greedy action agrees on
  the two. This is the imagination's error exactly where the policy goes.

    python -m worldgym.evaluation.model_state runs/loop1/turn_2/policy --twin worldgym/CartPoleReal-v0

Dimension letters: T steps, D features, S state dimensions.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from worldgym.config_io import HelpFormatter
from worldgym.policies.model_state import ModelStatePolicy


def ridge(features: np.ndarray, states: np.ndarray, lam: float = 1.0) -> np.ndarray:
    """Weights (D+1, S) of a ridge regression from features (T, D) to states (T, S), bias last."""
    x = np.c_[features, np.ones(len(features))]
    return np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ states)


def read(weights: np.ndarray, features: np.ndarray) -> np.ndarray:
    return np.c_[features, np.ones(len(features))] @ weights  # (T, S)


def rollouts(policy: ModelStatePolicy, env: gym.Env, episodes: int, seed: int, imagine: bool) -> dict[str, np.ndarray]:
    """Real episodes of ``policy`` (greedy); per step the real features, true state and, with ``imagine``, the imagined features."""
    engine = policy.engine
    real, dream, states = [], [], []
    for ep in range(episodes):
        obs, info = env.reset(seed=seed + ep)
        policy.reset()
        action, done = policy(obs), False
        while not done:
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            if imagine:
                snapshot = engine.get_state([0])
                dream.append(engine.step([action], decode=False).features[0].numpy().copy())
                engine.set_state([0], snapshot)
            action = policy(obs)  # commits the real frame under the previous action, then acts
            real.append(engine.features[0].numpy().copy())
            states.append(np.asarray(info["state"], dtype=np.float64))
    out = {"real": np.array(real), "states": np.array(states)}
    if imagine:
        out["dream"] = np.array(dream)
    return out


def report(policy: ModelStatePolicy, env: gym.Env, episodes: int = 12, seed: int = 30_000) -> dict[str, Any]:
    """The readout and one-step-shift figures of ``policy`` on ``env`` (see the module docstring)."""
    data = rollouts(policy, env, episodes, seed, imagine=True)
    real, dream, states = data["real"], data["dream"], data["states"]
    cut = int(0.7 * len(real))
    held = slice(cut, None)
    w = ridge(real[:cut], states[:cut])
    pred = read(w, real[held])
    r2 = 1.0 - ((pred - states[held]) ** 2).mean(0) / states[held].var(0).clip(min=1e-12)
    w_all = ridge(real, states)
    rmse = {name: np.sqrt(((read(w_all, f) - states) ** 2).mean(0)).round(4).tolist() for name, f in (("real", real), ("imagined", dream))}
    bias = (read(w_all, dream) - states).mean(0).round(4).tolist()
    with torch.no_grad():
        greedy = [policy.actor(torch.from_numpy(f).float()).argmax(-1).numpy() for f in (real, dream)]
    return {
        "steps": len(real),
        "readout_r2": r2.round(3).tolist(),
        "readout_rmse": rmse,
        "imagined_mean_error": bias,
        "action_agreement": float((greedy[0] == greedy[1]).mean()),
        "feature_gap": float(np.linalg.norm(real - dream, axis=1).mean() / np.linalg.norm(real, axis=1).mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("policy", help="a model_state_mlp policy folder")
    parser.add_argument("--twin", default="worldgym/CartPoleReal-v0", help="the real env (info['state'] holds the true state)")
    parser.add_argument("--episodes", type=int, default=12, help="real episodes")
    parser.add_argument("--seed", type=int, default=30_000, help="episode i is reset with seed + i")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    import worldgym.envs.registration  # noqa: F401  (registers the worldgym ids)
    from worldgym.policy_io import load_policy
    from worldgym.training.imagination import make_real

    policy = load_policy(args.policy, frame_skip=1)  # the filter itself, on every frame of --twin
    if not isinstance(policy, ModelStatePolicy):
        sys.exit(f"{args.policy} is a {policy.config.get('kind')!r} policy; this measures model_state_mlp policies")
    env = make_real(args.twin, policy.model)
    print(json.dumps(report(policy, env, args.episodes, args.seed), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

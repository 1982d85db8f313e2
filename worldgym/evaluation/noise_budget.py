"""How precisely must an agent know CartPole's state, at a given frame skip, to reach 500?

An agent that acts on a filter's features (`worldgym.policies.model_state`) knows the true state
only up to the filter's estimation error. This measures what such an error costs, apart from
any world model or learning: a fixed linear controller acts on the true state of CartPole-v1
plus independent Gaussian noise per state dimension, and holds each action for ``frame_skip``
physics steps (as an agent trained on a frame-skip twin does on the every-frame env). The
mean return over seeded episodes, per frame skip and noise level, is the budget: if even the
best of a few controllers fails at a noise level, an agent perceiving that badly will too.

    python -m worldgym.evaluation.noise_budget --noise 0.02 0.09 0.008 0.12 --frame-skip 1 2 3

Noise levels are standard deviations of [x, x_dot, theta, theta_dot] (m, m/s, rad, rad/s),
e.g. the readout rmse of `python -m worldgym.evaluation.model_state`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import gymnasium as gym
import numpy as np

from worldgym.config_io import HelpFormatter, UserError

GAINS = ((0.5, 1.0, 10.0, 1.5), (0.2, 0.5, 10.0, 1.0), (0.1, 0.3, 8.0, 0.8))  # push right when gains . state > 0


def noisy_controller_returns(noise: Sequence[float], frame_skip: int, gains: Sequence[float], episodes: int = 100, seed: int = 10_000) -> list[float]:
    """Returns of ``episodes`` CartPole-v1 episodes (reset with seed + i) of the linear controller on the noisy state."""
    if len(noise) != 4 or len(gains) != 4:
        raise UserError(f"noise and gains need one value per state dimension [x, x_dot, theta, theta_dot], got {len(noise)} and {len(gains)}")
    if frame_skip < 1 or min(noise) < 0:
        raise UserError(f"expected frame_skip >= 1 and noise >= 0, got frame_skip {frame_skip} and noise {list(noise)}")
    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(seed)
    sigma, k = np.asarray(noise, np.float64), np.asarray(gains, np.float64)
    returns = []
    for i in range(episodes):
        state, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            action = int(k @ (state + sigma * rng.standard_normal(4)) > 0)
            for _ in range(frame_skip):
                state, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                done = terminated or truncated
                if done:
                    break
        returns.append(total)
    env.close()
    return returns


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worldgym.evaluation.noise_budget", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--noise", type=float, nargs=4, action="append", required=True, metavar=("X", "XDOT", "THETA", "THETADOT"),
                        help="state noise standard deviations; repeat for more levels")  # fmt: skip
    parser.add_argument("--frame-skip", type=int, nargs="+", default=[1, 2, 3], help="physics steps each action is held")
    parser.add_argument("--episodes", type=int, default=100, help="episodes per cell")
    parser.add_argument("--seed", type=int, default=10_000, help="episode i is reset with seed + i")
    args = parser.parse_args(argv)
    try:
        print(f"{'skip':>4}  {'noise x / xd / th / thd':<28} " + "  ".join(f"gains {g}".ljust(30) for g in GAINS))
        for skip in args.frame_skip:
            for noise in args.noise:
                cells = []
                for gains in GAINS:
                    r = np.asarray(noisy_controller_returns(noise, skip, gains, args.episodes, args.seed))
                    cells.append(f"{r.mean():6.1f} ({int((r >= 475).sum())} >= 475)".ljust(30))
                print(f"{skip:>4}  {' / '.join(f'{n:g}' for n in noise):<28} " + "  ".join(cells))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Sustained-action response: from recorded mid-episode states, does the model move the world as far as the real one?

A dream-trained agent holds one action for many steps from states its own play reaches
(the loop's CartPole agent holds 6-8 steps after dithering). One-step and replayed-action
fidelity on the recordings do not see how the model answers that: the recordings rarely hold
an action from the middle of an episode. This protocol asks it directly:

1. draw ``n`` points (episode, frame t) from recorded episodes that carry the simulator's
   ``states``, with at least ``context - 1`` frames before t;
2. **real**: the world's simulator is set to the recorded state at t and one action, drawn
   per point, is held for ``max(holds)`` steps (``simulate(state, action, steps)`` returns
   the frames);
3. **model**: the engine is reset from the ``context`` real frames ending at t and the
   actions that led to them, and steps the same held action, all points in one batch;
4. both are read by the same ``measure(frames) -> (B, M)`` (e.g. CartPole's state probe:
   cart x, pole angle), and the change from frame t is compared after each of ``holds``
   steps, signed so that the held action's own direction is positive.

The result per hold and quantity: the mean change real and model, their ratio (1 is a
faithful response; below 1 the model's world answers actions too weakly, which a policy
trained in it exploits) and the mean absolute per-point error. Nothing here knows CartPole:
the simulator and the measurement come in as functions.

Dimension letters: P points, K context frames, S held steps, M measured quantities.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from worldgym.engine import WorldModel
from worldgym.model.networks import Model

HOLDS = (3, 6, 10)


def sample_points(episodes: Sequence[Any], n: int, context: int, rng: np.random.Generator, keep: Callable[[np.ndarray], bool] | None = None) -> list[tuple[int, int]]:
    """``n`` (episode index, frame t) pairs with ``context - 1`` frames before t and t before the last frame.

    ``keep(state)`` filters the recorded state at t (e.g. only upright poles). Episodes need ``states``.
    """
    usable = [i for i, ep in enumerate(episodes) if ep.states is not None and len(ep.actions) >= context]
    if not usable:
        raise ValueError(f"no episode with recorded states and at least {context} steps; record from a twin that reports info['state']")
    points: list[tuple[int, int]] = []
    for _ in range(200 * n):
        if len(points) == n:
            break
        i = usable[int(rng.integers(len(usable)))]
        t = int(rng.integers(context - 1, len(episodes[i].actions)))
        if keep is None or keep(episodes[i].states[t]):
            points.append((i, t))
    if len(points) < n:
        raise ValueError(f"only {len(points)} of {n} points pass the filter; loosen keep or add episodes")
    return points


def sustained_response(
    model: Model,
    episodes: Sequence[Any],
    simulate: Callable[[np.ndarray, Any, int], np.ndarray],
    measure: Callable[[np.ndarray], np.ndarray],
    names: Sequence[str],
    n: int = 64,
    context: int = 4,
    holds: Sequence[int] = HOLDS,
    seed: int = 0,
    keep: Callable[[np.ndarray], bool] | None = None,
) -> dict[str, Any]:
    """The protocol above; returns ``{"points": P, "holds": {S: {name: {real, model, ratio, abs_error}}}}``.

    Args:
        model: the world model.
        episodes: recorded episodes with ``states`` (`worldgym.data.dataset.Episode`).
        simulate: ``(state, action, steps) -> frames (steps, H, W, 3)`` uint8 of the real world held from ``state``.
        measure: ``frames (B, H, W, 3) -> (B, M)`` quantities read off frames (NaN where unreadable).
        names: the M quantities' names.
        holds: the step counts after which the change is compared.
    """
    rng = np.random.default_rng(seed)
    points = sample_points(episodes, n, context, rng, keep)
    S = max(holds)
    n_actions = int(model.config.action.n)
    held = rng.integers(n_actions, size=len(points))  # (P,)
    sign = np.where(held == held.max(), 1.0, -1.0)[:, None] if n_actions == 2 else np.ones((len(points), 1))  # (P, 1)
    ctx = np.stack([episodes[i].observations[t - context + 1 : t + 1] for i, t in points])  # (P, K, H, W, 3)
    ctx_actions = np.stack([[episodes[i].actions[t - context + f] if t - context + f >= 0 else 0 for f in range(context)] for i, t in points])  # (P, K)
    real = np.stack([simulate(episodes[i].states[t], held[p].item(), S) for p, (i, t) in enumerate(points)])  # (P, S, H, W, 3)
    engine = WorldModel(model, len(points))
    engine.reset(None, ctx, ctx_actions, seeds=[seed + p for p in range(len(points))])
    generated = np.stack([engine.step(held).frames.cpu().numpy() for _ in range(S)], 1)  # (P, S, H, W, 3)
    P, _, H, W, _ = real.shape
    start = measure(ctx[:, -1])  # (P, M)
    d_real = (measure(real.reshape(P * S, H, W, 3)).reshape(P, S, -1) - start[:, None]) * sign[:, None]  # (P, S, M)
    d_model = (measure(generated.reshape(P * S, H, W, 3)).reshape(P, S, -1) - start[:, None]) * sign[:, None]
    out: dict[str, Any] = {"points": len(points), "holds": {}}
    for s in holds:
        row = {}
        for m, name in enumerate(names):
            r, g = float(np.nanmean(d_real[:, s - 1, m])), float(np.nanmean(d_model[:, s - 1, m]))
            row[name] = {"real": r, "model": g, "ratio": g / r if r else float("nan"),
                         "abs_error": float(np.nanmean(np.abs(d_model[:, s - 1, m] - d_real[:, s - 1, m])))}  # fmt: skip
        out["holds"][s] = row
    return out


def format_response(result: dict[str, Any]) -> str:
    """The result as a table: one line per hold and quantity."""
    lines = [f"sustained-action response, {result['points']} recorded mid-episode points (change after S held steps; ratio = model / real)"]
    for s, row in result["holds"].items():
        for name, v in row.items():
            lines.append(f"  S={s:<3d} {name:<8s} real {v['real']:+.3f}  model {v['model']:+.3f}  ratio {v['ratio']:.2f}  |error| {v['abs_error']:.3f}")
    return "\n".join(lines)


def twin_simulator(env: Any) -> Callable[[np.ndarray, Any, int], np.ndarray]:
    """``simulate`` for a real twin whose source simulator keeps its state in ``.state`` (Gymnasium's classic control)."""
    import warnings

    def simulate(state: np.ndarray, action: Any, steps: int) -> np.ndarray:
        env.reset(seed=0)
        source = env.unwrapped.source.unwrapped if hasattr(env.unwrapped, "source") else env.unwrapped
        if not hasattr(source, "state"):
            raise ValueError(f"{type(source).__name__} keeps no settable .state; pass a simulate function for this world")
        source.state = np.array(state, dtype=np.float64, copy=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the held action may end the episode; the physics goes on
            return np.stack([env.step(action)[0] for _ in range(steps)])  # (S, H, W, 3)

    return simulate


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    import gymnasium as gym
    import torch

    from worldgym.config_io import HelpFormatter
    from worldgym.data.dataset import load
    from worldgym.model import checkpoint
    from worldgym.worlds.cartpole import CartPoleProbe

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("model", help="checkpoint folder or installed model name")
    parser.add_argument("--data", nargs="+", required=True, help="recorded datasets with states (worldgym record from a real twin)")
    parser.add_argument("--twin", default="worldgym/CartPoleReal-v0", help="the real env whose source simulator is set to the recorded states")
    parser.add_argument("--points", type=int, default=64, help="recorded points")
    parser.add_argument("--context", type=int, default=4, help="real frames the model starts from")
    parser.add_argument("--max-angle", type=float, default=0.15, help="CartPole: only points whose pole is within this angle (rad)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the point and action draws")
    parser.add_argument("--json", default=None, help="also write the result here")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    import worldgym.envs.registration  # noqa: F401  (registers the worldgym ids)

    model = checkpoint.load(checkpoint.resolve(args.model))
    ae = model.config.autoencoder
    env = gym.make(args.twin, height=ae.frame_height, width=ae.frame_width)
    episodes = [ep for path in args.data for ep in load(path).episodes]
    result = sustained_response(model, episodes, twin_simulator(env), CartPoleProbe(), ["cart_x", "pole"], n=args.points,
                                context=args.context, seed=args.seed, keep=lambda s: abs(float(s[2])) <= args.max_angle)  # fmt: skip
    print(format_response(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())

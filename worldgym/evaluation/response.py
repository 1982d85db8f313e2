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

**Coasting** (`coasting_response`) asks the other half: does the model's world keep moving
when the actions push it nowhere? From the same kind of points the actions cycle through
``cycle`` (for CartPole, left and right alternating from a random phase, so the pushes
cancel), the real world goes on with the motion it had (a falling pole keeps falling), and
each quantity's change is signed by the real change's direction at that step. A ratio near 1
is a world with inertia; a ratio near 0 is a world whose motion is made by the current action
only and dies out without it. A neural env that loses its motion ends a falling episode late
or never (`worldgym.evaluation.contexts`).

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
    simulate: Callable[[np.ndarray, Any, int], tuple[np.ndarray, int]],
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
        simulate: ``(state, action, steps) -> (frames (steps, H, W, 3) uint8, alive)``: the real world held from
            ``state``, and how many of those frames come before the episode ends (a point is compared at
            hold S only if its real episode lasts S steps: the recordings never show a world past its end).
        measure: ``frames (B, H, W, 3) -> (B, M)`` quantities read off frames (NaN where unreadable).
        names: the M quantities' names.
        holds: the step counts after which the change is compared.
    """
    ctx, ctx_actions, held, sign, real, alive = _setup(model, episodes, simulate, n, context, max(holds), seed, keep)
    d_real, d_model = _changes(model, ctx, ctx_actions, real, [held] * real.shape[1], measure, seed)
    d_real, d_model = d_real * sign[:, None], d_model * sign[:, None]  # (P, S, M): the held action's direction positive
    out: dict[str, Any] = {"points": real.shape[0], "holds": {}}
    for s in holds:
        ok = alive >= s  # only points whose real episode has not ended by step s
        out["holds"][s] = _compare(d_real[ok, s - 1], d_model[ok, s - 1], names)
    return out


def coasting_response(
    model: Model,
    episodes: Sequence[Any],
    simulate: Callable[[np.ndarray, Any, int], tuple[np.ndarray, int]],
    measure: Callable[[np.ndarray], np.ndarray],
    names: Sequence[str],
    n: int = 64,
    context: int = 4,
    holds: Sequence[int] = HOLDS,
    seed: int = 0,
    keep: Callable[[np.ndarray], bool] | None = None,
    cycle: Sequence[Any] = (0, 1),
) -> dict[str, Any]:
    """Coasting (the module docstring): `sustained_response`'s result for actions that cycle through ``cycle``.

    Each point starts the cycle at a random phase; ``simulate`` is called with the list of the
    point's actions, one per step (``twin_simulator``'s accepts it). Per step S and quantity the
    change from the last context frame is signed by the sign of the real change at S, so the
    real column is the mean size of the real motion and the ratio the share of it the model keeps.
    """
    if len(cycle) < 2:
        raise ValueError(f"cycle must hold at least 2 actions whose pushes cancel, got {list(cycle)!r}; for Discrete(2) use (0, 1)")
    S = max(holds)
    rng = np.random.default_rng(seed + 1)  # the phases: drawn apart from the points, which _setup draws from seed
    phases = rng.integers(len(cycle), size=n)
    seqs = [[cycle[(int(f) + k) % len(cycle)] for k in range(S)] for f in phases]  # (P, S)
    ctx, ctx_actions, _, _, real, alive = _setup(model, episodes, simulate, n, context, S, seed, keep, seqs)
    d_real, d_model = _changes(model, ctx, ctx_actions, real, [[seq[k] for seq in seqs] for k in range(S)], measure, seed)
    sign = np.sign(np.nan_to_num(d_real))  # (P, S, M): the real motion's direction, per step
    out: dict[str, Any] = {"points": real.shape[0], "cycle": [c.tolist() if hasattr(c, "tolist") else c for c in cycle], "holds": {}}
    for s in holds:
        ok = alive >= s
        out["holds"][s] = _compare((d_real * sign)[ok, s - 1], (d_model * sign)[ok, s - 1], names)
    return out


def _changes(model: Model, ctx: np.ndarray, ctx_actions: np.ndarray, real: np.ndarray, actions: Sequence[Any], measure: Callable, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The engine reset from the contexts steps ``actions[k]`` (one batch of P actions per step); the measured change
    from the last context frame of the real frames (P, S, H, W, 3) and of the generated ones, each (P, S, M), unsigned."""
    P, S, H, W, _ = real.shape
    engine = WorldModel(model, P)
    engine.reset(None, ctx, ctx_actions, seeds=[seed + p for p in range(P)])
    generated = np.stack([engine.step(actions[k]).frames.cpu().numpy() for k in range(S)], 1)  # (P, S, H, W, 3)
    start = measure(ctx[:, -1])  # (P, M)
    d_real = measure(real.reshape(P * S, H, W, 3)).reshape(P, S, -1) - start[:, None]
    d_model = measure(generated.reshape(P * S, H, W, 3)).reshape(P, S, -1) - start[:, None]
    return d_real, d_model


def _setup(model: Model, episodes: Sequence[Any], simulate: Callable, n: int, context: int, steps: int, seed: int, keep: Callable | None,
           sequences: list[list[Any]] | None = None):  # fmt: skip
    """Points, their real contexts (P, K, H, W, 3) and actions (P, K), the held actions (P,), their signs (P, 1), the real held frames (P, S, H, W, 3).

    With ``sequences`` (one action list per point) the simulator gets each point's list instead of its held action.
    """
    rng = np.random.default_rng(seed)
    points = sample_points(episodes, n, context, rng, keep)
    n_actions = int(model.config.action.n)
    held = rng.integers(n_actions, size=len(points))  # (P,)
    sign = np.where(held == 1, 1.0, -1.0)[:, None] if n_actions == 2 else np.ones((len(points), 1))  # (P, 1): action 1 positive
    ctx = np.stack([episodes[i].observations[t - context + 1 : t + 1] for i, t in points])  # (P, K, H, W, 3)
    ctx_actions = np.stack([[episodes[i].actions[t - context + f] if t - context + f >= 0 else 0 for f in range(context)] for i, t in points])  # (P, K)
    act = (lambda p: held[p].item()) if sequences is None else (lambda p: list(sequences[p]))
    runs = [simulate(episodes[i].states[t], act(p), steps) for p, (i, t) in enumerate(points)]
    real = np.stack([frames for frames, _ in runs])  # (P, S, H, W, 3)
    alive = np.array([a for _, a in runs])  # (P,) real frames before the episode's end
    return ctx, ctx_actions, held, sign, real, alive


def held_step_response(model: Model, episodes: Sequence[Any], simulate: Callable, measure: Callable, names: Sequence[str], steps: Sequence[int] = (1, 3, 5, 7, 9),
                       *, n: int = 64, context: int = 4, seed: int = 0, keep: Callable[[np.ndarray], bool] | None = None) -> dict[str, Any]:  # fmt: skip
    """Teacher-forced: at step j of the held action, the model sees the REAL frames so far (its last ``sink + window`` at most) and predicts one block.

    Takes `sustained_response`'s arguments with ``steps`` for ``holds``. Returns ``{"points": P, "steps": {j: {name: {real, model, ratio, abs_error}}}}`` of the one-step
    change from the last real frame. A one-step change that falls behind (or turns against) the
    real one inside a hold is a model that does not follow the action there; in controller-driven
    recordings the action is nearly a function of the state, the likely reason.
    """
    ctx, ctx_actions, held, sign, real, alive = _setup(model, episodes, simulate, n, context, max(steps), seed, keep)
    P, _, H, W, _ = real.shape
    keep_frames = model.config.dynamics.sink + model.config.dynamics.window
    out: dict[str, Any] = {"points": P, "steps": {}}
    for j in steps:
        frames = np.concatenate([ctx, real[:, : j - 1]], 1)[:, -keep_frames:]  # (P, <=sink+window, H, W, 3)
        acts = np.concatenate([ctx_actions, np.repeat(held[:, None], j - 1, 1)], 1)[:, -keep_frames:]
        engine = WorldModel(model, P)
        engine.reset(None, frames, acts, seeds=[seed + p for p in range(P)])
        generated = engine.step(held).frames.cpu().numpy()  # (P, H, W, 3)
        last = measure(frames[:, -1])
        d_real = (measure(real[:, j - 1]) - last) * sign
        d_model = (measure(generated) - last) * sign
        ok = alive >= j
        out["steps"][j] = _compare(d_real[ok], d_model[ok], names)
    return out


def _compare(d_real: np.ndarray, d_model: np.ndarray, names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per quantity: mean real and model change (P, M), their ratio and the mean absolute per-point error."""
    row: dict[str, Any] = {"points": int(d_real.shape[0])}
    nan = {"real": float("nan"), "model": float("nan"), "ratio": float("nan"), "abs_error": float("nan")}
    for m, name in enumerate(names):
        if not np.isfinite(d_real[:, m]).any() or not np.isfinite(d_model[:, m]).any():
            row[name] = dict(nan)  # no point to compare (all ended, or unreadable)
            continue
        r, g = float(np.nanmean(d_real[:, m])), float(np.nanmean(d_model[:, m]))
        row[name] = {"real": r, "model": g, "ratio": g / r if r else float("nan"), "abs_error": float(np.nanmean(np.abs(d_model[:, m] - d_real[:, m])))}
    return row


def format_response(result: dict[str, Any], held: dict[str, Any] | None = None, coast: dict[str, Any] | None = None) -> str:
    """The results as a table: one line per hold (and teacher-forced step, and coasting step) and quantity."""
    lines = [f"sustained-action response, {result['points']} recorded mid-episode points (ratio = model / real)",
             "  rollout: change from the last context frame after S held steps"]  # fmt: skip
    rows = [("S", s, row) for s, row in result["holds"].items()]
    if held is not None:
        rows += [("j", j, row) for j, row in held["steps"].items()]
    if coast is not None:
        rows += [("c", s, row) for s, row in coast["holds"].items()]
    for i, (letter, s, row) in enumerate(rows):
        if letter == "j" and rows[i - 1][0] == "S":
            lines.append("  teacher-forced: one-step change at step j of the hold, from the real frames before it")
        if letter == "c" and rows[i - 1][0] != "c":
            lines.append(f"  coasting: actions cycling {coast['cycle']}, change after c steps signed by the real one's direction")
        for name, v in row.items():
            if name == "points":
                continue
            lines.append(f"  {letter}={s:<3d} n={row['points']:<3d} {name:<8s} real {v['real']:+.4f}  model {v['model']:+.4f}  ratio {v['ratio']:+.2f}  |error| {v['abs_error']:.4f}")
    return "\n".join(lines)


def twin_simulator(env: Any) -> Callable[[np.ndarray, Any, int], tuple[np.ndarray, int]]:
    """``simulate`` for a real twin whose source simulator keeps its state in ``.state`` (Gymnasium's classic control).

    ``action`` is held for every step, or, as a list, gives one action per step (coasting).
    """
    import warnings

    def simulate(state: np.ndarray, action: Any, steps: int) -> np.ndarray:
        env.reset(seed=0)
        source = env.unwrapped.source.unwrapped if hasattr(env.unwrapped, "source") else env.unwrapped
        if not hasattr(source, "state"):
            raise ValueError(f"{type(source).__name__} keeps no settable .state; pass a simulate function for this world")
        source.state = np.array(state, dtype=np.float64, copy=True)
        frames, alive = [], steps
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the held action may end the episode; the physics goes on
            for k in range(steps):
                obs, _, terminated, _, _ = env.step(action[k] if isinstance(action, list) else action)
                frames.append(obs)
                if terminated and alive == steps:
                    alive = k  # frames from index k on are past the episode's end
        return np.stack(frames), alive  # (S, H, W, 3), steps before the end

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
    common = dict(simulate=twin_simulator(env), measure=CartPoleProbe(), names=["cart_x", "pole"], n=args.points,
                  context=args.context, seed=args.seed, keep=lambda s: abs(float(s[2])) <= args.max_angle)  # fmt: skip
    result = sustained_response(model, episodes, **common)
    held = held_step_response(model, episodes, **common)
    coast = coasting_response(model, episodes, **common, holds=(3, 6, 9, 12))
    print(format_response(result, held, coast))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rollout": result, "teacher_forced": held, "coasting": coast}, f, indent=2)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())

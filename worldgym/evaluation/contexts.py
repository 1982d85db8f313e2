"""Starts from real context: the neural env started from K real frames ends the episode when the real one did.

This is the `worldgym eval` section behind the design target "from 4 real frames, predicted
termination within +-3 steps of the real one in >= 90 % of episodes the physics can time".
For each K in ``contexts`` and each held-out real episode that terminated:

1. the neural env is reset from the episode's first K frames and the actions that led to
   them, exactly as ``env.reset(options={"frames": ..., "actions": ...})`` takes them (frame
   f > 0 was reached by action f - 1; the first frame's action is unknown and ignored);
2. the remaining real actions are replayed open loop (then the last one repeated for
   ``extra`` steps, as the main replay does); the predicted end is the first frame whose
   termination probability exceeds 0.5, the offset is predicted minus real frame index;
3. an episode counts when **the physics can time it**: the world's own simulator, started
   from the true state at the context's last frame and replaying the same actions, itself
   ends within ``tolerance`` steps of the recorded end (``replay_end``, e.g.
   `worldgym.worlds.cartpole.replay_end`). For deterministic CartPole with replayed actions
   this holds for nearly every episode; it fails only where float32 state rounding grows
   into a different end (long balanced episodes).

What a world model is given here is all a perfect model would need (K >= 2 frames show the
velocities), so the share within +-``tolerance`` measures the model, not the protocol. Measured
for CartPole at K = 4 (BENCHMARKS.md, "Starts: the 50 Hz models lose their motion"): of the start
states whose 4 rendered frames are pixel-identical to an episode's, the true physics ends 98 %
within +-3 steps, and the true physics from an MLP's reading of the 4 encoded frames and actions
reaches 98 %: the frames and the latents hold the answer, the dynamics has to keep it.
Nothing here knows CartPole: the physics comes in as a function.

Dimension letters: E episodes, K context frames, S replayed steps, H/W frame size.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from worldgym.engine import WorldModel
from worldgym.model.networks import Model

CONTEXTS = (1, 4, 8)
BINS = ((None, -11), (-10, -4), (-3, 3), (4, 10), (11, None))  # offset histogram bins (inclusive ends)


def histogram(offsets: Sequence[int | None]) -> dict[str, int]:
    """Counts of offsets (predicted - real) per bin of `BINS`, and of ``None`` (never predicted) as "never"."""
    out = {}
    for lo, hi in BINS:
        label = f"<={hi}" if lo is None else f">={lo}" if hi is None else f"{lo}..{hi}"
        out[label] = sum(o is not None and (lo is None or o >= lo) and (hi is None or o <= hi) for o in offsets)
    out["never"] = sum(o is None for o in offsets)
    return out


def reset_from_context(wm: WorldModel, episodes: list[dict[str, Any]], K: int) -> WorldModel:
    """Reset engine row i from episode i's first K ``frames`` and the ``actions`` that led to them; returns ``wm``."""
    frames = np.stack([e["frames"][:K] for e in episodes])  # (E, K, H, W, 3)
    # the action that led to each context frame; the first one is unknown (the engine ignores it: any valid action)
    actions = [[e["actions"][0].tolist()] + [a.tolist() for a in e["actions"][: K - 1]] for e in episodes]
    wm.reset(None, frames, actions, seeds=[int(e["seed"]) for e in episodes])
    return wm


def neural_probs(model: Model, episodes: list[dict[str, Any]], K: int, extra: int, dtype: str, features: bool = False) -> np.ndarray:
    """Termination probability of frames K .. per episode (E, S), from its first K frames, the real actions replayed.

    ``features`` rolls out in the two-pass engine of an env observing features (else the engine ``gym.make`` gives).
    """
    wm = reset_from_context(WorldModel(model, batch_size=len(episodes), dtype=dtype, features=features), episodes, K)
    S = max(len(e["actions"]) for e in episodes) - (K - 1) + extra
    probs = []
    for j in range(S):
        t = K - 1 + j  # the action taken on frame t leads to frame t + 1
        acts = [e["actions"][min(t, len(e["actions"]) - 1)].tolist() for e in episodes]
        probs.append(wm.step(acts, decode=False).termination.float().numpy())
    return np.stack(probs, 1)


def first_ends(probs: np.ndarray, episodes: list[dict[str, Any]], K: int, extra: int, threshold: float = 0.5) -> list[int | None]:
    """Frame index of the first probability above ``threshold`` per episode (None if none before its end + extra)."""
    ends: list[int | None] = []
    for p, e in zip(probs, episodes):
        n = len(e["actions"]) + extra - (K - 1)  # the steps replayed for this episode
        hit = np.nonzero(p[:n] > threshold)[0]
        ends.append(int(hit[0]) + K if len(hit) else None)
    return ends


def neural_ends(model: Model, episodes: list[dict[str, Any]], K: int, extra: int, dtype: str, threshold: float = 0.5) -> list[int | None]:
    """Frame index of the first predicted termination (prob > ``threshold``) per episode, from its first K frames; None if never."""
    return first_ends(neural_probs(model, episodes, K, extra, dtype), episodes, K, extra, threshold)


def context_starts(
    model: Model,
    real: list[dict[str, Any]],
    contexts: Sequence[int] = CONTEXTS,
    replay_end: Callable[[np.ndarray, np.ndarray, int], int | None] | None = None,
    tolerance: int = 3,
    extra: int = 10,
    dtype: str = "float32",
) -> dict[str, Any]:
    """Termination timing of the neural env started from K real frames, per K (the module docstring's protocol).

    Args:
        model: the world model.
        real: held-out real episodes: ``frames`` (T+1, H, W, 3) uint8, ``actions`` (T, ...),
            ``states`` (T+1, ...) the true states (read only by ``replay_end``), ``terminated``, ``seed``.
        contexts: the context lengths K.
        replay_end: the world's physics: (true state at the context's last frame, the actions
            replayed from it, extra) -> steps until it terminates (None if it does not). None
            counts every terminated episode (reported as ``physics: false``).
        tolerance: a predicted end within +-tolerance frames of the real one counts as right.
        extra: steps replayed past the real end (the last action repeated).
        dtype: the engine's precision.

    Returns:
        a JSON-ready dict: per K the episodes, how many the physics can time, the share of
        those within +-tolerance (headline), the share over all terminated episodes, the
        offsets (predicted - real; None = never predicted), their mean and median and a histogram.
    """
    report: dict[str, Any] = {"contexts": list(contexts), "tolerance": tolerance, "physics": replay_end is not None, "per_k": {}}
    slots = model.config.dynamics.sink + model.config.dynamics.window
    for K in contexts:
        if K > slots:  # more frames than the cache holds: reset refuses them
            report["per_k"][str(K)] = {"episodes": 0, "skipped": f"K={K} exceeds the model's sink + window = {slots} blocks"}
            continue
        eligible = [e for e in real if e["terminated"] and len(e["actions"]) >= K]  # the context's last frame is alive
        if not eligible:
            report["per_k"][str(K)] = {"episodes": 0}
            continue
        timeable = []
        for e in eligible:
            T = len(e["actions"])
            if replay_end is None:
                timeable.append(True)
                continue
            n = replay_end(np.asarray(e["states"][K - 1]), np.asarray(e["actions"][K - 1 :]), extra)
            timeable.append(n is not None and abs(K - 1 + n - T) <= tolerance)
        ends = neural_ends(model, eligible, K, extra, dtype)
        offsets = [None if p is None else int(p - len(e["actions"])) for p, e in zip(ends, eligible)]
        timed = [o for o, ok in zip(offsets, timeable) if ok]
        hit = [o is not None and abs(o) <= tolerance for o in offsets]
        fired = [o for o in timed if o is not None]
        report["per_k"][str(K)] = {
            "episodes": len(eligible),
            "physics_timeable": len(timed),
            "share_within": float(np.mean([h for h, ok in zip(hit, timeable) if ok])) if timed else None,
            "share_within_all_terminated": float(np.mean(hit)),
            "mean_offset": float(np.mean(fired)) if fired else None,
            "median_offset": float(np.median(fired)) if fired else None,
            "histogram": histogram(timed),
            "offsets": timed,
        }
    return report


def format_table(section: dict[str, Any]) -> str:
    """The section as a plain-text table, one row per K."""
    bins = list(histogram([]))
    tol = section["tolerance"]
    head = f"{'K':>3} {'episodes':>8} {'timeable':>8} {f'within +-{tol}':>11} {'all':>6} {'mean off':>8}  " + " ".join(f"{b:>7}" for b in bins)
    lines = ["starts from K real frames: predicted termination vs the real one (episodes the physics can time)", head]
    for K, r in section["per_k"].items():
        if not r.get("episodes"):
            lines.append(f"{K:>3} {0:>8}")
            continue
        share = "-" if r["share_within"] is None else f"{100 * r['share_within']:.1f} %"
        mean = "-" if r["mean_offset"] is None else f"{r['mean_offset']:+.2f}"
        counts = " ".join(f"{r['histogram'][b]:>7}" for b in bins)
        lines.append(f"{K:>3} {r['episodes']:>8} {r['physics_timeable']:>8} {share:>11} {100 * r['share_within_all_terminated']:>5.1f}% {mean:>8}  {counts}")
    return "\n".join(lines)

"""Fidelity of an open-world model (Crafter) against its real twin: what ``worldgym eval`` measures for a twin other than CartPole.

Example:
    worldgym eval runs/crafter/model --policy crafter_explorer --seed 9000 --episodes 20 --out runs/crafter/eval.json

Held-out real episodes are recorded as ``worldgym record`` records them (episode i reset
with seed + i, the policy with ``default_rng([seed, i])``), so ``--seed 9000 --episodes 20
--policy crafter_explorer --max-steps 500`` replays exactly the held-out set of docs/crafter.md.
Each episode is cut into segments of ``horizon`` (30) steps; the neural env starts from
each segment's first real frame and replays the real actions (open loop). All segments run
as the rows of one batched engine.

1. **PSNR per horizon** (1, 5, 10, 30 steps) of the neural frame against the real one,
   beside the copy-the-last-frame baseline: the segment's start frame (the last frame the
   model was given) against the real frame at that horizon.
2. **Movement agreement**: over the first ``movement_steps`` (10) steps of each segment,
   the shift of the scrolling map view between consecutive frames, estimated as the
   whole-tile shift (none or one tile in one of four directions) that best matches the
   two frames, in the neural frames against the real ones. Counted over the steps whose
   real shift the real frames determine (the best shift beats the second best by
   ``min_gap`` grey levels; a step on uniform grass shows no shift either way). The world
   module says where the view is (`worldgym.worlds.crafter.view_area`); without one (or
   at a frame size where a tile is not whole pixels) the section is skipped. The real estimate is also checked against the player's true
   position (``info["state"]`` x, y) when the twin gives it.
3. **Reward events**: steps whose real reward is at least ``event_threshold`` (0.5:
   Crafter's achievements, not its +-0.1 health changes) against steps whose predicted
   reward is; precision and recall, matched within 0 and within +-1 step of a segment.
4. **Stability**: ``stability_steps`` (10,000) neural steps of one env under held random
   actions with no reset; per 1,000-step chunk the frames' mean intensity, spatial spread
   (std) and frame-to-frame change against the range of the real frames; collapse when
   most frames of the last chunk leave that range or the spread falls below half of the
   real minimum; flicker as the share of frame changes above the real maximum and the
   spread of the mean change across the phases of the cache window.

This module reads frames, actions and rewards; it knows nothing about tiles but what the
world module gives it.

Dimension letters: S segments, T steps, H/W frame size.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from worldgym import worlds
from worldgym.config_io import ConfigError
from worldgym.engine import WorldModel
from worldgym.evaluation.evaluate import psnr, record_real, write_strip
from worldgym.model.networks import Model

HORIZONS = (1, 5, 10, 30)
SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))  # the player's move (dx, dy) in tiles; the view scrolls the other way


def world_module(twin: str) -> Any:
    """The `worldgym.worlds` module of a twin (``Crafter`` -> `worldgym.worlds.crafter`), or None."""
    return getattr(worlds, twin.lower(), None)


def segments(lengths: list[int], horizon: int) -> list[tuple[int, int, int]]:
    """(episode, start step, steps) of the horizon-long segments that tile each episode (the last one may be shorter)."""
    return [(e, t, min(horizon, T - t)) for e, T in enumerate(lengths) for t in range(0, T, horizon)]


def replay_segments(model: Model, real: list[dict[str, Any]], segs: list[tuple[int, int, int]], horizon: int, dtype: str,
                    batch: int = 64) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Neural frames (S, horizon+1, H, W, 3) and predicted rewards (S, horizon) of every segment, open loop from its real start frame.

    Steps past a segment's end repeat its last action (their outputs are not scored).
    """
    frames, rewards = [], []
    for lo in range(0, len(segs), batch):
        chunk = segs[lo : lo + batch]
        wm = WorldModel(model, batch_size=len(chunk), dtype=dtype)
        starts = np.stack([real[e]["frames"][t][None] for e, t, _ in chunk])  # (B, 1, H, W, 3)
        wm.reset(None, starts, seeds=[real[e]["seed"] * 1000 + t for e, t, _ in chunk])
        out, rew = [starts[:, 0]], []
        for k in range(horizon):
            acts = [int(real[e]["actions"][t + min(k, n - 1)]) for e, t, n in chunk]
            res = wm.step(acts)
            out.append(res.frames.numpy())
            rew.append(res.reward.numpy())
        frames.append(np.stack(out, 1))
        rewards.append(np.stack(rew, 1))
    return np.concatenate(frames), np.concatenate(rewards)


def psnr_by_horizon(real: list[dict[str, Any]], segs: list[tuple[int, int, int]], neural: np.ndarray, horizons=HORIZONS) -> dict[str, Any]:
    """Mean PSNR of neural vs real frames at each horizon, beside copy-the-last-frame (the segment's start frame)."""
    out = {}
    for h in horizons:
        idx = [i for i, (_, _, n) in enumerate(segs) if n >= h]
        if not idx:
            out[str(h)] = {"segments": 0}
            continue
        target = np.stack([real[segs[i][0]]["frames"][segs[i][1] + h] for i in idx])
        start = np.stack([real[segs[i][0]]["frames"][segs[i][1]] for i in idx])
        model_db, copy_db = float(psnr(neural[idx, h], target).mean()), float(psnr(start, target).mean())
        out[str(h)] = {"segments": len(idx), "psnr_db": model_db, "copy_last_frame_psnr_db": copy_db, "above_copy": model_db > copy_db}
    return out


def shift_errors(a: np.ndarray, b: np.ndarray, area: tuple[int, int, int, int, int, int]) -> np.ndarray:
    """Mean absolute difference (grey levels) of the view in frames b (P, H, W, 3) and in frames a scrolled by each of `SHIFTS` -> (P, 5).

    ``area`` is (top, left, rows, cols, tile height, tile width) in pixels. When the player
    moves by (dx, dy) tiles, what was at view pixel (y + dy*th, x + dx*tw) in ``a`` is at (y, x) in ``b``.
    """
    top, left, rows, cols, th, tw = area
    va = a[:, top : top + rows, left : left + cols].astype(np.float32)  # (P, rows, cols, 3)
    vb = b[:, top : top + rows, left : left + cols].astype(np.float32)
    errors = []
    for dx, dy in SHIFTS:
        sy, sx = dy * th, dx * tw
        ya, yb = slice(max(sy, 0), rows + min(sy, 0)), slice(max(-sy, 0), rows - max(sy, 0))
        xa, xb = slice(max(sx, 0), cols + min(sx, 0)), slice(max(-sx, 0), cols - max(sx, 0))
        errors.append(np.abs(va[:, ya, xa] - vb[:, yb, xb]).mean((1, 2, 3)))
    return np.stack(errors, 1)


def view_shift(a: np.ndarray, b: np.ndarray, area: tuple[int, int, int, int, int, int], min_gap: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The best-matching move (index into `SHIFTS`) from frames a to b (P,), and whether it is determined (P,) bool."""
    err = shift_errors(a, b, area)
    order = np.sort(err, 1)
    return err.argmin(1), order[:, 1] - order[:, 0] >= min_gap


def movement_agreement(real: list[dict[str, Any]], segs: list[tuple[int, int, int]], neural: np.ndarray, area: tuple, steps: int = 10,
                       min_gap: float = 1.0, position: tuple[int, int] | None = None) -> dict[str, Any]:  # fmt: skip
    """Share of the first ``steps`` steps of each segment whose neural view shift equals the real one (see the module docstring).

    ``position``: the indices of the player's (x, y) tile in the episodes' ``states``, to check the real estimate against.
    """
    ra, rb, na, nb, true_moves = [], [], [], [], []
    for i, (e, t, n) in enumerate(segs):
        k = min(steps, n)
        fr = real[e]["frames"]
        ra.append(fr[t : t + k])
        rb.append(fr[t + 1 : t + k + 1])
        na.append(neural[i, :k])
        nb.append(neural[i, 1 : k + 1])
        if position is not None:
            xy = real[e]["states"][:, list(position)]  # (T+1, 2)
            delta = np.rint(xy[t + 1 : t + k + 1] - xy[t : t + k]).astype(int)  # the player's (x, y) moves
            true_moves.append([SHIFTS.index(tuple(d)) if tuple(d) in SHIFTS else -1 for d in delta])
    real_shift, determined = view_shift(np.concatenate(ra), np.concatenate(rb), area, min_gap)
    neural_shift, _ = view_shift(np.concatenate(na), np.concatenate(nb), area, min_gap)
    agree = neural_shift == real_shift
    moved = determined & (real_shift != 0)
    out = {
        "steps": int(len(agree)),
        "determined_steps": int(determined.sum()),
        "share_agree": float(agree[determined].mean()) if determined.any() else None,
        "moving_steps": int(moved.sum()),
        "share_agree_when_moving": float(agree[moved].mean()) if moved.any() else None,
        "min_gap": min_gap,
    }
    if position is not None:
        truth = np.concatenate([np.array(m, dtype=int) for m in true_moves])
        out["real_estimate_matches_player_position"] = float((truth[determined] == real_shift[determined]).mean()) if determined.any() else None
    return out


def reward_events(real: list[dict[str, Any]], segs: list[tuple[int, int, int]], predicted: np.ndarray, threshold: float = 0.5,
                  tolerance: int = 0) -> dict[str, Any]:  # fmt: skip
    """Precision and recall of predicted reward events (reward >= threshold) against the real ones, matched within +-tolerance steps."""
    hits_pred, n_pred, hits_real, n_real = 0, 0, 0, 0
    for i, (e, t, n) in enumerate(segs):
        r = np.nonzero(real[e]["rewards"][t : t + n] >= threshold)[0]
        p = np.nonzero(predicted[i, :n] >= threshold)[0]
        n_real, n_pred = n_real + len(r), n_pred + len(p)
        hits_real += sum(bool(len(p)) and int(np.abs(p - x).min()) <= tolerance for x in r)
        hits_pred += sum(bool(len(r)) and int(np.abs(r - x).min()) <= tolerance for x in p)
    return {"real_events": n_real, "predicted_events": n_pred, "tolerance_steps": tolerance, "threshold": threshold,
            "precision": hits_pred / n_pred if n_pred else None, "recall": hits_real / n_real if n_real else None}  # fmt: skip


def frame_stats(frames: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) uint8 -> (B, 2): mean intensity and spatial spread (std over pixels and channels)."""
    f = frames.astype(np.float32).reshape(len(frames), -1)
    return np.stack([f.mean(1), f.std(1)], 1)


def stability(step: Callable[[int], tuple[np.ndarray, float]], steps: int, n_actions: int, real: list[dict[str, Any]], period: int,
              seed: int = 0, hold: float = 0.8) -> dict[str, Any]:  # fmt: skip
    """``steps`` calls of ``step(action) -> (frame, termination)`` under held random actions, against the real frames' range."""
    real_frames = np.concatenate([e["frames"] for e in real])
    ref = frame_stats(real_frames)
    real_change = np.concatenate([np.abs(e["frames"][1:].astype(np.float32) - e["frames"][:-1]).mean((1, 2, 3)) for e in real])
    lo, hi = ref.min(0), ref.max(0)
    rng = np.random.default_rng(seed)
    action, stats, changes, term, prev = int(rng.integers(n_actions)), [], [], [], None
    for _ in range(steps):
        if rng.random() > hold:
            action = int(rng.integers(n_actions))
        frame, termination = step(action)
        stats.append(frame_stats(frame[None])[0])
        cur = frame.astype(np.float32)
        changes.append(float(np.abs(cur - prev).mean()) if prev is not None else 0.0)
        prev = cur
        term.append(termination)
    stats_arr, change = np.array(stats), np.array(changes)
    outside = ((stats_arr < lo - 0.05 * (hi - lo)) | (stats_arr > hi + 0.05 * (hi - lo))).any(1)
    chunks = [{"steps": f"{i}-{min(i + 1000, steps)}", "mean_intensity": float(stats_arr[i : i + 1000, 0].mean()),
               "spread": float(stats_arr[i : i + 1000, 1].mean()), "frame_change": float(change[i : i + 1000].mean()),
               "outside_real_range": float(outside[i : i + 1000].mean())} for i in range(0, steps, 1000)]  # fmt: skip
    last = slice(max(0, steps - 1000), steps)
    d = change[2 * period :]
    phases = [float(d[p::period].mean()) for p in range(period)] if len(d) >= period else []
    return {
        "steps": steps,
        "real_range": {"mean_intensity": [float(lo[0]), float(hi[0])], "spread": [float(lo[1]), float(hi[1])],
                       "frame_change_max": float(real_change.max()), "frame_change_mean": float(real_change.mean())},  # fmt: skip
        "chunks": chunks,
        "outside_real_range_share": float(outside.mean()),
        "collapse": bool(outside[last].mean() > 0.5 or stats_arr[last, 1].mean() < 0.5 * lo[1]),
        "flicker_share_above_real_max_change": float((change > real_change.max()).mean()),
        "flicker_phase_means": phases,
        "flicker_phase_spread": (max(phases) - min(phases)) / max(float(np.mean(phases)), 1e-9) if phases else 0.0,
        "termination_prob_above_half_share": float(np.mean(np.array(term) > 0.5)),
    }


def evaluate_world(model: Model, model_path: str | Path, episodes: int, seed: int, policy: str, max_steps: int, stability_steps: int,
                   strip: str | Path | None, dtype: str, horizon: int = 30, movement_steps: int = 10) -> dict[str, Any]:  # fmt: skip
    """All sections of the module docstring as a JSON-ready dict; ``policy`` "mix" (CartPole's default) means the world's own."""
    cfg = model.config
    if not cfg.real_twin:
        raise ConfigError(f"evaluation needs a model with a real twin, got real_twin={cfg.real_twin!r}; set real_twin in the model config")
    t0 = time.time()
    world = world_module(cfg.real_twin)
    if policy == "mix":
        policy = getattr(world, "EVAL_POLICY", "random")
    size = (cfg.autoencoder.frame_height, cfg.autoencoder.frame_width)
    real = record_real(cfg.real_twin, size, episodes, seed, policy, max_steps)
    segs = segments([len(e["actions"]) for e in real], horizon)
    neural, predicted = replay_segments(model, real, segs, horizon, dtype)
    report: dict[str, Any] = {"model": str(model_path), "twin": cfg.real_twin, "episodes": episodes, "seed": seed, "policy": policy,
                              "max_steps": max_steps, "episode_lengths": [len(e["actions"]) for e in real], "segments": len(segs),
                              "horizon": horizon}  # fmt: skip
    report["psnr"] = psnr_by_horizon(real, segs, neural, tuple(h for h in HORIZONS if h <= horizon))
    area = world.view_area(*size) if hasattr(world, "view_area") else None
    position = getattr(world, "POSITION", None)
    report["movement"] = movement_agreement(real, segs, neural, area, movement_steps, position=position) if area else {"skipped": f"no view area of {cfg.real_twin} frames at {size}"}
    report["reward_events"] = {f"within_{k}": reward_events(real, segs, predicted, tolerance=k) for k in (0, 1)}
    wm = WorldModel(model, batch_size=1, dtype=dtype)
    wm.reset(None, real[0]["frames"][:1][None], seeds=[seed])

    def step(action: int) -> tuple[np.ndarray, float]:
        res = wm.step([action])
        return res.frames[0].numpy(), float(res.termination[0])

    period = cfg.dynamics.sink + cfg.dynamics.window
    report["stability"] = stability(step, stability_steps, int(cfg.action.n), real, period, seed)
    report["dtype"], report["seconds"] = dtype, time.time() - t0
    if strip is not None:
        first = [i for i, (_, t, _) in enumerate(segs) if t == 0]
        write_strip(Path(strip), real, neural[first], horizons=tuple(h for h in (0, 1, 5, 10, 20, 30) if h <= horizon))
        report["strip"] = str(strip)
    return report


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of a report, for the command's printout."""
    return {
        "psnr_db": {h: r.get("psnr_db") for h, r in report["psnr"].items()},
        "copy_last_frame_psnr_db": {h: r.get("copy_last_frame_psnr_db") for h, r in report["psnr"].items()},
        "movement_agreement": report["movement"].get("share_agree"),
        "reward_precision_recall_within_1": [report["reward_events"]["within_1"][k] for k in ("precision", "recall")],
        "stability_collapse": report["stability"]["collapse"],
    }


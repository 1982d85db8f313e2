"""Measure a world model against its real twin on held-out seeds; write a JSON report and a PNG strip.

Example:
    worldgym eval assets/models/cartpole --episodes 32 --seed 100000 --out runs/cartpole/eval.json \\
        --strip runs/cartpole/strip.png

What is measured (CartPole; other twins, such as Crafter, are measured by openworld.py):

1. **Open-loop fidelity.** Real episodes are recorded on held-out seeds (default policy
   ``mix``: random, sticky-random and noisy-controller episodes). The neural env starts
   from each episode's real start frame and replays the real actions. PSNR of neural vs
   real frame after 1, 10, 50 and 200 steps (over episodes that last that long), and the
   state probe's error (cart position in m, pole angle in rad) at the same horizons. The
   probe's own error on the real frames is reported beside it as its floor.
2. **Controllability.** From the neural state every ``--branch-every`` steps of the
   replays, two branches hold "push right" and "push left" for ``--branch-steps`` steps;
   a branch point is controllable when the probed cart ends further right in the
   push-right branch (in the real env this holds at every point: the push force always
   adds). The real displacement gap from the same true states is reported beside it.
3. **Autoencoder floor.** The held-out real frames passed through the model's own
   autoencoder, read by the probe (PSNR, cart error, pole-angle error per true-angle bucket):
   what a perfect dynamics model could at best show.
4. **Termination timing.** The first step where the predicted termination probability
   exceeds 0.5, against the real termination step, for every real episode that
   terminated (not truncated): the share within +-3 steps. Beside it, the **physics
   ceiling** of this open-loop protocol: the true simulator replays the same actions from
   start states that agree with the start frame but redraw what one frame cannot show (the
   cart and pole velocities, from the source env's reset distribution); the share of
   episodes whose median simulated termination step falls within +-3 steps is what a
   perfect model given one start frame could reach as a point predictor. CartPole is
   unstable, so episodes that a reactive policy kept up for long are not predictable open
   loop at all; the per-episode ceiling says which misses no model could avoid, and the
   share within +-3 is also reported over the episodes the physics times in >= 90 % of its
   runs (a breakdown beside the headline share, not a replacement for it).
5. **Stability.** ``--stability-steps`` (10,000) steps of the neural env driven by the
   pixel-reading controller with no reset: frame statistics (mean intensity, dark-cart
   and tan-pole pixel shares) per 1,000-step chunk against the real frames' range,
   unreadable-frame share (collapse), and flicker: the spread of the mean frame-to-frame
   change across the phases of the cache window (a window-length artefact shows up as
   one phase that changes much more than the others).
6. **Starts from real context** (contexts.py): the neural env reset from the first K = 1, 4,
   8 real frames (and the actions that led to them) of ``--starts-episodes`` held-out
   ``--starts-policy`` episodes, the rest of the actions replayed; the share whose predicted
   end is within +-3 steps of the real one, over the episodes the true physics can time.

Dimension letters: E episodes, T steps, H/W frame size.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from worldgym.model import checkpoint
from worldgym.engine import WorldModel
from worldgym.model.hardware import DTYPE_CHOICES, resolve_dtype
from worldgym.evaluation.contexts import CONTEXTS, context_starts, format_table
from worldgym.policies.builtin import make_policy
from worldgym.worlds.cartpole import CartPoleController
from worldgym.worlds.cartpole import CartPoleProbe, replay_end
from worldgym.envs.twins import PixelTwin

log = logging.getLogger("worldgym.evaluation.evaluate")
HORIZONS = (1, 10, 50, 200)


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """PSNR in dB of uint8 frames (..., H, W, 3), per leading index."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(*a.shape[:-3], -1).mean(-1)
    return 10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))


def record_real(name: str, size: tuple[int, int], episodes: int, seed: int, policy: str, max_steps: int) -> list[dict[str, Any]]:
    """Held-out real episodes in memory, seeded as ``worldgym record`` seeds them: frames (T+1, H, W, 3), actions (T,), rewards (T,), states (T+1, S), terminated, seed."""
    env = PixelTwin(name, height=size[0], width=size[1])
    pol = make_policy(policy, env.action_space)
    out = []
    for i in range(episodes):
        obs, info = env.reset(seed=seed + i)
        pol.reset(np.random.default_rng([seed, i]))
        frames, actions, rewards, states, terminated = [obs], [], [], [info["state"]], False
        for _ in range(max_steps):
            a = int(pol(obs, info))
            obs, r, terminated, _, info = env.step(a)
            frames.append(obs)
            actions.append(a)
            rewards.append(float(r))
            states.append(info["state"])
            if terminated:
                break
        out.append({"frames": np.stack(frames), "actions": np.array(actions), "rewards": np.array(rewards, np.float32), "states": np.stack(states), "terminated": terminated, "seed": seed + i})
    env.close()
    return out


def termination_ceiling(
    real: list[dict[str, Any]], samples: int = 64, velocity_spread: float | None = 0.05, seed: int = 0, extra: int = 10
) -> dict[str, Any]:
    """The true CartPole physics replaying each terminated episode's actions from perturbed start states.

    Each of ``samples`` start states keeps the true position and angle and redraws both
    velocities uniformly in +-``velocity_spread`` (the reset distribution of CartPole-v1:
    one frame shows no motion); ``None`` keeps the exact start state (the replay must then
    reproduce every real termination step). Actions after the real end repeat the last one
    for up to ``extra`` steps, as in the neural replay.

    Returns the share of episodes whose median simulated termination step is within +-3 of
    the real one, the mean share of single simulated runs within +-3, and per-episode
    ``[real step, median simulated step, share of runs within +-3]``.
    """
    env = gym.make("CartPole-v1").unwrapped
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)

    def end_step(start: np.ndarray, actions: np.ndarray) -> int:
        env.state = start.copy()
        env.steps_beyond_terminated = None  # each simulated run is a fresh episode
        sequence = np.concatenate([actions, np.full(extra, actions[-1])])
        for t, a in enumerate(sequence):
            _, _, terminated, _, _ = env.step(int(a))
            if terminated:
                return t + 1
        return len(sequence) + 1  # not within the replay: never predicted

    per_episode = []
    for e in real:
        if not e["terminated"]:
            continue
        T, start = len(e["actions"]), e["states"][0].astype(np.float64)
        steps = []
        for _ in range(1 if velocity_spread is None else samples):
            s = start.copy()
            if velocity_spread is not None:
                s[[1, 3]] = rng.uniform(-velocity_spread, velocity_spread, size=2)
            steps.append(end_step(s, e["actions"]))
        steps_arr = np.array(steps)
        per_episode.append([T, int(np.median(steps_arr)), float(np.mean(np.abs(steps_arr - T) <= 3))])
    env.close()
    if not per_episode:
        return {"episodes": 0}
    return {
        "episodes": len(per_episode),
        "samples": 1 if velocity_spread is None else samples,
        "velocity_spread": velocity_spread,
        "share_within_3_steps_median": float(np.mean([abs(m - T) <= 3 for T, m, _ in per_episode])),
        "share_within_3_steps_single_run": float(np.mean([h for _, _, h in per_episode])),
        "per_episode_real_median_hit": per_episode,
    }


def fit_probe(real: list[dict[str, Any]]) -> CartPoleProbe:
    frames = np.concatenate([e["frames"] for e in real])
    states = np.concatenate([e["states"] for e in real])
    return CartPoleProbe().fit(frames, states)


def replay(wm: WorldModel, real: list[dict[str, Any]], extra: int, branch_every: int, branch_steps: int, probe: CartPoleProbe):
    """Replay the real actions in the neural env from the real start frames (one row per episode).

    Returns neural frames (E, Tmax+extra+1, H, W, 3), termination probabilities (E, Tmax+extra+1) and
    the controllability branch results.
    """
    E = len(real)
    T = max(len(e["actions"]) for e in real) + extra
    wm.reset(None, np.stack([e["frames"][:1] for e in real]), seeds=[e["seed"] for e in real])
    frames = [np.stack([e["frames"][0] for e in real])]
    term = [np.zeros(E)]
    branches = []
    for t in range(T):
        if t % branch_every == 0 and t < 200:
            branches.append((t, branch(wm, branch_steps, probe)))
        acts = [int(e["actions"][t]) if t < len(e["actions"]) else int(e["actions"][-1]) for e in real]
        res = wm.step(acts)
        frames.append(res.frames.numpy())
        term.append(res.termination.numpy())
    return np.stack(frames, 1), np.stack(term, 1), branches


def branch(wm: WorldModel, steps: int, probe: CartPoleProbe) -> np.ndarray:
    """From every row's current state: probed cart x after ``steps`` pushes right minus after pushes left, (E,).

    The rows' state (cache, RNG, counters) is snapshotted first and restored afterwards.
    """
    state = wm.get_state()
    ends = []
    for action in (1, 0):
        wm.set_state(None, state)
        for _ in range(steps):
            res = wm.step([action] * wm.batch_size)
        ends.append(probe(res.frames.numpy())[:, 0])
    wm.set_state(None, state)
    return ends[0] - ends[1]


def real_branch_gap(real: list[dict[str, Any]], points: list[int], steps: int) -> list[float]:
    """The same right-minus-left cart displacement in the real env from the true states."""
    env = gym.make("CartPole-v1").unwrapped
    env.reset(seed=0)
    gaps = []
    for t in points:
        for e in real:
            if t >= len(e["states"]):
                continue
            ends = []
            for action in (1, 0):
                env.state = np.array(e["states"][t], dtype=np.float64)
                for _ in range(steps):
                    s, *_ = env.step(action)
                ends.append(s[0])
            gaps.append(ends[0] - ends[1])
    return gaps


def frame_stats(frames: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) uint8 -> (B, 3): mean intensity, dark (cart) pixel share, tan (pole) pixel share."""
    f = frames.astype(np.float32)
    dark = (f.max(-1) < 110).mean((1, 2))
    tan = ((f[..., 0] - f[..., 2] > 30) & (f[..., 0] > 120)).mean((1, 2))
    return np.stack([f.mean((1, 2, 3)), dark, tan], 1)


def autoencoder_floor(frames: np.ndarray, decoded: np.ndarray, states: np.ndarray, probe: CartPoleProbe) -> dict[str, Any]:
    """What the autoencoder alone can show: real frames (F, H, W, 3) passed through it, read by the probe.

    No rollout can be more faithful than its decoder: a pole angle the decoder cannot draw is one the
    dynamics can never show, whatever it predicts. Errors are per true |pole angle| bucket (rad);
    the termination angle is 0.2095 rad.
    """
    pd, pr = probe(decoded), probe(frames)
    buckets = {}
    for lo, hi in ((0.0, 0.05), (0.05, 0.1), (0.1, 0.2), (0.2, 0.3)):
        sel = (np.abs(states[:, 2]) >= lo) & (np.abs(states[:, 2]) < hi)
        if sel.any():
            buckets[f"{lo}-{hi}"] = {
                "frames": int(sel.sum()),
                "angle_err_rad": float(np.nanmean(np.abs(pd[sel, 1] - states[sel, 2]))),
                "probe_floor_on_real_angle_rad": float(np.nanmean(np.abs(pr[sel, 1] - states[sel, 2]))),
            }  # fmt: skip
    return {
        "psnr_db": float(psnr(decoded, frames).mean()),
        "cart_x_err_m": float(np.nanmean(np.abs(pd[:, 0] - states[:, 0]))),
        "angle_err_by_true_angle": buckets,
    }


def stability(
    wm: WorldModel, start: np.ndarray, steps: int, probe: CartPoleProbe, real_stats: np.ndarray, decoded_stats: np.ndarray, seed: int
) -> dict[str, Any]:
    """``steps`` neural steps in row 0 (other rows idle) driven by the pixel-reading controller, no reset.

    The reference range of each frame statistic is the union of the real frames' range and the range of
    the same frames passed through the model's own autoencoder (what a perfect dynamics model would
    output): the decoder's fixed bias (a slightly greyer background, a softer pole) is measured by PSNR,
    not counted as collapse. The share outside the real frames' range alone is reported beside it.
    """
    B = wm.batch_size
    wm.reset(None, np.repeat(start[None, None], B, 0), seeds=list(range(seed, seed + B)))
    ctrl = CartPoleController(noise=0.05, target=0.0)
    ctrl.probe = probe
    ctrl.reset(np.random.default_rng(seed))
    obs = start
    stats, unreadable, diffs, term = [], 0, [], []
    prev = start.astype(np.float32)
    for t in range(steps):
        a = ctrl(obs, {})
        res = wm.step([a] * B)
        obs = res.frames[0].numpy()
        stats.append(frame_stats(obs[None])[0])
        unreadable += int(np.isnan(probe(obs[None])).any())
        cur = obs.astype(np.float32)
        diffs.append(float(np.abs(cur - prev).mean()))
        prev = cur
        term.append(float(res.termination[0]))
    stats = np.array(stats)
    def outside_of(ref: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lo, hi = ref.min(0), ref.max(0)
        return ((stats < lo - 0.05 * (hi - lo)) | (stats > hi + 0.05 * (hi - lo))).any(1), lo, hi

    outside, lo, hi = outside_of(np.concatenate([real_stats, decoded_stats]))
    outside_real, rlo, rhi = outside_of(real_stats)
    chunks = [
        {"steps": f"{i}-{i + 1000}", "mean_intensity": float(stats[i : i + 1000, 0].mean()), "dark_share": float(stats[i : i + 1000, 1].mean()),
         "pole_share": float(stats[i : i + 1000, 2].mean()), "outside_reference": float(outside[i : i + 1000].mean())}
        for i in range(0, steps, 1000)
    ]  # fmt: skip
    period = wm.config.dynamics.sink + wm.config.dynamics.window
    d = np.array(diffs[period * 2 :])
    phases = [float(d[p::period].mean()) for p in range(period)] if len(d) >= period else []
    spread = (max(phases) - min(phases)) / max(float(np.mean(phases)), 1e-9) if phases else 0.0
    return {
        "steps": steps,
        "real_stats_range": {"mean_intensity": [float(rlo[0]), float(rhi[0])], "dark_share": [float(rlo[1]), float(rhi[1])], "pole_share": [float(rlo[2]), float(rhi[2])]},
        "reference_range": {"mean_intensity": [float(lo[0]), float(hi[0])], "dark_share": [float(lo[1]), float(hi[1])], "pole_share": [float(lo[2]), float(hi[2])]},
        "outside_real_only_share": float(outside_real.mean()),
        "chunks": chunks,
        "outside_reference_share": float(outside.mean()),
        "unreadable_share": unreadable / steps,
        "collapse": bool(outside[-1000:].mean() > 0.5 or unreadable / steps > 0.5),
        "mean_frame_change": float(np.mean(diffs)),
        "flicker_phase_means": phases,
        "flicker_phase_spread": spread,
        "termination_prob_above_half_share": float(np.mean(np.array(term) > 0.5)),
    }  # fmt: skip


def write_strip(path: Path, real: list[dict[str, Any]], neural: np.ndarray, rows: int = 3, horizons=(0, 1, 5, 10, 25, 50, 100, 200)) -> None:
    """PNG: for a few episodes, a real row above a neural row, at the listed steps."""
    from PIL import Image

    chosen = sorted(range(len(real)), key=lambda i: -len(real[i]["actions"]))[:rows]
    H, W = neural.shape[2:4]
    canvas = np.full((rows * (2 * H + 6), len(horizons) * (W + 2), 3), 255, np.uint8)
    for r, e in enumerate(chosen):
        for c, h in enumerate(horizons):
            if h >= len(real[e]["frames"]):
                continue
            y, x = r * (2 * H + 6), c * (W + 2)
            canvas[y : y + H, x : x + W] = real[e]["frames"][h]
            canvas[y + H + 1 : y + 2 * H + 1, x : x + W] = neural[e, h]
    Image.fromarray(np.repeat(np.repeat(canvas, 3, 0), 3, 1)).save(path)


def evaluate(
    model_path: str | Path,
    episodes: int = 32,
    seed: int = 100_000,
    policy: str = "mix",
    max_steps: int = 500,
    branch_every: int = 5,
    branch_steps: int = 10,
    stability_steps: int = 10_000,
    strip: str | Path | None = None,
    threads: int = 1,
    dtype: str = "auto",
    starts_episodes: int = 100,
    starts_policy: str = "random",
    starts_contexts: tuple[int, ...] = CONTEXTS,
) -> dict[str, Any]:
    """All metrics of the module docstring as a JSON-ready dict; the neural env runs in ``dtype``.

    ``dtype="auto"`` resolves once, to what ``gymnasium.make`` gives one env on this machine
    (`worldgym.model.hardware.resolve_dtype` at batch 1: float32 on CPUs), and every engine of
    the evaluation runs in it; ``report["dtype"]`` holds the resolved name.
    """
    torch.set_num_threads(threads)
    dtype = resolve_dtype(dtype, "cpu", 1)
    t0 = time.time()
    model = checkpoint.load(model_path)
    cfg = model.config
    if cfg.real_twin != "CartPole":  # Crafter and other open worlds (any twin but CartPole): openworld.py
        from worldgym.evaluation.openworld import evaluate_world
        return evaluate_world(model, model_path, episodes, seed, policy, max_steps, stability_steps, strip, dtype)
    size = (cfg.autoencoder.frame_height, cfg.autoencoder.frame_width)
    real = record_real(cfg.real_twin, size, episodes, seed, policy, max_steps)
    probe = fit_probe(real)
    wm = WorldModel(model, batch_size=len(real), dtype=dtype)
    neural, term, branches = replay(wm, real, extra=10, branch_every=branch_every, branch_steps=branch_steps, probe=probe)
    report: dict[str, Any] = {"model": str(model_path), "episodes": episodes, "seed": seed, "policy": policy}
    report["episode_lengths"] = [int(len(e["actions"])) for e in real]
    # 1. open-loop fidelity per horizon
    fid = {}
    for h in HORIZONS:
        idx = [i for i, e in enumerate(real) if len(e["actions"]) >= h]
        if not idx:
            fid[str(h)] = {"episodes": 0}
            continue
        rf = np.stack([real[i]["frames"][h] for i in idx])
        nf = neural[idx, h]
        st = np.stack([real[i]["states"][h] for i in idx])
        pn, pr = probe(nf), probe(rf)
        fid[str(h)] = {
            "episodes": len(idx),
            "psnr_db": float(psnr(nf, rf).mean()),
            "cart_x_abs_err_m": float(np.nanmean(np.abs(pn[:, 0] - st[:, 0]))) if np.isfinite(pn[:, 0]).any() else None,
            "pole_angle_abs_err_rad": float(np.nanmean(np.abs(pn[:, 1] - st[:, 2]))) if np.isfinite(pn[:, 1]).any() else None,
            "unreadable_share": float(np.isnan(pn).any(1).mean()),
            "probe_floor_on_real_x_m": float(np.nanmean(np.abs(pr[:, 0] - st[:, 0]))),
            "probe_floor_on_real_angle_rad": float(np.nanmean(np.abs(pr[:, 1] - st[:, 2]))),
        }
    report["fidelity"] = fid
    # 2. controllability
    gaps, points = [], []
    for t, g in branches:
        alive = [i for i, e in enumerate(real) if t < len(e["actions"])]
        gaps += [float(g[i]) for i in alive]
        points.append(t)
    gaps_arr = np.array(gaps)
    real_gaps = np.array(real_branch_gap(real, points, branch_steps))
    report["controllability"] = {
        "branch_points": len(gaps),
        "branch_steps": branch_steps,
        "share_correct_direction": float(np.mean(np.nan_to_num(gaps_arr, nan=-1.0) > 0)),
        "neural_gap_mean_m": float(np.nanmean(gaps_arr)),
        "real_share_correct_direction": float(np.mean(real_gaps > 0)),
        "real_gap_mean_m": float(np.mean(real_gaps)),
    }
    # 3. termination timing
    offsets, peak = [], []
    for i, e in enumerate(real):
        if not e["terminated"]:
            continue
        T = len(e["actions"])
        above = np.nonzero(term[i, 1:] > 0.5)[0]
        offsets.append(int(above[0] + 1 - T) if len(above) else None)
        peak.append(float(term[i, max(1, T - 3) : T + 4].max()))  # highest predicted probability within +-3 steps
    within = [o is not None and abs(o) <= 3 for o in offsets]
    ceiling = termination_ceiling(real, seed=seed)
    # episodes whose end the true physics times within +-3 steps in >= 90 % of runs from one start frame
    predictable = [hit >= 0.9 for _, _, hit in ceiling.get("per_episode_real_median_hit", [])]
    report["termination"] = {
        "terminated_episodes": len(offsets),
        "share_within_3_steps": float(np.mean(within)) if offsets else None,
        "offsets": offsets,
        "never_predicted": sum(o is None for o in offsets),
        "peak_probability_within_3_steps": peak,
        "physics_ceiling": ceiling,
        "share_within_3_steps_physics_predictable": float(np.mean([w for w, p in zip(within, predictable) if p])) if any(predictable) else None,
        "physics_predictable_episodes": int(sum(predictable)),
    }
    # 4. stability
    real_frames = np.concatenate([e["frames"] for e in real])
    with torch.no_grad():
        decoded = np.concatenate([
            model.autoencoder.decode(model.autoencoder.encode(torch.from_numpy(real_frames[i : i + 256]))).numpy()
            for i in range(0, len(real_frames), 256)
        ])  # fmt: skip
    report["autoencoder"] = autoencoder_floor(real_frames, decoded, np.concatenate([e["states"] for e in real]), probe)
    wm1 = WorldModel(model, batch_size=1, dtype=dtype)
    report["stability"] = stability(wm1, real[0]["frames"][0], stability_steps, probe, frame_stats(real_frames), frame_stats(decoded), seed)
    # 6. starts from real context
    if starts_episodes > 0:
        held_out = record_real(cfg.real_twin, size, starts_episodes, seed, starts_policy, max_steps)
        report["starts"] = {"episodes": starts_episodes, "policy": starts_policy, "seed": seed,
                            **context_starts(model, held_out, starts_contexts, replay_end, dtype=dtype)}  # fmt: skip
    report["dtype"] = dtype
    report["seconds"] = time.time() - t0
    if strip is not None:
        write_strip(Path(strip), real, neural)
        report["strip"] = str(strip)
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="checkpoint folder or shipped model name")
    parser.add_argument("--episodes", type=int, default=32, help="held-out real episodes")
    parser.add_argument("--seed", type=int, default=100_000, help="episode i uses seed + i (training used 0..)")
    parser.add_argument("--policy", default="mix", help="policy of the real episodes")
    parser.add_argument("--max-steps", type=int, default=500, help="cut real episodes after this many steps")
    parser.add_argument("--branch-every", type=int, default=5, help="steps between controllability branch points")
    parser.add_argument("--branch-steps", type=int, default=10, help="steps each controllability branch holds its push")
    parser.add_argument("--stability-steps", type=int, default=10_000, help="length of the no-reset stability rollout")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES, help="the neural env's precision (auto: as gymnasium.make gives one env here; bfloat16: autocast)")
    parser.add_argument("--starts-episodes", type=int, default=100, help="held-out episodes of the starts-from-real-context section (0 skips it)")
    parser.add_argument("--starts-policy", default="random", help="policy of those episodes")
    parser.add_argument("--starts-context", type=int, nargs="+", default=list(CONTEXTS), help="context lengths K of that section")
    parser.add_argument("--out", default=None, help="JSON report path (default: print only)")
    parser.add_argument("--strip", default=None, help="PNG strip of real vs neural frames")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    report = evaluate(
        args.model, args.episodes, args.seed, args.policy, args.max_steps, args.branch_every, args.branch_steps,
        args.stability_steps, args.strip, args.threads, args.dtype, args.starts_episodes, args.starts_policy, tuple(args.starts_context),
    )  # fmt: skip
    report["command"] = "worldgym eval " + " ".join(sys.argv[2:] if len(sys.argv) > 2 else [])
    text = json.dumps(report, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    if "movement" in report:  # an open-world report (openworld.py)
        from worldgym.evaluation.openworld import summary as world_summary
        print(json.dumps(world_summary(report), indent=1))
        return 0
    summary = {
        "psnr_db": {h: report["fidelity"][h].get("psnr_db") for h in report["fidelity"]},
        "cart_x_err_m": {h: report["fidelity"][h].get("cart_x_abs_err_m") for h in report["fidelity"]},
        "angle_err_rad": {h: report["fidelity"][h].get("pole_angle_abs_err_rad") for h in report["fidelity"]},
        "controllability": report["controllability"]["share_correct_direction"],
        "termination_within_3": report["termination"]["share_within_3_steps"],
        "termination_physics_ceiling": report["termination"]["physics_ceiling"].get("share_within_3_steps_median"),
        "termination_within_3_physics_predictable": report["termination"]["share_within_3_steps_physics_predictable"],
        "stability_collapse": report["stability"]["collapse"],
    }
    if "starts" in report:
        summary["starts_within_3_physics_timeable"] = {k: r.get("share_within") for k, r in report["starts"]["per_k"].items()}
    print(json.dumps(summary, indent=1))
    if "starts" in report:
        print(format_table(report["starts"]))
    return 0

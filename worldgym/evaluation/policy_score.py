"""Score a saved policy on a real env: greedy episodes on its RGB frames, a short table and a JSON report.

    python -m worldgym.evaluation.policy_score runs/loop/turn_0/policy --env worldgym/CartPoleReal-v0 \\
        --episodes 100 --seed 10000 --target 475 --json runs/loop/turn_0/score.json

The policy is loaded as a user would load it (`worldgym.policy_io.load_policy`): greedy, holding
each action for the frame skip its ``policy.json`` names (``--frame-skip`` overrides it), reset
before every episode. Episode i is reset with seed + i, so policies scored with the same
``--seed`` meet the same starts. Without ``--env`` it plays the real twin that the policy's world
model names (``real_twin``); a policy that holds its actions itself plays that twin's
every-frame version (CartPoleSkip3 -> CartPole), not the twin that already repeats them.

The JSON holds every episode's return and seed, and what ``policy.json`` says about how the
policy was made (world model, real steps the model saw, planning); no commit or date, so
scoring the same policy again writes the same file. This scores a policy; it does not measure
a world model (``worldgym eval``) or train anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from worldgym.config_io import HelpFormatter, UserError
from worldgym.envs.registration import TWIN_ENTRY_POINT, known_twins, twin_spec
from worldgym.policies.model_state import MirroredPolicy
from worldgym.policies.saved import ActionRepeat, load_policy
from worldgym.training.imagination import evaluate

PROVENANCE = ("kind", "sha256", "trained_in", "train_env", "loop_turn", "world_model", "real_steps_seen_by_model", "planning")


def twin_ids() -> list[str]:
    return sorted(i for i in gym.registry if i.startswith("worldgym/") and i.endswith("Real-v0"))


def frame_size(policy: Any) -> tuple[int, int] | None:
    """(H, W) of the frames a loaded policy reads (its world model's or its encoder's), None if it does not say."""
    inner = getattr(policy, "policy", policy)  # an ActionRepeat wraps the policy
    model = getattr(inner, "model", None)
    ae = model.config.autoencoder if model is not None else getattr(getattr(inner, "encoder", None), "config", None)
    return None if ae is None else (ae.frame_height, ae.frame_width)


def default_env(policy: Any, frame_skip: int) -> str:
    """The real twin the policy's world model names, at the source's own rate if the policy repeats its actions."""
    model = getattr(getattr(policy, "policy", policy), "model", None)
    name = getattr(getattr(model, "config", None), "real_twin", "")
    if not name:
        raise UserError(f"no --env given and the policy's world model names no real twin; pass --env, one of {twin_ids()}")
    twins = known_twins()
    if name not in twins:
        raise UserError(f"no --env given and the policy's world model names the twin {name!r}, which worldgym does not know; pass --env, one of {twin_ids()}")
    spec = twins[name]
    if frame_skip > 1 and spec.frame_skip > 1:  # the policy holds its actions: play the twin that does not
        every_frame = dataclasses.replace(spec, frame_skip=1, max_episode_steps=None)
        same = [n for n, s in twins.items() if dataclasses.replace(s, max_episode_steps=None) == every_frame]
        if not same:
            raise UserError(f"the policy holds each action {frame_skip} frames and its twin {name} repeats actions too, and no twin "
                            f"is {name} without the repeat; pass --env, one of {twin_ids()} (or --frame-skip 1 to play {name} as trained)")  # fmt: skip
        name = same[0]
    return f"worldgym/{name}Real-v0"


def make_env(env_id: str, policy: Any, frame_skip: int) -> gym.Env:
    """``env_id`` at the policy's frame size (a worldgym twin is made at that size); refuses to repeat actions twice."""
    if env_id not in gym.registry:
        raise UserError(f"--env must be a registered Gymnasium id (worldgym's real twins: {twin_ids()}), got {env_id!r}")
    spec = twin_spec(env_id)
    if frame_skip > 1 and spec is not None and spec.frame_skip > 1:
        raise UserError(f"the policy holds each action {frame_skip} frames but {env_id} already repeats each action {spec.frame_skip} "
                        f"source steps; expected an every-frame twin (e.g. worldgym/CartPoleReal-v0), or pass --frame-skip 1")  # fmt: skip
    size = frame_size(policy)
    if size is not None and gym.registry[env_id].entry_point == TWIN_ENTRY_POINT:
        return gym.make(env_id, height=size[0], width=size[1])
    return gym.make(env_id)


def summary(returns: list[float], target: float | None = None) -> dict[str, Any]:
    """Mean, std (population), min and max of episode returns, and how many reach ``target`` (if given)."""
    r = np.asarray(returns, dtype=np.float64)
    out = {"mean": float(r.mean()), "std": float(r.std()), "min": float(r.min()), "max": float(r.max())}
    if target is not None:
        out |= {"target": target, "at_target": int((r >= target).sum())}
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("policy", help="a policy folder (policy.json + policy.safetensors) or a shipped policy's name")
    parser.add_argument("--env", default=None, help="Gymnasium id of the env to play (default: the real twin the policy's world model names)")
    parser.add_argument("--episodes", type=int, default=100, help="greedy episodes")
    parser.add_argument("--seed", type=int, default=10_000, help="episode i is reset with seed + i")
    parser.add_argument("--frame-skip", type=int, default=None, help="frames each action is held (default: policy.json's frame_skip, else 1)")
    parser.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=None,
                        help="act on each frame and its mirror image at once (a model-state policy whose world declares a mirror); default: as policy.json says")
    parser.add_argument("--target", type=float, default=None, help="also count the episodes whose return is at least this")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--json", default=None, help="write the report (every episode's return, seeds, the policy's provenance) to this file")


def run(args: argparse.Namespace) -> int:
    if args.episodes < 1:
        raise UserError(f"--episodes must be >= 1, got {args.episodes}")
    torch.set_num_threads(args.threads)
    policy = load_policy(args.policy, deterministic=True, frame_skip=args.frame_skip, mirror=args.mirror)
    mirrored = isinstance(getattr(policy, "policy", policy), MirroredPolicy)
    frame_skip = policy.k if isinstance(policy, ActionRepeat) else 1
    env_id = args.env or default_env(policy, frame_skip)
    env = make_env(env_id, policy, frame_skip)
    try:
        returns = evaluate(policy, env, args.episodes, args.seed)
    finally:
        env.close()
    stats = summary(returns, args.target)
    provenance = {k: policy.config[k] for k in PROVENANCE if k in policy.config}
    seeds = [args.seed + i for i in range(args.episodes)]
    report = {"policy": str(args.policy), "env": env_id, "episodes": args.episodes, "seed": args.seed, "frame_skip": frame_skip, "mirrored": mirrored,
              **stats, "returns": returns, "seeds": seeds, "policy_config": provenance}  # fmt: skip
    rows = [
        ("policy", f"{args.policy} ({policy.config.get('kind')}, frame skip {frame_skip}{', mirrored' if mirrored else ''})"),
        ("env", f"{env_id}, {args.episodes} episodes, seeds {seeds[0]}..{seeds[-1]}"),
        ("return", f"{stats['mean']:.1f} ± {stats['std']:.1f}   min {stats['min']:.1f}   max {stats['max']:.1f}"),
    ]
    if args.target is not None:
        rows.append((f">= {args.target:g}", f"{stats['at_target']} / {args.episodes} episodes"))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        rows.append(("json", args.json))
    width = max(len(name) for name, _ in rows)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    prog = "python -m worldgym.evaluation.policy_score"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=HelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (UserError, gym.error.UnregisteredEnv, gym.error.DependencyNotInstalled) as e:  # input mistakes: one line, as `worldgym` reports them
        print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

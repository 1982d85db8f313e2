"""Record N episodes from a real twin or a neural env into a worldgym dataset (see worldgym/data/dataset.py).

Examples:
    worldgym record --env real:CartPole --episodes 400 --policy mix --seed 0 --out runs/data/cartpole
    worldgym record --env real:Crafter --episodes 20 --policy crafter_explorer --out runs/data/crafter
    worldgym record --env gym:ALE/Pong-v5 --twin configs/twins/Pong.yaml --episodes 4 --out runs/data/pong
    worldgym record --env gym:CarRacing-v3 --size 64 --episodes 4 --policy random --out runs/data/car
    worldgym record --env real:Crafter --episodes 100 --shard 0/4 --out runs/data/crafter   # then shards 1-3, then:
    worldgym dataset merge runs/data/crafter --shards runs/data/crafter-shard-*-of-4
    worldgym record --env worldgym/CartPole-v0 --episodes 10 --policy controller --out runs/data/dream
    worldgym record --env real:CartPole --episodes 1000 --policy random --past-end 8 --out runs/data/cartpole_random_past

``--env real:NAME`` records the pixel twin of a known source env (`worldgym.worlds.TWINS`
or a twin config file ``configs/twins/NAME.yaml``); ``--env gym:ID`` the pixel twin of any
Gymnasium env that renders ``rgb_array`` (crop, frame size and frame skip from ``--twin
FILE.yaml``, a dump of `worldgym.worlds.spec.TwinSpec`); both store the source's state
vector per frame when it has one. Any other id goes through ``gymnasium.make``. Episode i
is reset with seed ``seed + i``; an episode still running after ``--max-steps`` is cut and
marked truncated. The dataset is written to ``OUT.partial`` and renamed to ``OUT`` only
when every episode is written, so an interrupted recording leaves the previous ``OUT`` valid.

``--shard i/n`` (or torchrun's ``RANK``/``WORLD_SIZE``) records episodes i, i+n, i+2n, ...
of the ``--episodes`` (with the seeds an unsharded run gives them) into ``OUT-shard-i-of-n``;
``worldgym dataset merge`` joins the shards and verifies the combined manifest.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np

from worldgym.config_io import UserError, to_dict
from worldgym.data.dataset import AfterEnd, DatasetWriter
from worldgym.data.shards import current_shard, shard_path
from worldgym.policies.builtin import POLICIES, make_policy
from worldgym.worlds import TwinSpec, load_twin


def twin_spec(env_id: str, twin: str | Path | None = None) -> TwinSpec | None:
    """The `TwinSpec` of ``real:NAME`` or ``gym:ID`` (``twin``: a twin config file for ``gym:ID``), else None."""
    if twin is not None and not env_id.startswith("gym:"):
        raise UserError(f"--twin {twin} goes with --env gym:ID (the twin file's source env), got --env {env_id!r}")
    if env_id.startswith("real:"):
        from worldgym.envs.registration import known_twins

        twins = known_twins()
        if env_id[5:] not in twins:
            raise UserError(f"--env {env_id!r}: no real twin named {env_id[5:]!r}; known: {', '.join('real:' + t for t in sorted(twins))}, "
                            "or gym:ID for the pixel twin of any Gymnasium env")  # fmt: skip
        return twins[env_id[5:]]
    if not env_id.startswith("gym:"):
        return None
    source = env_id[4:]
    if twin is None:
        ale = source.startswith("ALE/")  # ale-py registers its ids when imported
        return TwinSpec(f"ale_py:{source}" if ale else source, requires=("ale_py",) if ale else (), extra="atari" if ale else "")
    spec = load_twin(twin)
    if spec.source_id.rpartition(":")[2] != source.rpartition(":")[2]:
        raise UserError(f"--twin {twin} is a twin of {spec.source_id!r}, but --env asks for {source!r}; pass --env gym:{spec.source_id}")
    return spec


def make_env(env_id: str, height: int | None = None, width: int | None = None, twin: str | Path | None = None) -> gym.Env:
    """``real:NAME`` or ``gym:ID`` -> a `PixelTwin`; anything else -> ``gymnasium.make(env_id)`` (worldgym ids registered)."""
    spec = twin_spec(env_id, twin)
    if spec is not None:
        from worldgym.envs.twins import PixelTwin

        name = env_id[5:] if env_id.startswith("real:") else None
        return PixelTwin(name, height=height, width=width, spec=spec)
    import worldgym.envs.registration  # noqa: F401  (registers worldgym/* ids)

    try:
        return gym.make(env_id)
    except gym.error.UnregisteredEnv as e:
        known = ", ".join(sorted(k for k in gym.registry if k.startswith("worldgym/")))
        raise UserError(f"--env {env_id!r}: {e} Registered worldgym envs: {known}; or real:NAME / gym:ID for a pixel twin") from e


class Progress:
    """A one-line progress bar on stderr (a CLI helper; silent when ``enabled`` is False)."""

    def __init__(self, total: int, label: str, enabled: bool = True) -> None:
        self.total, self.label, self.enabled = total, label, enabled
        self.start = time.time()
        self.last = 0.0

    def update(self, done: int, extra: str = "") -> None:
        now = time.time()
        if not self.enabled or (now - self.last < 0.5 and done < self.total):
            return
        self.last = now
        frac = done / max(self.total, 1)
        bar = "#" * int(30 * frac)
        rate = done / max(now - self.start, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else 0.0
        sys.stderr.write(f"\r{self.label} [{bar:<30}] {done}/{self.total} {extra} eta {eta:.0f}s ")
        if done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def record(
    env: gym.Env,
    policy: Any,
    out: str | Path,
    episodes: int,
    seed: int = 0,
    max_steps: int = 500,
    metadata: dict | None = None,
    progress: Callable[[int, str], None] | None = None,
    indices: Sequence[int] | None = None,
    past_end: int = 0,
) -> Path:
    """Record ``episodes`` episodes of ``policy`` in ``env`` to the dataset folder ``out``; returns its path.

    ``indices`` records only those episodes (of a sharded recording), each with the seed and
    policy generator it has in the whole recording. ``past_end`` > 0 steps a terminated episode's
    env on that many more steps with the same policy and keeps them apart, as the episode's
    `worldgym.data.dataset.AfterEnd` (a real twin's physics goes on past its end; a neural env's
    rollout would only show what its model believes, so use it on real twins).
    """
    if past_end < 0:
        raise UserError(f"past_end must be >= 0 steps, got {past_end}")
    meta = {"seed": seed, "max_steps": max_steps, **(metadata or {}), **({"past_end": past_end} if past_end else {})}
    total_steps = 0
    with DatasetWriter(out, env.observation_space, env.action_space, meta) as writer:
        for done, i in enumerate(range(episodes) if indices is None else indices):
            ep_seed = seed + i
            obs, info = env.reset(seed=ep_seed)
            policy.reset(np.random.default_rng([seed, i]))
            frames, actions, rewards, terms, truncs = [obs], [], [], [], []
            states = [info["state"]] if "state" in info else None
            for t in range(max_steps):
                action = policy(obs, info)
                obs, reward, terminated, truncated, info = env.step(action)
                frames.append(obs)
                actions.append(action)
                rewards.append(reward)
                terms.append(terminated)
                truncs.append(truncated or (t == max_steps - 1 and not terminated))
                if states is not None:
                    states.append(info["state"])
                if terminated or truncated:
                    break
            tail = after_end(env, policy, obs, info, past_end, states is not None) if terms[-1] and not truncs[-1] and past_end else None
            writer.add_episode(
                np.stack(frames), np.asarray(actions), np.asarray(rewards, np.float32), np.asarray(terms),
                np.asarray(truncs), seed=ep_seed, states=None if states is None else np.stack(states), after_end=tail,
            )  # fmt: skip
            total_steps += len(actions)
            if progress is not None:
                progress(done + 1, f"{total_steps} steps")
    return Path(out)


def after_end(env: gym.Env, policy: Any, obs: np.ndarray, info: dict, steps: int, with_states: bool) -> AfterEnd:
    """Step a terminated ``env`` on ``steps`` more times with ``policy`` from its last ``obs``/``info``."""
    import warnings

    frames, actions, rewards, terms, states = [], [], [], [], []
    with warnings.catch_warnings():  # gymnasium warns on every step after terminated = True; here that is the point
        warnings.simplefilter("ignore")
        for _ in range(steps):
            action = policy(obs, info)
            obs, reward, terminated, _, info = env.step(action)
            frames.append(obs), actions.append(action), rewards.append(reward), terms.append(terminated)
            states.append(info.get("state"))
    if with_states and any(s is None for s in states):
        raise UserError("the env stopped reporting info['state'] after its end; record without --past-end")
    return AfterEnd(np.stack(frames), np.asarray(actions), np.asarray(rewards, np.float32), np.asarray(terms, bool),
                    np.stack(states) if with_states else None)  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default="real:CartPole", help="real:NAME for a known pixel twin, gym:ID for the pixel twin of any Gymnasium env, or a Gymnasium id")
    parser.add_argument("--twin", default=None, help="twin config file for --env gym:ID (crop, size, frame skip), e.g. configs/twins/Pong.yaml")
    parser.add_argument("--episodes", type=int, default=100, help="number of episodes")
    parser.add_argument("--policy", default=None, help=f"one of {POLICIES}, policy:PATH (a folder saved by agents/) or module:function (default: mix for CartPole, else random)")
    parser.add_argument("--seed", type=int, default=0, help="episode i is reset with seed + i")
    parser.add_argument("--max-steps", type=int, default=500, help="cut (truncate) episodes after this many steps")
    parser.add_argument("--size", type=int, default=None, help="frame height and width of a real twin (default: its twin config's, 64)")
    parser.add_argument("--out", required=True, help="dataset folder to write")
    parser.add_argument("--shard", default=None, help="i/n: record episodes i, i+n, ... into OUT-shard-i-of-n (default under torchrun: RANK/WORLD_SIZE)")
    parser.add_argument("--past-end", type=int, default=0, metavar="N",
                        help="step a terminated episode's real twin on N more steps and keep them apart (after_end_*.npy): "
                             "training then sees how the scene goes on past an end (default 0)")  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.past_end and not args.env.startswith(("real:", "gym:")):
        raise UserError(f"--past-end {args.past_end} records a real twin's physics past an end; --env {args.env!r} is not one "
                        "(pass real:NAME or gym:ID, or drop --past-end)")  # fmt: skip
    env = make_env(args.env, args.size, args.size, args.twin)
    args.policy = args.policy or ("mix" if "CartPole" in args.env else "random")  # mix drives CartPole's controller
    policy = make_policy(args.policy, env.action_space)
    index, count = current_shard(args.shard)
    indices = list(range(index, args.episodes, count))
    out = shard_path(args.out, index, count) if count > 1 else Path(args.out)
    metadata = {"env": args.env, "policy": args.policy, "command": " ".join(sys.argv)}
    if args.twin is not None or args.env.startswith(("real:", "gym:")):
        metadata["twin"] = to_dict(env.unwrapped.spec_)
    if count > 1:
        metadata["shard"] = {"index": index, "count": count, "episodes": args.episodes, "indices": indices}
    bar = Progress(len(indices), "record" if count == 1 else f"record {index}/{count}", enabled=not args.quiet)
    t0 = time.time()
    path = record(env, policy, out, args.episodes, args.seed, args.max_steps, metadata=metadata, progress=bar.update, indices=indices,
                  past_end=args.past_end)  # fmt: skip
    env.close()
    from worldgym.data.dataset import check

    summary = check(path)
    seconds = time.time() - t0
    print(f"wrote {path}: {summary['episodes']} episodes, {summary['steps']} steps in {seconds:.1f}s ({summary['steps'] / max(seconds, 1e-9):.0f} steps/s)")
    return 0

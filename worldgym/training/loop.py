"""``worldgym loop``: the model-based loop. Collect real episodes, fine-tune the world model, train the agent in imagination.

Each turn (DIAMOND, DreamerV3, IRIS):

1. **collect** real episodes with the current policy (exploring) through its filter; a dataset;
2. **fine-tune** the world model on every dataset so far (the recordings it was trained on
   plus every turn's episodes), a bounded number of optimizer steps;
3. **imagine**: train the agent (or ``--agents N``, an ensemble) with PPO only in the neural env
   (`obs_type="features"`) from real start contexts; no gradient step sees a real transition;
4. **evaluate** the saved policy greedily on the real twin, loaded from disk as a user would.

Turn 0 skips 1-2: the agent first learns in the starting model. Every phase writes its
result to ``OUT/turn_K/`` and ``OUT/state.json`` marks it done, so a killed run resumes at the
phase it was in (fine-tuning from its checkpoint, imagining after the agents it finished).
``OUT/loop.csv`` and ``OUT/loop.png`` plot real return against real env steps; ``worldgym loop
--baseline`` trains the same agent model-free on the real twin (through `ModelState`), same
budget axis, into ``OUT/baseline.csv`` and onto the same plot.

Nothing here knows CartPole: any discrete-action real twin whose frames match the model works.

Example:
  worldgym loop --model cartpolefast --twin worldgym/CartPoleReal-v0 \\
      --data runs/data/cartpole runs/data/cartpole_sticky runs/data/cartpole_random --out runs/loop
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model

from worldgym.config_io import ConfigError, from_dict, load_yaml, to_dict
from worldgym.data.dataset import load as load_dataset
from worldgym.envs.registration import twin_frame_skip, twin_mirror
from worldgym.envs.starts import StartBank
from worldgym.model import checkpoint
from worldgym.play.record import Progress, record
from worldgym.policies.model_state import MirroredPolicy, save_model_state_policy
from worldgym.policies.saved import load_policy
from worldgym.training.curves import plot_curves, write_csv
from worldgym.training.data import TrainConfig
from worldgym.training.readout import ReadoutObs, turn_readout
from worldgym.training.imagination import Agent, PPOConfig, dream_envs, evaluate, make_real, ppo, real_envs
from worldgym.worlds.symmetry import Mirror, mirror_dataset
from worldgym.training.train import train


@dataclass
class LoopConfig:
    """One model-based loop run (a plain dump of this class is ``OUT/loop_config.json``).

    Attributes:
        model: the starting world model (checkpoint folder or installed name).
        twin: Gymnasium id of the real env (RGB frames at the model's frame size).
        data: datasets the starting model was trained on: replayed while fine-tuning and cut into start contexts.
        prior_steps: real env steps the starting model saw (None = the steps in ``data``).
        turns: loop turns (turn 0 trains the agent in the starting model only).
        collect_steps: real env steps to collect per turn (whole episodes, their count estimated from the last real return).
        collect_epsilon: None (the default) collects by sampling the actor; a probability collects with the policy as
            it is evaluated (greedy, with its plan and mirror) and a uniformly random action instead with this
            probability, so the episodes go where the deployed policy goes: a sampled CartPole actor drops the pole
            within 25-35 steps and never shows the model the cart drifting to the track's end, where the greedy
            policy fails (BENCHMARKS.md).
        budget: the most real env steps the world model may see in all (prior + collected).
        finetune: the world model's fine-tuning recipe per turn (its ``model`` is replaced by the current model's config).
        finetune_stage: the stage each fine-tune starts at: "dynamics" (teacher forcing, then
            self-forcing) or "selfforce" (self-forcing only).
        ppo: the agent's PPO settings per turn (``total_steps`` imagined steps).
        continue_agent: keep training the previous turn's agent (else a fresh agent each turn).
        agents: agents trained per turn in the turn's model (PPO seeds ``seed + 1000 k + 10 j``); the saved policy is
            their ensemble on one filter (`worldgym.policies.model_state.MemberMean`): agents of one model fail on
            different real episodes. Each costs one more PPO run per turn.
        policy_data_repeat: the loop's own episodes count this many times in each fine-tune (their
            share of the batches grows; the starting recordings count once).
        start_context: real frames in each imagined episode's start context.
        start_bank: start contexts cut from the datasets per turn.
        policy_start_share: the share of the start contexts cut from the loop's own collected episodes (turns
            1..k, with their mirror images), the rest uniformly from every window of all data. 0 (the default)
            cuts all uniformly, so the policy's episodes, a few percent of the windows, seldom start a dream:
            the states the deployed policy drifts into late in its episodes are then seldom trained from.
        eval_episodes: greedy real episodes per turn (seeds ``eval_seed + i``, the same every turn).
        eval_seed: first seed of the evaluation episodes.
        plan_horizon: if > 0, the saved policy plans: each action held this many imagined steps from the
            filter's state, scored with the critic (`worldgym.policies.model_state.ModelStatePlanner`);
            collection still samples the actor.
        mirror: use the twin's mirror symmetry (`worldgym.worlds.symmetry`): each turn's collected episodes
            are also added mirrored to the fine-tune data and the start contexts (no extra real steps), and the
            saved policies act on each frame and its mirror image (`MirroredPolicy`). ``data`` should then
            hold the mirror images of the starting recordings too (``worldgym dataset mirror``).
        readout: the agents observe a ridge readout of the features to the recorded state, fitted on ``data``
            in each turn's model (`worldgym.training.readout`), instead of all D features; the saved policy
            keeps it. Needs recordings with states.
        dtype: precision of the imagination ("bfloat16" measured 1.8x faster at 256 envs on an AMX CPU); the
            saved policy's filter runs in float32.
        threads: torch threads.
    """

    model: str = "cartpolefast"
    twin: str = "worldgym/CartPoleReal-v0"
    data: list[str] = field(default_factory=list)
    prior_steps: int | None = None
    turns: int = 6
    collect_steps: int = 10_000
    collect_epsilon: float | None = None
    budget: int = 200_000
    finetune: TrainConfig = field(
        default_factory=lambda: TrainConfig(dyn_steps=600, dyn_batch=16, dyn_lr=3e-4, seq_frames=12, sf_steps=100, sf_lr=2e-4, sf_blocks=16, log_every=100, ckpt_every=200)
    )
    ppo: PPOConfig = field(default_factory=PPOConfig)
    finetune_stage: str = "dynamics"
    continue_agent: bool = True
    agents: int = 1
    policy_data_repeat: int = 1
    start_context: int = 4
    start_bank: int = 4096
    policy_start_share: float = 0.0
    eval_episodes: int = 20
    eval_seed: int = 20_000
    plan_horizon: int = 0
    mirror: bool = False
    readout: bool = False
    dtype: str = "float32"
    threads: int = 1


def dataset_steps(paths: list[str | Path]) -> int:
    """Real env steps in the datasets; a mirror image (``worldgym dataset mirror``) adds none."""
    loaded = [load_dataset(p, verify_hashes=False) for p in paths]
    return sum(d.total_steps for d in loaded if "mirror_of" not in d.metadata)


class Loop:
    """A resumable loop run in ``out``; `run` does the remaining turns."""

    def __init__(self, out: str | Path, cfg: LoopConfig | None = None, progress: bool = True) -> None:
        self.out = Path(out)
        saved = self.out / "loop_config.json"
        if saved.is_file():
            stored = from_dict(LoopConfig, json.loads(saved.read_text()))
            if cfg is not None and to_dict(cfg) != to_dict(stored):
                raise ConfigError(f"{self.out} holds a loop with another config ({saved}); resume it with the same options or with --out alone, or pick a new --out")
            cfg = stored
        if cfg is None:
            raise ConfigError(f"no loop in {self.out} to resume: give a config")
        self.cfg = cfg
        self.progress = progress
        self.out.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
        self.state_path = self.out / "state.json"
        self.state = json.loads(self.state_path.read_text()) if self.state_path.is_file() else {"done": [], "turns": [], "collected": {}}
        if cfg.prior_steps is None:
            cfg.prior_steps = dataset_steps(cfg.data) if cfg.data else 0
        if cfg.mirror:
            twin_mirror(cfg.twin)  # fail before the first phase

    # ------------------------------------------------------------------ bookkeeping
    def _mark(self, key: str, info: dict[str, Any] | None = None) -> None:
        self.state["done"].append(key)
        if info is not None:
            self.state["turns"].append(info)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2) + "\n")
        os.replace(tmp, self.state_path)
        if os.environ.get("WORLDGYM_LOOP_FAIL_AT") == _next_phase(key):  # tests: a kill inside the next phase
            raise SystemExit(f"WORLDGYM_LOOP_FAIL_AT={_next_phase(key)}: stopped inside that phase")

    def _done(self, key: str) -> bool:
        return key in self.state["done"]

    def turn_dir(self, k: int) -> Path:
        return self.out / f"turn_{k}"

    def datasets(self, upto: int) -> list[str]:
        """The starting recordings plus the episodes collected in turns 1..upto (and, with ``mirror``, their mirror images)."""
        names = ["data", "data_mirror"] if self.cfg.mirror else ["data"]
        return [*self.cfg.data, *(str(self.turn_dir(k) / name) for k in range(1, upto + 1) for name in names)]

    def start_bank(self, k: int, frame_size: tuple[int, int]) -> StartBank | None:
        """Turn k's start contexts: ``policy_start_share`` of them from the loop's own episodes, the rest uniform over all data."""
        data = self.datasets(k)
        if not data:
            return None
        own = data[len(self.cfg.data) :]
        n_own = round(self.cfg.policy_start_share * self.cfg.start_bank) if own else 0

        def cut(paths: list[str], n: int, seed: int) -> StartBank:
            return StartBank.from_datasets(paths, self.cfg.start_context, n, seed=seed, frame_size=frame_size)

        if n_own == 0:
            return cut(data, self.cfg.start_bank, k)
        banks = [cut(own, n_own, 10_000 + k)]
        if n_own < self.cfg.start_bank:
            banks.insert(0, cut(data, self.cfg.start_bank - n_own, k))
        return StartBank.concat(banks)

    def model_path(self, k: int) -> str:
        """The world model of turn k (turn 0: the starting model)."""
        return self.cfg.model if k == 0 else str(self.turn_dir(k) / "finetune" / "model")

    def real_steps(self, k: int) -> int:
        """Real env steps the world model of turn k saw: the prior recordings plus turns 1..k's collections."""
        return int(self.cfg.prior_steps) + sum(n for turn, n in self.state["collected"].items() if int(turn) <= k)

    def mirror_collected(self, upto: int) -> None:
        """Write the mirror image of every turn's collected episodes (1..upto) that lacks one: a loop resumed with
        ``mirror`` switched on mirrors what earlier turns collected too."""
        for k in range(1, upto + 1):
            data, mirrored = self.turn_dir(k) / "data", self.turn_dir(k) / "data_mirror"
            if (data / "manifest.json").is_file() and not mirrored.exists():
                mirror_dataset(data, mirrored, Mirror.from_dict(twin_mirror(self.cfg.twin)))

    # ------------------------------------------------------------------ phases
    def collect(self, k: int) -> int:
        """Phase 1: real episodes of turn k-1's policy, actions sampled; returns the steps collected."""
        out = self.turn_dir(k) / "data"
        if self._done(f"collect:{k}"):
            return self.state["collected"][str(k)]
        already = self.real_steps(k - 1)
        want = min(self.cfg.collect_steps, self.cfg.budget - already)
        if want <= 0:
            raise ConfigError(f"the real-step budget ({self.cfg.budget}) is spent after {already} steps; lower --turns or --collect-steps")
        greedy = self.cfg.collect_epsilon is not None
        mirror = True if self.cfg.mirror else None
        policy = load_policy(self.turn_dir(k - 1) / "policy", deterministic=greedy, frame_skip=1, mirror=mirror)  # on its own twin, which repeats actions itself
        env = make_real(self.cfg.twin, policy.model)
        last = self.state["turns"][-1]["real_return"] if self.state["turns"] else 20.0
        episodes = max(4, math.ceil(want / max(last, 10.0)))
        if out.exists():
            shutil.rmtree(out)  # a collection killed before its rename leaves only OUT.partial, which the writer replaces
        bar = Progress(episodes, f"turn {k} collect", enabled=self.progress)
        actor = _Sampling(policy, self.cfg.collect_epsilon or 0.0, env.action_space)
        record(env, actor, out, episodes, seed=1_000_000 * (k + 1), max_steps=10_000, metadata={"loop_turn": k}, progress=bar.update)
        env.close()
        steps = dataset_steps([out])
        if already + steps > self.cfg.budget:  # whole episodes may overshoot: keep the first ones that fit
            raise ConfigError(f"turn {k} collected {steps} steps, past the budget {self.cfg.budget} (had {already}); lower --collect-steps")
        if self.cfg.mirror:  # the same episodes seen in a mirror: no real step more
            shutil.rmtree(self.turn_dir(k) / "data_mirror", ignore_errors=True)
            self.mirror_collected(k)
        self.state["collected"][str(k)] = steps
        self._mark(f"collect:{k}")
        return steps

    def finetune(self, k: int) -> None:
        """Phase 2: fine-tune turn k-1's world model on every dataset so far."""
        if self._done(f"finetune:{k}"):
            return
        if self.cfg.mirror:
            self.mirror_collected(k)
        prev = checkpoint.load(checkpoint.resolve(self.model_path(k - 1)))
        seq = min(self.cfg.finetune.seq_frames, prev.config.dynamics.train_frames)  # the model's longest training sequence
        cfg = dataclasses.replace(self.cfg.finetune, model=prev.config, threads=self.cfg.threads, seed=k, seq_frames=seq)
        loop_data = self.datasets(k)[len(self.cfg.data) :]
        data = [*self.cfg.data, *(loop_data * self.cfg.policy_data_repeat)]
        train(cfg, data, self.turn_dir(k) / "finetune", init=checkpoint.resolve(self.model_path(k - 1)), init_stage=self.cfg.finetune_stage)
        self._mark(f"finetune:{k}")

    def imagine(self, k: int) -> dict[str, Any]:
        """Phase 3: PPO in turn k's world model only, from real start contexts; saves turn k's policy."""
        policy_dir = self.turn_dir(k) / "policy"
        if self._done(f"imagine:{k}"):
            return json.loads((self.turn_dir(k) / "imagine.json").read_text())
        if self.cfg.mirror:
            self.mirror_collected(k)
        model = checkpoint.load(checkpoint.resolve(self.model_path(k)))
        self.turn_dir(k).mkdir(parents=True, exist_ok=True)
        ae = model.config.autoencoder
        starts = self.start_bank(k, (ae.frame_height, ae.frame_width))
        readout = turn_readout(self.turn_dir(k), model, self.cfg.data) if self.cfg.readout else None
        ppo_cfg = dataclasses.replace(self.cfg.ppo, seed=self.cfg.ppo.seed + 1000 * k)
        updates = max(1, ppo_cfg.total_steps // (ppo_cfg.num_envs * ppo_cfg.num_steps))
        bar = Progress(updates * self.cfg.agents, f"turn {k} imagine", enabled=self.progress)
        members = [self.member(k, j, model, starts, ppo_cfg, bar, updates, readout) for j in range(self.cfg.agents)]
        (agent, summary), rest = members[0], members[1:]
        plans = self.cfg.plan_horizon > 0
        planning = {"critic": agent.critic, "planning": {"horizon": self.cfg.plan_horizon, "gamma": ppo_cfg.gamma}} if plans else {}
        if rest:
            summary = {**summary, "members": [s for _, s in members]}
            planning["members"] = [(a.actor, a.critic if plans else None) for a, _ in rest]
        save_model_state_policy(policy_dir, agent.actor, model, [ppo_cfg.hidden] * 2, int(model.config.action.n),
                                {"trained_in": "imagination", "loop_turn": k, "world_model": self.model_path(k), "real_steps_seen_by_model": self.real_steps(k), **twin_frame_skip(self.cfg.twin),
                                 **({"mirror": twin_mirror(self.cfg.twin)} if self.cfg.mirror else {})},
                                **planning, readout=readout)  # fmt: skip
        (self.turn_dir(k) / "imagine.json").write_text(json.dumps(summary, indent=2) + "\n")
        self._mark(f"imagine:{k}")
        return summary

    def member(self, k: int, j: int, model: Any, starts: StartBank | None, ppo_cfg: PPOConfig, bar: Progress, updates: int, readout: Any = None) -> tuple[Agent, dict[str, Any]]:
        """Agent j of turn k (PPO seed + 10 j), trained in imagination or, if a killed run finished it, loaded from the turn's folder."""
        name = "agent" if j == 0 else f"agent_{j}"
        weights, summary_path = self.turn_dir(k) / f"{name}.safetensors", self.turn_dir(k) / f"{name}.json"
        agent = Agent(model.config.dynamics.dim if readout is None else readout.out_features, int(model.config.action.n), ppo_cfg.hidden)
        if weights.is_file() and summary_path.is_file():  # written last: the member is complete
            load_model(agent, str(weights))
            bar.update((j + 1) * updates)
            return agent, json.loads(summary_path.read_text())
        previous = self.turn_dir(k - 1) / f"{name}.safetensors"
        keep = self.cfg.continue_agent and k > 0 and previous.is_file()
        if keep:
            load_model(agent, str(previous))
        cfg = dataclasses.replace(ppo_cfg, seed=ppo_cfg.seed + 10 * j)
        envs = dream_envs(model, starts, cfg, self.cfg.dtype)
        agent, summary = ppo(envs if readout is None else ReadoutObs(envs, readout), cfg, agent if keep else None, log=lambda d: bar.update(j * updates + d["update"], f"dream return {d['return']:.1f}"))
        tmp = weights.with_suffix(".tmp")
        save_model(agent, str(tmp))  # actor + critic (+ shared ObsNorm), to continue next turn
        os.replace(tmp, weights)
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
        return agent, summary

    def evaluate(self, k: int, collected: int, dream: dict[str, Any], start: float) -> dict[str, Any]:
        """Phase 4: the saved policy, loaded from disk, greedily on the real twin."""
        policy = load_policy(self.turn_dir(k) / "policy", frame_skip=1)
        env = make_real(self.cfg.twin, policy.model)
        returns = evaluate(policy, env, self.cfg.eval_episodes, self.cfg.eval_seed)
        env.close()
        row = {"turn": k, "real_steps": self.real_steps(k), "collected_steps": collected,
               "real_return": float(np.mean(returns)), "real_return_std": float(np.std(returns)),
               "dream_return": dream.get("return_last100"), "wall_s": round(time.time() - start, 1)}  # fmt: skip
        self._mark(f"evaluate:{k}", row)
        write_csv(self.out / "loop.csv", self.state["turns"])
        return row

    def run(self) -> list[dict[str, Any]]:
        """Do the remaining turns; returns every turn's row."""
        torch.set_num_threads(self.cfg.threads)
        for k in range(self.cfg.turns):
            if self._done(f"evaluate:{k}"):
                continue
            start = time.time()
            collected = 0
            if k > 0:
                collected = self.collect(k)
                self.finetune(k)
            dream = self.imagine(k)
            self.evaluate(k, collected, dream, start)
            plot_curves(self.out)
        return self.state["turns"]


def _next_phase(key: str) -> str:
    """The phase marked after ``key`` (for WORLDGYM_LOOP_FAIL_AT): collect -> finetune -> imagine -> evaluate."""
    phase, _, turn = key.partition(":")
    order = ["collect", "finetune", "imagine", "evaluate"]
    return f"{order[(order.index(phase) + 1) % 4]}:{int(turn) + (phase == 'evaluate')}"


class _Sampling:
    """Adapts a frames-to-action policy to the recorder's ``reset(rng)`` / ``policy(obs, info)`` protocol.

    With ``epsilon`` > 0 the env gets a uniformly random action with that probability (drawn from the
    recorder's per-episode generator); the policy's filter commits the action the env got.
    """

    def __init__(self, policy: Any, epsilon: float = 0.0, action_space: Any = None) -> None:
        self.policy, self.epsilon, self.n = policy, float(epsilon), int(getattr(action_space, "n", 0))
        self.rng = np.random.default_rng(0)

    def reset(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.policy.reset(rng)

    def __call__(self, obs: np.ndarray, info: dict) -> int:
        action = self.policy(obs)
        if self.epsilon > 0 and self.rng.random() < self.epsilon:
            action = int(self.rng.integers(self.n))
            _commit(self.policy, action)
        return action


def _commit(policy: Any, action: int) -> None:
    """Make a model-state policy's filter(s) commit ``action`` (taken instead of the policy's own) with the next frame."""
    if isinstance(policy, MirroredPolicy):
        policy.policy.last_action, policy.mirrored.last_action = action, policy.mirror.action(action)
    else:
        policy.last_action = action


def baseline(out: str | Path, cfg: LoopConfig, total_steps: int, every: int, progress: bool = True) -> list[dict[str, Any]]:
    """Model-free PPO with the same agent on the real twin (features through `ModelState`); ``OUT/baseline.csv``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    model = checkpoint.load(checkpoint.resolve(cfg.model))
    rows: list[dict[str, Any]] = []
    agent = None
    ppo_cfg = dataclasses.replace(cfg.ppo, total_steps=every)
    envs = real_envs(cfg.twin, model, ppo_cfg.num_envs)
    readout = turn_readout(out, model, cfg.data) if cfg.readout else None  # the agent sees what the loop's agents see
    envs = envs if readout is None else ReadoutObs(envs, readout)
    bar = Progress(total_steps, "baseline", enabled=progress)
    for k in range(1, total_steps // every + 1):
        agent, _ = ppo(envs, dataclasses.replace(ppo_cfg, seed=cfg.ppo.seed + k), agent)
        save_model_state_policy(out / "policy", agent.actor, model, [ppo_cfg.hidden] * 2, int(model.config.action.n), {"trained_in": "real twin (model-free)", **twin_frame_skip(cfg.twin)}, readout=readout)
        env = make_real(cfg.twin, model)
        returns = evaluate(load_policy(out / "policy", frame_skip=1), env, cfg.eval_episodes, cfg.eval_seed)
        env.close()
        rows.append({"turn": k, "real_steps": k * every, "collected_steps": every, "real_return": float(np.mean(returns)), "real_return_std": float(np.std(returns))})
        write_csv(out / "baseline.csv", rows)
        bar.update(k * every, f"real return {rows[-1]['real_return']:.1f}")
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = LoopConfig()
    parser.add_argument("--out", default="runs/loop", help="run folder (resumes the loop already there: repeat its options, or give --out alone)")
    parser.add_argument("--model", default=None, help=f"starting world model: checkpoint folder or installed name (default {d.model}; omitted with an existing --out, the loop there resumes with its stored config)")
    parser.add_argument("--twin", default=d.twin, help="Gymnasium id of the real env")
    parser.add_argument("--data", nargs="*", default=[], help="datasets the starting model was trained on (replayed, cut into starts, counted in the budget)")
    parser.add_argument("--prior-steps", type=int, default=None, help="real env steps the starting model saw (default: the steps in --data)")
    parser.add_argument("--turns", type=int, default=d.turns, help="loop turns")
    parser.add_argument("--collect-steps", type=int, default=d.collect_steps, help="real env steps collected per turn")
    parser.add_argument("--budget", type=int, default=d.budget, help="most real env steps the world model may see in all")
    parser.add_argument("--finetune-steps", type=int, default=d.finetune.dyn_steps, help="teacher-forcing steps of the world model per turn")
    parser.add_argument("--selfforce-steps", type=int, default=d.finetune.sf_steps, help="self-forcing steps of the world model per turn")
    parser.add_argument("--finetune-config", default=None, help="a training recipe YAML (e.g. the model's own) for the fine-tunes; --finetune-steps and --selfforce-steps still set their lengths")
    parser.add_argument("--finetune-stage", default=d.finetune_stage, choices=["dynamics", "selfforce"], help="stage each fine-tune starts at")
    parser.add_argument("--finetune-lr", type=float, default=None, help="learning rate of both fine-tuning stages (default: the recipe's teacher-forcing and self-forcing rates)")
    parser.add_argument("--imagine-steps", type=int, default=d.ppo.total_steps, help="imagined env steps of PPO per turn")
    parser.add_argument("--horizon", type=int, default=d.ppo.horizon, help="imagined episodes are cut after this many steps (critic bootstraps)")
    parser.add_argument("--num-envs", type=int, default=d.ppo.num_envs, help="imagined envs per batch")
    parser.add_argument("--policy-data-repeat", type=int, default=d.policy_data_repeat, help="the loop's episodes count this many times in each fine-tune")
    parser.add_argument("--action-noise", type=float, default=d.ppo.action_noise, help="probability that an imagined step executes a random action instead of the agent's (robustness to disturbances)")
    parser.add_argument("--obs-noise", type=float, default=d.ppo.obs_noise, help="Gaussian noise on the imagined features the agent sees, in feature standard deviations (robustness to the filter's estimation error on real frames)")
    parser.add_argument("--termination-threshold", type=float, default=d.ppo.termination_threshold, help="imagined episodes end when the termination head's probability passes this (lower: a stricter dream)")
    parser.add_argument("--plan-horizon", type=int, default=d.plan_horizon, help="if > 0, the saved policy plans this many imagined steps per action from the filter's state (critic at the end)")
    parser.add_argument("--collect-epsilon", type=float, default=None, help="collect with the policy as evaluated (greedy, planned, mirrored) and a random action with this probability (default: sample the actor)")
    parser.add_argument("--policy-start-share", type=float, default=d.policy_start_share, help="share of the imagined episodes' start contexts cut from the loop's own collected episodes (default 0: uniform over all data)")
    parser.add_argument("--mirror", action="store_true", help="use the twin's mirror symmetry: mirrored copies of the collected episodes, policies that act on each frame and its mirror")
    parser.add_argument("--readout", action="store_true", help="agents observe a readout of the features to the recorded state (fitted on --data, which must carry states) instead of all features")
    parser.add_argument("--agents", type=int, default=d.agents, help="agents trained per turn in the turn's model; the saved policy is their ensemble (mean critic and actor)")
    parser.add_argument("--fresh-agent", action="store_true", help="train a new agent every turn instead of continuing the previous turn's")
    parser.add_argument("--eval-episodes", type=int, default=d.eval_episodes, help="greedy real episodes per turn")
    parser.add_argument("--seed", type=int, default=d.ppo.seed, help="seed of the agent")
    parser.add_argument("--dtype", default=d.dtype, choices=["float32", "bfloat16"], help="precision of the imagination")
    parser.add_argument("--threads", type=int, default=d.threads, help="torch threads")
    parser.add_argument("--baseline", type=int, default=0, metavar="STEPS", help="instead: model-free PPO on the real twin for STEPS steps, into OUT/baseline.csv")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    d = LoopConfig()
    if not 0.0 <= args.action_noise <= 1.0:
        raise ConfigError(f"--action-noise must be a probability in [0, 1], got {args.action_noise}")
    if args.collect_epsilon is not None and not 0.0 <= args.collect_epsilon <= 1.0:
        raise ConfigError(f"--collect-epsilon must be a probability in [0, 1], got {args.collect_epsilon}")
    if not 0.0 <= args.policy_start_share <= 1.0:
        raise ConfigError(f"--policy-start-share must be a share in [0, 1], got {args.policy_start_share}")
    if not 0.0 < args.termination_threshold < 1.0:
        raise ConfigError(f"--termination-threshold must be a probability in (0, 1), got {args.termination_threshold}")
    if args.agents < 1:
        raise ConfigError(f"--agents must be >= 1 (agents per turn), got {args.agents}")
    if not args.obs_noise >= 0.0:
        raise ConfigError(f"--obs-noise must be a standard deviation >= 0, got {args.obs_noise}")
    if args.model is None and (Path(args.out) / "loop_config.json").is_file() and not args.baseline:
        loop = Loop(args.out, None, progress=not args.quiet)  # resume with the stored config
        return report(loop)
    cfg = LoopConfig(
        model=args.model or d.model, twin=args.twin, data=list(args.data), turns=args.turns, collect_steps=args.collect_steps, budget=args.budget,
        finetune=dataclasses.replace(
            load_yaml(TrainConfig, args.finetune_config) if args.finetune_config else d.finetune,
            dyn_steps=args.finetune_steps, sf_steps=args.selfforce_steps,
            **({} if args.finetune_lr is None else {"dyn_lr": args.finetune_lr, "sf_lr": args.finetune_lr}),
        ),
        ppo=dataclasses.replace(d.ppo, total_steps=args.imagine_steps, horizon=args.horizon, num_envs=args.num_envs, seed=args.seed,
                                action_noise=args.action_noise, obs_noise=args.obs_noise, termination_threshold=args.termination_threshold),
        eval_episodes=args.eval_episodes, dtype=args.dtype, threads=args.threads, policy_data_repeat=args.policy_data_repeat,
        finetune_stage=args.finetune_stage, prior_steps=args.prior_steps, continue_agent=not args.fresh_agent,
        plan_horizon=args.plan_horizon, mirror=args.mirror, collect_epsilon=args.collect_epsilon,
        policy_start_share=args.policy_start_share, agents=args.agents, readout=args.readout,
    )  # fmt: skip
    if args.baseline:
        rows = baseline(args.out, cfg, args.baseline, every=max(cfg.ppo.num_envs * cfg.ppo.num_steps, args.baseline // 10), progress=not args.quiet)
        plot_curves(Path(args.out))
        print(f"baseline: real return {rows[-1]['real_return']:.1f} after {rows[-1]['real_steps']} real steps; {Path(args.out) / 'baseline.csv'}")
        return 0
    return report(Loop(args.out, cfg, progress=not args.quiet))


def report(loop: Loop) -> int:
    """Run the loop's remaining turns, printing a line per turn."""
    for row in loop.run():
        print(f"turn {row['turn']}: real return {row['real_return']:.1f} +- {row['real_return_std']:.1f}, "
              f"{row['real_steps']} real steps seen by the model, dream {row['dream_return']}")  # fmt: skip
    print(f"wrote {loop.out / 'loop.csv'} and {loop.out / 'loop.png'}")
    return 0

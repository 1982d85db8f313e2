"""Policies that act on the world model's own state: the model filters RGB frames, an MLP acts on its features.

A ``model_state_mlp`` policy folder holds the actor (``policy.safetensors``), its config
(``policy.json``, with the weights' sha256) and the world model it observes through
(``model/``, a regular checkpoint). The policy is a callable on RGB frames that keeps the
filter's cache between calls: the first frame after ``reset()`` starts it, every later
frame is committed under the action the policy returned before. Its observation is
therefore the same function of (frames, actions) in a neural env (``obs_type="features"``)
and in the real twin (`worldgym.envs.wrappers.ModelState`), so a policy trained only in
imagination runs unchanged on real frames:

```python
import gymnasium as gym
import worldgym
from worldgym.policy_io import load_policy
policy = load_policy("path/to/policy")          # a model_state_mlp or latent_mlp folder
env = gym.make("worldgym/CartPoleReal-v0")
obs, info = env.reset(seed=10_000); policy.reset()
obs, reward, terminated, truncated, info = env.step(policy(obs))
```

Dimension letters: B rows, D the dynamics' width.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from worldgym.engine import WorldModel
from worldgym.model import checkpoint
from worldgym.model.networks import Model
from worldgym.policies.saved import CONFIG, FORMAT, VERSION, WEIGHTS, ObsNorm, PolicyError, policy_net

KIND = "model_state_mlp"


def feature_actor(dim: int, hidden: list[int], n_actions: int, out_gain: float = 0.01) -> nn.Sequential:
    """``ObsNorm`` over the (D,) features, then a tanh MLP to ``n_actions`` logits (keys ``0.*``, ``1.*``)."""
    return policy_net(dim, 1, hidden, n_actions, out_gain, ObsNorm(dim, 1))


class ModelStatePolicy:
    """A callable ``policy(frame) -> action`` that filters the frames through a world model and acts on its features.

    Args:
        model: the world model the policy observes through.
        actor: maps features (B, D) to logits (B, n_actions).
        deterministic: argmax of the logits (default) or a sample (exploration).
        config: the folder's ``policy.json`` (kept as ``self.config``).
        seed: seed of the sampling generator (``reset(rng)`` reseeds it from ``rng``).
    """

    def __init__(self, model: Model, actor: nn.Module, deterministic: bool = True, config: dict | None = None, seed: int = 0) -> None:
        self.model, self.actor = model, actor.eval()
        self.engine = WorldModel(model, 1, features=True)
        self.deterministic = deterministic
        self.config = config or {}
        self.rng = torch.Generator().manual_seed(seed)
        self.last_action: int | None = None
        self.started = False

    def reset(self, rng: np.random.Generator | None = None) -> None:
        """Start a new episode: the next frame restarts the filter (``rng``, if given, reseeds sampling)."""
        self.started, self.last_action = False, None
        if rng is not None:
            self.rng.manual_seed(int(rng.integers(2**62)))

    @torch.no_grad()
    def features(self, frame: np.ndarray) -> torch.Tensor:
        """Fold one RGB frame (H, W, 3) uint8 into the filter; returns the features (1, D)."""
        x = torch.from_numpy(np.ascontiguousarray(frame))
        if x.dim() != 3 or x.dtype != torch.uint8:
            raise PolicyError(f"the policy takes one RGB frame (H, W, 3) uint8, got {tuple(x.shape)} {x.dtype}")
        if not self.started:
            self.engine.reset([0], x[None, None])
            self.started = True
        else:
            self.engine.observe(x[None], [self.last_action])
        return self.engine.features.clone()

    @torch.no_grad()
    def __call__(self, obs: np.ndarray, info: dict | None = None) -> int:
        logits = self.actor(self.features(obs))[0]  # (n_actions,)
        if self.deterministic:
            action = int(logits.argmax())
        else:
            action = int(torch.multinomial(logits.softmax(-1), 1, generator=self.rng))
        self.last_action = action
        return action


class ModelStatePlanner(ModelStatePolicy):
    """A `ModelStatePolicy` that looks ahead in its world model before it acts (decision-time planning).

    From the filter's state after the current real frame, every action is held ``horizon``
    steps in the model (all actions in one batch, the same noise for each); an action's score
    is the imagined rewards, discounted by ``gamma`` and cut by the termination head, plus the
    critic's value of the last imagined state. The best first action is taken; the next real
    frame re-anchors the filter, so the model only has to be right for ``horizon`` steps, not for
    a whole imagined episode. On CartPole a horizon of 2 doubled the real return of the same
    dream-trained agent (BENCHMARKS.md); it costs ``horizon`` batched engine steps per action.
    With ``deterministic=False`` (exploration while collecting) it samples the actor, as the plain
    policy does.

    Args:
        critic: maps features (B, D) to values (B, 1), trained with the actor in imagination.
        horizon: imagined steps each action is held.
        gamma: discount of the imagined rewards and of the critic's value.
    """

    def __init__(self, model: Model, actor: nn.Module, critic: nn.Module, horizon: int, gamma: float = 0.99, deterministic: bool = True, config: dict | None = None, seed: int = 0) -> None:
        if horizon < 1:
            raise PolicyError(f"a planning horizon must be >= 1 imagined step, got {horizon}")
        super().__init__(model, actor, deterministic, config, seed)
        self.critic, self.horizon, self.gamma = critic.eval(), horizon, gamma
        self.n_actions = int(model.config.action.n)
        self.planner = WorldModel(model, self.n_actions, features=True)

    @torch.no_grad()
    def plan(self) -> torch.Tensor:
        """Scores (n_actions,) of holding each action ``horizon`` steps from the filter's current state."""
        snapshot = self.engine.get_state([0])
        for a in range(self.n_actions):
            self.planner.set_state([a], snapshot)
        actions = list(range(self.n_actions))
        alive, score, discount = torch.ones(self.n_actions), torch.zeros(self.n_actions), 1.0
        for _ in range(self.horizon):
            step = self.planner.step(actions, decode=False)
            score += discount * alive * step.reward.float()
            alive = alive * (1.0 - step.termination.float())
            discount *= self.gamma
        return score + discount * alive * self.critic(step.features.float()).squeeze(-1)  # (n_actions,)

    @torch.no_grad()
    def __call__(self, obs: np.ndarray, info: dict | None = None) -> int:
        if not self.deterministic:
            return super().__call__(obs, info)
        self.features(obs)
        action = int(self.plan().argmax())
        self.last_action = action
        return action


class MemberMean(nn.Module):
    """An ensemble of agents trained in one world model, read as one network: the mean of its members' outputs.

    The members share the policy's filter (one world model, so one set of features), so an ensemble
    costs one extra small MLP per member, not another filter or plan. With ``log_probs`` the members
    are actors and their log-probabilities are averaged (the mean is used as logits); without, they
    are critics and their values are averaged. Agents of one model that differ only in their PPO seed
    fail on different real episodes: the mean of three critics scored 376.8 over 100 real CartPole
    episodes where its members scored 335.6-367.1 (BENCHMARKS.md).
    """

    def __init__(self, members: list[nn.Module], log_probs: bool) -> None:
        super().__init__()
        self.members, self.log_probs = nn.ModuleList(members), log_probs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [m(x).log_softmax(-1) if self.log_probs else m(x) for m in self.members]
        return torch.stack(outs).mean(0)


def action_scores(policy: ModelStatePolicy) -> torch.Tensor:
    """What ``policy`` prefers at its filter's current state (n_actions,): a planner's plan scores, else the actor's log-probabilities."""
    if isinstance(policy, ModelStatePlanner):
        return policy.plan()
    return policy.actor(policy.engine.features)[0].log_softmax(-1)


class MirroredPolicy:
    """A model-state policy that acts on each frame and on its mirror image at once (`worldgym.worlds.symmetry`).

    Two copies of the same policy run two filters: one on the frames, one on the frames flipped
    left to right and committed under the mirrored actions. Their scores (`action_scores`) are
    summed, the mirrored copy's read through the action permutation, and the best action is
    taken (or, with ``deterministic=False``, sampled from the softmax of the sum). Where the
    agent leans to one side, its mirror leans to the other, so the sum cancels the lean to first
    order: the best CartPole agent went from 312.2 to 375.7 over 100 real episodes (BENCHMARKS.md).
    It costs a second filter and, for a planner, a second plan per action.

    Args:
        policy, mirrored: two `ModelStatePolicy` (or planner) instances of the same folder.
        mirror: the world's `Mirror` (its ``actions`` permutation).
    """

    def __init__(self, policy: ModelStatePolicy, mirrored: ModelStatePolicy, mirror: Any, seed: int = 0) -> None:
        n = int(policy.model.config.action.n)
        if mirror.n_actions != n:
            raise PolicyError(f"the mirror permutes {mirror.n_actions} actions but the policy has {n}")
        self.policy, self.mirrored, self.mirror = policy, mirrored, mirror
        self.model, self.config = policy.model, policy.config
        self.deterministic = policy.deterministic
        self.perm = torch.as_tensor(mirror.actions)
        self.rng = torch.Generator().manual_seed(seed)

    def reset(self, rng: np.random.Generator | None = None) -> None:
        self.policy.reset()
        self.mirrored.reset()
        if rng is not None:
            self.rng.manual_seed(int(rng.integers(2**62)))

    @torch.no_grad()
    def scores(self, obs: np.ndarray) -> torch.Tensor:
        """Fold ``obs`` and its mirror image into the two filters; the summed scores (n_actions,)."""
        self.policy.features(obs)
        self.mirrored.features(self.mirror.frames(obs))
        return action_scores(self.policy) + action_scores(self.mirrored)[self.perm]

    @torch.no_grad()
    def __call__(self, obs: np.ndarray, info: dict | None = None) -> int:
        s = self.scores(obs)
        if self.deterministic:
            action = int(s.argmax())
        else:
            action = int(torch.multinomial(s.softmax(-1), 1, generator=self.rng))
        self.policy.last_action, self.mirrored.last_action = action, self.mirror.action(action)
        return action


def save_model_state_policy(
    path: str | Path, actor: nn.Module, model: Model, hidden: list[int], n_actions: int, extra: dict[str, Any] | None = None,
    critic: nn.Module | None = None, planning: dict[str, Any] | None = None, members: list[tuple[nn.Module, nn.Module | None]] | None = None,
    readout: nn.Linear | None = None,
) -> Path:
    """Write a ``model_state_mlp`` policy folder (actor weights, JSON config with their sha256, the world model); returns it.

    With ``critic`` and ``planning`` (``{"horizon": H, "gamma": G}``) the folder also keeps the
    critic and loads as a `ModelStatePlanner`. ``members``: more (actor, critic) pairs trained in
    the same world model (critic None without planning); the folder then loads as their ensemble
    (`MemberMean`), ``policy.json`` says ``"members": 1 + len(members)``. ``extra`` goes into ``policy.json`` as is;
    ``{"frame_skip": k}`` there (trained on a twin that repeats each action k source steps) makes
    `load_policy` hold each action k frames by default. ``readout``: a linear map from the D
    features to the S numbers the actors and critics read (`worldgym.training.readout`); it is
    kept as ``readout.*`` and put in front of every net on load.
    """
    if (critic is None) != (planning is None):
        raise PolicyError("a planning policy needs both critic and planning ({'horizon': H, 'gamma': G})")
    members = list(members or [])
    if any((c is None) != (critic is None) for _, c in members):
        raise PolicyError(f"every member needs a critic exactly when the policy plans (planning {'given' if critic is not None else 'not given'})")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    checkpoint.save(model, path / "model")
    tensors: dict[str, torch.Tensor] = {}
    for prefix, (a, c) in [("", (actor, critic)), *((f"member{j}.", m) for j, m in enumerate(members, start=1))]:
        # copies: a critic shares its actor's ObsNorm, and safetensors refuses shared storage
        tensors |= {f"{prefix}{name}.{k}": v.detach().float().cpu().contiguous().clone() for name, net in (("actor", a), ("critic", c)) if net is not None
                    for k, v in net.state_dict().items()}  # fmt: skip
    if readout is not None:
        tensors |= {f"readout.{k}": v.detach().float().cpu().contiguous().clone() for k, v in readout.state_dict().items()}
    tmp = path / (WEIGHTS + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path / WEIGHTS)
    config = {
        "format": FORMAT,
        "version": VERSION,
        "kind": KIND,
        "obs_dim": model.config.dynamics.dim,
        "hidden": list(hidden),
        "n_actions": n_actions,
        "model": "model",
        "sha256": hashlib.sha256((path / WEIGHTS).read_bytes()).hexdigest(),
        **({"planning": {"horizon": int(planning["horizon"]), "gamma": float(planning["gamma"])}} if planning else {}),
        **({"members": 1 + len(members)} if members else {}),
        **({"readout": {"dim": int(readout.out_features)}} if readout is not None else {}),
        **(extra or {}),
    }
    tmp_config = path / (CONFIG + ".tmp")
    tmp_config.write_text(json.dumps(config, indent=2) + "\n")
    os.replace(tmp_config, path / CONFIG)
    return path


def policy_mirror(folder: Path, config: dict, model: Model) -> Any:
    """The `Mirror` a policy acts under: its ``policy.json``'s ``mirror`` entry, else the one its world model's real twin declares."""
    from worldgym.config_io import ConfigError
    from worldgym.envs.registration import known_twins
    from worldgym.worlds.symmetry import Mirror

    entry = config.get("mirror")
    if entry is None:
        spec = known_twins().get(model.config.real_twin or "")
        entry = spec.mirror if spec is not None else None
    if entry is None:
        raise PolicyError(
            f"policy {folder}: asked to act mirrored but neither its policy.json nor its world model's twin "
            f"({model.config.real_twin or 'none'!r}) declares a mirror; add \"mirror\": {{\"actions\": [...]}} to policy.json"
        )
    try:
        return Mirror.from_dict(entry)
    except ConfigError as e:
        raise PolicyError(f"policy {folder}: its mirror: {e}") from e


def load_model_state_policy(folder: Path, config: dict, deterministic: bool = True, mirror: bool | None = None) -> Any:
    """Build a `ModelStatePolicy` from a verified folder and its parsed ``policy.json``.

    ``mirror`` None follows ``policy.json`` (a ``mirror`` entry makes a `MirroredPolicy`); True or False overrides it
    (True takes the mirror from ``policy.json`` or else from the world model's real twin, `policy_mirror`).
    """
    if mirror is None:
        mirror = "mirror" in config
    if mirror:
        plain = {k: v for k, v in config.items() if k != "mirror"}
        inner = load_model_state_policy(folder, plain, deterministic, False)
        policy = MirroredPolicy(inner, load_model_state_policy(folder, plain, deterministic, False), policy_mirror(folder, config, inner.model))
        policy.config = config
        return policy
    try:
        model = checkpoint.load(folder / config.get("model", "model"))
    except checkpoint.CheckpointError as e:
        raise PolicyError(f"policy {folder}: its world model does not load: {e}") from e
    if model.config.dynamics.dim != config["obs_dim"]:
        raise PolicyError(f"policy {folder}: actor reads {config['obs_dim']} features, its model gives {model.config.dynamics.dim}")
    tensors = load_file(str(folder / WEIGHTS))
    count = config.get("members", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise PolicyError(f"policy {folder}: members must be an int >= 1 (agents in the ensemble), got {count!r}")
    planning = "planning" in config
    readout, dim = _readout(config, tensors, folder)
    actors, critics = [], []
    for j in range(count):
        prefix = "" if j == 0 else f"member{j}."
        actor = _load_part(feature_actor(dim, config["hidden"], config["n_actions"]), tensors, prefix + "actor.", folder)
        actors.append(actor if readout is None else nn.Sequential(readout, actor))
        if planning:
            critic = _load_part(policy_net(dim, 1, config["hidden"], 1, 1.0, ObsNorm(dim, 1)), tensors, prefix + "critic.", folder)
            critics.append(critic if readout is None else nn.Sequential(readout, critic))
    actor = actors[0] if count == 1 else MemberMean(actors, log_probs=True)
    if not planning:
        return ModelStatePolicy(model, actor, deterministic, config)
    critic = critics[0] if count == 1 else MemberMean(critics, log_probs=False)
    plan = config["planning"]
    return ModelStatePlanner(model, actor, critic, int(plan["horizon"]), float(plan["gamma"]), deterministic, config)


def _readout(config: dict, tensors: dict[str, torch.Tensor], folder: Path) -> tuple[nn.Linear | None, int]:
    """The folder's readout (features -> S numbers) and the width its nets read: (None, D) without one."""
    entry = config.get("readout")
    if entry is None:
        return None, config["obs_dim"]
    dim = entry.get("dim") if isinstance(entry, dict) else None
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise PolicyError(f"policy {folder}: readout must be {{\"dim\": S}} with S >= 1 numbers, got {entry!r}")
    readout = _load_part(nn.Linear(config["obs_dim"], dim), tensors, "readout.", folder)
    return readout.requires_grad_(False).eval(), dim


def _load_part(net: nn.Module, tensors: dict[str, torch.Tensor], prefix: str, folder: Path) -> nn.Module:
    """``net`` with the weights under ``prefix`` (e.g. ``critic.``, ``member2.actor.``); a clear error if the folder lacks them."""
    weights = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    if not weights:
        raise PolicyError(f"policy {folder}: policy.json asks for {prefix[:-1]} but {WEIGHTS} holds no {prefix}* weights")
    net.load_state_dict(weights, strict=True)
    return net

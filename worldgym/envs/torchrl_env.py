"""`TorchRLWorldModelEnv`: a world model as a TorchRL `EnvBase` with batch size ``()`` or ``[N]``.

All N envs run in one engine batch (one model forward per step). Partial resets come in
through the ``"_reset"`` mask and flush only those rows' caches, leaving the other rows
untouched. Seeding follows TorchRL: ``env.set_seed(s)`` gives row i the Gymnasium
generator of seed ``s + i``, from which each of its resets draws its start context and
the seed of its noise generator (the same draws `WorldModelEnv` makes, so row i matches
``WorldModelEnv.reset(seed=s + i)``). No autoreset: collectors reset done rows.

Keys: ``"pixels"`` (``obs_type="rgb"``, (*B, H, W, 3) uint8) or ``"observation"``
(``obs_type="latent"``, (*B, N, C) float32); ``"action"``; ``"reward"`` (*B, 1) float32;
``"done"``, ``"terminated"``, ``"truncated"`` (*B, 1) bool; ``"termination_prob"``
(*B, 1) float32, the head's probability (an observation entry).

Dimension letters: B batch shape (``()`` or ``(N,)``), R reset rows, H/W frame size,
N tokens, C latent channels.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.utils import seeding
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Binary, Bounded, Categorical, Composite, MultiCategorical, Unbounded
from torchrl.envs import EnvBase

from worldgym.model.actions import ActionConfig
from worldgym.model.hardware import set_threads
from worldgym.engine import NumericsError, WorldModel
from worldgym.envs.env import RewardFn, TerminationFn, check_starts, draw_start, load_model
from worldgym.model.networks import Model
from worldgym.envs.starts import StartBank


def action_spec(config: ActionConfig, batch: tuple[int, ...], device: torch.device) -> Any:
    """The TorchRL spec of a batch of actions in the model's space (integer indices for discrete actions)."""
    if config.kind == "discrete":
        return Categorical(config.n, shape=batch, dtype=torch.int64, device=device)
    if config.kind == "multi_discrete":
        return MultiCategorical(config.nvec, shape=(*batch, len(config.nvec)), dtype=torch.int64, device=device)
    if config.kind == "multi_binary":
        return Binary(config.n, shape=(*batch, config.n), dtype=torch.int8, device=device)
    return Bounded(config.low, config.high, shape=(*batch, config.n), dtype=torch.float32, device=device)


class TorchRLWorldModelEnv(EnvBase):
    """A world model as a TorchRL environment.

    ```python
    from torchrl.collectors import Collector
    env = TorchRLWorldModelEnv("cartpole", batch_size=[16])
    env.set_seed(0)
    collector = Collector(env, policy=None, frames_per_batch=256, total_frames=1024)
    ```

    Args:
        checkpoint: a checkpoint folder, a shipped model's name, or a built `Model`.
        batch_size: ``()`` (one env) or ``[N]``.
        obs_type: "rgb" (``"pixels"`` key) or "latent" (``"observation"`` key).
        max_episode_steps: set ``truncated`` after this many steps (None = never).
        device / dtype / sampler_steps / reward_fn / termination_fn / starts / termination_threshold: as in `WorldModelEnv`
            (``dtype="auto"`` by default; ``self.dtype`` shows what it resolved to for this batch).
        threads: torch's CPU thread count, process-global (None leaves torch's setting).
    """

    def __init__(
        self,
        checkpoint: str | Path | Model,
        batch_size: torch.Size | tuple[int, ...] | list[int] = (),
        obs_type: str = "rgb",
        max_episode_steps: int | None = None,
        device: str | torch.device = "cpu",
        dtype: str = "auto",
        sampler_steps: int | None = None,
        reward_fn: RewardFn | None = None,
        termination_fn: TerminationFn | None = None,
        starts: StartBank | None = None,
        threads: int | None = None,
        termination_threshold: float = 0.5,
    ) -> None:
        if not 0.0 < termination_threshold < 1.0:
            raise ValueError(f"termination_threshold must be a probability in (0, 1), got {termination_threshold!r}")
        batch = tuple(torch.Size(batch_size))
        if len(batch) > 1 or (batch and batch[0] < 1):
            raise ValueError(f"batch_size must be () or [N] with N >= 1, got {list(batch)}")
        if obs_type not in ("rgb", "latent"):
            raise ValueError(f"obs_type must be 'rgb' or 'latent', got {obs_type!r}")
        super().__init__(device=device, batch_size=torch.Size(batch))
        set_threads(threads)
        self.model = load_model(checkpoint, device)
        self.starts = check_starts(self.model, starts)
        config = self.model.config
        self.rows = batch[0] if batch else 1
        sampler = None if sampler_steps is None else dataclasses.replace(config.sampler, steps=sampler_steps)
        self.engine = WorldModel(self.model, self.rows, device=device, dtype=dtype, sampler=sampler)
        self.dtype = self.engine.dtype  # "auto" resolved: "float32" or "bfloat16"
        self.obs_type = obs_type
        self.obs_key = "pixels" if obs_type == "rgb" else "observation"
        self.max_episode_steps = max_episode_steps
        self.reward_fn, self.termination_fn = reward_fn, termination_fn
        self.termination_threshold = termination_threshold
        self.action_config = config.action
        ae = config.autoencoder
        dev = self.device
        if obs_type == "rgb":
            obs = Bounded(0, 255, shape=(*batch, ae.frame_height, ae.frame_width, 3), dtype=torch.uint8, device=dev)
        else:
            obs = Unbounded(shape=(*batch, ae.tokens, ae.latent_channels), dtype=torch.float32, device=dev)
        self.observation_spec = Composite(
            {self.obs_key: obs, "termination_prob": Bounded(0.0, 1.0, shape=(*batch, 1), dtype=torch.float32, device=dev)},
            shape=batch,
        )
        self.action_spec = action_spec(config.action, batch, dev)
        self.reward_spec = Unbounded(shape=(*batch, 1), dtype=torch.float32, device=dev)
        self.done_spec = Composite(
            {k: Categorical(2, shape=(*batch, 1), dtype=torch.bool, device=dev) for k in ("done", "terminated", "truncated")},
            shape=batch,
        )
        self._rngs: list[np.random.Generator | None] = [None] * self.rows
        self._obs = torch.zeros(obs.shape, dtype=obs.dtype, device=dev).reshape(self.rows, *obs.shape[len(batch) :])  # (R, ...)
        self._elapsed = torch.zeros(self.rows, dtype=torch.int64)

    # ------------------------------------------------------------------ EnvBase hooks
    def _set_seed(self, seed: int | None) -> None:
        for i in range(self.rows):
            self._rngs[i] = seeding.np_random(None if seed is None else int(seed) + i)[0]

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs: Any) -> TensorDictBase:
        mask = torch.ones(self.rows, dtype=torch.bool)
        if tensordict is not None and "_reset" in tensordict.keys():
            mask = tensordict.get("_reset").reshape(self.rows).cpu().bool()
        rows = mask.nonzero().flatten()  # (R,)
        frames, actions, seeds = [], [], []
        for i in rows.tolist():
            if self._rngs[i] is None:
                self._rngs[i] = seeding.np_random()[0]
            f, a, _, s = draw_start(self.model, self._rngs[i], None, self.starts)
            frames.append(f)
            actions.append(a)
            seeds.append(s)
        if len(rows):
            acts = None if actions[0] is None else actions  # a start bank gives every row its actions, the model's none
            latents = self.engine.reset(rows, torch.stack(frames), acts, seeds=seeds)  # (R, N, C)
            new = torch.stack([f[-1] for f in frames]) if self.obs_type == "rgb" else latents.float()
            self._obs[rows] = new.to(self._obs)
            self._elapsed[rows] = 0
        false = torch.zeros(*self.batch_size, 1, dtype=torch.bool, device=self.device)
        return TensorDict(
            {
                self.obs_key: self._obs.clone().reshape(self.observation_spec[self.obs_key].shape),
                "termination_prob": torch.zeros(*self.batch_size, 1, device=self.device),
                "done": false.clone(),
                "terminated": false.clone(),
                "truncated": false.clone(),
            },
            batch_size=self.batch_size,
            device=self.device,
        )

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get("action").reshape(self.rows, *self.action_spec.shape[len(self.batch_size) :])  # (R, ...)
        try:
            out = self.engine.step(action, decode=self.obs_type == "rgb")
        except NumericsError as e:
            raise NumericsError(
                f"{self.model.config.name} TorchRL env: non-finite output, nothing returned: {e} (rows are env indices)"
            ) from None
        self._obs = (out.frames if self.obs_type == "rgb" else out.latents.float()).clone()
        self._elapsed += 1
        prob = out.termination.float()  # (R,)
        reward = out.reward.float()  # (R,)
        if self.reward_fn is not None or self.termination_fn is not None:
            obs_np, act_np = self._obs.cpu().numpy(), action.cpu().numpy()
            if self.reward_fn is not None:
                reward = torch.tensor([float(self.reward_fn(obs_np[i].copy(), act_np[i])) for i in range(self.rows)])
            if self.termination_fn is not None:
                term = torch.tensor([bool(self.termination_fn(obs_np[i].copy(), act_np[i])) for i in range(self.rows)])
            else:
                term = prob > self.termination_threshold
        else:
            term = prob > self.termination_threshold
        trunc = torch.zeros(self.rows, dtype=torch.bool)
        if self.max_episode_steps is not None:
            trunc = self._elapsed >= self.max_episode_steps
        shape = (*self.batch_size, 1)
        term, trunc = term.reshape(shape).to(self.device), trunc.reshape(shape).to(self.device)
        return TensorDict(
            {
                self.obs_key: self._obs.clone().reshape(self.observation_spec[self.obs_key].shape),
                "termination_prob": prob.reshape(shape).to(self.device),
                "reward": reward.reshape(shape).to(self.device),
                "done": term | trunc,
                "terminated": term,
                "truncated": trunc,
            },
            batch_size=self.batch_size,
            device=self.device,
        )

    # ------------------------------------------------------------------ snapshots
    def get_state(self) -> dict[str, Any]:
        """A deep copy of all rows: cache, positions, RNGs, counters and last observations."""
        import copy

        return {
            "engine": self.engine.get_state(None),
            "rngs": copy.deepcopy(self._rngs),
            "obs": self._obs.clone(),
            "elapsed": self._elapsed.clone(),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a `get_state` snapshot of an env of the same model and batch size (reusable)."""
        import copy

        if set(state) != {"engine", "rngs", "obs", "elapsed"} or len(state["rngs"]) != self.rows:
            raise ValueError(f"state does not fit this env ({self.rows} rows); pass the output of get_state()")
        self.engine.set_state(None, state["engine"])
        self._rngs = copy.deepcopy(state["rngs"])
        self._obs = state["obs"].clone()
        self._elapsed = state["elapsed"].clone()

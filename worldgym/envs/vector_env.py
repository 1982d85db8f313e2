"""`WorldModelVectorEnv`: a native batched `gymnasium.vector.VectorEnv` — all envs in one model forward.

Each sub-env is one row of a single `WorldModel` engine, with its own cache rows, noise
generator and Gymnasium ``np_random``. Row i seeded with ``seed + i`` runs the episode a
single `WorldModelEnv` seeded with ``seed + i`` runs (up to CPU matmul batch
non-invariance, ~1e-6 in latents) when both run in one dtype (``dtype="auto"`` picks
bfloat16 for 32 envs or more where it runs faster and float32 for one env). Every reset,
automatic or masked, is a per-row cache flush through the engine; the other rows are
untouched, bit for bit.

Autoreset modes (``gymnasium.vector.AutoresetMode``):

* NEXT_STEP (default): the step after an episode ends resets that row and returns its
  first observation with reward 0, terminated and truncated False.
* SAME_STEP: a row that ends is reset in the same step; ``info["final_obs"]`` /
  ``info["final_info"]`` (with ``"_final_obs"`` / ``"_final_info"`` masks) hold its last
  observation and info.
* DISABLED: nothing resets by itself; call ``reset(options={"reset_mask": mask})``.

Dimension letters: B number of envs, F context frames, H/W frame size, N tokens, C latent channels.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from worldgym.engine import NumericsError, WorldModel
from worldgym.envs.env import RewardFn, TerminationFn, check_starts, draw_start, load_model, observation_space, to_numpy_obs
from worldgym.envs.starts import StartBank
from worldgym.model.actions import validate_action
from worldgym.model.hardware import set_threads
from worldgym.model.networks import Model


def check_reset_mask(mask: Any, num_envs: int) -> np.ndarray:
    """Validate ``options["reset_mask"]`` exactly as `gymnasium.vector.SyncVectorEnv` does."""
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"`options['reset_mask']` must be a numpy array, got {type(mask)}")
    if mask.shape != (num_envs,):
        raise ValueError(f"`options['reset_mask']` must have shape `({num_envs},)`, got {mask.shape}")
    if mask.dtype != np.bool_:
        raise TypeError(f"`options['reset_mask']` must have `dtype=np.bool_`, got {mask.dtype}")
    if not np.any(mask):
        raise ValueError(
            f"`options['reset_mask']` must contain a boolean array with at least one True value, got reset_mask={mask}"
        )
    return mask


def tile(frames: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) frames -> one (rows*H, cols*W, 3) mosaic, for a human window."""
    B, H, W, _ = frames.shape
    cols = math.ceil(math.sqrt(B))
    rows = math.ceil(B / cols)
    out = np.zeros((rows * H, cols * W, 3), np.uint8)
    for i in range(B):
        r, c = divmod(i, cols)
        out[r * H : (r + 1) * H, c * W : (c + 1) * W] = frames[i]
    return out


class WorldModelVectorEnv(VectorEnv):
    """``num_envs`` rollouts of one world model stepped together in one batched forward.

    Built by ``gymnasium.make_vec("worldgym/<Name>-v0", num_envs=B)`` (the registered
    ``vector_entry_point``) or directly. Arguments are those of `WorldModelEnv` plus:

    Args:
        num_envs: number of envs B (rows of the engine).
        autoreset_mode: an `AutoresetMode` (or its string value); NEXT_STEP by default.
        max_episode_steps: truncate episodes after this many steps (None = never); set
            from the registration by ``make_vec``.
        termination_threshold: an episode ends when the termination head's probability
            exceeds this (0.5 by default; lower is a stricter, more pessimistic imagination).
        reencode: with ``obs_type="features"``, commit each generated block as the encoding of
            its decoded frame, as `worldgym.envs.wrappers.ModelState` commits real frames.

    ``reset(seed=s)`` seeds env i with ``s + i`` (a list gives one seed per env);
    ``options`` takes ``"reset_mask"`` ((B,) bool, every mode), ``"start_index"`` (an
    int or B ints) or ``"frames"`` ((B, F, H, W, 3) uint8) with optional ``"actions"``
    ((B, F)); only the rows being reset read them. ``starts`` (a `worldgym.envs.starts.StartBank`)
    replaces the model's bank of start contexts (see `WorldModelEnv`). ``info`` holds per-env
    ``"termination_prob"``, ``"reward_pred"`` and (``wall_time_info=True``, off by default)
    ``"step_time"``, the wall seconds of the batched step, each with its ``"_key"`` mask;
    ``last_step_time`` always holds that figure. ``dtype="auto"`` (default) resolves per
    machine and batch (`worldgym.engine.precision`; ``self.dtype`` shows it, ``self.dtype_choice``
    how: on an avx512_bf16 CPU without AMX, from one timed step of each precision);
    ``threads`` sets torch's process-global thread count (None leaves it). A bad action
    raises `gymnasium.error.InvalidAction` naming its row (``actions[3] must be ...``) and no
    row advances; every row's action is checked, also a row being autoreset.
    ``get_state(indices)`` / ``set_state(indices, state)`` snapshot and restore rows.
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 50, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        checkpoint: str | Path | Model | None = None,
        num_envs: int = 1,
        render_mode: str | None = None,
        obs_type: str = "rgb",
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        max_episode_steps: int | None = None,
        device: str | torch.device = "cpu",
        dtype: str = "auto",
        sampler_steps: int | None = None,
        reward_fn: RewardFn | None = None,
        termination_fn: TerminationFn | None = None,
        wall_time_info: bool = False,
        starts: StartBank | None = None,
        threads: int | None = None,
        termination_threshold: float = 0.5,
        reencode: bool = False,
    ) -> None:
        if not 0.0 < termination_threshold < 1.0:
            raise ValueError(f"termination_threshold must be a probability in (0, 1), got {termination_threshold!r}")
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        try:
            autoreset_mode = AutoresetMode(autoreset_mode)
        except ValueError:
            raise ValueError(
                f"autoreset_mode must be one of {[m.value for m in AutoresetMode]}, got {autoreset_mode!r}"
            ) from None
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1 or None, got {max_episode_steps}")
        set_threads(threads)
        self.model = load_model(checkpoint, device)
        self.starts = check_starts(self.model, starts)
        config = self.model.config
        sampler = None if sampler_steps is None else dataclasses.replace(config.sampler, steps=sampler_steps)
        self.engine = WorldModel(self.model, num_envs, device=device, dtype=dtype, sampler=sampler, features=obs_type == "features", reencode=reencode)
        self.num_envs = num_envs
        self.name = config.name
        self.obs_type = obs_type
        self.render_mode = render_mode
        self.autoreset_mode = autoreset_mode
        self.max_episode_steps = max_episode_steps
        self.reward_fn, self.termination_fn = reward_fn, termination_fn
        self.termination_threshold = termination_threshold
        self.wall_time_info = wall_time_info
        self.dtype = self.engine.dtype  # "auto" resolved: bfloat16 only at num_envs >= 32 where it runs faster
        self.dtype_choice = self.engine.dtype_choice  # how: requested, WORLDGYM_AUTO_DTYPE, hardware or measured
        self.last_step_time: float | None = None  # wall seconds of the last batched reset or step
        self.metadata = {**self.metadata, "render_fps": int(config.fps), "autoreset_mode": autoreset_mode}
        self.action_config = config.action
        self.single_action_space = config.action.space()
        self.single_observation_space = observation_space(self.model, obs_type)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self._rngs: list[np.random.Generator | None] = [None] * num_envs  # one Gymnasium generator per row
        self._obs = np.zeros(self.observation_space.shape, self.observation_space.dtype)  # (B, ...) private
        ae = config.autoencoder
        self._frames = np.zeros((num_envs, ae.frame_height, ae.frame_width, 3), np.uint8)  # (B, H, W, 3)
        self._elapsed = np.zeros(num_envs, np.int64)
        self._autoreset = np.zeros(num_envs, np.bool_)  # rows whose episode ended on the last step
        self._was_reset = np.zeros(num_envs, np.bool_)
        self._window = None
        self._decode = obs_type == "rgb" or render_mode is not None  # latents without rendering skip the decoder

    # ------------------------------------------------------------------ resets
    def _row_rng(self, i: int) -> np.random.Generator:
        if self._rngs[i] is None:
            self._rngs[i], _ = seeding.np_random()
        return self._rngs[i]

    def _reset_rows(self, rows: np.ndarray, options: dict[str, Any]) -> dict[str, np.ndarray]:
        """Flush and pre-fill ``rows`` (R,) through the engine; update their obs; return their start indices."""
        frames, actions, seeds, index = [], [], [], np.full(self.num_envs, -1, np.int64)
        for i in rows.tolist():
            row_options: dict[str, Any] = {}
            if options.get("frames") is not None:
                row_options["frames"] = options["frames"][i]
                if options.get("actions") is not None:
                    row_options["actions"] = options["actions"][i]
            elif options.get("start_index") is not None:
                k = options["start_index"]
                row_options["start_index"] = k if np.ndim(k) == 0 else k[i]
            f, a, index[i], s = draw_start(self.model, self._row_rng(i), row_options, self.starts)
            frames.append(f)
            actions.append(a)
            seeds.append(s)
        if len({f.shape[0] for f in frames}) != 1:
            raise ValueError("options['frames'] must give every env the same number of context frames")
        if any(a is None for a in actions) and not all(a is None for a in actions):
            raise ValueError("options['actions'] must be given for every reset env or for none")
        acts = None if actions[0] is None else actions
        latents = self.engine.reset(rows, torch.stack(frames), acts, seeds=seeds)  # (R, N, C)
        last = torch.stack([f[-1] for f in frames])  # (R, H, W, 3)
        self._frames[rows] = last.numpy()
        self._obs[rows] = to_numpy_obs(latents, last, self.obs_type, None if self.engine.features is None else self.engine.features[torch.as_tensor(rows)])
        self._elapsed[rows] = 0
        self._autoreset[rows] = False
        self._was_reset[rows] = True
        return index

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every env, or the envs in ``options["reset_mask"]``; seeds env i with ``seed + i``."""
        options = dict(options or {})
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(
                    f"If seeds are passed as a list the length must match num_envs={self.num_envs} but got length={len(seeds)}."
                )
        if seed is not None:
            self._np_random, self._np_random_seed = seeding.np_random(seeds[0])
        mask = np.ones(self.num_envs, np.bool_)
        if "reset_mask" in options:
            mask = check_reset_mask(options.pop("reset_mask"), self.num_envs)
        unknown = set(options) - {"frames", "actions", "start_index"}
        if unknown:
            raise ValueError(
                f"unknown reset options {sorted(unknown)}; expected 'reset_mask', 'frames' (+ 'actions') or 'start_index'"
            )
        rows = np.flatnonzero(mask)
        for i in rows.tolist():
            if seeds[i] is not None:
                self._rngs[i], _ = seeding.np_random(seeds[i])
        start = time.perf_counter()
        index = self._reset_rows(rows, options)
        info = {"start_index": index, "_start_index": mask.copy()}
        self.last_step_time = time.perf_counter() - start
        if self.wall_time_info:
            info["step_time"] = np.where(mask, self.last_step_time, 0.0)
            info["_step_time"] = mask.copy()
        if self.render_mode == "human":
            self.render()
        return self._obs.copy(), info

    # ------------------------------------------------------------------ step
    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every env in one batched forward (rows awaiting a NEXT_STEP autoreset are reset instead)."""
        if not self._was_reset.all():
            raise gym.error.ResetNeeded(
                f"envs {np.flatnonzero(~self._was_reset).tolist()} were never reset; call reset() before step()"
            )
        resetting = self._autoreset.copy()  # (B,) only ever set in NEXT_STEP mode
        if isinstance(actions, torch.Tensor):
            actions = actions.detach().cpu().numpy()
        if isinstance(actions, (list, tuple)) or (isinstance(actions, np.ndarray) and actions.ndim >= 1):
            if len(actions) != self.num_envs:
                raise gym.error.InvalidAction(
                    f"expected a batch of {self.num_envs} actions for {self.action_space}, got {len(actions)}: {actions!r}"
                )
            # rows being autoreset ignore their action (as in SyncVectorEnv); the engine gets a null action,
            # but a bad one is still an error naming its row (the engine checks the other rows)
            for i in np.flatnonzero(resetting).tolist():
                validate_action(self.action_config, actions[i], f"actions[{i}]")
            null = self.action_config.null_action()
            batch = [null if resetting[i] else a for i, a in enumerate(actions)]
        else:
            raise gym.error.InvalidAction(f"expected a batch of {self.num_envs} actions in {self.action_space}, got {actions!r}")
        start = time.perf_counter()
        try:
            # a bad action raises InvalidActionError naming its row ("actions[3] must be ..."); nothing changes
            out = self.engine.step(batch, decode=self._decode)
        except NumericsError as e:
            raise NumericsError(
                f"{self.name} vector env: non-finite output, no frames returned: {e} (rows are env indices)"
            ) from None
        self.last_step_time = elapsed = time.perf_counter() - start
        obs = to_numpy_obs(out.latents, out.frames, self.obs_type, out.features)  # (B, ...)
        prob = out.termination.cpu().numpy().astype(np.float64)  # (B,)
        reward_pred = out.reward.cpu().numpy().astype(np.float64)  # (B,)
        reward = reward_pred.copy()
        if self.reward_fn is not None:
            reward = np.array([float(self.reward_fn(obs[i].copy(), actions[i])) for i in range(self.num_envs)])
        if self.termination_fn is not None:
            terminated = np.array([bool(self.termination_fn(obs[i].copy(), actions[i])) for i in range(self.num_envs)])
        else:
            terminated = prob > self.termination_threshold
        stepped = ~resetting
        self._obs[stepped] = obs[stepped]
        if out.frames is not None:
            self._frames[stepped] = out.frames.cpu().numpy()[stepped]
        self._elapsed[stepped] += 1
        truncated = np.zeros(self.num_envs, np.bool_)
        if self.max_episode_steps is not None:
            truncated = stepped & (self._elapsed >= self.max_episode_steps)
        info: dict[str, Any] = {
            "termination_prob": np.where(stepped, prob, 0.0),
            "_termination_prob": np.ones(self.num_envs, np.bool_),
            "reward_pred": np.where(stepped, reward_pred, 0.0),
            "_reward_pred": np.ones(self.num_envs, np.bool_),
        }
        if self.wall_time_info:
            info["step_time"] = np.full(self.num_envs, elapsed)
            info["_step_time"] = np.ones(self.num_envs, np.bool_)
        # NEXT_STEP: rows that ended last step are reset now and report reward 0, not done
        reward[resetting], terminated[resetting], truncated[resetting] = 0.0, False, False
        if resetting.any():
            self._reset_rows(np.flatnonzero(resetting), {})
        done = (terminated | truncated) & stepped
        if self.autoreset_mode == AutoresetMode.SAME_STEP and done.any():
            final_obs = np.full(self.num_envs, None, dtype=object)
            final_info: dict[str, Any] = {}
            for i in np.flatnonzero(done).tolist():
                final_obs[i] = self._obs[i].copy()
                final_info = self._add_info(final_info, {k: v[i] for k, v in info.items() if not k.startswith("_")}, i)
            self._reset_rows(np.flatnonzero(done), {})
            info.update({"final_obs": final_obs, "_final_obs": done.copy(), "final_info": final_info, "_final_info": done.copy()})
        self._autoreset = done if self.autoreset_mode == AutoresetMode.NEXT_STEP else np.zeros(self.num_envs, np.bool_)
        if self.render_mode == "human":
            self.render()
        return self._obs.copy(), reward.astype(np.float64), terminated, truncated, info

    # ------------------------------------------------------------------ render / close
    def render(self) -> tuple[np.ndarray, ...] | None:
        """"rgb_array": a tuple of B (H, W, 3) frames (as SyncVectorEnv); "human": one window tiling all envs."""
        if self.render_mode == "rgb_array":
            return tuple(f.copy() for f in self._frames)
        if self.render_mode == "human":
            from worldgym.envs.display import show_frame

            title = f"worldgym {self.name} x{self.num_envs}"
            self._window = show_frame(self._window, tile(self._frames), self.metadata["render_fps"], title)
        return None

    def close_extras(self, **kwargs: Any) -> None:
        if self._window is not None:
            from worldgym.envs.display import close_window

            close_window(self._window)
            self._window = None

    # ------------------------------------------------------------------ snapshots
    def get_state(self, indices: Sequence[int] | None = None) -> dict[str, Any]:
        """A deep copy of the rows ``indices`` (None = all): cache, positions, RNGs, counters, last observations."""
        rows = np.arange(self.num_envs) if indices is None else np.asarray(indices, np.int64).reshape(-1)
        return {
            "engine": self.engine.get_state(rows),
            "rngs": [copy.deepcopy(self._row_rng(i)) for i in rows.tolist()],
            "obs": self._obs[rows].copy(),
            "frames": self._frames[rows].copy(),
            "elapsed": self._elapsed[rows].copy(),
            "autoreset": self._autoreset[rows].copy(),
            "was_reset": self._was_reset[rows].copy(),
        }

    def set_state(self, indices: Sequence[int] | None, state: dict[str, Any]) -> None:
        """Restore rows ``indices`` (None = all) from `get_state` output for as many rows; the state stays reusable."""
        rows = np.arange(self.num_envs) if indices is None else np.asarray(indices, np.int64).reshape(-1)
        keys = {"engine", "rngs", "obs", "frames", "elapsed", "autoreset", "was_reset"}
        if set(state) != keys or len(state["rngs"]) != len(rows):
            raise ValueError(f"state does not fit {len(rows)} rows; pass the output of get_state() for as many rows")
        self.engine.set_state(rows, state["engine"])
        for i, g in zip(rows.tolist(), state["rngs"]):
            self._rngs[i] = copy.deepcopy(g)
        self._obs[rows] = state["obs"]
        self._frames[rows] = state["frames"]
        self._elapsed[rows] = state["elapsed"]
        self._autoreset[rows] = state["autoreset"]
        self._was_reset[rows] = state["was_reset"]

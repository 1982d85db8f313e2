"""`WorldModelEnv`: one neural world model as a `gymnasium.Env`, plus the helpers its vector and TorchRL siblings share.

The env owns the Gymnasium contract: spaces, seeding, episode counters, numpy
conversion, rendering and snapshots of its own bookkeeping. It never touches the KV
cache; every cache operation goes through the engine (`worldgym.engine.WorldModel`).

Dimension letters: K start-bank entries, F context frames, H/W frame size, N tokens,
C latent channels.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from gymnasium import logger, spaces

from worldgym.model.actions import validate_action
from worldgym.model.hardware import set_threads
from worldgym.engine import NumericsError, WorldModel
from worldgym.model.networks import Model
from worldgym.envs.starts import StartBank

OBS_TYPES = ("rgb", "latent", "features")
RewardFn = Callable[[np.ndarray, Any], float]
TerminationFn = Callable[[np.ndarray, Any], bool]


# ---------------------------------------------------------------------------- shared helpers
def load_model(checkpoint: str | Path | Model | None, device: str | torch.device = "cpu") -> Model:
    """A `Model` from a checkpoint folder, a shipped model's name, or an already built `Model`.

    Raises:
        TypeError: for ``checkpoint=None`` (``gym.make("worldgym/WorldModel-v0")`` without
            one), naming the argument and the ids that need none.
    """
    if checkpoint is None:
        shipped = sorted(k for k, spec in gym.registry.items() if k.startswith("worldgym/") and spec.kwargs.get("checkpoint"))
        raise TypeError(
            "a worldgym world model env needs checkpoint= (a checkpoint folder, a shipped model's name or a "
            'built Model), got none: use gym.make("worldgym/WorldModel-v0", checkpoint="path/to/model") or '
            'gym.make_vec("worldgym/WorldModel-v0", num_envs=N, checkpoint="path/to/model"), or an id that '
            f"brings its own model: {', '.join(shipped)}"
        )
    if isinstance(checkpoint, Model):
        return checkpoint
    from worldgym.model import checkpoint as ckpt

    return ckpt.load(checkpoint, device)


def observation_space(model: Model, obs_type: str) -> spaces.Box:
    """``Box(0, 255, (H, W, 3), uint8)`` for ``obs_type="rgb"``, the latent block ``(N, C)`` float32 for "latent"."""
    if obs_type not in OBS_TYPES:
        raise ValueError(f"obs_type must be one of {OBS_TYPES}, got {obs_type!r}")
    ae = model.config.autoencoder
    if obs_type == "rgb":
        return spaces.Box(0, 255, (ae.frame_height, ae.frame_width, 3), np.uint8)
    if obs_type == "features":  # the model's state after each committed block (the heads' input)
        return spaces.Box(-np.inf, np.inf, (model.config.dynamics.dim,), np.float32)
    return spaces.Box(-np.inf, np.inf, (ae.tokens, ae.latent_channels), np.float32)


def check_starts(model: Model, starts: StartBank | None) -> StartBank | None:
    """A start bank whose frames have the model's frame size and fit its cache, else a ValueError."""
    if starts is None:
        return None
    if not isinstance(starts, StartBank):
        raise TypeError(f"starts must be a worldgym.envs.starts.StartBank, got {type(starts).__name__}")
    ae, dyn = model.config.autoencoder, model.config.dynamics
    H, W, F = int(starts.frames.shape[2]), int(starts.frames.shape[3]), int(starts.frames.shape[1])
    if (H, W) != (ae.frame_height, ae.frame_width):
        raise ValueError(f"start bank frames are {H}x{W}, the model needs {ae.frame_height}x{ae.frame_width}")
    if F > dyn.sink + dyn.window:
        raise ValueError(f"start bank contexts hold {F} frames, the cache holds at most {dyn.sink + dyn.window}")
    return starts


def draw_start(
    model: Model, np_random: np.random.Generator, options: dict[str, Any] | None, starts: StartBank | None = None
) -> tuple[torch.Tensor, list[Any] | None, int, int]:
    """Choose one episode's start context and the seed of its noise generator.

    Draws from ``np_random`` in a fixed order (bank index unless given, then the engine
    seed), so a row's episode depends only on its own generator.

    Args:
        model: the model (its ``start_frames`` bank is (K, F, H, W, 3) uint8).
        np_random: the env's (or the row's) Gymnasium generator.
        options: ``None`` or a dict with either ``"frames"`` ((F, H, W, 3) or (H, W, 3)
            uint8, oldest first) and optionally ``"actions"`` (F actions that led to the
            frames; the first is ignored), or ``"start_index"`` (an int in [0, K)).
        starts: a `StartBank` used in place of the model's bank (its entries bring their actions).

    Returns:
        frames (F, H, W, 3) uint8, actions (list of F) or None, the bank index (-1 for
        given frames), the engine seed.
    """
    options = options or {}
    unknown = set(options) - {"frames", "actions", "start_index"}
    if unknown:
        raise ValueError(f"unknown reset options {sorted(unknown)}; expected 'frames' (+ 'actions') or 'start_index'")
    bank = starts if starts is not None else StartBank(model.start_frames)  # the model's bank has no actions
    K = len(bank)
    ae = model.config.autoencoder
    actions = None
    if options.get("frames") is not None:
        if options.get("start_index") is not None:
            raise ValueError("reset options take 'frames' or 'start_index', not both")
        raw = options["frames"]
        frames = raw.detach().cpu() if isinstance(raw, torch.Tensor) else torch.from_numpy(np.array(raw))
        if frames.dim() == 3:
            frames = frames[None]  # (1, H, W, 3)
        if frames.dim() != 4 or tuple(frames.shape[1:]) != (ae.frame_height, ae.frame_width, 3) or frames.dtype != torch.uint8:
            raise ValueError(
                f"options['frames'] must be uint8 of shape (F, {ae.frame_height}, {ae.frame_width}, 3) or "
                f"({ae.frame_height}, {ae.frame_width}, 3), got {tuple(frames.shape)} {frames.dtype}; "
                "resize the frames to the model's frame size"
            )
        if options.get("actions") is not None:
            actions = list(options["actions"])
            if len(actions) != frames.shape[0]:
                raise ValueError(
                    f"options['actions'] must hold one action per frame ({frames.shape[0]}), got {len(actions)}"
                )
        index = -1
    else:
        if options.get("actions") is not None:
            raise ValueError("options['actions'] needs options['frames'] (the frames those actions led to)")
        if options.get("start_index") is not None:
            index = options["start_index"]
            if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)) or not 0 <= int(index) < K:
                raise ValueError(f"options['start_index'] must be an int in [0, {K}), got {index!r}")
            index = int(index)
        else:
            index = int(np_random.integers(K))
        frames, actions = bank.entry(index)
        frames = frames.cpu()  # (F, H, W, 3)
    seed = int(np_random.integers(2**63 - 1))
    return frames, actions, index, seed


def to_numpy_obs(latents: torch.Tensor, frames: torch.Tensor | None, obs_type: str, features: torch.Tensor | None = None) -> np.ndarray:
    """A fresh numpy observation (never a view of engine memory): frames (..., H, W, 3) uint8, latents (..., N, C) or features (..., D) float32."""
    if obs_type == "features":
        return features.detach().float().cpu().numpy().copy()
    if obs_type == "latent":
        return latents.detach().float().cpu().numpy().copy()
    return frames.detach().cpu().numpy().copy()


# ---------------------------------------------------------------------------- the env
class WorldModelEnv(gym.Env):
    """A neural world model run as a Gymnasium environment.

    ## Description
    Each `step(action)` runs one latent block of action-conditioned autoregressive
    generation: the action conditions a few-step sampler that denoises the next block
    of latents against a KV cache of the episode so far; the clean block is committed to
    the cache and decoded to the RGB frame you observe. Small heads on the committed
    block predict the reward and the probability that the episode ended. Models with a
    fused commit (the shipped CartPole) commit each block in the pass that denoises the
    next one and read those heads on the denoise pass: one transformer pass per step.
    Memory and time per step are constant for any episode length (sink + rolling window cache).

    ## Action Space
    The model's own action space (``model.config.action.space()``): ``Discrete(n)``,
    ``MultiDiscrete``, ``MultiBinary`` or a float32 ``Box``. The shipped CartPole model
    takes ``Discrete(2)``: 0 pushes the cart left, 1 pushes it right.

    ## Observation Space
    ``obs_type="rgb"`` (default): ``Box(0, 255, (H, W, 3), uint8)``, the decoded frame
    (64x64 for CartPole). ``obs_type="latent"``: the clean latent block
    ``Box(-inf, inf, (N, C), float32)``, a small observation for fast RL; without a
    ``render_mode`` the decoder is then skipped altogether. ``obs_type="features"``: the
    model's state ``Box(-inf, inf, (D,), float32)``, the heads' input after committing the
    block, which reads the cache and so carries velocity and history; every block is then
    committed in its own step (two passes, no fused commit) and
    `worldgym.envs.wrappers.ModelState` gives the same observation from a real env's frames.
    Every returned observation is a fresh copy.

    ## Rewards
    The model's reward head, clipped to ``config.reward_range``, as a Python float
    (CartPole: +1 per step). Pass ``reward_fn(obs, action) -> float`` to replace it.

    ## Starting State
    ``reset`` flushes the cache and pre-fills it from a start context: by default an
    entry of the model's start-state bank chosen with ``self.np_random``; or
    ``options={"start_index": k}`` for a chosen entry; or ``options={"frames": F x H x
    W x 3 uint8, "actions": F actions (optional)}`` for your own frames. With
    ``starts=StartBank.from_datasets(...)`` (`worldgym.envs.starts`) the bank is instead a set of
    real contexts cut from recorded episodes, with their actions (imagination from real
    states, as Dreamer and DIAMOND train agents). The first
    observation is the last context frame (or its latents). The noise generator of the
    sampler is a ``torch.Generator`` seeded from ``self.np_random``, so
    ``reset(seed=s)`` makes the whole episode reproducible on the same machine.

    ## Episode End
    Terminated when the predicted termination probability exceeds ``termination_threshold``
    (0.5 by default; or when ``termination_fn(obs, action)`` returns True, if given). Truncation comes from
    ``max_episode_steps`` in the registration (``TimeLimit``; 500 for CartPole, as for
    its real twin). Stepping again after ``terminated=True`` without a reset keeps
    generating (the cache stays bounded) and warns once, as CartPole does.

    ``info`` holds ``"termination_prob"`` (the head's probability), ``"reward_pred"``
    (the head's reward before any ``reward_fn``) and, with ``wall_time_info=True``,
    ``"step_time"`` (wall seconds of the step). Timings are off by default so that the
    same seed and actions give the same ``info`` (``gymnasium.utils.env_checker.check_env``
    compares them); ``env.unwrapped.last_step_time`` always holds the last reset's or
    step's wall seconds.

    ## Arguments
    ```python
    import gymnasium as gym
    import worldgym

    env = gym.make("worldgym/CartPole-v0", render_mode="rgb_array")
    env = gym.make("worldgym/CartPole-v0", obs_type="latent", sampler_steps=1)
    env = worldgym.envs.env.WorldModelEnv("path/to/checkpoint_folder")
    envs = gym.make_vec("worldgym/CartPole-v0", num_envs=16)  # one model forward for all 16
    ```
    * ``checkpoint``: a checkpoint folder, a shipped model's name, or a built `Model`.
    * ``render_mode``: None, "rgb_array" or "human" (a pygame window).
    * ``obs_type``: "rgb", "latent" or "features".
    * ``device`` / ``dtype``: where and in which precision to run: "auto" (default: bfloat16
      where it runs faster, see `worldgym.engine.precision`; float32 for a single env on CPU;
      the environment variable ``WORLDGYM_AUTO_DTYPE`` fixes it), "float32" or "bfloat16".
      ``env.unwrapped.dtype`` shows the choice, ``env.unwrapped.dtype_choice`` how it was made.
    * ``sampler_steps``: denoising passes per step (default: the model's).
    * ``reward_fn`` / ``termination_fn``: callables ``(obs, action)`` overriding the heads.
    * ``termination_threshold``: the head's probability that ends an episode (default 0.5).
      A head that fires late on falls can be met with a lower one:
      ``python -m worldgym.evaluation.end_timing`` times it against real ends.
    * ``wall_time_info``: put ``"step_time"`` in ``info`` (default False).
    * ``threads``: torch's CPU thread count (None, the default, leaves it alone). Process-global
      (`worldgym.model.hardware.set_threads`): on a busy 2-core machine 1 thread is fastest.

    ``get_state()`` / ``set_state(state)`` snapshot and restore the whole env (cache
    rows, positions, noise generator, ``np_random``, counters): one state can be branched
    into several futures.

    ## Version History
    * v0: first version.
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 50}

    def __init__(
        self,
        checkpoint: str | Path | Model | None = None,
        render_mode: str | None = None,
        obs_type: str = "rgb",
        device: str | torch.device = "cpu",
        dtype: str = "auto",
        sampler_steps: int | None = None,
        reward_fn: RewardFn | None = None,
        termination_fn: TerminationFn | None = None,
        wall_time_info: bool = False,
        starts: StartBank | None = None,
        threads: int | None = None,
        termination_threshold: float = 0.5,
    ) -> None:
        if not 0.0 < termination_threshold < 1.0:
            raise ValueError(f"termination_threshold must be a probability in (0, 1), got {termination_threshold!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        set_threads(threads)
        self.model = load_model(checkpoint, device)
        self.starts = check_starts(self.model, starts)
        config = self.model.config
        sampler = None if sampler_steps is None else dataclasses.replace(config.sampler, steps=sampler_steps)
        self.engine = WorldModel(self.model, 1, device=device, dtype=dtype, sampler=sampler, features=obs_type == "features")
        self.name = config.name
        self.obs_type = obs_type
        self.render_mode = render_mode
        self.reward_fn, self.termination_fn = reward_fn, termination_fn
        self.termination_threshold = termination_threshold
        self.wall_time_info = wall_time_info
        self.dtype = self.engine.dtype  # "auto" resolved: "float32" or "bfloat16"
        self.dtype_choice = self.engine.dtype_choice  # how: requested, WORLDGYM_AUTO_DTYPE, hardware or measured
        self.last_step_time: float | None = None  # wall seconds of the last reset or step
        self.metadata = {**self.metadata, "render_fps": int(config.fps)}
        self.action_config = config.action
        self.action_space = config.action.space()
        self.observation_space = observation_space(self.model, obs_type)
        self._obs: np.ndarray | None = None  # last observation (private copy)
        self._frame: np.ndarray | None = None  # last decoded frame, for render()
        self._terminated = False
        self._warned = False
        self._window = None
        # latent observations without rendering never decode a frame: the cheap path for RL
        self._decode = obs_type == "rgb" or render_mode is not None

    # ------------------------------------------------------------------ Gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Flush the cache and pre-fill it from a start context (see Starting State); returns (obs, info)."""
        super().reset(seed=seed)
        start = time.perf_counter()
        frames, actions, index, engine_seed = draw_start(self.model, self.np_random, options, self.starts)
        latents = self.engine.reset([0], frames[None], None if actions is None else [actions], seeds=[engine_seed])
        self._frame = frames[-1].numpy().copy()  # (H, W, 3)
        self._obs = to_numpy_obs(latents[0], frames[-1], self.obs_type, None if self.engine.features is None else self.engine.features[0])
        self._terminated = False
        self._warned = False
        info: dict[str, Any] = {"start_index": index, "termination_prob": 0.0, "reward_pred": 0.0}
        self.last_step_time = time.perf_counter() - start
        if self.wall_time_info:
            info["step_time"] = self.last_step_time
        if self.render_mode == "human":
            self.render()
        return self._obs.copy(), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Generate one block under ``action``; returns (obs, reward, terminated, truncated=False, info)."""
        if self._obs is None:
            raise gym.error.ResetNeeded("cannot call step() before reset(); call env.reset() first")
        checked = validate_action(self.action_config, action)  # raises InvalidActionError naming action and space
        if self._terminated and not self._warned:
            logger.warn(
                "You are calling step() even though this environment has already returned terminated=True. "
                "The world model keeps generating, but the episode is over: call reset()."
            )
            self._warned = True
        start = time.perf_counter()
        try:
            out = self.engine.step([checked], decode=self._decode)
        except NumericsError as e:
            raise NumericsError(f"{self.name} env 0 produced a non-finite output; no frame returned: {e}") from None
        self.last_step_time = time.perf_counter() - start
        self._frame = None if out.frames is None else out.frames[0].cpu().numpy().copy()  # (H, W, 3)
        self._obs = to_numpy_obs(out.latents[0], None if out.frames is None else out.frames[0], self.obs_type, None if out.features is None else out.features[0])
        prob, reward_pred = float(out.termination[0]), float(out.reward[0])
        reward = float(self.reward_fn(self._obs.copy(), action)) if self.reward_fn else reward_pred
        terminated = bool(self.termination_fn(self._obs.copy(), action)) if self.termination_fn else prob > self.termination_threshold
        self._terminated = self._terminated or terminated
        info: dict[str, Any] = {"termination_prob": prob, "reward_pred": reward_pred}
        if self.wall_time_info:
            info["step_time"] = self.last_step_time
        if self.render_mode == "human":
            self.render()
        return self._obs.copy(), reward, terminated, False, info

    def render(self) -> np.ndarray | None:
        """"rgb_array": a copy of the last frame (H, W, 3) uint8; "human": draw it in a pygame window."""
        if self._frame is None:
            return None
        if self.render_mode == "rgb_array":
            return self._frame.copy()
        if self.render_mode == "human":
            from worldgym.envs.display import show_frame

            self._window = show_frame(self._window, self._frame, self.metadata["render_fps"], f"worldgym {self.name}")
        return None

    def close(self) -> None:
        """Close the window, if any (safe to call twice)."""
        if self._window is not None:
            from worldgym.envs.display import close_window

            close_window(self._window)
            self._window = None

    # ------------------------------------------------------------------ snapshots
    def get_state(self) -> dict[str, Any]:
        """A deep copy of the env's full state: cache rows, positions, noise RNG, ``np_random``, counters, last frame."""
        if self._obs is None:
            raise gym.error.ResetNeeded("get_state() needs a reset env; call env.reset() first")
        return {
            "engine": self.engine.get_state([0]),
            "np_random": copy.deepcopy(self._np_random),
            "np_random_seed": self._np_random_seed,
            "obs": self._obs.copy(),
            "frame": None if self._frame is None else self._frame.copy(),
            "terminated": self._terminated,
            "warned": self._warned,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a `get_state` snapshot (of this env or another env of the same model); the snapshot stays reusable."""
        expected = {"engine", "np_random", "np_random_seed", "obs", "frame", "terminated", "warned"}
        if not isinstance(state, dict) or set(state) != expected:
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"state must be the dict returned by get_state() with keys {sorted(expected)}, got {got}")
        if state["obs"].shape != self.observation_space.shape:
            raise ValueError(
                f"state holds observations of shape {state['obs'].shape}, this env's are {self.observation_space.shape}; "
                "restore snapshots only into an env of the same model and obs_type"
            )
        self.engine.set_state([0], state["engine"])
        self._np_random = copy.deepcopy(state["np_random"])
        self._np_random_seed = state["np_random_seed"]
        self._obs = state["obs"].copy()
        self._frame = None if state["frame"] is None else state["frame"].copy()
        self._terminated, self._warned = state["terminated"], state["warned"]

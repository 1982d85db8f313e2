"""Real twins: source environments wrapped to the exact observation and action format of their neural env.

A real twin takes its source environment's frames (its ``rgb_array`` render, or its own
observation when that is an RGB image, as for Crafter or ALE games), crops the rows and
columns that hold the scene, resizes the result to the world model's frame size with an
area filter and repeats each action ``frame_skip`` times, as its `TwinSpec` says, so the
real and the neural env return the same ``Box(0, 255, (H, W, 3), uint8)`` frames for the
same action space. The source env's own low-dimensional observation (for CartPole the
state vector ``[x, x_dot, theta, theta_dot]``) or its ``info["state"]`` travels in
``info["state"]`` for state probes and evaluation. Recording and dream-to-real
evaluation use these envs. Any Gymnasium env becomes one with ``PixelTwin(spec=TwinSpec(id))``.
"""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from worldgym.config_io import ConfigError
from worldgym.worlds import TWINS, TwinSpec, find_twin  # noqa: F401  (re-exported: the twins' specs live with their worlds)


def resize_frame(
    frame: np.ndarray, height: int, width: int, crop_rows: tuple[int, int] | None = None, crop_cols: tuple[int, int] | None = None
) -> np.ndarray:
    """Crop rows and columns of an (h, w, 3) uint8 frame and resize it to (height, width, 3) with an area filter."""
    from PIL import Image

    if crop_rows is not None:
        frame = frame[crop_rows[0] : crop_rows[1]]
    if crop_cols is not None:
        frame = frame[:, crop_cols[0] : crop_cols[1]]
    if frame.shape[:2] == (height, width):
        return np.array(frame, dtype=np.uint8)
    return np.asarray(Image.fromarray(np.ascontiguousarray(frame)).resize((width, height), Image.BOX), dtype=np.uint8)


def make_source(spec: TwinSpec, name: str = "", **kwargs: Any) -> gym.Env:
    """The unwrapped source env of a twin: ``gymnasium.make(source_id)`` or ``module:Class()`` (see `TwinSpec`)."""
    missing = spec.missing()
    if missing:
        extra = f"pip install 'worldgym[{spec.extra}]'" if spec.extra else f"pip install {' '.join(missing)}"
        raise gym.error.DependencyNotInstalled(f"the real twin {name or spec.source_id} needs {', '.join(missing)}: {extra}")
    render_mode = "rgb_array" if spec.pixels == "render" else None
    kwargs = {**spec.make_kwargs, **kwargs}
    module, _, attr = spec.source_id.partition(":")
    if attr.isidentifier():  # module:Class of an env that is not registered
        return getattr(importlib.import_module(module), attr)(render_mode=render_mode, **kwargs)
    return gym.make(spec.source_id, render_mode=render_mode, max_episode_steps=None, **kwargs).unwrapped


class PixelTwin(gym.Env):
    """A real Gymnasium environment observed through rendered, resized RGB frames.

    ## Description
    The source environment runs unchanged; only its observation is replaced by its own
    rendering (or RGB observation), cropped and resized to the neural twin's frame size,
    and each action is repeated ``frame_skip`` times (`TwinSpec`).

    ## Action Space
    The source environment's action space.

    ## Observation Space
    ``Box(0, 255, (height, width, 3), uint8)``.

    ## Rewards, Starting State, Episode End
    Those of the source environment (rewards summed over skipped frames). ``info["state"]``
    holds the source's low-dimensional observation, or the source's own ``info["state"]``.

    ## Arguments
    ```python
    import gymnasium as gym
    import worldgym
    env = gym.make("worldgym/CartPoleReal-v0", height=64, width=64)
    env = PixelTwin(spec=TwinSpec("CarRacing-v3", frame_skip=2))  # any env that renders rgb_array
    ```
    ``name`` (default CartPole) is a twin of `worldgym.worlds.TWINS` or of a twin config file; ``spec`` (a
    `TwinSpec` or its dict) makes a twin of any source instead; ``height``/``width`` default
    to the spec's; other keyword arguments go to the source env.

    ## Version History
    * v0: first version.
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 50}

    def __init__(self, name: str | None = None, height: int | None = None, width: int | None = None, render_mode: str | None = None,
                 spec: TwinSpec | dict | None = None, **kwargs: Any):  # fmt: skip
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        if spec is None:
            name = name or "CartPole"
            self.spec_ = find_twin(name, TWINS)
        else:
            self.spec_ = spec if isinstance(spec, TwinSpec) else TwinSpec(**spec)
            name = name or self.spec_.source_id.rpartition(":")[2]
        self.name = name
        self.source = make_source(self.spec_, name, **kwargs)
        self.height, self.width = height or self.spec_.height, width or self.spec_.width
        self.render_mode = render_mode
        self.action_space = self.source.action_space
        self.observation_space = spaces.Box(0, 255, (self.height, self.width, 3), np.uint8)
        self.metadata = {**self.metadata, "render_fps": self.source.metadata.get("render_fps", 50)}
        self._frame: np.ndarray | None = None
        self._ended = False  # the source has terminated since the last reset (stepping on records the physics past the end)
        self._window = None

    def _observe(self, source_obs: Any) -> np.ndarray:
        frame = self.source.render() if self.spec_.pixels == "render" else source_obs
        frame = np.asarray(frame) if frame is not None else np.zeros(0)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            where = "render()" if self.spec_.pixels == "render" else "observation"
            raise ConfigError(
                f"twin {self.name}: expected an RGB frame (h, w, 3) uint8 from the source's {where}, got {frame.dtype} {frame.shape}; "
                f"set pixels: {'observation' if where == 'render()' else 'render'} in its twin config if the other one is RGB"
            )
        self._frame = resize_frame(frame, self.height, self.width, self.spec_.crop_rows, self.spec_.crop_cols)
        return self._frame.copy()

    def _with_state(self, source_obs: Any, info: dict) -> dict:
        """``info`` with ``state``: the source's own ``info["state"]``, else its observation if that is a flat vector."""
        if "state" in info:
            return {**info, "state": np.asarray(info["state"], dtype=np.float32)}
        obs = np.asarray(source_obs) if isinstance(source_obs, (np.ndarray, list, tuple, int, float)) else None
        if self.spec_.pixels == "render" and obs is not None and obs.ndim <= 1 and obs.dtype.kind in "biuf":
            return {**info, "state": obs.astype(np.float32).reshape(-1)}
        return info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        state, info = self.source.reset(seed=None if seed is None else int(self.np_random.integers(2**31)), options=options)
        self._ended = False
        obs = self._observe(state)
        if self.render_mode == "human":
            self.render()
        return obs, self._with_state(state, info)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._frame is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if not self.action_space.contains(action):
            raise gym.error.InvalidAction(f"action must be an element of {self.action_space}, got {action!r}")
        total = 0.0
        for _ in range(self.spec_.frame_skip):
            state, reward, terminated, truncated, info = self.source.step(action)
            total += float(reward)
            if truncated or (terminated and not self._ended):  # past its end a step keeps its frame_skip
                break
        self._ended = self._ended or bool(terminated)
        obs = self._observe(state)
        if self.render_mode == "human":
            self.render()
        return obs, total, bool(terminated), bool(truncated), self._with_state(state, info)

    def render(self) -> np.ndarray | None:
        if self._frame is None:
            return None
        if self.render_mode == "rgb_array":
            return self._frame.copy()
        if self.render_mode == "human":
            from worldgym.envs.display import show_frame

            self._window = show_frame(self._window, self._frame, self.metadata["render_fps"], f"{self.name} (real)")
        return None

    def close(self) -> None:
        if self._window is not None:
            from worldgym.envs.display import close_window

            close_window(self._window)
            self._window = None
        self.source.close()

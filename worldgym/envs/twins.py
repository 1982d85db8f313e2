"""Real twins: source environments wrapped to the exact observation and action format of their neural env.

A real twin renders its source environment (``render_mode="rgb_array"``), crops the rows
that hold the scene and resizes the result to the world model's frame size with an area
filter, so the real and the neural env return the same ``Box(0, 255, (H, W, 3), uint8)``
frames for the same action space. The source env's own observation (for CartPole the
state vector ``[x, x_dot, theta, theta_dot]``) travels in ``info["state"]`` for state
probes and evaluation. Recording and dream-to-real evaluation use these envs.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from worldgym.worlds import TWINS, TwinSpec  # noqa: F401  (re-exported: the twins' specs live with their worlds)


def resize_frame(frame: np.ndarray, height: int, width: int, crop_rows: tuple[int, int] | None = None) -> np.ndarray:
    """Crop rows of an (h, w, 3) uint8 render and resize it to (height, width, 3) with an area filter."""
    from PIL import Image

    if crop_rows is not None:
        frame = frame[crop_rows[0] : crop_rows[1]]
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.BOX), dtype=np.uint8)


class PixelTwin(gym.Env):
    """A real Gymnasium environment observed through rendered, resized RGB frames.

    ## Description
    The source environment runs unchanged; only its observation is replaced by its own
    rendering, cropped and resized to the neural twin's frame size.

    ## Action Space
    The source environment's action space.

    ## Observation Space
    ``Box(0, 255, (height, width, 3), uint8)``.

    ## Rewards, Starting State, Episode End
    Those of the source environment. ``info["state"]`` holds the source observation.

    ## Arguments
    ```python
    import gymnasium as gym
    import worldgym
    env = gym.make("worldgym/CartPoleReal-v0", height=64, width=64)
    ```

    ## Version History
    * v0: first version.
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 50}

    def __init__(self, name: str = "CartPole", height: int = 64, width: int = 64, render_mode: str | None = None, **kwargs: Any):
        if name not in TWINS:
            raise ValueError(f"no real twin named {name!r}; known twins: {sorted(TWINS)}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.spec_ = TWINS[name]
        self.name = name
        self.source = gym.make(self.spec_.source_id, render_mode="rgb_array", max_episode_steps=None, **kwargs).unwrapped
        self.height, self.width = height, width
        self.render_mode = render_mode
        self.action_space = self.source.action_space
        self.observation_space = spaces.Box(0, 255, (height, width, 3), np.uint8)
        self.metadata = {**self.metadata, "render_fps": self.source.metadata.get("render_fps", 50)}
        self._frame: np.ndarray | None = None
        self._window = None

    def _observe(self) -> np.ndarray:
        self._frame = resize_frame(self.source.render(), self.height, self.width, self.spec_.crop_rows)
        return self._frame.copy()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        state, info = self.source.reset(seed=None if seed is None else int(self.np_random.integers(2**31)), options=options)
        obs = self._observe()
        if self.render_mode == "human":
            self.render()
        return obs, {**info, "state": np.asarray(state, dtype=np.float32)}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._frame is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if not self.action_space.contains(action):
            raise gym.error.InvalidAction(f"action must be an element of {self.action_space}, got {action!r}")
        state, reward, terminated, truncated, info = self.source.step(action)
        obs = self._observe()
        if self.render_mode == "human":
            self.render()
        return obs, float(reward), bool(terminated), bool(truncated), {**info, "state": np.asarray(state, dtype=np.float32)}

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

"""Gymnasium wrappers that let a policy trained inside a neural env act in its real twin.

`EncodeFrames` turns a real twin's RGB frames into the latents the neural env observes
with ``obs_type="latent"``, by running the world model's own autoencoder on each frame.
A policy trained on latents in the dream then sees the same kind of observation in the
real environment. The wrapper only encodes; it never runs the dynamics or the decoder.

Dimension letters: H/W frame size, N tokens, C latent channels.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from worldgym.model.networks import Model


def check_frames(env: gym.Env, model: Model, wrapper: str) -> None:
    """A ValueError unless ``env`` observes uint8 RGB frames at the model's frame size."""
    ae = model.config.autoencoder
    expected = (ae.frame_height, ae.frame_width, 3)
    if env.observation_space.shape != expected or env.observation_space.dtype != np.uint8:
        raise ValueError(
            f"{wrapper} needs uint8 frames of shape {expected} (the model's frame size), got "
            f"{env.observation_space.shape} {env.observation_space.dtype}; make the twin with "
            f"height={ae.frame_height}, width={ae.frame_width}"
        )


class EncodeFrames(gym.ObservationWrapper):
    """Replace (H, W, 3) uint8 frames by the world model's latents (N, C) float32.

    ```python
    import gymnasium as gym
    import worldgym
    from worldgym.envs.wrappers import EncodeFrames
    env = EncodeFrames(gym.make("worldgym/CartPoleReal-v0"), "cartpole")
    obs, info = env.reset(seed=0)  # obs.shape == (16, 16), like gym.make("worldgym/CartPole-v0", obs_type="latent")
    ```

    Args:
        env: an env with ``Box(0, 255, (H, W, 3), uint8)`` observations at the model's frame size.
        checkpoint: a checkpoint folder, a shipped model's name, or a built `Model`.
        device: where the encoder runs.
    """

    def __init__(self, env: gym.Env, checkpoint: str | Path | Model, device: str | torch.device = "cpu") -> None:
        super().__init__(env)
        from worldgym.envs.env import load_model

        model = load_model(checkpoint, device)
        check_frames(env, model, "EncodeFrames")
        self.autoencoder = model.autoencoder.eval()
        self.device = torch.device(device)
        ae = model.config.autoencoder
        self.observation_space = spaces.Box(-np.inf, np.inf, (ae.tokens, ae.latent_channels), np.float32)

    @torch.no_grad()
    def observation(self, observation: np.ndarray) -> np.ndarray:
        frames = torch.from_numpy(np.ascontiguousarray(observation))[None].to(self.device)  # (1, H, W, 3)
        return self.autoencoder.encode(frames)[0].float().cpu().numpy()  # (N, C)


class ModelState(gym.Wrapper):
    """Observe a real env through the world model: the state a neural env gives with ``obs_type="features"``.

    The world model runs as a filter over the real frames. At reset it flushes its cache
    and commits the first frame, exactly as a neural env's reset commits its start frame;
    at each step it encodes the real frame and commits it under the action that was taken,
    exactly as a neural env commits the block it generated. The observation is the commit
    pass's head features (D,) float32: the model's state after reading the frame against
    its cache, which carries the history (velocities) a single frame lacks. A policy
    trained on a neural env's features therefore sees the same kind of observation here.

    ```python
    import gymnasium as gym
    import worldgym
    from worldgym.envs.wrappers import ModelState
    env = ModelState(gym.make("worldgym/CartPoleReal-v0"), "cartpolefast")
    obs, info = env.reset(seed=0)  # obs.shape == (128,), like gym.make("worldgym/CartPoleFast-v0", obs_type="features")
    ```

    ``info["frame"]`` keeps the real RGB frame. The filter is deterministic (no sampling).

    Args:
        env: an env with ``Box(0, 255, (H, W, 3), uint8)`` observations at the model's frame size.
        checkpoint: a checkpoint folder, a shipped model's name, or a built `Model`.
        device, dtype: where and in which precision the filter runs.
    """

    def __init__(self, env: gym.Env, checkpoint: str | Path | Model, device: str | torch.device = "cpu", dtype: str = "float32") -> None:
        super().__init__(env)
        from worldgym.engine import WorldModel
        from worldgym.envs.env import load_model

        model = load_model(checkpoint, device)
        check_frames(env, model, "ModelState")
        self.engine = WorldModel(model, 1, device=device, dtype=dtype, features=True)
        self.observation_space = spaces.Box(-np.inf, np.inf, (model.config.dynamics.dim,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        frame, info = self.env.reset(seed=seed, options=options)
        self.engine.reset([0], torch.from_numpy(np.ascontiguousarray(frame))[None, None])
        return self.engine.features[0].cpu().numpy().copy(), {**info, "frame": frame}

    def step(self, action):
        frame, reward, terminated, truncated, info = self.env.step(action)
        out = self.engine.observe(torch.from_numpy(np.ascontiguousarray(frame))[None], [action])
        return out.features[0].cpu().numpy().copy(), reward, terminated, truncated, {**info, "frame": frame}

"""Real twins: registered beside the neural envs, the same observation and action format, Gymnasium and SB3
checkers, seeding, frames that follow the true state, and bad input."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import worldgym  # noqa: F401  (registers the twins)
from worldgym.model.actions import ActionConfig
from worldgym.envs.registration import shipped_models
from worldgym.envs.twins import TWINS, PixelTwin

TWIN = "worldgym/CartPoleReal-v0"


def test_gymnasium_check_env_passes_with_no_warnings():
    env = gym.make(TWIN, render_mode="rgb_array")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []
    env.close()


def test_sb3_check_env_passes_with_no_warnings():
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make(TWIN)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(env.unwrapped, warn=True)
    assert [str(w.message) for w in caught] == []


def test_registered_with_the_neural_env_format_and_time_limit():
    spec = gym.spec(TWIN)
    assert spec.max_episode_steps == TWINS["CartPole"].max_episode_steps == 500
    env = gym.make(TWIN)
    height, width = spec.kwargs["height"], spec.kwargs["width"]
    assert env.observation_space == gym.spaces.Box(0, 255, (height, width, 3), np.uint8)
    assert env.action_space == ActionConfig(kind="discrete", n=2).space()
    for folder, config in shipped_models():  # every shipped model naming this twin has exactly its format
        if config.get("real_twin") == "CartPole":
            ae = config["autoencoder"]
            assert (ae["frame_height"], ae["frame_width"]) == (height, width), folder
            assert env.action_space == ActionConfig(**config["action"]).space(), folder


def test_seeded_resets_are_deterministic_and_info_carries_the_true_state():
    env1, env2 = PixelTwin(height=32, width=32), PixelTwin(height=32, width=32)
    o1, i1 = env1.reset(seed=3)
    o2, i2 = env2.reset(seed=3)
    assert np.array_equal(o1, o2) and np.array_equal(i1["state"], i2["state"])
    for a in [1, 0, 1, 1]:
        r1, r2 = env1.step(a), env2.step(a)
        assert np.array_equal(r1[0], r2[0]) and r1[1:4] == r2[1:4]
    assert np.allclose(r1[4]["state"], env1.source.state)
    assert type(r1[1]) is float and type(r1[2]) is bool and type(r1[3]) is bool


def test_frames_follow_the_cart():
    """Pushing right moves the cart's dark pixels right, in step with the true cart position."""
    env = PixelTwin(height=64, width=64)
    obs, info = env.reset(seed=0)
    xs, cols = [info["state"][0]], []

    def cart_column(frame: np.ndarray) -> float:
        dark = frame.sum(-1) < 150  # the cart is black; the pole is brown, the track grey
        return float(np.nonzero(dark)[1].mean())

    cols.append(cart_column(obs))
    for _ in range(8):
        obs, _, terminated, _, info = env.step(1)
        xs.append(info["state"][0])
        cols.append(cart_column(obs))
        if terminated:
            break
    assert xs[-1] > xs[0] and cols[-1] > cols[0]
    assert np.corrcoef(xs, cols)[0, 1] > 0.9


def test_bad_input():
    env = PixelTwin(height=16, width=16)
    with pytest.raises(gym.error.ResetNeeded):
        env.step(0)
    env.reset(seed=0)
    for bad in [2, -1, 0.5, None, "left"]:
        with pytest.raises(gym.error.InvalidAction, match=r"Discrete\(2\)"):
            env.step(bad)
    with pytest.raises(ValueError, match="no real twin named"):
        PixelTwin(name="NoSuchTwin")
    env.close()
    env.close()

"""WorldModelEnv: Gymnasium and SB3 checkers, seeding, reset options, bad input, numerics, rendering,
snapshots, registration, cheap import, and an SB3 PPO smoke run."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import worldgym
from worldgym.model import checkpoint
from worldgym.model.actions import ActionConfig, InvalidActionError
from worldgym.model.autoencoder import AutoencoderConfig
from worldgym.engine import NumericsError
from worldgym.envs.env import WorldModelEnv
from worldgym.model.networks import Model
from worldgym.envs.registration import register_all, shipped_models

from conftest import randomized, tiny_config, tiny_model

GENERIC = "worldgym/WorldModel-v0"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    return str(checkpoint.save(tiny_model(), tmp_path_factory.mktemp("ckpt") / "tiny"))


def model_48() -> Model:
    """A tiny model with 48x48 frames: SB3 wants images of at least 36x36."""
    config = tiny_config()
    config.autoencoder = AutoencoderConfig(frame_height=48, frame_width=48, latent_channels=4, widths=[8, 8])
    return randomized(Model(config), 1)


def rollout(env: gym.Env, seed: int, actions: list) -> list:
    out = [env.reset(seed=seed)[0]]
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        out.append((obs, reward, terminated, truncated, info.get("termination_prob")))
    return out


def same(a, b) -> bool:
    return gym.utils.env_checker.data_equivalence(a, b, exact=True)


# ---------------------------------------------------------------------------- API checkers
def test_gymnasium_check_env_passes_with_no_warnings(ckpt):
    """Built through gymnasium.make from a checkpoint path; every render mode is checked through env.spec.

    ``wall_time_info=False`` because check_env compares two step infos for equality and a
    wall-clock reading never repeats; everything else is the default env.
    """
    env = gym.make(GENERIC, checkpoint=ckpt, render_mode="rgb_array", wall_time_info=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []
    env.close()


def test_sb3_check_env_passes_with_no_warnings():
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = WorldModelEnv(model_48())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(env, warn=True)
    assert [str(w.message) for w in caught] == []


def test_step_types_info_and_copies(model):
    env = WorldModelEnv(model, render_mode="rgb_array")
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.uint8 and obs.shape == (16, 16, 3) and obs.flags.c_contiguous
    obs, reward, terminated, truncated, info = env.step(1)
    assert type(reward) is float and type(terminated) is bool and type(truncated) is bool
    assert 0.0 <= info["termination_prob"] <= 1.0 and terminated == (info["termination_prob"] > 0.5)
    assert "step_time" not in info and env.last_step_time > 0.0 and isinstance(info["reward_pred"], float)  # timings are opt-in
    kept = obs.copy()
    obs[:] = 0  # mutating a returned observation changes nothing inside the env
    assert np.array_equal(env.render(), kept)
    frame = env.render()
    frame[:] = 7
    assert np.array_equal(env.render(), kept)


# ---------------------------------------------------------------------------- seeding
def test_seeded_rollouts_are_bit_identical_and_seeds_differ(model):
    env = WorldModelEnv(model, wall_time_info=False)
    env.action_space.seed(5)
    actions = [env.action_space.sample() for _ in range(30)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny random model terminates often; we keep stepping
        a = rollout(env, 7, actions)
        b = rollout(WorldModelEnv(model, wall_time_info=False), 7, actions)
        c = rollout(env, 8, actions)
    assert same(a, b)
    assert not same(a[1:], c[1:])
    env.reset(seed=7)
    state_7 = copy.deepcopy(env.np_random.bit_generator.state)
    env.reset(seed=8)
    assert env.np_random.bit_generator.state != state_7


def test_unseeded_reset_continues_the_seeded_stream(model):
    env1, env2 = WorldModelEnv(model), WorldModelEnv(model)
    env1.reset(seed=3)
    env2.reset(seed=3)
    assert np.array_equal(env1.reset()[0], env2.reset()[0])
    assert np.array_equal(env1.step(0)[0], env2.step(0)[0])


# ---------------------------------------------------------------------------- reset options
def test_reset_options_frames_actions_and_start_index(model):
    env = WorldModelEnv(model)
    bank = model.start_frames.numpy()  # (K, F, H, W, 3)
    obs, info = env.reset(seed=0, options={"start_index": 2})
    assert np.array_equal(obs, bank[2, -1]) and info["start_index"] == 2
    frames = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    obs, info = env.reset(options={"frames": frames, "actions": [0, 2]})
    assert np.array_equal(obs, frames[-1]) and info["start_index"] == -1
    obs, _ = env.reset(options={"frames": frames[0]})  # a single (H, W, 3) frame
    assert np.array_equal(obs, frames[0])
    obs, info = env.reset(seed=1)
    assert np.array_equal(obs, bank[info["start_index"], -1])
    with pytest.raises(ValueError, match=r"uint8 of shape \(F, 16, 16, 3\)"):
        env.reset(options={"frames": np.zeros((2, 8, 8, 3), np.uint8)})
    with pytest.raises(ValueError, match=r"start_index'\] must be an int in \[0, 4\)"):
        env.reset(options={"start_index": 9})
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"frame": frames})
    env.reset(options={})  # check_reset_options


# ---------------------------------------------------------------------------- bad input
def test_step_before_reset_raises_reset_needed(model, ckpt):
    with pytest.raises(gym.error.ResetNeeded):
        WorldModelEnv(model).step(0)
    with pytest.raises(gym.error.ResetNeeded):
        gym.make(GENERIC, checkpoint=ckpt).step(0)


BAD_DISCRETE = [3, -1, 1.0, np.float32(1), [1], np.array([1]), None, "1", True, torch.tensor(1.5)]


def test_invalid_discrete_actions_raise_and_change_nothing(model):
    """Each bad action raises InvalidAction naming the action and the space; the rollout is as if it never happened."""
    clean, dirty = WorldModelEnv(model, wall_time_info=False), WorldModelEnv(model, wall_time_info=False)
    clean.reset(seed=0)
    dirty.reset(seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, bad in enumerate(BAD_DISCRETE):
            with pytest.raises(gym.error.InvalidAction) as e:
                dirty.step(bad)
            shown = "1.5" if isinstance(bad, torch.Tensor) else repr(bad)  # tensors are shown as their numpy value
            assert "Discrete(3)" in str(e.value) and shown in str(e.value)
            assert same(dirty.step(i % 3), clean.step(i % 3))
    assert isinstance(e.value, InvalidActionError)


def test_invalid_box_actions_raise():
    model = tiny_model(action=ActionConfig(kind="box", n=2, low=-1.0, high=1.0))
    env = WorldModelEnv(model)
    env.reset(seed=0)
    for bad in [np.array([np.nan, 0.0], np.float32), np.array([np.inf, 0.0], np.float32), np.array([2.0, 0.0], np.float32),
                np.zeros(3, np.float32), np.zeros((1, 2), np.float32), None, np.array(["a", "b"])]:
        with pytest.raises(gym.error.InvalidAction, match=r"Box\(-1.0, 1.0, \(2,\), float32\)"):
            env.step(bad)
    env.step(np.zeros(2, np.float32))


def test_non_finite_model_output_names_the_env_and_returns_nothing(model):
    env = WorldModelEnv(model, render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    weight = next(model.dynamics.parameters())
    saved = weight.detach().clone()
    with torch.no_grad():
        weight.fill_(float("nan"))
    try:
        with pytest.raises(NumericsError, match="env 0") as e:
            env.step(0)
        assert isinstance(e.value, FloatingPointError)
        assert np.array_equal(env.render(), obs)  # no garbage frame was kept
    finally:
        with torch.no_grad():
            weight.copy_(saved)
    assert np.isfinite(env.step(0)[0].astype(float)).all()


def test_step_after_terminated_warns_once_and_keeps_going(model):
    env = WorldModelEnv(model, termination_fn=lambda obs, action: True)
    env.reset(seed=0)
    assert env.step(0)[2] is True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env.step(0)
        env.step(1)
    assert len(caught) == 1 and "already returned terminated=True" in str(caught[0].message)
    assert int(env.engine.cache.filled()[0]) <= model.config.dynamics.sink + model.config.dynamics.window


def test_reward_and_termination_overrides(model):
    env = WorldModelEnv(model, reward_fn=lambda obs, a: 2.5 * a, termination_fn=lambda obs, a: a == 2)
    env.reset(seed=0)
    _, r, term, _, info = env.step(1)
    assert r == 2.5 and term is False and "reward_pred" in info
    assert env.step(2)[2] is True


# ---------------------------------------------------------------------------- observations and rendering
def test_latent_observations(model):
    env = WorldModelEnv(model, obs_type="latent", render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (model.config.autoencoder.tokens, 4) and obs.dtype == np.float32
    obs, *_ = env.step(1)
    assert env.observation_space.contains(obs)
    assert env.render().shape == (16, 16, 3)


def test_human_render_opens_and_closes_headless(model):
    env = WorldModelEnv(model, render_mode="human")  # conftest sets SDL_VIDEODRIVER=dummy
    env.reset(seed=0)
    env.step(0)
    assert env.render() is None
    env.close()
    env.close()


# ---------------------------------------------------------------------------- snapshots
def test_branching_from_a_snapshot_matches_a_fresh_env_brought_to_that_state(model):
    prefix, future = [0, 2, 1, 1, 0, 2], [1, 0, 2, 2, 1, 0, 1, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = WorldModelEnv(model, wall_time_info=False)
        env.reset(seed=11)
        for a in prefix:
            env.step(a)
        snap = env.get_state()
        first = [env.step(a) for a in future]
        env.set_state(snap)
        second = [env.step(a) for a in future]
        env.set_state(snap)  # a snapshot is reusable: branch into another future
        other = env.step(0)
        fresh = WorldModelEnv(model, wall_time_info=False)
        fresh.reset(seed=11)
        for a in prefix:
            fresh.step(a)
        third = [fresh.step(a) for a in future]
        restored = WorldModelEnv(model, wall_time_info=False)  # never reset: set_state alone brings it there
        restored.set_state(snap)
        fourth = [restored.step(a) for a in future]
    assert same(first, second) and same(first, third) and same(first, fourth)
    assert not same(other, first[0])  # the other branch really is another future
    env.set_state(snap)
    restored.set_state(snap)
    assert np.array_equal(env.reset()[0], restored.reset()[0])  # np_random came back too


# ---------------------------------------------------------------------------- registration
def test_registration_of_shipped_models_twins_and_time_limit(tmp_path, monkeypatch):
    config = tiny_config()
    config.name, config.real_twin = "TinyShipped", "CartPole"
    checkpoint.save(randomized(Model(config)), tmp_path / "models" / "tinyshipped")
    saved = {k: gym.registry.pop(k) for k in list(gym.registry) if k.startswith("worldgym/")}
    try:
        ids = register_all(tmp_path)
        assert {"worldgym/TinyShipped-v0", "worldgym/CartPoleReal-v0", GENERIC} <= set(ids)
        spec = gym.spec("worldgym/TinyShipped-v0")
        assert spec.max_episode_steps == 500 and spec.vector_entry_point.endswith(":WorldModelVectorEnv")
        assert gym.spec("worldgym/CartPoleReal-v0").kwargs == {"name": "CartPole", "height": 16, "width": 16}
        env = gym.make("worldgym/TinyShipped-v0", max_episode_steps=3, termination_fn=lambda o, a: False)
        env.reset(seed=0)
        flags = [env.step(0)[2:4] for _ in range(3)]
        assert flags == [(False, False), (False, False), (False, True)]
        with pytest.raises(TypeError, match="no_such_kwarg"):
            gym.make("worldgym/TinyShipped-v0", no_such_kwarg=1)
    finally:
        for k in [k for k in gym.registry if k.startswith("worldgym/")]:
            del gym.registry[k]
        gym.registry.update(saved)


def test_default_cartpole_is_the_4_token_model_and_former_names_still_resolve():
    """worldgym/CartPole-v0 is the 4-token model (formerly CartPoleFast-v0, an id and a name that still
    give it); the 16-token model it replaced as the default is worldgym/CartPole16-v0."""
    from worldgym.envs.registration import ALIASES

    default, sixteen = gym.spec("worldgym/CartPole-v0"), gym.spec("worldgym/CartPole16-v0")
    assert json.loads((Path(default.kwargs["checkpoint"]) / "config.json").read_text())["config"]["dynamics"]["patch"] == 2
    assert json.loads((Path(sixteen.kwargs["checkpoint"]) / "config.json").read_text())["config"]["dynamics"]["patch"] == 1
    assert ALIASES == {"CartPoleFast": "CartPole"}
    assert gym.spec("worldgym/CartPoleFast-v0").kwargs == default.kwargs
    assert gym.spec("worldgym/CartPoleFast-v0").max_episode_steps == default.max_episode_steps == 500
    assert checkpoint.resolve("cartpolefast") == checkpoint.resolve("CartPole") == Path(default.kwargs["checkpoint"])


@pytest.mark.parametrize("folder,config", shipped_models(), ids=lambda v: getattr(v, "name", ""))
def test_every_shipped_model_passes_check_env(folder, config):
    """Each model in assets/models/ is registered, builds through gymnasium.make and passes check_env."""
    env = gym.make(f"worldgym/{config['name']}-v0", wall_time_info=False)
    assert env.spec.kwargs["checkpoint"] == str(folder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []
    env.close()


def test_import_worldgym_is_cheap_and_registers():
    code = (
        "import sys, gymnasium as gym, worldgym\n"
        "assert 'torch' not in sys.modules, 'import worldgym imported torch'\n"
        "assert 'worldgym/CartPoleReal-v0' in gym.registry and 'worldgym/WorldModel-v0' in gym.registry\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")
    assert worldgym.__version__


# ---------------------------------------------------------------------------- SB3 smoke
def test_sb3_ppo_smoke_on_latent_observations(model):
    from stable_baselines3 import PPO

    env = gym.wrappers.TimeLimit(WorldModelEnv(model, obs_type="latent", sampler_steps=1), max_episode_steps=50)
    agent = PPO("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=1, seed=0, device="cpu")
    agent.learn(total_timesteps=256)
    assert agent.num_timesteps >= 256


def test_pickle_round_trip(model):
    """As Gymnasium's test_pickle_env: a pickled copy resets and steps exactly like the original."""
    import pickle

    env = WorldModelEnv(model, wall_time_info=False)
    env.reset(seed=1)
    twin = pickle.loads(pickle.dumps(env))
    assert same([env.reset(seed=123)[0], env.step(1)], [twin.reset(seed=123)[0], twin.step(1)])


def test_soak_script_runs_and_reports_a_memory_curve():
    """The 100k-step memory run of BENCHMARKS.md, at 20 steps: it runs, resets and reports (no timing asserted)."""
    from worldgym.evaluation.soak import soak

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = soak(None, steps=20, reset_every=5, samples=4, obs_type="latent", sampler_steps=1)
    assert [s for s, _ in result["rss_mib"]] == [5, 10, 15, 20] and result["cache_bytes"] > 0

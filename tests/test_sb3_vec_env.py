"""SB3VecEnv: the native batch as Stable-Baselines3's VecEnv. It steps the same episodes as SB3's
DummyVecEnv of single envs (SB3's autoreset, terminal observations, TimeLimit.truncated, seeding),
each row gets its own action, SB3's wrappers and PPO run on it."""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3", reason="the SB3 adapter needs the sb3 extra")

from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv, VecCheckNan, VecFrameStack, VecMonitor  # noqa: E402

from worldgym.envs.env import WorldModelEnv  # noqa: E402
from worldgym.envs.sb3 import SB3VecEnv  # noqa: E402
from worldgym.envs.vector_env import WorldModelVectorEnv  # noqa: E402


def never(obs, action) -> bool:
    return False


def ends_on_2(obs, action) -> bool:
    """Scripted episode end: action 2 terminates, so the test chooses when episodes end."""
    return int(action) == 2


def pair(model, B: int = 3, limit: int = 4):
    """The adapter and SB3's DummyVecEnv of single envs, same model, latents, time limit and scripted ends."""
    kwargs = dict(obs_type="latent", dtype="float32", termination_fn=ends_on_2)
    native = SB3VecEnv(WorldModelVectorEnv(model, B, autoreset_mode="SameStep", max_episode_steps=limit, **kwargs))
    single = functools.partial(lambda: gym.wrappers.TimeLimit(WorldModelEnv(model, **kwargs), max_episode_steps=limit))
    return native, DummyVecEnv([single] * B)


def test_same_episodes_as_dummy_vec_env_through_terminations_and_time_limits(model):
    B = 3
    native, dummy = pair(model, B)
    native.seed(5)
    dummy.seed(5)
    np.testing.assert_allclose(native.reset(), dummy.reset(), atol=1e-4, rtol=0)
    assert [i["start_index"] for i in native.reset_infos] == [i["start_index"] for i in dummy.reset_infos]
    ended = {"terminated": 0, "truncated": 0}
    actions = np.random.default_rng(0).choice([0, 1, 1, 0, 2], (12, B))  # distinct per row: each row gets its own
    for act in actions:
        no, nr, nd, ni = native.step(act)
        do, dr, dd, di = dummy.step(act)
        np.testing.assert_allclose(no, do, atol=1e-4, rtol=0)
        np.testing.assert_allclose(nr, dr, atol=1e-4, rtol=0)
        assert nr.dtype == dr.dtype == np.float32 and nd.dtype == dd.dtype == np.bool_
        assert np.array_equal(nd, dd) and len(ni) == B
        for i in range(B):
            assert ni[i]["TimeLimit.truncated"] == di[i]["TimeLimit.truncated"]
            assert ("terminal_observation" in ni[i]) == ("terminal_observation" in di[i]) == bool(nd[i])
            if nd[i]:
                np.testing.assert_allclose(ni[i]["terminal_observation"], di[i]["terminal_observation"], atol=1e-4, rtol=0)
                ended["truncated" if ni[i]["TimeLimit.truncated"] else "terminated"] += 1
            np.testing.assert_allclose(ni[i]["termination_prob"], di[i]["termination_prob"], atol=1e-4, rtol=0)
    assert ended["terminated"] > 0 and ended["truncated"] > 0  # both kinds of end went through the same-step reset
    dummy.close()


def test_actions_reach_their_rows(model):
    """Row i's next latents depend on actions[i] only: swapping two rows' actions swaps their outputs."""
    venv = WorldModelVectorEnv(model, 2, obs_type="latent", dtype="float32", termination_fn=never, autoreset_mode="SameStep")
    env = SB3VecEnv(venv)
    env.seed(0)
    env.reset()
    start = env.env_method("get_state")
    a = env.step(np.array([0, 1]))[0]
    for i, s in enumerate(start):
        env.env_method("set_state", s, indices=[i])
    b = env.step(np.array([1, 0]))[0]
    for i, s in enumerate(start):
        env.env_method("set_state", s, indices=[i])
    c = env.step(np.array([0, 1]))[0]
    assert np.array_equal(a, c)  # restored rows replay exactly
    assert not np.allclose(a[0], b[0]) and not np.allclose(a[1], b[1])  # each row follows its own action


def test_disabled_autoreset_vector_env_resets_in_the_same_step(model):
    env = SB3VecEnv(WorldModelVectorEnv(model, 2, obs_type="latent", termination_fn=ends_on_2, autoreset_mode="Disabled"))
    env.reset()
    obs, _, done, infos = env.step(np.array([2, 0]))
    assert done.tolist() == [True, False] and "terminal_observation" in infos[0] and not infos[0]["TimeLimit.truncated"]
    assert not np.array_equal(obs[0], infos[0]["terminal_observation"])
    env.step(np.array([0, 0]))  # the reset row steps on as a fresh episode


def test_vec_env_api_as_sb3_expects(model):
    venv = WorldModelVectorEnv(model, 3, render_mode="rgb_array", autoreset_mode="SameStep")
    env = VecCheckNan(SB3VecEnv(venv), raise_exception=True)
    assert env.num_envs == 3 and env.observation_space == venv.single_observation_space
    assert env.get_attr("render_mode") == ["rgb_array"] * 3 and env.get_attr("action_space", [1]) == [venv.single_action_space]
    assert env.has_attr("name") and not env.has_attr("no_such_attribute")
    assert env.env_is_wrapped(gym.Wrapper) == [False] * 3
    obs = env.reset()
    assert obs.shape == (3, *venv.single_observation_space.shape) and obs.dtype == np.uint8
    frames = env.env_method("render", indices=[0, 2])
    assert len(frames) == 2 and np.array_equal(frames[1], obs[2])
    assert env.render(mode="rgb_array").ndim == 3  # SB3 tiles the rows' frames
    env.set_attr("reward_fn", lambda obs, action: 7.0)
    assert np.all(env.step(np.zeros(3, np.int64))[1] == 7.0)
    with pytest.raises(ValueError, match="share one batched env"):
        env.set_attr("reward_fn", None, indices=[0])
    with pytest.raises(ValueError, match="SAME_STEP or DISABLED"):
        SB3VecEnv(WorldModelVectorEnv(model, 2))  # NEXT_STEP would hand SB3 a reset row one step late
    env.close()


def test_seed_and_options_apply_once_per_reset(model):
    env = SB3VecEnv(WorldModelVectorEnv(model, 2, obs_type="latent", autoreset_mode="SameStep"))
    assert env.seed(11) == [11, 12]
    first = env.reset()
    env.seed(11)
    assert np.array_equal(env.reset(), first)
    env.set_options({"start_index": 1})
    env.reset()
    assert [i["start_index"] for i in env.reset_infos] == [1, 1]
    env.set_options([{"start_index": 0}, {"start_index": 3}])
    env.reset()
    assert [i["start_index"] for i in env.reset_infos] == [0, 3]
    env.set_options([{"start_index": 0}, {}])
    with pytest.raises(ValueError, match="same keys for every env"):
        env.reset()


def test_make_builds_the_native_batch_from_an_id(tmp_path, model):
    from worldgym.model import checkpoint

    path = checkpoint.save(model, tmp_path / "tiny")
    env = SB3VecEnv.make("worldgym/WorldModel-v0", 2, checkpoint=str(path), obs_type="latent")
    assert isinstance(env.venv, WorldModelVectorEnv) and env.venv.num_envs == 2
    env.reset()
    env.step(np.array([0, 1]))


def test_ppo_learns_on_the_native_batch(model):
    env = VecMonitor(VecFrameStack(SB3VecEnv(WorldModelVectorEnv(
        model, 4, obs_type="latent", sampler_steps=1, max_episode_steps=10, autoreset_mode="SameStep")), 2))  # fmt: skip
    agent = PPO("MlpPolicy", env, n_steps=16, batch_size=32, n_epochs=2, seed=0, device="cpu")
    before = [p.detach().clone() for p in agent.policy.parameters()]
    agent.learn(total_timesteps=128)
    assert agent.num_timesteps >= 128
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.policy.parameters()))  # the update ran
    assert len(agent.ep_info_buffer) > 0  # VecMonitor saw whole episodes (the time limit ended them)

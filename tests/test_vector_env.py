"""WorldModelVectorEnv: exact autoreset sequences, masked partial resets, batch invariance, AsyncVectorEnv
with spawn, snapshots of rows, and bad input."""

from __future__ import annotations

import functools
import warnings

import cloudpickle
import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import data_equivalence
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from worldgym.model import checkpoint
from worldgym.model.actions import InvalidActionError
from worldgym.engine import NumericsError
from worldgym.envs.env import WorldModelEnv
from worldgym.envs.vector_env import WorldModelVectorEnv

from conftest import tiny_model


def ends_on_2(obs, action) -> bool:
    """Scripted episode end: action 2 terminates, so tests choose exactly when episodes end."""
    return int(action) == 2


def never(obs, action) -> bool:
    return False


def in_bank(model, obs: np.ndarray) -> bool:
    return any(np.array_equal(obs, f) for f in model.start_frames[:, -1].numpy())


def rows_state(env: WorldModelVectorEnv, rows: list[int]) -> dict:
    return env.get_state(rows)


def state_equal(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(state_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(state_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, np.random.Generator):
        return a.bit_generator.state == b.bit_generator.state
    return a == b


# ---------------------------------------------------------------------------- construction
def test_make_vec_uses_the_native_vector_env(tmp_path):
    path = checkpoint.save(tiny_model(), tmp_path / "tiny")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        envs = gym.make_vec("worldgym/WorldModel-v0", num_envs=3, checkpoint=str(path))
        envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)
        envs.reset(seed=0)
        envs.step(np.array([0, 1, 2]))
    assert [str(w.message) for w in caught] == []
    assert isinstance(envs.unwrapped, WorldModelVectorEnv)
    assert envs.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    assert envs.observation_space.shape == (3, 16, 16, 3) and envs.action_space == gym.spaces.MultiDiscrete([3, 3, 3])


# ---------------------------------------------------------------------------- autoreset sequences
def test_next_step_autoreset_sequence(model):
    envs = WorldModelVectorEnv(model, 2, termination_fn=ends_on_2, max_episode_steps=3)
    obs, _ = envs.reset(seed=0)
    # step 1: env 0 terminates; env 1 goes on
    obs, rew, term, trunc, info = envs.step(np.array([2, 0]))
    assert term.tolist() == [True, False] and trunc.tolist() == [False, False]
    assert not in_bank(model, obs[0])
    # step 2: env 0 is reset (reward 0, not done, a start frame); its action is ignored
    obs, rew, term, trunc, info = envs.step(np.array([2, 0]))
    assert in_bank(model, obs[0]) and rew[0] == 0.0 and not term[0] and not trunc[0]
    assert info["termination_prob"][0] == 0.0
    # step 3: env 1 reaches max_episode_steps=3 -> truncated, not terminated
    obs, rew, term, trunc, info = envs.step(np.array([0, 0]))
    assert trunc.tolist() == [False, True] and term.tolist() == [False, False]
    # step 4: env 1 is reset
    obs, rew, term, trunc, info = envs.step(np.array([0, 1]))
    assert in_bank(model, obs[1]) and rew[1] == 0.0 and not trunc[1]
    assert rew.dtype == np.float64 and term.dtype == np.bool_ and trunc.dtype == np.bool_


def test_same_step_autoreset_sequence(model):
    envs = WorldModelVectorEnv(model, 2, autoreset_mode="SameStep", termination_fn=ends_on_2)
    assert envs.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    envs.reset(seed=0)
    obs, rew, term, trunc, info = envs.step(np.array([0, 2]))
    assert term.tolist() == [False, True]
    assert in_bank(model, obs[1]) and not in_bank(model, info["final_obs"][1])  # reset obs now, last obs in final_obs
    assert info["_final_obs"].tolist() == [False, True] and info["final_obs"][0] is None
    assert info["_final_info"].tolist() == [False, True] and info["final_info"]["_termination_prob"].tolist() == [False, True]
    obs2, rew2, term2, *_ = envs.step(np.array([0, 0]))  # the reset row simply continues
    assert term2.tolist() == [False, False] and rew2[1] != 0.0


def test_disabled_autoreset_and_partial_reset_leaves_other_rows_bit_identical(model):
    envs = WorldModelVectorEnv(model, 3, autoreset_mode=AutoresetMode.DISABLED, termination_fn=ends_on_2)
    control = WorldModelVectorEnv(model, 3, autoreset_mode=AutoresetMode.DISABLED, termination_fn=ends_on_2)
    for e in (envs, control):
        e.reset(seed=4)
        e.step(np.array([2, 1, 0]))
    before_obs = envs.step(np.array([0, 1, 1]))[0]  # no autoreset: env 0 keeps generating
    control.step(np.array([0, 1, 1]))
    before = rows_state(envs, [1, 2])
    obs, info = envs.reset(options={"reset_mask": np.array([True, False, False])})
    assert in_bank(model, obs[0]) and np.array_equal(obs[1:], before_obs[1:])
    assert info["_start_index"].tolist() == [True, False, False]
    assert state_equal(rows_state(envs, [1, 2]), before)  # cache rows, positions, RNG, counters untouched
    after = envs.step(np.array([1, 0, 2]))
    ref = control.step(np.array([1, 0, 2]))
    for a, b in zip(after[:4], ref[:4]):
        assert np.array_equal(a[1:], b[1:])  # rows 1 and 2 continue bit-identically, in the same batch size
    for bad, err in [([True, False, False], TypeError), (np.array([1, 0, 0]), TypeError),
                     (np.array([True, False]), ValueError), (np.zeros(3, np.bool_), ValueError)]:
        with pytest.raises(err, match="reset_mask"):
            envs.reset(options={"reset_mask": bad})


# ---------------------------------------------------------------------------- batch invariance
def test_env_i_of_a_batch_of_16_matches_a_single_env_seeded_seed_plus_i(model):
    """Tolerance: batched matmuls are not bit-identical to batch-1 ones on CPU (~1e-6 in latents),
    so latent observations agree to atol 1e-4 and uint8 frames differ by at most 2 LSB on < 1 % of values.
    Both in float32: ``dtype="auto"`` may resolve differently for a batch and for one env."""
    B, steps, seed = 16, 4, 100
    actions = np.random.default_rng(0).integers(0, 3, (steps, B))
    frames_vec = WorldModelVectorEnv(model, B, termination_fn=never, dtype="float32")
    latent_vec = WorldModelVectorEnv(model, B, obs_type="latent", termination_fn=never, dtype="float32")
    fv, lv = [frames_vec.reset(seed=seed)[0]], [latent_vec.reset(seed=seed)[0]]
    for a in actions:
        fv.append(frames_vec.step(a)[0])
        lv.append(latent_vec.step(a)[0])
    fv, lv = np.stack(fv), np.stack(lv)  # (T, B, ...)
    worst, frac = 0, 0.0
    for i in range(B):
        single = WorldModelEnv(model, obs_type="latent", render_mode="rgb_array", termination_fn=never, dtype="float32")
        lat, fr = [single.reset(seed=seed + i)[0]], [single.render()]
        for a in actions[:, i]:
            lat.append(single.step(int(a))[0])
            fr.append(single.render())
        assert np.array_equal(fr[0], fv[0, i]) and np.array_equal(lat[0], lv[0, i])  # same start draw, same prefill
        np.testing.assert_allclose(np.stack(lat), lv[:, i], atol=1e-4, rtol=0)
        diff = np.abs(np.stack(fr).astype(int) - fv[:, i].astype(int))
        worst, frac = max(worst, int(diff.max())), max(frac, float((diff > 0).mean()))
    assert worst <= 2 and frac < 0.01, (worst, frac)


def test_native_vector_env_matches_sync_vector_env_through_autoresets(model):
    """The same episodes (with real termination heads and NEXT_STEP autoresets) as SyncVectorEnv of single envs."""
    B = 4
    native = WorldModelVectorEnv(model, B, obs_type="latent", dtype="float32")
    sync = SyncVectorEnv([functools.partial(WorldModelEnv, model, obs_type="latent", dtype="float32")] * B)
    a, b = native.reset(seed=9)[0], sync.reset(seed=9)[0]
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)
    dones = 0
    for act in np.random.default_rng(1).integers(0, 3, (10, B)):
        na, sa = native.step(act), sync.step(act)
        np.testing.assert_allclose(na[0], sa[0], atol=1e-4, rtol=0)
        np.testing.assert_allclose(na[1], sa[1], atol=1e-4, rtol=0)
        assert np.array_equal(na[2], sa[2]) and np.array_equal(na[3], sa[3])
        dones += int(na[2].sum())
    assert dones > 0  # the sequence really went through autoresets
    sync.close()


# ---------------------------------------------------------------------------- async with spawn
@pytest.mark.filterwarnings("ignore:.*ERROR.*:UserWarning")  # AsyncVectorEnv logs the worker error it re-raises
def test_async_vector_env_with_spawn_matches_sync(tmp_path):
    path = str(checkpoint.save(tiny_model(), tmp_path / "tiny"))
    factory = functools.partial(WorldModelEnv, path, wall_time_info=False)
    assert len(cloudpickle.dumps(factory)) < 10_000  # the factory carries a path, not a model
    actions = np.random.default_rng(2).integers(0, 3, (5, 2))
    results = []
    for vec in (SyncVectorEnv([factory] * 2), AsyncVectorEnv([factory] * 2, context="spawn")):
        try:
            out = [vec.reset(seed=5)]
            out += [vec.step(a) for a in actions]
            results.append(out)
            # a worker's exception reaches the parent as our own (picklable) type, with its message
            vec.reset(seed=0)  # no autoreset pending, so env 1 really steps the bad action
            with pytest.raises(InvalidActionError, match=r"got np.int64\(7\) for Discrete\(3\)"):
                vec.step(np.array([0, 7]))
        finally:
            vec.close(terminate=isinstance(vec, AsyncVectorEnv))
    assert data_equivalence(results[0], results[1], exact=True)


# ---------------------------------------------------------------------------- snapshots and bad input
def test_row_snapshots_branch_like_a_fresh_env(model):
    envs = WorldModelVectorEnv(model, 2, termination_fn=never, wall_time_info=False)
    envs.reset(seed=1)
    envs.step(np.array([1, 2]))
    snap = envs.get_state([1])
    first = [envs.step(np.array([0, a]))[0][1] for a in (2, 2, 0)]
    envs.set_state([0], snap)  # row 1's state into row 0: both rows now run the same future
    envs.set_state([1], snap)
    again = [envs.step(np.array([a, a]))[0] for a in (2, 2, 0)]
    for f, g in zip(first, again):
        assert np.array_equal(f, g[1]) and np.array_equal(g[0], g[1])


def test_bad_batched_actions_raise_and_change_nothing(model):
    envs = WorldModelVectorEnv(model, 2, wall_time_info=False)
    with pytest.raises(gym.error.ResetNeeded):
        envs.step(np.array([0, 0]))
    envs.reset(seed=0)
    before = envs.get_state()
    for bad in [np.array([0, 3]), np.array([0]), np.array([0.5, 1.0]), [0, None], None, 1]:
        with pytest.raises(gym.error.InvalidAction):
            envs.step(bad)
    assert state_equal(envs.get_state(), before)


def test_a_bad_action_names_its_row_and_no_row_advances(model):
    """``actions[3] must be ...`` for the row at fault, also for a row awaiting its NEXT_STEP autoreset."""
    envs = WorldModelVectorEnv(model, 5, termination_fn=ends_on_2)  # Discrete(3)
    envs.reset(seed=0)
    before = envs.get_state()
    with pytest.raises(gym.error.InvalidAction, match=r"^actions\[3\] must be an int in \[0, 3\), got np.int64\(7\) for Discrete\(3\)$"):
        envs.step(np.array([0, 1, 0, 7, 1]))
    with pytest.raises(InvalidActionError, match=r"^actions\[1\] must be an element of Discrete\(3\), got None$"):
        envs.step([0, None, 0, 0, 0])
    assert state_equal(envs.get_state(), before)
    envs.step(np.array([2, 0, 0, 0, 0]))  # row 0 ends; its next action is ignored, but still checked
    before = envs.get_state()
    with pytest.raises(gym.error.InvalidAction, match=r"^actions\[0\] must be an int in \[0, 3\)"):
        envs.step(np.array([9, 0, 0, 0, 0]))
    assert state_equal(envs.get_state(), before)


def test_non_finite_output_names_the_env_index(model):
    envs = WorldModelVectorEnv(model, 3)
    obs, _ = envs.reset(seed=0)
    envs.engine.cache.k[:, 1] = float("nan")  # poison env 1's cache only
    with pytest.raises(NumericsError, match=r"\[1\]"):
        envs.step(np.array([0, 0, 0]))
    assert np.array_equal(envs.reset(options={"reset_mask": np.array([False, True, False])})[0][[0, 2]], obs[[0, 2]])
    assert np.isfinite(envs.step(np.array([0, 0, 0]))[1]).all()  # a reset flushes the bad row


def test_render_modes(model):
    envs = WorldModelVectorEnv(model, 3, render_mode="rgb_array")
    obs, _ = envs.reset(seed=0)
    frames = envs.render()
    assert len(frames) == 3 and all(np.array_equal(f, o) for f, o in zip(frames, obs))
    human = WorldModelVectorEnv(model, 3, render_mode="human")  # one window tiling all envs (dummy SDL driver)
    human.reset(seed=0)
    human.step(np.array([0, 1, 2]))
    human.close()


def test_reset_options_per_env(model):
    envs = WorldModelVectorEnv(model, 2)
    bank = model.start_frames[:, -1].numpy()
    obs, info = envs.reset(seed=0, options={"start_index": np.array([3, 1])})
    assert np.array_equal(obs, bank[[3, 1]]) and info["start_index"].tolist() == [3, 1]
    frames = np.random.default_rng(0).integers(0, 256, (2, 2, 16, 16, 3), dtype=np.uint8)  # (B, F, H, W, 3)
    obs, _ = envs.reset(options={"frames": frames, "actions": np.array([[0, 1], [0, 2]])})
    assert np.array_equal(obs, frames[:, -1])
    with pytest.raises(ValueError, match="unknown reset options"):
        envs.reset(options={"start": 0})

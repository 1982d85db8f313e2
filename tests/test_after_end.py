"""Steps recorded past an episode's end (`AfterEnd`, ``worldgym record --past-end N``): stored apart, verified,
ignored by everything that reads an episode, carried by merge and mirror, and appended by training's `Data`."""

from __future__ import annotations

import hashlib
import json

import gymnasium as gym
import numpy as np
import pytest

from worldgym.cli import main
from worldgym.data.dataset import AfterEnd, DatasetError, DatasetWriter, _canonical, check, load
from worldgym.data.minari_export import minari_buffers
from worldgym.data.shards import merge
from worldgym.model.actions import ActionConfig
from worldgym.play.record import make_env, record
from worldgym.policies.builtin import make_policy
from worldgym.training.data import Data
from worldgym.worlds.symmetry import Mirror, mirror_dataset

OBS = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)
ACT = gym.spaces.Discrete(2)


def episode(T: int, seed: int, terminated: bool = True, states: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    term, trunc = np.zeros(T, bool), np.zeros(T, bool)
    (term if terminated else trunc)[-1] = True
    return dict(
        observations=rng.integers(0, 256, (T + 1, 8, 8, 3), dtype=np.uint8), actions=rng.integers(0, 2, T),
        rewards=np.ones(T, np.float32), terminations=term, truncations=trunc, seed=seed,
        states=rng.normal(size=(T + 1, 4)).astype(np.float32) if states else None,
    )  # fmt: skip


def tail(N: int, seed: int, states: bool = True) -> AfterEnd:
    rng = np.random.default_rng(seed + 1000)
    return AfterEnd(rng.integers(0, 256, (N, 8, 8, 3), dtype=np.uint8), rng.integers(0, 2, N), np.zeros(N, np.float32),
                    np.array([True] * (N - 1) + [False]), rng.normal(size=(N, 4)).astype(np.float32) if states else None)  # fmt: skip


def test_round_trip_keeps_the_tail_apart_from_the_episode(tmp_path):
    eps, tails = [episode(5, 0), episode(3, 1), episode(4, 2, terminated=False)], [tail(3, 0), None, None]
    with DatasetWriter(tmp_path / "d", OBS, ACT) as w:
        for e, t in zip(eps, tails):
            w.add_episode(**e, after_end=t)
    ds = load(tmp_path / "d")
    assert ds.total_steps == 12 and [len(e) for e in ds] == [5, 3, 4]  # the tail is not part of an episode's length
    assert ds.manifest["episodes"][0]["after_end"] == 3 and "after_end" not in ds.manifest["episodes"][1]
    got = ds.episodes[0].after_end
    for name in ("observations", "actions", "rewards", "terminations", "states"):
        np.testing.assert_array_equal(getattr(got, name), getattr(tails[0], name))
    assert ds.episodes[1].after_end is None and ds.episodes[2].after_end is None
    assert check(tmp_path / "d")["after_end_steps"] == 3
    buffers = minari_buffers(ds)  # a Minari export holds the episode, not the steps past its end
    assert [len(b.actions) for b in buffers] == [5, 3, 4]


@pytest.mark.parametrize(
    "kwargs, tail_, message",
    [
        ({"terminated": False}, tail(2, 0), "terminated episode only"),
        ({}, AfterEnd(np.zeros((2, 8, 8, 3), np.uint8), np.zeros(3, int), np.zeros(3), np.ones(3, bool), np.zeros((3, 4))), "after_end observations"),
        ({}, AfterEnd(np.zeros((2, 8, 8, 3), np.uint8), np.array([0, 2]), np.zeros(2), np.ones(2, bool), np.zeros((2, 4))), "after_end actions"),
        ({}, AfterEnd(np.zeros((2, 8, 8, 3), np.uint8), np.zeros(2, int), np.zeros(3), np.ones(2, bool), np.zeros((2, 4))), "after_end rewards"),
        ({}, tail(2, 0, states=False), "after_end states"),
        ({"states": False}, tail(2, 0), "after_end states"),
        ({}, AfterEnd(np.zeros((0, 8, 8, 3), np.uint8), np.zeros(0, int), np.zeros(0), np.zeros(0, bool), np.zeros((0, 4))), "no step"),
    ],
)
def test_writer_rejects_a_bad_tail_and_writes_nothing(tmp_path, kwargs, tail_, message):
    w = DatasetWriter(tmp_path / "d", OBS, ACT)
    with pytest.raises(DatasetError, match=message):
        w.add_episode(**episode(4, 0, **kwargs), after_end=tail_)
    assert w.episodes == [] and not (tmp_path / "d").exists()


def test_loader_names_a_missing_or_cut_tail(tmp_path):
    with DatasetWriter(tmp_path / "d", OBS, ACT) as w:
        w.add_episode(**episode(4, 0), after_end=tail(3, 0))
    (tmp_path / "d/episodes/000000/after_end_actions.npy").unlink()
    with pytest.raises(DatasetError, match="after_end_actions.npy is missing"):
        load(tmp_path / "d")
    with DatasetWriter(tmp_path / "e", OBS, ACT) as w:
        w.add_episode(**episode(4, 0), after_end=tail(3, 0))
    body = json.loads((tmp_path / "e/manifest.json").read_text())
    body["episodes"][0]["after_end"] = 4  # the manifest claims more steps past the end than the files hold
    body["manifest_sha256"] = hashlib.sha256(_canonical(body)).hexdigest()
    (tmp_path / "e/manifest.json").write_text(json.dumps(body))
    with pytest.raises(DatasetError, match="after_end_observations.npy has 3 rows, episode 0 lists 4 steps after its end"):
        load(tmp_path / "e")


def test_merge_and_mirror_carry_the_tail(tmp_path):
    with DatasetWriter(tmp_path / "a", OBS, ACT) as w:
        w.add_episode(**episode(4, 0), after_end=tail(3, 0))
        w.add_episode(**episode(2, 1))
    merge(tmp_path / "m", [tmp_path / "a", tmp_path / "a"])
    merged = load(tmp_path / "m")
    assert [e.after_end is not None for e in merged] == [True, False, True, False]
    np.testing.assert_array_equal(merged.episodes[2].after_end.observations, tail(3, 0).observations)
    mirror_dataset(tmp_path / "a", tmp_path / "r", Mirror((1, 0), (-1, -1, -1, -1)))
    got, want = load(tmp_path / "r").episodes[0].after_end, tail(3, 0)
    np.testing.assert_array_equal(got.observations, want.observations[:, :, ::-1])
    np.testing.assert_array_equal(got.actions, 1 - want.actions)
    np.testing.assert_array_equal(got.states, -want.states)
    np.testing.assert_array_equal(got.terminations, want.terminations)


def test_training_data_runs_through_the_end_with_the_sources_flags(tmp_path):
    with DatasetWriter(tmp_path / "d", OBS, ACT) as w:
        w.add_episode(**episode(4, 0), after_end=tail(3, 0))
        w.add_episode(**episode(2, 1))
    data = Data(tmp_path / "d", ActionConfig(kind="discrete", n=2))
    ep, t = episode(4, 0), tail(3, 0)
    assert data.lengths.tolist() == [7, 2] and data.starts.tolist() == [0, 8]
    np.testing.assert_array_equal(data.frames[:8].numpy(), np.concatenate([ep["observations"], t.observations]))
    np.testing.assert_array_equal(data.actions[1:8, 0].numpy(), np.concatenate([ep["actions"], t.actions]))
    assert data.terms[:8].tolist() == [0, 0, 0, 0, 1, 1, 1, 0]  # the end, then the source's own flag past it
    assert data.rewards[5:8].tolist() == [0, 0, 0]
    np.testing.assert_array_equal(data.states[5:8].numpy(), t.states)
    assert data.terms[8:].tolist() == [0, 0, 1]


def test_record_steps_a_real_twin_on_past_its_end(tmp_path):
    env = make_env("real:CartPole", 32, 32)
    record(env, make_policy("random", env.action_space), tmp_path / "d", episodes=3, seed=5, past_end=4)
    plain = tmp_path / "plain"
    record(env, make_policy("random", env.action_space), plain, episodes=3, seed=5)
    env.close()
    ds, ref = load(tmp_path / "d"), load(plain)
    assert ds.metadata["past_end"] == 4 and ds.total_steps == ref.total_steps  # the episodes themselves are the same
    for e, r in zip(ds, ref):
        np.testing.assert_array_equal(e.observations, r.observations)
        assert e.terminations[-1] and len(e.after_end) == 4
        assert e.after_end.terminations.all() and (e.after_end.rewards == 0).all()  # the pole only falls further
        angle = np.abs(np.concatenate([e.states[-1:, 2], e.after_end.states[:, 2]]))
        assert np.all(np.diff(angle) > 0) or np.abs(e.after_end.states[:, 0]).min() > 2.4, angle
        assert not np.array_equal(e.after_end.observations[-1], e.observations[-1])  # the frames move on


def test_cli_past_end_refuses_a_neural_env(tmp_path, capsys):
    assert main(["record", "--env", "worldgym/CartPole-v0", "--episodes", "1", "--past-end", "3", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "--past-end 3" in capsys.readouterr().err and not (tmp_path / "x").exists()


@pytest.mark.filterwarnings("ignore:.*already returned terminated")
def test_past_the_end_a_frame_skip_twin_still_steps_its_skip(tmp_path):
    """A twin holding each action k source steps stops a step early at the end, not after it: past the end every
    step is k source steps, as before it (the source says terminated on each of them)."""
    from gymnasium.envs.classic_control.cartpole import CartPoleEnv

    env = make_env("real:CartPoleSkip2", 32, 32)
    assert env.unwrapped.spec_.frame_skip == 2
    record(env, make_policy("random", env.action_space), tmp_path / "d", episodes=3, seed=11, past_end=3)
    env.close()
    physics = CartPoleEnv()
    physics.reset(seed=0)
    for ep in load(tmp_path / "d"):
        physics.state = np.asarray(ep.states[-1], np.float64)
        for a, got in zip(ep.after_end.actions, ep.after_end.states):
            physics.step(int(a)), physics.step(int(a))
            np.testing.assert_allclose(got, physics.state, atol=1e-4)
            physics.state = np.asarray(got, np.float64)

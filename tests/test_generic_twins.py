"""Generic twins: any Gymnasium env as a pixel twin from a twin config file, Crafter's adapter and explorer, sharded recording."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import worldgym  # noqa: F401  (registers the twins)
from worldgym.cli import main
from worldgym.config_io import ConfigError, UserError, dump_yaml
from worldgym.data.dataset import DatasetError, load
from worldgym.data.shards import merge, parse_shard
from worldgym.envs.twins import PixelTwin
from worldgym.play.record import make_env
from worldgym.worlds import TwinSpec, load_twin

ROOT = Path(__file__).resolve().parent.parent


def test_twin_config_files_are_plain_dumps_of_twinspec(tmp_path):
    for path in sorted((ROOT / "configs" / "twins").glob("*.yaml")):
        spec = load_twin(path)
        dump_yaml(spec, tmp_path / path.name)
        assert load_twin(tmp_path / path.name) == spec, path
    (tmp_path / "Bad.yaml").write_text("source_id: CartPole-v1\ncrop: [0, 10]\n")
    with pytest.raises(ConfigError, match="unknown keys.*crop"):
        load_twin(tmp_path / "Bad.yaml")
    with pytest.raises(ConfigError, match="pixels must be one of"):
        (tmp_path / "Bad.yaml").write_text("source_id: CartPole-v1\npixels: screen\n")
        load_twin(tmp_path / "Bad.yaml")


def test_a_spec_makes_a_twin_of_any_env_with_crop_resize_and_frame_skip():
    plain = PixelTwin(spec=TwinSpec("CartPole-v1"), height=24, width=32)
    skip = PixelTwin(spec={"source_id": "CartPole-v1", "frame_skip": 3, "crop_rows": [100, 400], "crop_cols": [0, 300]}, height=16, width=16)
    o1, i1 = plain.reset(seed=0)
    o2, i2 = skip.reset(seed=0)
    assert o1.shape == (24, 32, 3) and o2.shape == (16, 16, 3) and np.array_equal(i1["state"], i2["state"])
    _, r1, *_ = plain.step(1)
    _, r3, _, _, info = skip.step(1)
    assert r1 == 1.0 and r3 == 3.0  # three source steps, rewards summed
    for _ in range(2):
        *_, plain_info = plain.step(1)
    np.testing.assert_array_equal(info["state"], plain_info["state"])  # one skip step = three source steps
    assert skip.name == "CartPole-v1"
    with pytest.raises(ConfigError, match="expected an RGB frame"):
        PixelTwin(spec=TwinSpec("CartPole-v1", pixels="observation")).reset(seed=0)


def test_record_names_unknown_twins_and_mismatched_twin_files(tmp_path):
    with pytest.raises(UserError, match="no real twin named 'Nope'.*CartPole"):
        make_env("real:Nope")
    dump_yaml(TwinSpec("CartPole-v1"), tmp_path / "Cart.yaml")
    with pytest.raises(UserError, match="twin of 'CartPole-v1', but --env asks for 'Acrobot-v1'"):
        make_env("gym:Acrobot-v1", twin=tmp_path / "Cart.yaml")
    with pytest.raises(UserError, match="goes with --env gym:ID"):
        make_env("real:CartPole", twin=tmp_path / "Cart.yaml")
    assert make_env("gym:CartPole-v1", twin=tmp_path / "Cart.yaml").observation_space.shape == (64, 64, 3)


def test_twin_config_files_register_in_a_fresh_process_and_missing_extras_do_not(tmp_path):
    dump_yaml(TwinSpec("Acrobot-v1", height=32, width=32, max_episode_steps=50), tmp_path / "Arm.yaml")
    dump_yaml(TwinSpec("nowhere_pkg:Nope-v0", requires=("nowhere_pkg",), extra="nowhere"), tmp_path / "Nope.yaml")
    (tmp_path / "Broken.yaml").write_text("source_id: [\n")
    code = (
        "import sys, gymnasium as gym, worldgym\n"
        "assert 'torch' not in sys.modules and 'crafter' not in sys.modules and 'ale_py' not in sys.modules\n"
        "assert 'worldgym/NopeReal-v0' not in gym.registry\n"
        "env = gym.make('worldgym/ArmReal-v0')\n"
        "obs, info = env.reset(seed=0)\n"
        "assert obs.shape == (32, 32, 3) and env.spec.max_episode_steps == 50 and info['state'].shape == (6,)\n"
    )
    env = {**os.environ, "WORLDGYM_TWINS": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Broken.yaml" in out.stderr  # an unreadable twin file is skipped with a warning
    from worldgym.envs.twins import make_source

    with pytest.raises(gym.error.DependencyNotInstalled, match=r"nowhere_pkg.*worldgym\[nowhere\]"):
        make_source(load_twin(tmp_path / "Nope.yaml"), "Nope")


def test_shards_merge_into_the_unsharded_recording(tmp_path):
    base = ["record", "--env", "gym:CartPole-v1", "--size", "16", "--episodes", "5", "--max-steps", "6", "--policy", "sticky", "--quiet"]
    assert main([*base, "--out", str(tmp_path / "whole")]) == 0
    for i in range(3):
        assert main([*base, "--shard", f"{i}/3", "--out", str(tmp_path / "ds")]) == 0
    shards = [tmp_path / f"ds-shard-{i}-of-3" for i in (2, 0, 1)]
    assert [len(load(s)) for s in shards] == [1, 2, 2]
    summary = merge(tmp_path / "ds", shards)
    whole, merged = load(tmp_path / "whole"), load(tmp_path / "ds")
    assert summary["episodes"] == 5 and merged.total_steps == whole.total_steps
    for a, b in zip(whole.episodes, merged.episodes):
        assert a.seed == b.seed
        for key in ("observations", "actions", "rewards", "states"):
            np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]))
    with pytest.raises(DatasetError, match=r"shards \[1\] of 3 are missing"):
        merge(tmp_path / "bad", shards[:2])
    with pytest.raises(DatasetError, match="are both shard 0/3"):
        merge(tmp_path / "bad", [*shards, shards[1]])
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad.partial").exists()
    with pytest.raises(UserError, match="0 <= i < n"):
        parse_shard("3/3")
    os.environ["RANK"], os.environ["WORLD_SIZE"] = "1", "2"
    try:
        from worldgym.data.shards import current_shard

        assert current_shard() == (1, 2) and current_shard("0/4") == (0, 4)
    finally:
        del os.environ["RANK"], os.environ["WORLD_SIZE"]


def test_no_test_imports_the_tests_package():
    """crafter's dependency opensimplex installs a top-level `tests` package: our tests import `conftest`, never `tests.`."""
    for path in sorted((ROOT / "tests").glob("*.py")):
        text = path.read_text()
        assert "from tests" + "." not in text and "import tests" + "\n" not in text, path
    assert not (ROOT / "tests" / "__init__.py").exists()


# ---------------------------------------------------------------------------- Crafter
def test_crafter_adapter_passes_check_env_and_is_seeded():
    pytest.importorskip("crafter", reason="Crafter is the optional extra worldgym[crafter]")
    from worldgym.worlds.crafter import ACTIONS, STATE_NAMES, CrafterEnv

    import crafter

    assert tuple(crafter.constants.actions) == ACTIONS
    spec = gym.spec("worldgym/CrafterReal-v0")
    assert spec.max_episode_steps == 10000 and spec.kwargs == {"name": "Crafter", "height": 64, "width": 64}
    small = {"area": (24, 24)}  # world generation is ~1 s per reset at Crafter's 64x64 tiles; the checks need a dozen
    env = gym.make("worldgym/CrafterReal-v0", **small)
    assert env.action_space == gym.spaces.Discrete(17)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []
    a, b = CrafterEnv(**small), CrafterEnv(**small)
    (oa, ia), (ob, ib) = a.reset(seed=7), b.reset(seed=7)
    assert oa.shape == (64, 64, 3) and oa.dtype == np.uint8 and np.array_equal(oa, ob)
    assert ia["state"].shape == (len(STATE_NAMES),) and ia["semantic"].shape == (24, 24)
    for action in (1, 3, 5, 2, 4):
        sa, sb = a.step(action), b.step(action)
        assert np.array_equal(sa[0], sb[0]) and sa[1:4] == sb[1:4]
    assert set(sa[4]) >= {"inventory", "achievements", "semantic", "player_pos", "state"}
    assert not np.array_equal(a.reset(seed=8)[0], b.reset(seed=7)[0])


def test_crafter_explorer_collects_places_and_crafts():
    pytest.importorskip("crafter", reason="Crafter is the optional extra worldgym[crafter]")
    from worldgym.worlds.crafter import CrafterEnv, CrafterExplorer

    env = CrafterEnv()
    policy = CrafterExplorer(env.action_space)
    unlocked: set[str] = set()
    for ep in range(2):
        obs, info = env.reset(seed=ep)
        policy.reset(np.random.default_rng(ep))
        for _ in range(250):
            obs, _, terminated, _, info = env.step(policy(obs, info))
            if terminated:
                break
        unlocked |= {k for k, v in info["achievements"].items() if v}
    assert {"collect_wood", "place_table", "make_wood_pickaxe"} <= unlocked, unlocked

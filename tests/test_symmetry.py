"""A world's mirror symmetry: CartPole really is mirror-symmetric, datasets mirror exactly, mirrored policies sum both views."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import tiny_config, randomized

from worldgym.config_io import ConfigError
from worldgym.data.dataset import load
from worldgym.envs.registration import known_twins
from worldgym.envs.twins import PixelTwin
from worldgym.model.actions import ActionConfig
from worldgym.model.networks import Model
from worldgym.play.record import record
from worldgym.policies.builtin import StickyRandomPolicy
from worldgym.policies.model_state import MirroredPolicy, ModelStatePlanner, ModelStatePolicy, action_scores, feature_actor, save_model_state_policy
from worldgym.policies.saved import PolicyError, policy_net
from worldgym.policy_io import load_policy
from worldgym.worlds.symmetry import Mirror, mirror_dataset

ROOT = Path(__file__).resolve().parent.parent
CARTPOLE = Mirror((1, 0), (-1, -1, -1, -1))


def test_mirror_is_checked():
    assert Mirror.from_dict({"actions": [1, 0]}).to_dict() == {"actions": [1, 0]}
    assert CARTPOLE.action(0) == 1 and CARTPOLE.action(np.array([0, 1, 1])).tolist() == [1, 0, 0]
    assert Mirror((0, 2, 1)).action(np.array([0, 1, 2])).tolist() == [0, 2, 1]
    with pytest.raises(ConfigError, match="permutation"):
        Mirror((1, 1))
    with pytest.raises(ConfigError, match="undo itself"):
        Mirror((1, 2, 0))
    with pytest.raises(ConfigError, match="-1 and 1"):
        Mirror((1, 0), (0.5, 1))
    with pytest.raises(ConfigError, match="actions"):
        Mirror.from_dict({"action": [1, 0]})
    with pytest.raises(ValueError, match="expected actions in \\[0, 2\\)"):
        CARTPOLE.action(np.array([2]))
    with pytest.raises(ValueError, match="expected states with 4 entries"):
        CARTPOLE.state(np.zeros((3, 5)))


def test_cartpole_twins_declare_their_mirror_and_it_holds():
    """Physics: the mirrored action from the mirrored state leads to the mirrored state. Pixels: the flipped frame is the
    frame of the mirrored state but for anti-aliased edge pixels."""
    twins = known_twins()
    for name in ("CartPole", "CartPoleSkip2", "CartPoleSkip3"):
        assert Mirror.from_dict(twins[name].mirror) == CARTPOLE, name
    env = PixelTwin("CartPole", height=64, width=64)
    env.reset(seed=0)
    cart = env.source.unwrapped
    rng = np.random.default_rng(0)
    for _ in range(10):
        s = rng.uniform([-2, -1, -0.2, -1], [2, 1, 0.2, 1])
        a = int(rng.integers(2))
        cart.state = s.copy()
        frame, *_ = env.step(a)
        nxt = np.array(cart.state)
        cart.state = CARTPOLE.state(s)
        mirrored, *_ = env.step(CARTPOLE.action(a))
        np.testing.assert_allclose(np.array(cart.state), CARTPOLE.state(nxt), atol=1e-9)
        diff = np.abs(CARTPOLE.frames(frame).astype(int) - mirrored.astype(int))
        assert (diff > 0).mean() < 0.02 and diff.mean() < 0.5, (diff.max(), (diff > 0).mean())
    env.close()


def test_mirror_dataset_flips_frames_swaps_actions_negates_states(data, tmp_path):
    out = tmp_path / "mirrored"
    summary = mirror_dataset(data, out, CARTPOLE)
    src, dst = load(data), load(out)
    assert summary == {"episodes": len(src), "steps": src.total_steps} and dst.metadata["mirror_of"] == str(data)
    for a, b in zip(src, dst):
        np.testing.assert_array_equal(b.observations, a.observations[:, :, ::-1])
        np.testing.assert_array_equal(b.actions, 1 - a.actions)
        np.testing.assert_array_equal(b.states, -a.states)
        np.testing.assert_array_equal(b.rewards, a.rewards)
        np.testing.assert_array_equal(b.terminations, a.terminations)
        assert b.seed == a.seed
    twice = tmp_path / "twice"
    mirror_dataset(out, twice, CARTPOLE)
    for a, c in zip(src, load(twice)):
        np.testing.assert_array_equal(c.observations, a.observations)
        np.testing.assert_array_equal(c.actions, a.actions)
        np.testing.assert_array_equal(c.states, a.states)
    with pytest.raises(ConfigError, match="exists"):
        mirror_dataset(data, out)
    with pytest.raises(ConfigError, match="permutes 3 discrete actions"):
        mirror_dataset(data, tmp_path / "three", Mirror((0, 2, 1)))
    assert not (tmp_path / "three").exists()


def test_mirror_dataset_reads_the_mirror_of_the_twin_it_was_recorded_from(data, tmp_path):
    env = PixelTwin("CartPole", height=16, width=16)
    recorded = record(env, StickyRandomPolicy(env.action_space), tmp_path / "rec", episodes=2, seed=0, max_steps=5, metadata={"env": "real:CartPole"})
    mirror_dataset(recorded, tmp_path / "m")
    assert load(tmp_path / "m").metadata["mirror"] == CARTPOLE.to_dict()
    with pytest.raises(ConfigError, match="not recorded from a known real twin"):
        mirror_dataset(data, tmp_path / "n")  # recorded through the Python API without metadata: say the mirror


def test_dataset_mirror_cli(data, tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "worldgym.cli", "dataset", "mirror", *args], capture_output=True, text=True, cwd=ROOT)

    ok = cli(str(tmp_path / "m"), "--source", str(data), "--actions", "1,0", "--state-sign=-1,-1,-1,-1")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["episodes"] == len(load(data))
    bad = cli(str(tmp_path / "n"), "--source", str(data), "--actions", "1,1")
    assert bad.returncode == 2 and "permutation" in bad.stderr
    missing = cli(str(tmp_path / "n"))
    assert missing.returncode == 2 and "--source" in missing.stderr


def two_action_model() -> Model:
    model = randomized(Model(tiny_config(action=ActionConfig(kind="discrete", n=2))), 0)
    model.config.real_twin = "CartPole"
    return model


def frames(seed: int, count: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 16, 16, 3), dtype=np.uint8)


@pytest.mark.parametrize("plan", [False, True])
def test_mirrored_policy_sums_the_frame_and_its_mirror(tmp_path, plan):
    """Each copy's filter holds what a plain policy fed (frames, actions) or (flipped frames, swapped actions) holds,
    the action is the argmax of the summed scores, and the folder round-trips through load_policy."""
    torch.manual_seed(0)
    model = two_action_model()
    D = model.config.dynamics.dim
    actor = feature_actor(D, [8, 8], 2, out_gain=1.0)
    critic = policy_net(D, 1, [8, 8], 1, 1.0, actor[0])
    planning = {"critic": critic, "planning": {"horizon": 2, "gamma": 0.9}} if plan else {}
    path = save_model_state_policy(tmp_path / "p", actor, model, [8, 8], 2, {"mirror": CARTPOLE.to_dict()}, **planning)
    policy = load_policy(path)
    assert isinstance(policy, MirroredPolicy) and policy.config["mirror"] == CARTPOLE.to_dict()
    assert isinstance(policy.policy, ModelStatePlanner) == plan
    plain = [load_policy(path, mirror=False) for _ in range(2)]
    assert isinstance(plain[0], ModelStatePolicy) and not isinstance(plain[0], MirroredPolicy)
    seen = frames(1, 6)
    policy.reset()
    for p in plain:
        p.reset()
    for f in seen:
        action = policy(f)
        plain[0].features(f)
        plain[1].features(CARTPOLE.frames(f))
        # the same noise in the plans: both planners of the mirrored policy draw from their own engines' generators
        s0, s1 = action_scores(plain[0]), action_scores(plain[1])
        assert action == int((s0 + s1[[1, 0]]).argmax())
        plain[0].last_action, plain[1].last_action = action, 1 - action
        torch.testing.assert_close(policy.policy.engine.features, plain[0].engine.features)
        torch.testing.assert_close(policy.mirrored.engine.features, plain[1].engine.features)
    # the folder without the entry: mirror=True takes the mirror of the model's real twin
    bare = save_model_state_policy(tmp_path / "bare", actor, model, [8, 8], 2, **planning)
    assert not isinstance(load_policy(bare), MirroredPolicy) and isinstance(load_policy(bare, mirror=True), MirroredPolicy)
    sampled = load_policy(path, deterministic=False)
    sampled.reset(np.random.default_rng(0))
    assert all(sampled(f) in (0, 1) for f in seen)


def test_mirrored_policy_refuses_what_it_cannot_mirror(tmp_path):
    model = two_action_model()
    model.config.real_twin = ""
    actor = feature_actor(model.config.dynamics.dim, [8, 8], 2)
    path = save_model_state_policy(tmp_path / "p", actor, model, [8, 8], 2)
    with pytest.raises(PolicyError, match="declares a mirror"):
        load_policy(path, mirror=True)
    config = json.loads((path / "policy.json").read_text())
    (path / "policy.json").write_text(json.dumps({**config, "mirror": {"actions": [0, 1, 2]}}))
    with pytest.raises(PolicyError, match="permutes 3 actions but the policy has 2"):
        load_policy(path)
    (path / "policy.json").write_text(json.dumps({**config, "mirror": {"actions": [1, 1]}}))
    with pytest.raises(PolicyError, match="permutation"):
        load_policy(path)

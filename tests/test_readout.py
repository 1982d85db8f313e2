"""The state readout: a ridge map from the filter's features to the recorded state, what readout agents observe, kept in their saved policy."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from test_model_state import LOOP, cli, tiny_cartpole  # noqa: F401  (the fixture)
from worldgym.data import dataset as ds
from worldgym.model import checkpoint
from worldgym.policies.model_state import ModelStatePolicy, save_model_state_policy
from worldgym.policies.saved import PolicyError, load_policy
from worldgym.training.imagination import Agent
from worldgym.training.readout import ReadoutObs, filter_features, fit_readout, turn_readout


def test_readout_is_the_ridge_fit_of_the_filters_features_to_the_recorded_state(tiny_cartpole):
    """Refitting by hand on the same frames gives the same map; on the training frames it explains most of each state number."""
    path, data = tiny_cartpole
    model = checkpoint.load(path)
    readout, report = fit_readout(model, [str(data)], ridge=1e-3, holdout=0.0)
    eps = list(ds.load(data))
    x = np.concatenate([filter_features(model, e.observations, np.asarray(e.actions)) for e in eps])
    y = np.concatenate([e.states for e in eps]).astype(np.float64)
    assert report["frames"] == len(x) == len(y) and len(report["r2"]) == y.shape[1]
    got = readout(torch.from_numpy(x).float()).double().numpy() * np.asarray(report["scale"])  # back to state units
    z = np.c_[(x - x.mean(0)) / (x.std(0) + 1e-6), np.ones(len(x))]
    w = np.linalg.solve(z.T @ z + 1e-3 * np.eye(z.shape[1]), z.T @ y)
    np.testing.assert_allclose(got, z @ w, atol=1e-3)  # float32 map against a float64 solve
    assert min(report["r2"]) > 0.5  # 32 features, ~100 frames: an in-sample fit
    readout2, _ = fit_readout(model, [str(data)], ridge=1e-3, holdout=0.0)
    assert torch.equal(readout.weight, readout2.weight)  # deterministic


def test_readout_refuses_recordings_without_states(tiny_cartpole, tmp_path):
    path, data = tiny_cartpole
    model = checkpoint.load(path)
    bare = tmp_path / "bare"
    with ds.DatasetWriter(bare, gym.spaces.Box(0, 255, (32, 32, 3), np.uint8), gym.spaces.Discrete(2)) as w:
        e = next(iter(ds.load(data)))
        w.add_episode(e.observations, e.actions, e.rewards, e.terminations, e.truncations)
    with pytest.raises(Exception, match="carry no states"):
        fit_readout(model, [str(bare)])


def test_readout_policy_round_trip_acts_as_the_readout_then_the_actor(tiny_cartpole, tmp_path):
    """Saved with its readout, the policy loads as readout -> actor and acts exactly as the nets it was saved from."""
    path, data = tiny_cartpole
    model = checkpoint.load(path)
    readout = turn_readout(tmp_path / "turn", model, [str(data)])
    assert (tmp_path / "turn" / "readout.json").is_file()
    assert torch.equal(turn_readout(tmp_path / "turn", model, []).weight, readout.weight)  # loaded, not refitted
    agent = Agent(readout.out_features, 2, 16)
    with torch.no_grad():
        for p in agent.parameters():
            p.normal_(0, 1.0)
    folder = save_model_state_policy(tmp_path / "policy", agent.actor, model, [16, 16], 2, {"trained_in": "imagination"},
                                     critic=agent.critic, planning={"horizon": 1, "gamma": 0.9}, readout=readout)  # fmt: skip
    assert json.loads((folder / "policy.json").read_text())["readout"] == {"dim": readout.out_features}
    loaded = load_policy(folder, frame_skip=1, mirror=False)
    reference = ModelStatePolicy(model, torch.nn.Sequential(readout, agent.actor))
    eps = list(ds.load(data))
    frames = np.array(eps[0].observations)
    loaded.reset(); reference.reset()
    for f in frames[:10]:
        feats = reference.features(f)
        loaded.features(f)
        torch.testing.assert_close(loaded.actor(feats), reference.actor(feats))
        reference.last_action = loaded.last_action = 0
    # a policy.json asking for a readout the weights lack is refused with what to fix
    cfg = json.loads((folder / "policy.json").read_text())
    cfg["readout"] = {"dim": 0}
    (folder / "policy.json").write_text(json.dumps(cfg))
    with pytest.raises(PolicyError, match="readout must be"):
        load_policy(folder)


def test_readout_obs_reads_out_observations_and_final_observations():
    class Feats(gym.vector.VectorEnv):
        def __init__(self):
            self.num_envs = 2
            self.single_observation_space = gym.spaces.Box(-1, 1, (3,), np.float32)
            self.observation_space = gym.spaces.Box(-1, 1, (2, 3), np.float32)
            self.single_action_space = gym.spaces.Discrete(2)
            self.action_space = gym.spaces.MultiDiscrete([2, 2])

        def reset(self, **kw):
            return np.ones((2, 3), np.float32), {}

        def step(self, a):
            final = np.full(2, None, dtype=object)
            final[1] = np.full(3, 2.0, np.float32)
            return np.ones((2, 3), np.float32), np.zeros(2), np.array([False, True]), np.zeros(2, bool), {"final_obs": final, "_final_obs": np.array([False, True])}

    lin = torch.nn.Linear(3, 1)
    with torch.no_grad():
        lin.weight.fill_(1.0); lin.bias.fill_(0.5)
    env = ReadoutObs(Feats(), lin)
    obs, _ = env.reset()
    assert obs.shape == (2, 1) and np.allclose(obs, 3.5) and env.single_observation_space.shape == (1,)
    obs, _, _, _, info = env.step([0, 1])
    assert info["final_obs"][0] is None and np.allclose(info["final_obs"][1], 6.5)


def test_loop_with_readout_trains_agents_on_the_readout_and_saves_it(tiny_cartpole, tmp_path):
    model, data = tiny_cartpole
    out = tmp_path / "loop"
    cli("loop", "--model", str(model), "--data", str(data), "--out", str(out), "--readout", "--plan-horizon", "1", *LOOP, "--turns", "1")
    policy = load_policy(out / "turn_0" / "policy")
    assert policy.config["readout"] == {"dim": 4}  # CartPole's recorded state: x, x_dot, theta, theta_dot
    assert isinstance(policy.actor[0], torch.nn.Linear) and policy.actor[0].in_features == checkpoint.load(model).config.dynamics.dim
    assert json.loads((out / "turn_0" / "readout.json").read_text())["frames"] > 0
    assert json.loads((out / "state.json").read_text())["done"] == ["imagine:0", "evaluate:0"]


def test_model_free_baseline_with_readout_sees_what_the_loops_agents_see(tiny_cartpole, tmp_path):
    """--baseline --readout: model-free PPO on the real twin through the filter and the same readout (the observation's ceiling)."""
    model, data = tiny_cartpole
    out = tmp_path / "baseline"
    cli("loop", "--model", str(model), "--data", str(data), "--out", str(out), "--baseline", "128", "--readout",
        "--num-envs", "2", "--eval-episodes", "1", "--quiet")  # fmt: skip
    rows = (out / "baseline.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("turn")  # header + 2 evaluations of 64 real steps each
    assert load_policy(out / "policy").config["readout"] == {"dim": 4}
    assert json.loads((out / "readout.json").read_text())["frames"] > 0

"""The world model's state as an observation: the filter over real frames equals the neural env, policies on it, the loop.

Tiny models (tests/conftest.py) and a replay env that plays back given frames stand in for
a real twin, so the filter's equivalence is exact and checked to 1e-5; the loop runs a whole
turn on the real CartPole twin at 32x32 with the tiny training recipe.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import tiny_model
from gymnasium import spaces
from safetensors.torch import load_file

from worldgym.engine import WorldModel
from worldgym.envs.env import WorldModelEnv
from worldgym.envs.vector_env import WorldModelVectorEnv
from worldgym.envs.wrappers import ModelState
from worldgym.model import checkpoint
from worldgym.policies.model_state import ModelStatePlanner, ModelStatePolicy, feature_actor, save_model_state_policy
from worldgym.policies.saved import ObsNorm, PolicyError, policy_net
from worldgym.policy_io import load_policy

ROOT = Path(__file__).resolve().parent.parent


class Replay(gym.Env):
    """Plays back fixed frames whatever the actions (a stand-in for a real twin)."""

    def __init__(self, frames: np.ndarray, n: int = 3) -> None:
        self.frames = frames
        self.observation_space = spaces.Box(0, 255, frames.shape[1:], np.uint8)
        self.action_space = spaces.Discrete(n)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.frames[0].copy(), {}

    def step(self, action):
        self.t += 1
        return self.frames[self.t].copy(), 1.0, self.t == len(self.frames) - 1, False, {}


def frames_and_actions(seed: int = 0, count: int = 4) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, 16, 16, 3), dtype=np.uint8), [0, *rng.integers(0, 3, count - 1).tolist()]


@pytest.mark.parametrize("fused", [False, True])
def test_filter_features_equal_the_neural_env_fed_the_same_frames(fused):
    model = tiny_model(fused=fused)
    frames, actions = frames_and_actions()
    neural = WorldModelEnv(model, obs_type="features")
    assert neural.observation_space.shape == (model.config.dynamics.dim,)
    filtered = ModelState(Replay(frames), model)
    obs, _ = filtered.reset(seed=0)
    first, _ = neural.reset(seed=0, options={"frames": frames[:1]})
    np.testing.assert_allclose(obs, first, atol=1e-5)
    for t in range(1, len(frames)):
        obs, *_ = filtered.step(actions[t])
        expected, _ = neural.reset(seed=0, options={"frames": frames[: t + 1], "actions": actions[: t + 1]})
        np.testing.assert_allclose(obs, expected, atol=1e-5)
        assert filtered.observation_space.contains(obs)


def test_features_depend_on_history_and_step_commits_what_observe_would():
    model = tiny_model()
    frames, actions = frames_and_actions(count=3)
    a = WorldModel(model, 1, features=True)
    a.reset(None, torch.from_numpy(frames[None, 1:2]))
    b = WorldModel(model, 1, features=True)
    b.reset(None, torch.from_numpy(frames[None, :2]), [actions[:2]])
    assert not torch.allclose(a.features, b.features)  # the same last frame, another history
    # a dream step commits its own block: observing that block's latents gives the same features
    out = b.step([2])
    c = WorldModel(model, 1, features=True)
    c.reset(None, torch.from_numpy(frames[None, :2]), [actions[:2]])
    with torch.inference_mode():
        c._commit(None, out.latents, torch.tensor([[2]]), torch.zeros(1, dtype=torch.bool))
    torch.testing.assert_close(c.features, out.features, atol=1e-5, rtol=0)
    with pytest.raises(RuntimeError, match="features=True"):
        WorldModel(model, 1).observe(torch.from_numpy(frames[:1]), [0])


def test_vector_env_features_match_single_env():
    model = tiny_model()
    frames, actions = frames_and_actions()
    envs = WorldModelVectorEnv(model, 2, obs_type="features")
    obs, _ = envs.reset(seed=0, options={"frames": np.stack([frames[:3], frames[:3]]), "actions": [actions[:3], actions[:3]]})
    single = WorldModelEnv(model, obs_type="features")
    one, _ = single.reset(seed=0, options={"frames": frames[:3], "actions": actions[:3]})
    np.testing.assert_allclose(obs[0], one, atol=1e-5)
    obs, *_ = envs.step(np.array([1, 1]))
    assert obs.shape == (2, model.config.dynamics.dim) and np.isfinite(obs).all()


def test_model_state_policy_round_trip(tmp_path):
    model = tiny_model()
    frames, _ = frames_and_actions()
    actor = feature_actor(model.config.dynamics.dim, [8, 8], 3, out_gain=1.0)
    path = save_model_state_policy(tmp_path / "policy", actor, model, [8, 8], 3, {"trained_in": "test"})
    policy = load_policy(path)
    assert isinstance(policy, ModelStatePolicy) and policy.config["trained_in"] == "test"
    direct = ModelStatePolicy(model, actor)
    for episode in range(2):
        policy.reset()
        direct.reset()
        for f in frames:
            assert policy(f) == direct(f)
    # frame_skip=3 (a policy trained on a frame-skip twin, run on every source frame): the filter reads frames 0, 3, 6, ...
    # and each action is held for the two frames in between
    skipping = load_policy(path, frame_skip=3)
    direct.reset()
    skipping.reset()
    seven, _ = frames_and_actions(1, 7)
    acts = [skipping(f) for f in seven]
    expected = [direct(f) for f in seven[::3]]
    assert acts == [a for a in expected for _ in range(3)][:7]
    assert int(skipping.policy.engine.cache.count[0]) == len(expected)  # the skipped frames were never committed
    with pytest.raises(ValueError, match="frame_skip must be >= 1"):
        load_policy(path, frame_skip=0)
    # the weights are verified: a changed file is refused
    (path / "policy.safetensors").write_bytes((path / "policy.safetensors").read_bytes()[:-4] + b"0000")
    with pytest.raises(ValueError, match="sha256"):
        load_policy(path)


def test_planning_policy_scores_each_held_action_like_the_engine_and_round_trips(tmp_path):
    """The planner's scores equal holding each action in a separate engine from the same frames; saved and loaded, it acts the same."""
    torch.manual_seed(0)
    model = tiny_model()
    frames, _ = frames_and_actions(count=5)
    D, H = model.config.dynamics.dim, 2
    actor = feature_actor(D, [8, 8], 3, out_gain=1.0)
    critic = policy_net(D, 1, [8, 8], 1, 1.0, actor[0])
    planner = ModelStatePlanner(model, actor, critic, horizon=H, gamma=0.9)
    planner.reset()
    actions = [planner(f) for f in frames[:3]]  # the filter now holds frames 0-2 under the planner's own actions
    scores = planner.plan()
    # the same scores by hand: a fresh filter fed the same frames and actions, then each action held H steps
    for a in range(3):
        engine = WorldModel(model, 1, features=True)
        engine.reset([0], torch.from_numpy(frames[:1])[None])
        for f, prev in zip(frames[1:3], actions[:2]):
            engine.observe(torch.from_numpy(f)[None], [prev])
        engine.set_state([0], {**engine.get_state([0]), "rng": planner.engine.get_state([0])["rng"]})
        total, alive, discount = 0.0, 1.0, 1.0
        for _ in range(H):
            step = engine.step([a], decode=False)
            total += discount * alive * float(step.reward[0])
            alive *= 1.0 - float(step.termination[0])
            discount *= 0.9
        with torch.no_grad():
            total += discount * alive * float(critic(step.features.float())[0, 0])
        assert scores[a].item() == pytest.approx(total, abs=1e-4), (a, scores.tolist(), total)
    assert actions[-1] in range(3)
    # saved with its critic, the folder loads as a planner that acts the same
    path = save_model_state_policy(tmp_path / "plan", actor, model, [8, 8], 3, critic=critic, planning={"horizon": H, "gamma": 0.9})
    loaded = load_policy(path)
    assert isinstance(loaded, ModelStatePlanner) and loaded.horizon == H and loaded.config["planning"] == {"horizon": H, "gamma": 0.9}
    planner.reset()
    loaded.reset()
    assert [planner(f) for f in frames] == [loaded(f) for f in frames]
    # exploring, it samples the actor like the plain policy; bad arguments are refused
    explorer = load_policy(path, deterministic=False)
    explorer.reset()
    assert all(explorer(f) in range(3) for f in frames)
    with pytest.raises(PolicyError, match="both critic and planning"):
        save_model_state_policy(tmp_path / "bad", actor, model, [8, 8], 3, critic=critic)
    with pytest.raises(PolicyError, match="horizon must be >= 1"):
        ModelStatePlanner(model, actor, policy_net(D, 1, [8, 8], 1, 1.0, ObsNorm(D, 1)), horizon=0)


def test_ensemble_folder_plans_with_the_mean_critic_and_acts_on_the_mean_log_probs(tmp_path):
    """An ensemble policy (members of one world model) scores each action by the mean of its members' plans, on one filter."""
    torch.manual_seed(0)
    model = tiny_model()
    frames, _ = frames_and_actions(count=5)
    D = model.config.dynamics.dim
    nets = []
    for _ in range(3):
        actor = feature_actor(D, [8, 8], 3, out_gain=1.0)
        nets.append((actor, policy_net(D, 1, [8, 8], 1, 1.0, actor[0])))
    planning = {"horizon": 2, "gamma": 0.9}
    path = save_model_state_policy(tmp_path / "ens", *nets[0][:1], model, [8, 8], 3, critic=nets[0][1], planning=planning, members=nets[1:])
    ensemble = load_policy(path)
    assert ensemble.config["members"] == 3 and isinstance(ensemble, ModelStatePlanner)
    ensemble.reset()
    actions = [ensemble(f) for f in frames[:3]]
    scores = ensemble.plan()
    # each member alone, planning from the same frames, actions and noise: the ensemble's scores are their mean
    alone = []
    for actor, critic in nets:
        member = ModelStatePlanner(model, actor, critic, horizon=2, gamma=0.9)
        member.reset()
        member.features(frames[0])
        for f, prev in zip(frames[1:3], actions[:2]):
            member.last_action = prev
            member.features(f)
        member.engine.set_state([0], ensemble.engine.get_state([0]))
        alone.append(member.plan())
    torch.testing.assert_close(scores, torch.stack(alone).mean(0), atol=1e-5, rtol=0)
    assert not torch.allclose(alone[0], alone[1])  # the members differ, so the mean is not any one of them
    # without planning: the actors' mean log-probabilities
    plain = load_policy(save_model_state_policy(tmp_path / "plain", nets[0][0], model, [8, 8], 3, members=[(a, None) for a, _ in nets[1:]]))
    plain.reset()
    plain(frames[0])
    with torch.no_grad():
        want = torch.stack([a(plain.engine.features).log_softmax(-1) for a, _ in nets]).mean(0)
        torch.testing.assert_close(plain.actor(plain.engine.features), want)
    # a member without a critic in a planning policy, or a folder missing a member's weights, is refused
    with pytest.raises(PolicyError, match="every member needs a critic"):
        save_model_state_policy(tmp_path / "bad", nets[0][0], model, [8, 8], 3, critic=nets[0][1], planning=planning, members=[(nets[1][0], None)])
    config = json.loads((path / "policy.json").read_text())
    (path / "policy.json").write_text(json.dumps({**config, "members": 4}))
    with pytest.raises(PolicyError, match="holds no member3.actor"):
        load_policy(path)


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "worldgym.cli", *args], check=check, capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)


LOOP = ["--twin", "worldgym/CartPoleReal-v0", "--turns", "2", "--collect-steps", "40", "--finetune-steps", "2", "--selfforce-steps", "1",
        "--imagine-steps", "256", "--horizon", "8", "--num-envs", "8", "--eval-episodes", "1", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_cartpole(tmp_path_factory):
    """A tiny 32x32 CartPole world model trained a few steps on 4 real episodes (configs/tiny.yaml)."""
    tmp = tmp_path_factory.mktemp("loop")
    data = tmp / "data"
    cli("record", "--env", "real:CartPole", "--size", "32", "--episodes", "4", "--max-steps", "25", "--policy", "mix", "--out", str(data), "--quiet")
    cli("train", "configs/tiny.yaml", "--data", str(data), "--out", str(tmp / "run"))
    return tmp / "run" / "model", data


def test_loop_turn_end_to_end_and_resume_after_a_kill(tiny_cartpole, tmp_path):
    model, data = tiny_cartpole
    out = tmp_path / "loop"
    args = ["loop", "--model", str(model), "--data", str(data), "--out", str(out), *LOOP]
    # kill the run inside turn 1's fine-tuning (after collecting): the state says what was done
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "WORLDGYM_LOOP_FAIL_AT": "finetune:1"}
    killed = subprocess.run([sys.executable, "-m", "worldgym.cli", *args], capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert killed.returncode != 0
    state = json.loads((out / "state.json").read_text())
    assert state["done"] == ["imagine:0", "evaluate:0", "collect:1"]
    collected = sorted(p.name for p in (out / "turn_1" / "data").iterdir())
    manifest = (out / "turn_1" / "data" / "manifest.json").read_text()
    cli("loop", "--out", str(out))  # resume from --out alone (its stored config): finishes turn 1 without collecting again
    state = json.loads((out / "state.json").read_text())
    assert state["done"] == ["imagine:0", "evaluate:0", "collect:1", "finetune:1", "imagine:1", "evaluate:1"]
    assert (out / "turn_1" / "data" / "manifest.json").read_text() == manifest
    assert sorted(p.name for p in (out / "turn_1" / "data").iterdir()) == collected
    rows = (out / "loop.csv").read_text().splitlines()
    assert rows[0].startswith("turn,real_steps") and len(rows) == 3
    turns = state["turns"]
    assert turns[1]["real_steps"] == turns[0]["real_steps"] + turns[1]["collected_steps"] and turns[1]["collected_steps"] >= 40
    assert (out / "loop.png").stat().st_size > 0
    # the policy of the last turn was trained in imagination and plays real frames as a loaded policy
    policy = load_policy(out / "turn_1" / "policy")
    assert policy.config["trained_in"] == "imagination" and policy.config["real_steps_seen_by_model"] == turns[1]["real_steps"]
    real = gym.make("worldgym/CartPoleReal-v0", height=32, width=32)
    obs, _ = real.reset(seed=0)
    policy.reset()
    assert real.action_space.contains(policy(obs))
    # the finished model is a regular checkpoint
    assert checkpoint.load(out / "turn_1" / "finetune" / "model").config.name == checkpoint.load(model).config.name


def test_loop_with_agents_saves_their_ensemble_and_resumes_after_the_agents_it_finished(tiny_cartpole, tmp_path):
    model, data = tiny_cartpole
    out = tmp_path / "loop"
    args = ["loop", "--model", str(model), "--data", str(data), "--out", str(out), "--agents", "2", "--plan-horizon", "1", *LOOP, "--turns", "1"]
    cli(*args)
    turn = out / "turn_0"
    policy = load_policy(turn / "policy")
    assert policy.config["members"] == 2 and len(json.loads((turn / "imagine.json").read_text())["members"]) == 2
    first, second = (turn / "agent.safetensors").read_bytes(), load_file(str(turn / "agent_1.safetensors"))
    assert not torch.equal(load_file(str(turn / "agent.safetensors"))["actor.1.0.weight"], second["actor.1.0.weight"])  # another PPO seed
    # a run killed while training agent 1: agent 0 is kept as it was, agent 1 is trained again the same way
    (turn / "agent_1.json").unlink()
    (turn / "agent.safetensors").write_bytes(first[:-4] + b"0000")  # altered: were agent 0 retrained, it would be rewritten
    (out / "state.json").write_text(json.dumps({"done": [], "turns": [], "collected": {}}))
    cli("loop", "--out", str(out))
    assert (turn / "agent.safetensors").read_bytes() == first[:-4] + b"0000"
    again = load_file(str(turn / "agent_1.safetensors"))
    assert again.keys() == second.keys() and all(torch.equal(again[k], second[k]) for k in second)
    bad = cli("loop", "--model", str(model), "--out", str(tmp_path / "none"), "--agents", "0", check=False)
    assert bad.returncode == 2 and "--agents must be >= 1" in bad.stderr


def test_snapshots_restore_the_features():
    model = tiny_model()
    frames, actions = frames_and_actions()
    engine = WorldModel(model, 2, features=True)
    engine.reset(None, torch.from_numpy(np.stack([frames[:2], frames[1:3]])), [actions[:2], actions[1:3]])
    before = engine.features.clone()
    state = engine.get_state([1])
    first = engine.step([1, 1]).features[1]
    engine.step([2, 2])
    engine.set_state([1], state)
    assert torch.equal(engine.features[1], before[1])  # the restored row reads its state at the snapshot
    torch.testing.assert_close(engine.step([0, 1]).features[1], first, atol=1e-6, rtol=0)


def test_reencoded_dream_step_is_the_filter_fed_the_decoded_frame():
    model = tiny_model()
    frames, actions = frames_and_actions(count=2)
    dream = WorldModel(model, 1, features=True, reencode=True)
    filt = WorldModel(model, 1, features=True)
    for e in (dream, filt):
        e.reset(None, torch.from_numpy(frames[None]), [actions])
    out = dream.step([1])
    assert out.frames is not None  # reencoding decodes every step
    torch.testing.assert_close(filt.observe(out.frames, [1]).features, out.features, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="two-pass"):
        WorldModel(tiny_model(fused=True), 1, reencode=True)


def test_model_state_report_on_a_real_twin():
    from worldgym.evaluation.model_state import report, ridge, read
    from worldgym.model.actions import ActionConfig

    model = tiny_model(action=ActionConfig(kind="discrete", n=2))
    policy = ModelStatePolicy(model, feature_actor(model.config.dynamics.dim, [8], 2, out_gain=1.0))
    env = gym.make("worldgym/CartPoleReal-v0", height=16, width=16)
    out = report(policy, env, episodes=2, seed=0)
    assert out["steps"] > 10 and 0.0 <= out["action_agreement"] <= 1.0
    assert len(out["readout_rmse"]["real"]) == len(out["readout_rmse"]["imagined"]) == 4
    assert all(np.isfinite(v) for v in out["readout_rmse"]["imagined"])
    # the ridge readout recovers an exactly linear target
    f = np.random.default_rng(0).normal(size=(50, 6))
    w = np.random.default_rng(1).normal(size=(6, 2))
    np.testing.assert_allclose(read(ridge(f, f @ w, lam=1e-9), f), f @ w, atol=1e-6)


def test_loop_with_mirror_adds_mirrored_episodes_not_real_steps(tiny_cartpole, tmp_path):
    """--mirror: each turn's episodes are also added mirrored, mirror images count no real steps, the policies act mirrored;
    --collect-epsilon collects with the greedy policy and random actions."""
    from worldgym.data.dataset import load as load_dataset
    from worldgym.policies.model_state import MirroredPolicy

    model, data = tiny_cartpole
    mirrored_data = tmp_path / "data_mirror"
    cli("dataset", "mirror", str(mirrored_data), "--source", str(data))
    out = tmp_path / "loop"
    # collected as evaluated (greedy, mirrored) with random actions half the time
    cli("loop", "--model", str(model), "--data", str(data), str(mirrored_data), "--out", str(out), "--mirror", "--collect-epsilon", "0.5",
        "--termination-threshold", "0.3", *LOOP)  # fmt: skip
    assert json.loads((out / "loop_config.json").read_text())["ppo"]["termination_threshold"] == 0.3
    turns = json.loads((out / "state.json").read_text())["turns"]
    assert turns[0]["real_steps"] == load_dataset(data).total_steps  # the mirror image of the recordings is no real step
    assert turns[1]["real_steps"] == turns[0]["real_steps"] + turns[1]["collected_steps"]
    got, want = load_dataset(out / "turn_1" / "data_mirror"), load_dataset(out / "turn_1" / "data")
    assert got.total_steps == want.total_steps
    for a, b in zip(want, got):
        np.testing.assert_array_equal(b.observations, a.observations[:, :, ::-1])
        np.testing.assert_array_equal(b.actions, 1 - a.actions)
    policy = load_policy(out / "turn_1" / "policy")
    assert isinstance(policy, MirroredPolicy) and policy.config["mirror"]["actions"] == [1, 0]
    refused = cli("loop", "--model", str(model), "--twin", "worldgym/CrafterReal-v0", "--out", str(tmp_path / "no"), "--mirror", check=False)
    assert refused.returncode == 2 and "declares its mirror symmetry" in refused.stderr
    bad = cli("loop", "--model", str(model), "--out", str(tmp_path / "eps"), "--collect-epsilon", "1.5", check=False)
    assert bad.returncode == 2 and "--collect-epsilon must be a probability" in bad.stderr and not (tmp_path / "eps").exists()


def test_collect_with_epsilon_commits_the_action_the_env_got():
    """Greedy collection with random actions: the env gets a random action with probability epsilon, and the filter
    commits that action, not the policy's."""
    from worldgym.training.loop import _Sampling

    model = tiny_model()
    actor = feature_actor(model.config.dynamics.dim, [8, 8], 3, out_gain=1.0)
    frames, _ = frames_and_actions(count=40)
    always = _Sampling(ModelStatePolicy(model, actor), 1.0, spaces.Discrete(3))
    always.reset(np.random.default_rng(0))
    got = [always(f, {}) for f in frames]
    rng = np.random.default_rng(0)
    rng.integers(2**62)  # the policy's reset reseeds its own sampler from the episode's generator
    assert got == [int(rng.integers(3)) for _ in frames if rng.random() < 1.0]  # a coin, then the action, from the episode's generator
    assert always.policy.last_action == got[-1]
    never = _Sampling(ModelStatePolicy(model, actor), 0.0, spaces.Discrete(3))
    plain = ModelStatePolicy(model, actor)
    never.reset(np.random.default_rng(0))
    plain.reset()
    assert [never(f, {}) for f in frames] == [plain(f) for f in frames]


def test_policy_start_share_cuts_that_share_of_the_starts_from_the_loops_own_episodes(tiny_cartpole, tmp_path):
    """--policy-start-share: that share of a turn's start contexts are windows of the loop's own collected episodes."""
    from worldgym.data.dataset import load as load_dataset
    from worldgym.training.loop import Loop, LoopConfig

    model, data = tiny_cartpole
    out = tmp_path / "loop"
    cli("record", "--env", "real:CartPole", "--size", "32", "--episodes", "3", "--max-steps", "30", "--policy", "random",
        "--seed", "777", "--out", str(out / "turn_1" / "data"), "--quiet")  # fmt: skip
    own = [ep.observations for ep in load_dataset(out / "turn_1" / "data").episodes]

    def from_own(window: np.ndarray) -> bool:
        return any((obs[j : j + len(window)] == window).all() for obs in own for j in range(len(obs) - len(window) + 1))

    for share, want in ((0.25, 16), (1.0, 64)):
        loop = Loop(tmp_path / f"share{share}", LoopConfig(model=str(model), data=[str(data)], start_bank=64, policy_start_share=share), progress=False)
        loop.out = out  # the collected episodes of turn 1 live there
        bank = loop.start_bank(1, (32, 32))
        assert len(bank) == 64 and bank.frames.shape[1] == loop.cfg.start_context
        assert all(from_own(bank.frames[i].numpy()) for i in range(64 - want, 64))
    assert sum(from_own(w.numpy()) for w in Loop(tmp_path / "uniform", LoopConfig(model=str(model), data=[str(data)], start_bank=64), progress=False).start_bank(0, (32, 32)).frames) == 0
    bad = cli("loop", "--model", str(model), "--out", str(tmp_path / "bad"), "--policy-start-share", "1.5", check=False)
    assert bad.returncode == 2 and "--policy-start-share must be a share in [0, 1]" in bad.stderr and not (tmp_path / "bad").exists()
    bad = cli("loop", "--model", str(model), "--out", str(tmp_path / "bad"), "--termination-threshold", "1", check=False)
    assert bad.returncode == 2 and "--termination-threshold must be a probability in (0, 1)" in bad.stderr and not (tmp_path / "bad").exists()

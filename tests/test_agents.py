"""Agents: subprocess smoke runs of each agent and of the SB3 example on a tiny budget, and the saved-policy contract.

The smoke runs use a tiny checkpoint (16x16 frames, Discrete(2) like CartPole) as the
neural env and the real CartPole twin resized to 16x16 as the eval env, so each run
goes through training, saving, loading and a real-twin evaluation end to end.
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

import worldgym  # noqa: F401  (registers the ids)
from conftest import tiny_model
from worldgym.model import checkpoint
from worldgym.model.actions import ActionConfig
from worldgym.policy_io import FrameEncoder, LatentPolicy, ObsNorm, PolicyError, load_policy, policy_net, save_policy
from worldgym.envs.wrappers import EncodeFrames

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A tiny CartPole-shaped world model (Discrete(2), 16x16 frames) saved as a checkpoint folder."""
    return checkpoint.save(tiny_model(action=ActionConfig(kind="discrete", n=2)), tmp_path_factory.mktemp("ckpt") / "tiny")


def run(*argv: str) -> str:
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"{argv[0]} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    return out.stdout


def test_ppo_trains_in_neural_env_and_evaluates_saved_policy_in_real_twin(tiny_ckpt, tmp_path):
    stdout = run(
        "agents/ppo_torchrl.py", "--train-env", str(tiny_ckpt), "--eval-env", "worldgym/CartPoleReal-v0",
        "--total-steps", "256", "--num-envs", "4", "--num-steps", "32", "--update-epochs", "1",
        "--eval-every", "128", "--eval-episodes-during", "1", "--eval-episodes", "2", "--dream-eval-episodes", "2",
        "--run-dir", str(tmp_path),
    )  # fmt: skip
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["env_steps"] == 256 and result["eval_episodes"] == 2
    assert all(r >= 1 for r in result["eval_returns"])  # real CartPole pays +1 per step
    assert len(result["eval_last_states"][0]) == 4 and len(result["dream_returns"]) == 2  # real end states; dream score
    rows = (tmp_path / "progress.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 and rows[2].split(",")[5] != ""  # one row per update; real-twin returns logged too
    assert "eval worldgym/CartPoleReal-v0" in stdout
    policy = load_policy(tmp_path / "policy")
    assert policy.config["train_env"] == str(tiny_ckpt) and policy.frame_stack == 4


def test_ppo_dreams_from_real_start_contexts_with_a_horizon(tiny_ckpt, tmp_path):
    from gymnasium import spaces

    from worldgym.data.dataset import DatasetWriter

    rng = np.random.default_rng(0)
    with DatasetWriter(tmp_path / "ds", spaces.Box(0, 255, (16, 16, 3), np.uint8), spaces.Discrete(2)) as w:
        for T in (12, 20):
            w.add_episode(rng.integers(0, 256, (T + 1, 16, 16, 3), dtype=np.uint8), rng.integers(0, 2, T),
                          np.ones(T, np.float32), np.arange(T) == T - 1, np.zeros(T, bool))  # fmt: skip
    run(
        "agents/ppo_torchrl.py", "--train-env", str(tiny_ckpt), "--eval-env", "", "--dream-starts", str(tmp_path / "ds"),
        "--dream-context", "3", "--dream-bank", "64", "--dream-horizon", "8", "--total-steps", "128", "--num-envs", "4",
        "--num-steps", "32", "--update-epochs", "1", "--run-dir", str(tmp_path / "run"),
    )  # fmt: skip
    rows = (tmp_path / "run" / "progress.csv").read_text().splitlines()
    header, first = rows[0].split(","), rows[1].split(",")
    # every imagined episode is cut after at most 8 steps: 4 envs x 32 steps end at least 16 episodes
    assert int(first[header.index("train_episodes")]) >= 16


def test_ppo_dream_obs_reencode_trains_on_encoded_decoded_frames(tiny_ckpt, tmp_path):
    stdout = run(
        "agents/ppo_torchrl.py", "--train-env", str(tiny_ckpt), "--eval-env", "worldgym/CartPoleReal-v0", "--dream-obs", "reencode",
        "--total-steps", "128", "--num-envs", "4", "--num-steps", "32", "--update-epochs", "1", "--eval-every", "0",
        "--eval-episodes", "2", "--dream-eval-episodes", "2", "--max-episode-steps", "20", "--run-dir", str(tmp_path),
    )  # fmt: skip
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["env_steps"] == 128 and result["dream_obs"] == "reencode" and len(result["dream_returns"]) == 2
    assert all(np.isfinite(result["dream_returns"])) and all(r >= 1 for r in result["eval_returns"])
    assert "dream " in stdout
    policy = load_policy(tmp_path / "policy")
    assert policy.config["args"]["dream_obs"] == "reencode" and policy.frame_stack == 4
    norm = policy.actor[0]  # the observation statistics of the 128 encoded frames travel with the weights
    assert norm.count >= 128 and torch.isfinite(norm.mean).all() and norm.var.max() > 0


def test_encode_pixels_gives_the_saved_policys_latents_of_the_decoded_frames(tiny_ckpt, monkeypatch):
    import importlib

    from torchrl.envs import TransformedEnv

    from worldgym.envs.torchrl_env import TorchRLWorldModelEnv

    monkeypatch.syspath_prepend(str(ROOT / "agents"))
    ppo = importlib.import_module("ppo_torchrl")  # the agent script (its training runs under __main__ only)
    base = TorchRLWorldModelEnv(str(tiny_ckpt), batch_size=[3], obs_type="rgb")
    encoder = FrameEncoder.from_model(base.model)
    env = TransformedEnv(base, ppo.EncodePixels(encoder))
    env.set_seed(0)
    td = env.rollout(4, break_when_any_done=False)  # (3, 4): reset frames and 4 steps of decoded frames
    assert env.observation_spec["observation"].shape == (3, 16, 4) and td["observation"].dtype == torch.float32
    policy = LatentPolicy(torch.nn.Identity(), encoder, (16, 4), 1)  # what a saved policy does to a real frame
    for pixels, latents in ((td["pixels"], td["observation"]), (td["next", "pixels"], td["next", "observation"])):
        want = torch.stack([policy.latents(f.numpy()) for f in pixels.reshape(-1, 16, 16, 3)]).reshape(latents.shape)
        assert torch.allclose(latents, want, atol=1e-5)  # reset frames and decoded frames alike, frame by frame
    assert not torch.equal(td["next", "observation"][:, 0], td["next", "observation"][:, 1])  # the frames move


def test_ppo_trains_on_real_twin_through_the_encoder(tiny_ckpt, tmp_path):
    run(
        "agents/ppo_torchrl.py", "--train-env", "worldgym/CartPoleReal-v0", "--model", str(tiny_ckpt), "--eval-env", "",
        "--total-steps", "128", "--num-envs", "2", "--num-steps", "64", "--update-epochs", "1", "--run-dir", str(tmp_path),
    )  # fmt: skip
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["env_steps"] == 128 and result["train_return_last100"] >= 1  # real returns, not the tiny model's
    assert (tmp_path / "policy" / "policy.safetensors").is_file()


def test_random_agent(tiny_ckpt, tmp_path):
    stdout = run("agents/random_agent.py", "--env", str(tiny_ckpt), "--episodes", "5", "--num-envs", "3", "--run-dir", str(tmp_path))
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["episodes"] == 5 and "random agent" in stdout


def test_scripted_agent(tiny_ckpt, tmp_path):
    stdout = run("agents/scripted_agent.py", "--env", str(tiny_ckpt), "--episodes", "2", "--run-dir", str(tmp_path))
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["episodes"] == 2 and "scripted agent" in stdout


def test_sb3_example(tiny_ckpt):
    stdout = run("examples/sb3_ppo.py", "--env", str(tiny_ckpt), "--total-timesteps", "64", "--n-envs", "2", "--eval-episodes", "1")
    assert "worldgym/CartPoleReal-v0: mean return" in stdout


def test_state_ppo_reference_runs_and_shares_the_pixel_ppos_hyper_parameters(tmp_path):
    """agents/ppo_state.py is "the same PPO" on the true state: every hyper-parameter both files have agrees."""
    import importlib.util

    def args_of(path: str):
        spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)  # the training loops sit under __main__, so this only defines Args
        return {f.name: f.default for f in __import__("dataclasses").fields(module.Args)}

    state, pixels = args_of("agents/ppo_state.py"), args_of("agents/ppo_torchrl.py")
    shared = sorted(set(state) & set(pixels) - {"run_dir"})
    assert len(shared) >= 15 and {k: state[k] for k in shared} == {k: pixels[k] for k in shared}
    run("agents/ppo_state.py", "--total-steps", "256", "--num-envs", "4", "--num-steps", "8", "--eval-episodes", "2", "--run-dir", str(tmp_path / "s"))
    result = json.loads((tmp_path / "s" / "result.json").read_text())
    assert result["env_steps"] == 256 and result["eval_episodes"] == 2 and result["observation"] == "state"
    run("agents/ppo_state.py", "--total-steps", "64", "--num-envs", "2", "--num-steps", "8", "--eval-episodes", "1",
        "--positions-stack", "3", "--position-noise", "0.01,0.02", "--run-dir", str(tmp_path / "p"))  # fmt: skip
    assert json.loads((tmp_path / "p" / "result.json").read_text())["observation"] == "positions x3, noise 0.01,0.02"


def test_agents_help_lists_every_arg():
    out = run("agents/ppo_torchrl.py", "--help")
    assert "--train-env" in out and "env steps of training (the budget)" in out  # field docstrings are the --help


# ---------------------------------------------------------------------------- saved policies (in process)
def saved_policy(tmp_path: Path, model) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    norm = ObsNorm(16 * 4, 3)
    norm.update(torch.randn(100, 16 * 4) * 3 + 1)  # statistics that must travel with the weights
    actor = policy_net(16 * 4, 3, [8, 8], 2, 1.0, norm)
    return save_policy(tmp_path / "p", actor, FrameEncoder.from_model(model), 3, [8, 8], 2, {"train_env": "x"}), actor


def test_policy_round_trip_acts_like_the_actor_on_latents_and_frames(tmp_path):
    model = tiny_model(action=ActionConfig(kind="discrete", n=2))
    path, actor = saved_policy(tmp_path, model)
    assert not any(p.suffix in (".pt", ".pkl", ".pth") for p in path.iterdir())
    policy = load_policy(path)
    frames = torch.randint(0, 256, (5, 16, 16, 3), dtype=torch.uint8)
    with torch.no_grad():
        latents = model.autoencoder.encode(frames)  # (5, N, C)
    policy.reset()
    by_frames = [policy(f.numpy()) for f in frames]
    policy.reset()
    by_latents = [policy(z.numpy()) for z in latents]
    assert by_frames == by_latents  # the policy's encoder is the world model's
    stack = torch.cat([latents[:1], latents[:1], latents[:1]])  # first call: the first frame repeated K=3 times
    with torch.no_grad():
        assert by_latents[0] == int(actor(stack.reshape(1, -1)).argmax())
        assert by_latents[4] == int(actor(latents[2:5].reshape(1, -1)).argmax())


def test_policy_refuses_tampered_weights_and_wrong_observations(tmp_path):
    path, _ = saved_policy(tmp_path, tiny_model(action=ActionConfig(kind="discrete", n=2)))
    with pytest.raises(PolicyError, match="frames must be"):
        load_policy(path)(np.zeros((64, 64, 3), np.uint8))
    (path / "policy.safetensors").write_bytes((path / "policy.safetensors").read_bytes()[:-1] + b"\x00")
    with pytest.raises(PolicyError, match="sha256"):
        load_policy(path)
    with pytest.raises(PolicyError, match="no policy"):
        load_policy(tmp_path / "missing")


def test_encode_frames_wrapper_gives_the_neural_envs_latents():
    model = tiny_model(action=ActionConfig(kind="discrete", n=2))
    env = EncodeFrames(gym.make("worldgym/CartPoleReal-v0", height=16, width=16), model)
    obs, info = env.reset(seed=0)
    assert obs.shape == (16, 4) and obs.dtype == np.float32 and env.observation_space.contains(obs)
    frame = env.unwrapped._frame
    with torch.no_grad():
        assert np.allclose(obs, model.autoencoder.encode(torch.from_numpy(frame.copy())[None])[0].numpy())
    with pytest.raises(ValueError, match="height=16, width=16"):
        EncodeFrames(gym.make("worldgym/CartPoleReal-v0"), model)


def test_player_and_recorder_load_a_saved_policy(tmp_path, monkeypatch):
    from worldgym.policies.agents import load_agent
    from worldgym.policies.builtin import make_policy

    model = tiny_model(action=ActionConfig(kind="discrete", n=2))
    path, _ = saved_policy(tmp_path, model)
    monkeypatch.setenv("WORLDGYM_POLICY", str(path))
    env = gym.make("worldgym/CartPoleReal-v0", height=16, width=16)
    obs, info = env.reset(seed=0)
    agent = load_agent("worldgym.policy_io:PolicyFromEnv", env)  # worldgym play --agent ...
    agent.reset()
    assert agent(obs) in (0, 1)
    recorder_policy = make_policy("worldgym.policy_io:PolicyFromEnv", env.action_space)  # worldgym record --policy ...
    recorder_policy.reset(np.random.default_rng(0))
    assert recorder_policy(obs, info) == agent.__class__(None)(obs)
    # the same folder named directly: worldgym play --agent policy:PATH, worldgym record --policy policy:PATH
    direct = load_agent(f"policy:{path}", env)
    assert direct(obs) == agent(obs) == make_policy(f"policy:{path}", env.action_space)(obs, info)
    with pytest.raises(ValueError, match="cannot load policy folder"):
        make_policy(f"policy:{tmp_path / 'missing'}", env.action_space)


def test_observation_noise_noises_training_observations_reproducibly(tiny_ckpt, monkeypatch):
    import importlib

    from torchrl.envs import TransformedEnv

    from worldgym.envs.torchrl_env import TorchRLWorldModelEnv

    monkeypatch.syspath_prepend(str(ROOT / "agents"))
    ppo = importlib.import_module("ppo_torchrl")

    def rollout(std: float | None, seed: int = 5):
        base = TorchRLWorldModelEnv(str(tiny_ckpt), batch_size=[3], obs_type="latent")
        env = base if std is None else TransformedEnv(base, ppo.ObservationNoise(std, seed))
        env.set_seed(0)
        zero = env.full_action_spec["action"].zero()  # the same actions in every rollout
        return env.rollout(6, policy=lambda td: td.set("action", zero), break_when_any_done=False)

    clean, noisy, again, other = rollout(None), rollout(0.5), rollout(0.5), rollout(0.5, seed=6)
    for key in (("observation",), ("next", "observation")):  # reset observations and stepped ones
        diff = noisy[key] - clean[key]  # the env itself is deterministic: the difference is the noise
        assert 0.4 < float(diff.std()) < 0.6 and abs(float(diff.mean())) < 0.05
        assert torch.equal(noisy[key], again[key]) and not torch.equal(noisy[key], other[key])

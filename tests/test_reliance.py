"""The teacher-forced action-reliance probe (`worldgym.evaluation.reliance`)."""

import json

import gymnasium as gym
import numpy as np
import torch
from conftest import tiny_model

from worldgym.data.dataset import DatasetWriter
from worldgym.evaluation.reliance import action_reliance, main
from worldgym.model import checkpoint
from worldgym.training.data import Data
from worldgym.training.train import encode_all


def write_data(path, model, episodes: int = 4, steps: int = 10, still: bool = False):
    """Random-frame episodes (``still``: each episode one frame repeated) with random actions."""
    ae = model.config.autoencoder
    rng = np.random.default_rng(0)
    obs_space = gym.spaces.Box(0, 255, (ae.frame_height, ae.frame_width, 3), np.uint8)
    with DatasetWriter(path, obs_space, model.config.action.space()) as w:
        for _ in range(episodes):
            obs = rng.integers(0, 256, (steps + 1, ae.frame_height, ae.frame_width, 3), dtype=np.uint8)
            if still:
                obs[:] = obs[0]
            w.add_episode(obs, rng.integers(0, 3, steps), np.zeros(steps, np.float32), np.zeros(steps, bool), np.zeros(steps, bool))
    return path


def reliance(model, path, **kw):
    data = Data(path, model.config.action)
    with torch.no_grad():
        latents = encode_all(model, data.frames, False)
    return action_reliance(model, data, latents, windows=8, frames=6, **kw)


def test_baselines_are_exact_on_still_episodes_and_random_actions_change_the_prediction(tmp_path):
    model = tiny_model()
    out = reliance(model, write_data(tmp_path / "still", model, still=True))
    assert out["copy"] == 0.0 and out["extrapolate"] == 0.0
    assert out["true"] > 0 and out["shuffled"] > 0 and out["true"] != out["shuffled"]  # a randomized model reads its actions


def test_a_model_whose_actions_embed_alike_relies_on_none(tmp_path):
    model = tiny_model()
    with torch.no_grad():
        model.dynamics.action.table.weight[:] = model.dynamics.action.table.weight[0]
    out = reliance(model, write_data(tmp_path / "d", model))
    assert out["true"] == out["shuffled"]
    assert reliance(model, tmp_path / "d") == out  # seeded: the same windows, noise and actions


def test_cli_writes_json(tmp_path, capsys):
    model = tiny_model()
    checkpoint.save(model, tmp_path / "model")
    path = write_data(tmp_path / "d", model)
    assert main([str(tmp_path / "model"), "--data", str(path), "--windows", "8", "--frames", "6", "--json", str(tmp_path / "r.json")]) == 0
    assert "teacher-forced next-block latent MSE" in capsys.readouterr().out
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["true"] > 0 and result["copy"] > 0

"""Bring your own environment: record an ALE game and Crafter, train the data-sized tiny recipe, install, gym.make in a fresh process."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from worldgym.config_io import ConfigError, load_yaml
from worldgym.data.dataset import DatasetWriter
from worldgym.training.data import TrainConfig
from worldgym.training.recipes import crafter_config, data_recipe, model_name

ROOT = Path(__file__).resolve().parent.parent

WORLDS = {
    "Pong": (["--env", "gym:ALE/Pong-v5", "--twin", str(ROOT / "configs" / "twins" / "Pong.yaml"), "--policy", "random"], "ale_py", "atari", 6),
    "Crafter": (["--env", "real:Crafter", "--policy", "crafter_explorer"], "crafter", "crafter", 17),
}


def run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WORLDGYM_MODELS": str(tmp_path / "models"), "SDL_AUDIODRIVER": "dummy"}
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out


@pytest.mark.parametrize("world", list(WORLDS))
def test_record_train_install_make(tmp_path, world):
    args, module, extra, n = WORLDS[world]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed: pip install 'worldgym[{extra}]' (.ci/run installs it with the dev extra)")
    data = tmp_path / "data"
    run(["-m", "worldgym.cli", "record", *args, "--size", "16", "--episodes", "2", "--max-steps", "12", "--out", str(data), "--quiet"], tmp_path)
    name = f"{world}Tiny"
    run(["-m", "worldgym.cli", "train", "--data", str(data), "--recipe", "tiny", "--name", name, "--out", str(tmp_path / "run"),
         "--install", name], tmp_path)  # fmt: skip
    assert load_yaml(TrainConfig, tmp_path / "run" / "config.yaml").model.action.n == n
    code = (
        "import gymnasium as gym, worldgym\n"
        f"env = gym.make('worldgym/{name}-v0')\n"
        "obs, info = env.reset(seed=0)\n"
        "for _ in range(3):\n"
        "    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())\n"
        f"assert obs.shape == (16, 16, 3) and env.action_space == gym.spaces.Discrete({n}), (obs.shape, env.action_space)\n"
        "print(env.spec.kwargs['checkpoint'], env.spec.max_episode_steps)\n"
    )
    checkpoint, limit = run(["-c", code], tmp_path).stdout.split()
    assert Path(checkpoint) == tmp_path / "models" / name
    assert limit == ("10000" if world == "Crafter" else "None")  # the model names its real twin, whose time limit it takes


def test_the_data_sized_recipe(tmp_path):
    def dataset(path: Path, size: tuple[int, int], space: gym.Space, env: str) -> Path:
        with DatasetWriter(path, gym.spaces.Box(0, 255, (*size, 3), np.uint8), space, {"env": env}) as w:
            w.add_episode(np.zeros((3, *size, 3), np.uint8), np.stack([space.sample() for _ in range(2)]), np.array([0.0, -2.5]),
                          np.zeros(2, bool), np.array([False, True]))  # fmt: skip
        return path

    cfg = data_recipe(dataset(tmp_path / "a", (64, 64), gym.spaces.Discrete(17), "real:Crafter"))
    m = cfg.model
    assert (m.name, m.real_twin, m.action.n, m.autoencoder.grid, m.dynamics.patch) == ("Crafter", "Crafter", 17, (8, 8), 2)
    assert m.reward_range == [-2.5, 1.0]
    cfg = data_recipe(dataset(tmp_path / "b", (96, 128), gym.spaces.MultiBinary(5), "import:my clips"), scale="tiny")
    assert cfg.model.autoencoder.grid == (6, 8) and cfg.model.dynamics.patch == 2 and cfg.model.action.kind == "multi_binary"
    assert cfg.model.name == "MyClips" and cfg.dyn_steps == 4
    with pytest.raises(ConfigError, match="frames of 30x30 pixels"):
        data_recipe(dataset(tmp_path / "c", (30, 30), gym.spaces.Discrete(2), "x"))
    assert model_name({"env": "gym:ALE/Pong-v5"}, "") == "Pong" and model_name({}, "2d-run") == "Model2dRun"


def test_crafter_recipe_is_dumped_to_configs():
    assert load_yaml(TrainConfig, ROOT / "configs" / "crafter.yaml") == crafter_config()
    m = crafter_config().model
    assert (m.autoencoder.frame_height, m.autoencoder.frame_width, m.action.n, m.autoencoder.tokens // m.dynamics.patch**2) == (64, 64, 17, 16)

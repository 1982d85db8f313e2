"""The user models directory: `worldgym train --install NAME` writes there, `import worldgym` registers what it finds."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest

from worldgym.envs.registration import shipped_models
from worldgym.envs.twins import PixelTwin
from worldgym.paths import user_models_dir
from worldgym.play.record import record
from worldgym.policies.builtin import StickyRandomPolicy
from worldgym.training.train import install_destination

ROOT = Path(__file__).resolve().parent.parent


def run(args: list[str], models: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WORLDGYM_MODELS": str(models)}
    return subprocess.run([sys.executable, *args], check=True, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_install_name_goes_to_the_user_models_directory_and_a_path_stays_a_path(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLDGYM_MODELS", str(tmp_path / "models"))
    assert user_models_dir() == tmp_path / "models"
    assert install_destination("Mine") == tmp_path / "models" / "Mine"
    assert install_destination("assets/models/cartpole") == Path("assets/models/cartpole")
    assert install_destination("./Mine") == Path("Mine")
    for bad in ("", ".", ".."):
        with pytest.raises(Exception, match="model name or a path"):
            install_destination(bad)


def test_install_refuses_to_replace_what_is_not_a_model(tmp_path):
    """`--install PATH` onto a folder of the user's own files fails before training and leaves the folder as it was."""
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "keep.txt").write_text("my notes")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WORLDGYM_MODELS": str(tmp_path / "models")}
    out = subprocess.run([sys.executable, "-m", "worldgym.cli", "train", str(ROOT / "configs" / "tiny.yaml"), "--data", str(tmp_path / "missing"),
                          "--out", str(tmp_path / "run"), "--install", f"{mine}/"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "is not a model folder" in out.stderr and "config.json" in out.stderr
    assert (mine / "keep.txt").read_text() == "my notes" and not (tmp_path / "run").exists()


def test_train_install_name_registers_in_a_fresh_process(tmp_path):
    env = PixelTwin("CartPole", height=32, width=32)
    data, models = tmp_path / "data", tmp_path / "models"
    record(env, StickyRandomPolicy(env.action_space), data, episodes=4, seed=0, max_steps=20)
    run(["-m", "worldgym.cli", "train", str(ROOT / "configs" / "tiny.yaml"), "--data", str(data), "--out", str(tmp_path / "run"),
         "--install", "Mine"], models, cwd=tmp_path)  # fmt: skip
    assert (models / "Mine" / "model.safetensors").is_file() and (models / "Mine" / "config.json").is_file()
    name = json.loads((models / "Mine" / "config.json").read_text())["config"]["name"]
    code = (
        "import gymnasium as gym, worldgym\n"
        "from worldgym.model import checkpoint\n"
        f"env = gym.make('worldgym/{name}-v0')\n"
        "obs, info = env.reset(seed=0)\n"
        "assert obs.shape == (32, 32, 3), obs.shape\n"
        "print(env.spec.kwargs['checkpoint'])\n"
        "print(checkpoint.resolve('Mine'))\n"
    )
    found = run(["-c", code], models, cwd=tmp_path).stdout.split()
    assert found == [str(models / "Mine")] * 2


def test_a_broken_user_model_folder_is_skipped_with_a_warning(tmp_path, monkeypatch, caplog):
    models = tmp_path / "models"
    (models / "notjson").mkdir(parents=True)
    (models / "notjson" / "config.json").write_text("{not json")
    (models / "noconfig").mkdir()
    (models / "noconfig" / "config.json").write_text(json.dumps({"weights": "elsewhere"}))
    (models / "empty").mkdir()  # no config.json: not a model folder, skipped without a word
    monkeypatch.setenv("WORLDGYM_MODELS", str(models))
    with caplog.at_level(logging.WARNING, logger="worldgym.envs.registration"):
        found = [folder for folder, _ in shipped_models()]
    assert not any(folder.parent == models for folder in found) and found  # the shipped ones are still there
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "notjson" in warned and "noconfig" in warned and "empty" not in warned
    # and `import worldgym` in a fresh process registers the shipped models regardless
    out = run(["-c", "import gymnasium as gym, worldgym; print(sorted(i for i in gym.registry if i.startswith('worldgym/')))"],
              models, cwd=tmp_path)  # fmt: skip
    assert "worldgym/CartPole-v0" in out.stdout and "notjson" in out.stderr


def test_a_user_model_named_like_a_shipped_one_is_not_registered_and_says_so(tmp_path, monkeypatch, caplog):
    """The shipped model keeps its id; the user's folder of the same name is named in a warning with the way to make it."""
    models = tmp_path / "models"
    (models / "MyCopy").mkdir(parents=True)
    shipped = json.loads((ROOT / "assets" / "models" / "cartpole" / "config.json").read_text())
    (models / "MyCopy" / "config.json").write_text(json.dumps(shipped))  # config.name "CartPole", as the shipped one
    monkeypatch.setenv("WORLDGYM_MODELS", str(models))
    from worldgym.envs.registration import register_all

    with caplog.at_level(logging.WARNING, logger="worldgym.envs.registration"):
        register_all()
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "MyCopy" in warned and "is not registered" in warned and "WorldModel-v0" in warned
    assert "MyCopy" not in gym.registry["worldgym/CartPole-v0"].kwargs["checkpoint"]

"""The whole pipeline through the CLI on a tiny budget: record -> check -> train -> eval -> load in gymnasium.make."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "worldgym.cli", *args], check=True, capture_output=True, text=True, env=env, timeout=300)


def test_record_check_train_eval_load(tmp_path):
    data, run = tmp_path / "data", tmp_path / "run"
    cli("record", "--env", "real:CartPole", "--size", "32", "--episodes", "4", "--max-steps", "25", "--policy", "mix", "--out", str(data), "--quiet")
    summary = json.loads(cli("dataset", "check", str(data)).stdout)
    assert summary["valid"] and summary["episodes"] == 4
    cli("train", "configs/tiny.yaml", "--data", str(data), "--out", str(run))
    assert (run / "model" / "manifest.json").is_file() and (run / "log.jsonl").is_file()
    report_path, strip = tmp_path / "eval.json", tmp_path / "strip.png"
    cli("eval", str(run / "model"), "--episodes", "2", "--max-steps", "20", "--branch-every", "5", "--branch-steps", "2",
        "--stability-steps", "40", "--starts-episodes", "4", "--out", str(report_path), "--strip", str(strip))  # fmt: skip
    report = json.loads(report_path.read_text())
    bf16_path = tmp_path / "eval_bf16.json"
    cli("eval", str(run / "model"), "--episodes", "2", "--max-steps", "20", "--branch-every", "5", "--branch-steps", "2",
        "--stability-steps", "40", "--starts-episodes", "0", "--dtype", "bfloat16", "--out", str(bf16_path))  # fmt: skip
    bf16 = json.loads(bf16_path.read_text())
    assert report["dtype"] == "float32" and bf16["dtype"] == "bfloat16" and np.isfinite(bf16["fidelity"]["1"]["psnr_db"])
    assert set(report["fidelity"]) == {"1", "10", "50", "200"}
    assert report["fidelity"]["1"]["episodes"] == 2 and np.isfinite(report["fidelity"]["1"]["psnr_db"])
    for key in ("controllability", "termination", "stability", "starts"):
        assert key in report
    assert set(report["starts"]["per_k"]) == {"1", "4", "8"} and "skipped" in report["starts"]["per_k"]["8"]  # tiny: sink + window = 4
    assert report["starts"]["episodes"] == 4 and report["starts"]["per_k"]["1"]["episodes"] <= 4 and "starts" not in bf16
    assert report["stability"]["steps"] == 40 and strip.stat().st_size > 0
    # the trained checkpoint loads as a Gymnasium env
    import worldgym  # noqa: F401

    env = gym.make("worldgym/WorldModel-v0", checkpoint=str(run / "model"))
    obs, _ = env.reset(seed=0)
    assert obs.shape == (32, 32, 3) and obs.dtype == np.uint8
    obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs)
    env.close()

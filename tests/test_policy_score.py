"""Scoring a saved policy (``python -m worldgym.evaluation.policy_score``) and the frame skip a policy folder carries.

A tiny world model (tests/conftest.py) with two actions stands in for a trained one; its
random actor plays the real CartPole twin at 16x16 for a few short episodes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import randomized, tiny_config

from worldgym.evaluation.policy_score import default_env, main
from worldgym.model.actions import ActionConfig
from worldgym.model.networks import Model
from worldgym.policies.model_state import ModelStatePolicy, feature_actor, save_model_state_policy
from worldgym.policies.saved import ActionRepeat, PolicyError
from worldgym.policy_io import load_policy
from worldgym.training.imagination import evaluate

ROOT = Path(__file__).resolve().parent.parent
PROVENANCE = {"trained_in": "test", "world_model": "runs/tiny/model", "real_steps_seen_by_model": 1234}


def saved_policy(path: Path, real_twin: str = "", **extra) -> Path:
    model = randomized(Model(dataclasses.replace(tiny_config(action=ActionConfig(kind="discrete", n=2)), real_twin=real_twin)))
    actor = feature_actor(model.config.dynamics.dim, [8, 8], 2, out_gain=1.0)
    return save_model_state_policy(path, actor, model, [8, 8], 2, {**PROVENANCE, **extra})


def test_cli_report_matches_evaluate_called_directly(tmp_path, capsys):
    path = saved_policy(tmp_path / "policy")
    out = tmp_path / "score" / "report.json"
    argv = [str(path), "--env", "worldgym/CartPoleReal-v0", "--episodes", "3", "--seed", "7", "--target", "12", "--json", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    env = gym.make("worldgym/CartPoleReal-v0", height=16, width=16)
    assert report["returns"] == evaluate(load_policy(path), env, 3, 7)
    assert report["seeds"] == [7, 8, 9] and report["env"] == "worldgym/CartPoleReal-v0" and report["frame_skip"] == 1
    assert report["mean"] == pytest.approx(sum(report["returns"]) / 3) and report["min"] == min(report["returns"])
    assert report["at_target"] == sum(r >= 12 for r in report["returns"])
    assert {k: report["policy_config"][k] for k in PROVENANCE} == PROVENANCE
    table = capsys.readouterr().out
    assert "±" in table and "3 episodes" in table and str(out) in table


def test_policy_json_frame_skip_is_applied_unless_the_caller_overrides_it(tmp_path):
    plain = load_policy(saved_policy(tmp_path / "plain"))
    assert isinstance(plain, ModelStatePolicy)
    path = saved_policy(tmp_path / "skip", frame_skip=3)
    skipping = load_policy(path)
    assert isinstance(skipping, ActionRepeat) and skipping.k == 3 and isinstance(skipping.policy, ModelStatePolicy)
    assert isinstance(load_policy(path, frame_skip=1), ModelStatePolicy)
    assert load_policy(path, frame_skip=2).k == 2
    bad = saved_policy(tmp_path / "bad", frame_skip=0)
    with pytest.raises(PolicyError, match="frame_skip must be an int >= 1.*got 0"):
        load_policy(bad)


def test_default_env_is_the_models_twin_at_the_rate_the_policy_acts(tmp_path):
    assert default_env(load_policy(saved_policy(tmp_path / "a", real_twin="CartPole")), 1) == "worldgym/CartPoleReal-v0"
    skip3 = saved_policy(tmp_path / "b", real_twin="CartPoleSkip3", frame_skip=3)
    assert default_env(load_policy(skip3), 3) == "worldgym/CartPoleReal-v0"  # the policy holds its actions: the every-frame twin
    assert default_env(load_policy(skip3, frame_skip=1), 1) == "worldgym/CartPoleSkip3Real-v0"  # as trained
    skip2 = saved_policy(tmp_path / "c", real_twin="CartPoleSkip2", frame_skip=2)
    assert default_env(load_policy(skip2), 2) == "worldgym/CartPoleReal-v0"
    assert default_env(load_policy(skip2, frame_skip=1), 1) == "worldgym/CartPoleSkip2Real-v0"


@pytest.mark.parametrize("name, skip", [("CartPoleSkip2", 2), ("CartPoleSkip3", 3)])
def test_the_frame_skip_twins_repeat_each_action_and_end_at_the_sources_500_steps(name, skip):
    from worldgym.envs.registration import known_twins

    spec = known_twins()[name]
    assert spec.frame_skip == skip and spec.max_episode_steps == -(-500 // skip)
    twin = gym.make(f"worldgym/{name}Real-v0", height=16, width=16)
    source = gym.make("CartPole-v1")
    _, info = twin.reset(seed=5)
    source.reset(seed=5)
    source.unwrapped.state = np.asarray(info["state"], dtype=np.float64)  # the same start, whatever seed the twin passes on
    for action in (1, 1, 0, 1):
        _, reward, *_, info = twin.step(action)
        for _ in range(skip):
            state, *_ = source.step(action)
        assert reward == skip and np.allclose(info["state"], state)
    twin.close()


@pytest.mark.parametrize(
    "args, message",
    [
        (["{missing}"], "no policy at .*expected policy.json"),
        (["{policy}", "--env", "worldgym/Nope-v0"], "--env must be a registered Gymnasium id .*got 'worldgym/Nope-v0'"),
        (["{policy}", "--episodes", "0"], "--episodes must be >= 1, got 0"),
        (["{policy}"], "no --env given and the policy's world model names no real twin; pass --env"),
        (["{policy}", "--env", "worldgym/CartPoleSkip3Real-v0", "--frame-skip", "3"], "already repeats each action 3 source steps; expected an every-frame twin"),
    ],
)
def test_bad_input_is_one_line_saying_expected_and_got(tmp_path, capsys, args, message):
    path = saved_policy(tmp_path / "policy")
    argv = [a.format(policy=path, missing=tmp_path / "missing") for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("python -m worldgym.evaluation.policy_score: error: ")
    assert re.search(message, err), err


def test_runs_as_a_module(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "worldgym.evaluation.policy_score", str(tmp_path / "missing")], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 2 and "no policy at" in done.stderr and "Traceback" not in done.stderr


def test_the_loop_writes_the_frame_skip_of_a_twin_that_repeats_actions():
    from worldgym.training.loop import twin_frame_skip

    assert twin_frame_skip("worldgym/CartPoleSkip3Real-v0") == {"frame_skip": 3}
    assert twin_frame_skip("worldgym/CartPoleSkip2Real-v0") == {"frame_skip": 2}
    assert twin_frame_skip("worldgym/CartPoleReal-v0") == {}

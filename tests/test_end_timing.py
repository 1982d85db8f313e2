"""End timing: the neural env started shortly before real terminations, its predicted ends against the real ones.

A randomized tiny model on real CartPole episodes: the test checks the protocol (windows cut at the
real ends, the rollout's first termination matching `worldgym.evaluation.contexts.neural_ends`, the
counts adding up and moving one way with the threshold) and the CLI's refusals, not a model's quality.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_model

from worldgym.data.dataset import load as load_dataset
from worldgym.evaluation.contexts import neural_ends
from worldgym.evaluation.end_timing import end_timing, end_windows, main
from worldgym.model.actions import ActionConfig


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    """Twelve real 16x16 CartPole episodes under random actions (most terminate within 60 steps)."""
    from worldgym.envs.twins import PixelTwin
    from worldgym.play.record import record
    from worldgym.policies.builtin import RandomPolicy

    env = PixelTwin("CartPole", height=16, width=16)
    path = tmp_path_factory.mktemp("data") / "cartpole16px"
    record(env, RandomPolicy(env.action_space), path, episodes=12, seed=0, max_steps=60)
    return path


def test_windows_end_on_the_real_terminal_frame(episodes):
    windows = end_windows([episodes], context=2, before=5)
    ended = [ep for ep in load_dataset(episodes).episodes if ep.terminations[-1] and len(ep) >= 7]
    assert len(windows) == len(ended) > 0
    for w, ep in zip(windows, ended):
        assert len(w["frames"]) == 7 and len(w["actions"]) == 6
        np.testing.assert_array_equal(w["frames"][-1], ep.observations[-1])
        np.testing.assert_array_equal(w["actions"], ep.actions[-6:])


def test_rollout_ends_match_neural_ends_and_move_with_the_threshold(episodes):
    model = tiny_model(seed=2, action=ActionConfig(kind="discrete", n=2))  # its termination probabilities span 0.23-0.82 here
    windows = end_windows([episodes], context=2, before=5)
    thresholds = ("0.75", "0.6", "0.5", "0.3")
    report = end_timing(model, windows, context=2, thresholds=[float(t) for t in thresholds], tolerance=1, extra=4)
    assert report["episodes"] == len(windows) and report["before"] == 5
    rows = [report["rollout"][k] for k in thresholds]
    for r in rows:
        assert r["within"] + r["early"] + r["late_or_never"] == len(windows) == len(r["offsets"])
    # a lower threshold fires no later, episode by episode, and here strictly earlier for some
    never = 10**6
    for hi, lo in zip(rows, rows[1:]):
        assert all((b if b is not None else never) <= (a if a is not None else never) for a, b in zip(hi["offsets"], lo["offsets"]))
    assert rows[0]["offsets"] != rows[-1]["offsets"]
    # at 0.5, every episode's first fired step is the starts protocol's (an independent loop over the same engine)
    L = len(windows[0]["actions"])
    assert report["rollout"]["0.5"]["offsets"] == [None if e is None else e - L for e in neural_ends(model, windows, 2, 4, "float32")]
    assert 0.0 <= report["filter_prob_at_real_end"]["median"] <= 1.0


def test_cli_refuses_bad_input(episodes, tmp_path, capsys):
    assert main(["CartPole", "--data", str(episodes), "--thresholds", "1.5"]) == 2
    assert "--thresholds must be probabilities in (0, 1), got [1.5]" in capsys.readouterr().err
    assert main(["CartPole", "--data", str(episodes), "--before", "0"]) == 2
    assert "--before and --context must be >= 1" in capsys.readouterr().err


def env_offsets(model, windows, context: int, threshold: float, obs_type: str, extra: int = 4) -> list[int | None]:
    """Each window through the public single env (reset from its context frames, its actions replayed)."""
    from worldgym.envs.env import WorldModelEnv

    env = WorldModelEnv(model, obs_type=obs_type, termination_threshold=threshold)
    out = []
    for w in windows:
        L = len(w["actions"])
        acts = [w["actions"][0]] + list(w["actions"][: context - 1])
        env.reset(options={"frames": w["frames"][:context], "actions": acts})
        env.unwrapped.engine.generators[0].manual_seed(int(w["seed"]))  # the noise end_timing's reset gives the row
        end = None
        for t in range(context - 1, L + extra):
            if env.step(int(w["actions"][min(t, L - 1)]))[2]:
                end = t + 1 - L
                break
        out.append(end)
    return out


def test_both_engines_time_ends_as_the_envs_do(episodes):
    """Fused commit: the default engine is the rgb env's, ``features=True`` the features env's (the loop's dream)."""
    model = tiny_model(seed=2, action=ActionConfig(kind="discrete", n=2), fused=True)
    windows = end_windows([episodes], context=2, before=5)
    default = end_timing(model, windows, context=2, thresholds=[0.4, 0.5], tolerance=1, extra=4)
    dream = end_timing(model, windows, context=2, thresholds=[0.4, 0.5], tolerance=1, extra=4, features=True)
    assert default["engine"] == "default" and dream["engine"] == "features"
    for thr in ("0.4", "0.5"):
        assert default["rollout"][thr]["offsets"] == env_offsets(model, windows, 2, float(thr), "rgb")
        assert dream["rollout"][thr]["offsets"] == env_offsets(model, windows, 2, float(thr), "features")
    assert default["rollout"]["0.4"]["offsets"] != dream["rollout"]["0.4"]["offsets"]  # the two engines time differently here

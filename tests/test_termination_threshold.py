"""``termination_threshold`` on every env surface: an episode ends exactly when the head's probability passes it.

The single Gymnasium env, the vector env and the TorchRL env take the same argument (the loop
trains agents at ``--termination-threshold``; a user replaying such an agent in one env needs
the same rule). The threshold is picked between the probabilities the tiny model actually
produces, so each check sees both outcomes.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torchrl.envs.utils import step_mdp

from worldgym.envs.env import WorldModelEnv
from worldgym.envs.torchrl_env import TorchRLWorldModelEnv
from worldgym.envs.vector_env import WorldModelVectorEnv

from conftest import tiny_model

STEPS = 12


def probs_and_ends(env: WorldModelEnv, seed: int) -> tuple[np.ndarray, np.ndarray]:
    env.reset(seed=seed)
    probs, ends = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stepping on after terminated=True warns once; the engine keeps going
        for t in range(STEPS):
            _, _, terminated, _, info = env.step(t % 2)
            probs.append(info["termination_prob"])
            ends.append(terminated)
    return np.array(probs), np.array(ends)


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=5)


@pytest.fixture(scope="module")
def threshold(model) -> float:
    """The median probability of a reference rollout: some steps are above it, some below, and
    the default 0.5 would end different steps (so a surface ignoring the argument fails)."""
    probs, _ = probs_and_ends(WorldModelEnv(model), seed=7)
    thr = float(np.median(probs))
    assert (probs > thr).any() and (probs <= thr).any(), f"degenerate probabilities {probs}"
    assert ((probs > thr) != (probs > 0.5)).any(), f"the median {thr} does not separate from 0.5 on {probs}"
    return thr


def test_single_env_ends_where_the_probability_passes_the_threshold(model, threshold):
    probs, ends = probs_and_ends(WorldModelEnv(model, termination_threshold=threshold), seed=7)
    assert ends.any() and not ends.all()
    np.testing.assert_array_equal(ends, probs > threshold)
    # the threshold changes only the end, not the rollout
    ref, ref_ends = probs_and_ends(WorldModelEnv(model), seed=7)
    np.testing.assert_allclose(probs, ref)
    np.testing.assert_array_equal(ref_ends, ref > 0.5)


def vector_run(model, threshold: float) -> tuple[list[bool], list[float]]:
    """Two rows for STEPS steps (NEXT_STEP autoreset); per stepped row: terminated, and checks the rule."""
    vec = WorldModelVectorEnv(model, num_envs=2, termination_threshold=threshold)
    vec.reset(seed=5)
    seen, probs = [], []
    for t in range(STEPS):
        _, _, terminated, _, info = vec.step(np.array([t % 2, 1 - t % 2]))
        stepped = info["termination_prob"] > 0  # rows reset this step (NEXT_STEP) report 0
        np.testing.assert_array_equal(terminated[stepped], info["termination_prob"][stepped] > threshold)
        seen.extend(terminated[stepped].tolist())
        probs.extend(info["termination_prob"][stepped].tolist())
    return seen, probs


def torchrl_run(model, threshold: float) -> tuple[list[bool], list[float]]:
    env = TorchRLWorldModelEnv(model, batch_size=[2], termination_threshold=threshold)
    env.set_seed(5)
    td = env.reset()
    seen, probs = [], []
    for t in range(STEPS):
        td = env.step(td.set("action", env.action_spec.rand()))
        nxt = td["next"]
        np.testing.assert_array_equal(nxt["terminated"].numpy(), (nxt["termination_prob"] > threshold).numpy())
        seen.extend(nxt["terminated"].flatten().tolist())
        probs.extend(nxt["termination_prob"].flatten().tolist())
        td = step_mdp(td)
    return seen, probs


@pytest.mark.parametrize("run", [vector_run, torchrl_run])
def test_vector_and_torchrl_envs_use_the_same_rule(model, run):
    torch.manual_seed(0)
    _, probs = run(model, 0.999)  # nothing ends: the probabilities this surface produces
    threshold = float(np.median(probs[:4]))  # the first steps are the same in the next run
    torch.manual_seed(0)
    seen, _ = run(model, threshold)
    assert True in seen and False in seen


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.2, 1.5])
def test_a_threshold_outside_0_1_is_refused(model, bad):
    for make in (lambda: WorldModelEnv(model, termination_threshold=bad),
                 lambda: WorldModelVectorEnv(model, num_envs=2, termination_threshold=bad),
                 lambda: TorchRLWorldModelEnv(model, batch_size=[2], termination_threshold=bad)):  # fmt: skip
        with pytest.raises(ValueError, match=r"termination_threshold must be a probability in \(0, 1\)"):
            make()


def test_env_keeps_its_threshold_through_gymnasium_make(model, tmp_path):
    import gymnasium as gym

    from worldgym.model import checkpoint

    path = checkpoint.save(model, tmp_path / "tiny")
    env = gym.make("worldgym/WorldModel-v0", checkpoint=str(path), termination_threshold=0.25)
    assert env.unwrapped.termination_threshold == 0.25

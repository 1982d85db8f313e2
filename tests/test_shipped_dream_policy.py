"""The shipped dream-trained CartPole policy (``assets/policies/cartpole_dream``) loads by name and balances the real pole."""

import gymnasium as gym
import pytest
import torch

import worldgym  # noqa: F401  (registers the worldgym/ env ids)
from worldgym.policies.model_state import MemberMean, MirroredPolicy, ModelStatePlanner, ModelStatePolicy
from worldgym.policies.saved import ActionRepeat
from worldgym.policy_io import load_policy
from worldgym.training.imagination import evaluate

BUDGET = 200_000  # physics steps the world model may have seen (issue's budget)


def test_loads_as_a_mirrored_readout_ensemble_trained_in_imagination():
    policy = load_policy("cartpole_dream")
    assert isinstance(policy, ActionRepeat) and policy.k == 2
    inner = policy.policy
    assert isinstance(inner, MirroredPolicy)
    assert isinstance(inner.policy, ModelStatePolicy) and not isinstance(inner.policy, ModelStatePlanner)
    actor = inner.policy.actor
    assert isinstance(actor, MemberMean) and len(actor.members) == 3
    for member in actor.members:  # each member reads the 4-number state readout of the 128 features
        assert isinstance(member[0], torch.nn.Linear) and (member[0].in_features, member[0].out_features) == (128, 4)
    config = policy.config
    assert config["trained_in"] == "imagination" and config["readout"] == {"dim": 4}
    # twin steps the model saw, each at most 2 physics steps of CartPole
    assert 0 < config["real_steps_seen_by_model"] * config["frame_skip"] <= BUDGET
    assert "/" not in config["world_model"].split(" ")[0], "the folder's model path must be relative to the folder"


@pytest.mark.parametrize("seed", [10002])
def test_balances_a_real_episode(seed):
    # 100 real episodes score 496.4 +- 19.3 with min 356 (POLICY_CARD.md); a random policy gets about 22,
    # the pixel agent cartpole_ppo 75 +- 26. A broken filter, readout or member weights fall far below 300.
    policy = load_policy("cartpole_dream")
    env = gym.make("worldgym/CartPoleReal-v0")
    (total,) = evaluate(policy, env, 1, seed)  # resets the env with the seed and the policy before the episode
    env.close()
    assert total >= 300, f"the shipped dream policy kept the real pole up only {total} steps on seed {seed}"

"""The shipped dream-trained CartPole policy (``assets/policies/cartpole_dream``) loads by name and balances the real pole."""

import gymnasium as gym
import pytest

import worldgym  # noqa: F401  (registers the worldgym/ env ids)
from worldgym.policies.model_state import MemberMean, MirroredPolicy, ModelStatePlanner
from worldgym.policies.saved import ActionRepeat
from worldgym.policy_io import load_policy
from worldgym.training.imagination import evaluate

BUDGET = 200_000  # physics steps the world model may have seen (issue's budget)


def test_loads_as_a_mirrored_planning_ensemble_trained_in_imagination():
    policy = load_policy("cartpole_dream")
    assert isinstance(policy, ActionRepeat) and policy.k == 3
    inner = policy.policy
    assert isinstance(inner, MirroredPolicy)
    assert isinstance(inner.policy, ModelStatePlanner) and inner.policy.horizon == 2
    assert isinstance(inner.policy.critic, MemberMean) and len(inner.policy.critic.members) == 3
    config = policy.config
    assert config["trained_in"] == "imagination"
    # twin steps the model saw, each at most 3 physics steps of CartPole
    assert 0 < config["real_steps_seen_by_model"] * config["frame_skip"] <= BUDGET
    assert "/" not in config["world_model"].split(" ")[0], "the folder's model path must be relative to the folder"


@pytest.mark.parametrize("seed", [10002])
def test_balances_a_real_episode(seed):
    # 100 real episodes score 398.6 +- 105.5 with min 168 (POLICY_CARD.md); a random policy gets about 22,
    # the pixel agent cartpole_ppo 75 +- 26. A broken filter, plan or member weights fall far below 150.
    policy = load_policy("cartpole_dream")
    env = gym.make("worldgym/CartPoleReal-v0")
    (total,) = evaluate(policy, env, 1, seed)  # resets the env with the seed and the policy before the episode
    env.close()
    assert total >= 150, f"the shipped dream policy kept the real pole up only {total} steps on seed {seed}"

"""The recording policies of `worldgym.policies.builtin`: bursts of held actions over a base policy."""

import gymnasium as gym
import numpy as np

from worldgym.policies.builtin import POLICIES, BurstPolicy, make_policy


class CountingBase:
    """Always action 0; counts its calls, so the test sees that the base runs every step."""

    def __init__(self) -> None:
        self.calls = 0

    def reset(self, rng: np.random.Generator) -> None:
        self.calls = 0

    def __call__(self, observation, info) -> int:
        self.calls += 1
        return 0


def runs_of(actions: list[int]) -> list[tuple[int, int]]:
    """(action, length) of every run of equal actions."""
    out: list[tuple[int, int]] = []
    for a in actions:
        if out and out[-1][0] == a:
            out[-1] = (a, out[-1][1] + 1)
        else:
            out.append((a, 1))
    return out


def test_bursts_hold_one_action_for_3_to_15_steps_and_the_base_runs_every_step():
    space = gym.spaces.Discrete(3)
    base = CountingBase()
    policy = BurstPolicy(base, space, p_burst=0.2, hold=(3, 15))
    policy.reset(np.random.default_rng(0))
    actions = [policy(None, {}) for _ in range(2000)]
    assert base.calls == 2000
    bursts = [(a, n) for a, n in runs_of(actions) if a != 0]
    assert len(bursts) > 20
    # a burst of action 1 or 2 lasts 3-15 steps (two bursts of the same action may touch: up to 30)
    assert all(3 <= n <= 30 for _, n in bursts), bursts
    assert min(n for _, n in bursts) == 3 and max(n for _, n in bursts) >= 12
    assert 0.2 < np.mean([a != 0 for a in actions]) < 0.95


def test_bursts_are_reproducible_from_the_reset_rng_and_never_start_at_p_zero():
    a, b = (BurstPolicy(CountingBase(), gym.spaces.Discrete(2), p_burst=0.1) for _ in range(2))
    a.reset(np.random.default_rng(7))
    b.reset(np.random.default_rng(7))
    assert [a(None, {}) for _ in range(300)] == [b(None, {}) for _ in range(300)]
    never = BurstPolicy(CountingBase(), gym.spaces.Discrete(2), p_burst=0.0)
    never.reset(np.random.default_rng(1))
    assert set(never(None, {}) for _ in range(300)) == {0}


def test_bursts_is_a_named_recording_policy():
    assert "bursts" in POLICIES
    policy = make_policy("bursts", gym.spaces.Discrete(2))
    assert isinstance(policy, BurstPolicy)
    policy.reset(np.random.default_rng(0))
    env = gym.make("CartPole-v1")
    obs, info = env.reset(seed=0)
    info = {"state": obs}
    assert policy(obs, info) in (0, 1)

"""The physics ceiling of termination timing: the true CartPole replaying real actions from a start frame's state."""

import numpy as np

from worldgym.evaluation.evaluate import record_real, termination_ceiling


def episodes(policy: str, n: int, seed: int) -> list[dict]:
    return record_real("CartPole", (16, 16), n, seed, policy, 500)


def test_exact_start_state_reproduces_every_real_termination_step():
    real = episodes("random", 6, 123)
    ceiling = termination_ceiling(real, velocity_spread=None)
    assert ceiling["episodes"] == sum(e["terminated"] for e in real) == 6
    steps = [[T, m] for T, m, _ in ceiling["per_episode_real_median_hit"]]
    assert steps == [[len(e["actions"]), len(e["actions"])] for e in real]
    assert ceiling["share_within_3_steps_median"] == 1.0 and ceiling["share_within_3_steps_single_run"] == 1.0


def test_unknown_velocities_make_long_controlled_episodes_unpredictable():
    # in a "mix" episode driven by the noisy controller the pole stays up for long (here 214 steps);
    # replayed open loop from a start state whose velocities are redrawn, it falls far earlier
    real = episodes("mix", 16, 100_000)
    long = [e for e in real if e["terminated"] and len(e["actions"]) >= 100]
    assert long, "expected a long terminated episode in the sample"
    ceiling = termination_ceiling(long, samples=16, velocity_spread=0.05, seed=0)
    hits = [h for _, _, h in ceiling["per_episode_real_median_hit"]]
    medians = [m for _, m, _ in ceiling["per_episode_real_median_hit"]]
    assert max(hits) < 0.5
    assert all(m < len(e["actions"]) - 3 for m, e in zip(medians, long))
    assert 0.0 <= ceiling["share_within_3_steps_median"] < 0.5


def test_random_episodes_are_short_and_predictable_from_one_frame():
    real = episodes("random", 8, 5)
    ceiling = termination_ceiling(real, samples=16, seed=1)
    assert ceiling["samples"] == 16
    assert np.mean([h for _, _, h in ceiling["per_episode_real_median_hit"]]) > 0.7

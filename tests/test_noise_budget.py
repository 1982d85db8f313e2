"""The noise budget: a linear controller on CartPole's noisy true state, per frame skip."""

from __future__ import annotations

import numpy as np
import pytest

from worldgym.config_io import UserError
from worldgym.evaluation.noise_budget import GAINS, main, noisy_controller_returns


def test_the_controller_balances_to_the_limit_on_the_exact_state():
    assert noisy_controller_returns([0, 0, 0, 0], 1, GAINS[0], episodes=5) == [500.0] * 5


def test_the_same_noise_costs_more_when_each_action_is_held_longer():
    noise = [0.06, 0.15, 0.012, 0.19]
    every = np.mean(noisy_controller_returns(noise, 1, GAINS[0], episodes=10))
    held = np.mean(noisy_controller_returns(noise, 3, GAINS[0], episodes=10))
    assert every == 500.0 and held < 450.0, (every, held)


def test_bad_arguments_are_refused_with_what_was_expected():
    with pytest.raises(UserError, match="one value per state dimension"):
        noisy_controller_returns([0.1, 0.1], 1, GAINS[0])
    with pytest.raises(UserError, match="frame_skip >= 1 and noise >= 0, got frame_skip 0"):
        noisy_controller_returns([0, 0, 0, 0], 0, GAINS[0])


def test_the_cli_prints_one_row_per_frame_skip_and_noise(capsys):
    assert main(["--noise", "0", "0", "0", "0", "--frame-skip", "1", "2", "--episodes", "2"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert len(rows) == 3 and rows[1].split()[0] == "1" and rows[2].split()[0] == "2"
    assert "500.0 (2 >= 475)" in rows[1]

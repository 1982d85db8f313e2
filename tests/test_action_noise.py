"""PPO's action noise in imagination: the env executes a uniformly random action with the given probability."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from worldgym.training.imagination import Agent, PPOConfig, ppo


class Recorder(gym.vector.VectorEnv):
    """A vector env of constant observations that records the actions it is asked to execute."""

    def __init__(self, num_envs: int = 8) -> None:
        self.num_envs = num_envs
        self.single_observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.single_action_space = gym.spaces.Discrete(2)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.executed: list[np.ndarray] = []

    def reset(self, *, seed=None, options=None):
        return np.zeros((self.num_envs, 3), np.float32), {}

    def step(self, actions):
        self.executed.append(np.asarray(actions).copy())
        zeros = np.zeros(self.num_envs, bool)
        return np.zeros((self.num_envs, 3), np.float32), np.ones(self.num_envs), zeros, zeros, {}


def always_zero() -> Agent:
    agent = Agent(3, 2, 8)
    with torch.no_grad():
        agent.actor[-1][-1].weight.zero_()
        agent.actor[-1][-1].bias.copy_(torch.tensor([50.0, -50.0]))  # the policy picks action 0 with probability 1
        for p in agent.actor.parameters():
            p.requires_grad_(False)
    return agent


@pytest.mark.parametrize("noise, share", [(0.0, 0.0), (0.5, 0.25), (1.0, 0.5)])
def test_the_env_executes_a_random_action_at_the_noise_rate(noise, share):
    env = Recorder()
    cfg = PPOConfig(total_steps=8 * 64, num_envs=8, num_steps=64, action_noise=noise, update_epochs=1)
    ppo(env, cfg, always_zero())
    ones = np.concatenate(env.executed).mean()  # a random action is action 1 half the time
    assert abs(ones - share) < 0.08, (noise, ones)


def test_action_noise_outside_a_probability_is_refused():
    with pytest.raises(ValueError, match=r"action_noise must be a probability in \[0, 1\], got 1.5"):
        ppo(Recorder(), PPOConfig(total_steps=64, num_envs=8, num_steps=8, action_noise=1.5))


def test_the_loop_refuses_an_action_noise_outside_a_probability_before_it_writes_anything(tmp_path, capsys):
    from worldgym.cli import main

    assert main(["loop", "--action-noise", "-0.1", "--out", str(tmp_path / "loop")]) == 2
    assert "--action-noise must be a probability in [0, 1], got -0.1" in capsys.readouterr().err
    assert not (tmp_path / "loop").exists()

"""PPO's observation noise in imagination: the agent sees the features plus Gaussian noise scaled by their spread."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from worldgym.training.imagination import Agent, PPOConfig, ppo

FEATURES = np.array([0.5, -2.0, 3.0], np.float32)


class Constant(gym.vector.VectorEnv):
    """A vector env whose every observation is the same feature vector."""

    def __init__(self, num_envs: int = 8) -> None:
        self.num_envs = num_envs
        self.single_observation_space = gym.spaces.Box(-10.0, 10.0, (3,), np.float32)
        self.single_action_space = gym.spaces.Discrete(2)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)

    def obs(self) -> np.ndarray:
        return np.tile(FEATURES, (self.num_envs, 1))

    def reset(self, *, seed=None, options=None):
        return self.obs(), {}

    def step(self, actions):
        zeros = np.zeros(self.num_envs, bool)
        return self.obs(), np.ones(self.num_envs), zeros, zeros, {}


class Seen(nn.Module):
    """The actor's head: records what the actor was given (before the shared ObsNorm) and prefers neither action."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.raw: torch.Tensor | None = None
        self.inputs: list[torch.Tensor] = []
        norm.register_forward_pre_hook(self.keep)  # the norm runs right before this head in the actor (and alone in the critic)

    def keep(self, module: nn.Module, args: tuple) -> None:
        self.raw = args[0].detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(self.raw)
        return torch.zeros(*x.shape[:-1], 2)


def run(noise: float) -> tuple[Agent, torch.Tensor]:
    agent = Agent(3, 2, 8)
    seen = Seen(agent.actor[0])
    agent.actor[1] = seen
    E, T = 8, 32
    ppo(Constant(E), PPOConfig(total_steps=3 * E * T, num_envs=E, num_steps=T, update_epochs=1, obs_noise=noise), agent)
    rollout = torch.cat([x for x in seen.inputs if x.shape[0] == E])  # the rollouts' calls (E rows), not the updates'
    return agent, rollout


def test_without_noise_the_agent_sees_the_features_themselves():
    agent, rollout = run(0.0)
    assert torch.equal(rollout, rollout[:1].expand_as(rollout))


@pytest.mark.parametrize("noise", [0.2, 0.5])
def test_the_noise_has_the_asked_spread_in_feature_standard_deviations(noise):
    agent, rollout = run(noise)
    # constant features have no spread: the noise is scaled by the ObsNorm floor (0.1) instead
    std = rollout.std(0)
    assert torch.all((std - 0.1 * noise).abs() < 0.01 * noise), std
    assert torch.all((rollout.mean(0) - torch.from_numpy(FEATURES)).abs() < 0.01 * noise)


def test_the_normalisation_learns_from_the_clean_features_not_the_noisy_ones():
    agent, _ = run(0.5)
    norm = agent.actor[0]
    assert torch.allclose(norm.mean, torch.from_numpy(FEATURES), atol=1e-5)
    assert float(norm.var.max()) < 1e-4  # noisy statistics would hold the noise's variance, 0.05**2 = 2.5e-3


def test_a_negative_obs_noise_is_refused():
    with pytest.raises(ValueError, match=r"obs_noise must be a standard deviation >= 0 \(in feature standard deviations\), got -0.1"):
        ppo(Constant(), PPOConfig(total_steps=64, num_envs=8, num_steps=8, obs_noise=-0.1))


def test_the_loop_refuses_a_negative_obs_noise_before_it_writes_anything(tmp_path, capsys):
    from worldgym.cli import main

    assert main(["loop", "--obs-noise", "-1", "--out", str(tmp_path / "loop")]) == 2
    assert "--obs-noise must be a standard deviation >= 0, got -1.0" in capsys.readouterr().err
    assert not (tmp_path / "loop").exists()

"""PPO on the world model's state: in imagination (a neural vector env) or, for comparison, on a real twin through the filter.

The agent observes ``obs_type="features"``: the dynamics' head features (D,) of each
committed block, which read the cache and so carry velocity and history. In imagination
the envs are one `WorldModelVectorEnv` (all rows in one model forward per step) whose
episodes start from real contexts (`StartBank`) and are cut after ``horizon`` steps, the
critic bootstrapping the rest (Dreamer and DIAMOND train their agents the same way). On a
real twin the same features come from `worldgym.envs.wrappers.ModelState`, so the same
agent, algorithm and budget give the model-free baseline.

`ppo` is one flat loop (cleanrl's PPO): collect ``num_envs x num_steps`` steps, GAE, clipped
policy and value losses. It takes any Gymnasium vector env with SAME_STEP autoreset and
(D,) float32 observations; no gradient step ever touches a real transition unless the env
passed in is real.

Dimension letters: E envs, T steps per rollout, D features.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from worldgym.envs.registration import TWIN_ENTRY_POINT
from worldgym.envs.starts import StartBank
from worldgym.envs.vector_env import WorldModelVectorEnv
from worldgym.envs.wrappers import ModelState
from worldgym.model.networks import Model
from worldgym.policies.model_state import feature_actor
from worldgym.policies.saved import policy_net


@dataclass
class PPOConfig:
    """PPO on (D,) features; defaults measured to solve CartPole from its state (agents/ppo_state.py, gamma 0.99 / lambda 0.95).

    Attributes:
        total_steps: env steps of training.
        num_envs: parallel envs (imagination: rows of one batched model).
        num_steps: steps per env per rollout.
        horizon: imagined episodes are cut (truncated, bootstrapped) after this many steps.
        termination_threshold: imagined episodes end when the termination head's probability passes this.
        reencode: commit each imagined block as the encoding of its decoded frame (the filter's pipeline).
        hidden: width of the two hidden layers of actor and critic.
        learning_rate: Adam learning rate, annealed linearly to 0.
        gamma, gae_lambda: discount and GAE lambda.
        num_minibatches, update_epochs: minibatches per epoch, epochs per rollout.
        clip_coef, ent_coef, vf_coef, max_grad_norm: the usual PPO coefficients.
        action_noise: probability that an env executes a uniformly random action instead of the
            agent's (the agent's own action is what PPO scores): disturbances the world model
            does not show, so the policy learns to recover from states a little off its plan.
        obs_noise: standard deviation of Gaussian noise added to what the agent observes, in units
            of each feature's running standard deviation (the agent's `ObsNorm`): in imagination the
            features are the world's exact state, on real frames the filter only estimates it, so a
            policy trained without noise can rely on a precision it will not have.
        seed: seed of torch (initialisation, sampling) and of the envs.
    """

    total_steps: int = 200_000
    num_envs: int = 64
    num_steps: int = 32
    horizon: int = 100
    termination_threshold: float = 0.5
    reencode: bool = False
    hidden: int = 64
    learning_rate: float = 1e-3
    gamma: float = 0.99
    gae_lambda: float = 0.95
    num_minibatches: int = 4
    update_epochs: int = 10
    clip_coef: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    action_noise: float = 0.0
    obs_noise: float = 0.0
    seed: int = 1


def dream_envs(model: Model, starts: StartBank | None, cfg: PPOConfig, dtype: str = "float32") -> WorldModelVectorEnv:
    """The imagination: ``num_envs`` rows of the neural env observing features, from real starts, cut at ``horizon``."""
    return WorldModelVectorEnv(
        model, cfg.num_envs, obs_type="features", starts=starts, max_episode_steps=cfg.horizon,
        autoreset_mode="SameStep", dtype=dtype, termination_threshold=cfg.termination_threshold,
        reencode=cfg.reencode,
    )  # fmt: skip


def make_real(env_id: str, model: Model) -> gym.Env:
    """The real env ``env_id`` with frames at the model's size (a worldgym real twin is made at that size)."""
    ae = model.config.autoencoder
    spec = gym.registry.get(env_id)
    if spec is not None and spec.entry_point == TWIN_ENTRY_POINT:
        return gym.make(env_id, height=ae.frame_height, width=ae.frame_width)
    return gym.make(env_id)


def real_envs(env_id: str, model: Model, num_envs: int) -> gym.vector.VectorEnv:
    """``num_envs`` real envs observed through the model (`ModelState`), SAME_STEP autoreset."""

    def make() -> gym.Env:
        return ModelState(make_real(env_id, model), model)

    return gym.vector.SyncVectorEnv([make] * num_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


class Agent(nn.Module):
    """Actor and critic MLPs on the features; the actor is what a saved policy keeps (`feature_actor`)."""

    def __init__(self, dim: int, n_actions: int, hidden: int) -> None:
        super().__init__()
        self.actor = feature_actor(dim, [hidden, hidden], n_actions)
        self.critic = policy_net(dim, 1, [hidden, hidden], 1, 1.0, self.actor[0])  # shares the actor's ObsNorm

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)


def ppo(
    envs: gym.vector.VectorEnv,
    cfg: PPOConfig,
    agent: Agent | None = None,
    log: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[Agent, dict[str, Any]]:
    """Train (or keep training) ``agent`` with PPO on ``envs``; returns it and a summary.

    ``log`` receives a dict per update (steps, mean return of finished episodes, losses, sps).
    """
    if not 0.0 <= cfg.action_noise <= 1.0:
        raise ValueError(f"action_noise must be a probability in [0, 1], got {cfg.action_noise}")
    if not cfg.obs_noise >= 0.0:
        raise ValueError(f"obs_noise must be a standard deviation >= 0 (in feature standard deviations), got {cfg.obs_noise}")
    torch.manual_seed(cfg.seed)
    noise = torch.Generator().manual_seed(cfg.seed + 7_919)  # its own stream: action_noise 0 draws nothing from torch's
    obs_rng = torch.Generator().manual_seed(cfg.seed + 104_729)  # and obs_noise its own
    E, T = envs.num_envs, cfg.num_steps
    dim = int(np.prod(envs.single_observation_space.shape))
    n_actions = int(envs.single_action_space.n)
    agent = agent or Agent(dim, n_actions, cfg.hidden)
    params = [p for p in agent.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.learning_rate, eps=1e-5)
    norm = agent.actor[0]
    batch = E * T
    updates = max(1, cfg.total_steps // batch)
    obs_np, _ = envs.reset(seed=cfg.seed)
    obs = torch.as_tensor(obs_np, dtype=torch.float32)  # (E, D)
    ep_return, ep_len = np.zeros(E), np.zeros(E, np.int64)
    finished: list[float] = []
    start, steps = time.time(), 0
    for update in range(1, updates + 1):
        optimizer.param_groups[0]["lr"] = cfg.learning_rate * (1.0 - (update - 1) / updates)
        b_obs = torch.zeros(T, E, dim)  # what the agent saw (with obs_noise: noisy)
        b_clean = torch.zeros(T, E, dim)  # the features themselves: the ObsNorm statistics
        b_act = torch.zeros(T, E, dtype=torch.int64)
        b_logp, b_rew, b_term, b_done, b_boot = (torch.zeros(T, E) for _ in range(5))
        # 1. rollout: T steps of every env; SAME_STEP autoreset hands back the final obs of ended rows
        for t in range(T):
            b_clean[t] = obs
            if cfg.obs_noise > 0:
                scale = norm.var.sqrt().clamp(min=norm.min_std) if update > 1 else obs.std(0).clamp(min=norm.min_std)
                obs = obs + cfg.obs_noise * scale * torch.randn(obs.shape, generator=obs_rng)
            with torch.no_grad():
                dist = torch.distributions.Categorical(logits=agent.actor(obs))
                action = dist.sample()  # (E,)
            executed = action
            if cfg.action_noise > 0:
                flip = torch.rand(E, generator=noise) < cfg.action_noise
                executed = torch.where(flip, torch.randint(n_actions, (E,), generator=noise), action)
            next_np, reward, terminated, truncated, info = envs.step(executed.numpy())
            b_obs[t], b_act[t], b_logp[t] = obs, action, dist.log_prob(action)
            b_rew[t] = torch.as_tensor(reward, dtype=torch.float32)
            b_term[t] = torch.as_tensor(terminated, dtype=torch.float32)
            done = np.logical_or(terminated, truncated)
            b_done[t] = torch.as_tensor(done, dtype=torch.float32)
            # a truncated row bootstraps from its final observation (SAME_STEP: info["final_obs"])
            if truncated.any():
                final = np.stack([info["final_obs"][i] for i in np.flatnonzero(truncated)])
                with torch.no_grad():
                    b_boot[t, torch.as_tensor(np.flatnonzero(truncated))] = agent.value(torch.as_tensor(final, dtype=torch.float32))
            ep_return += reward
            ep_len += 1
            for i in np.flatnonzero(done):
                finished.append(float(ep_return[i]))
                ep_return[i], ep_len[i] = 0.0, 0
            obs = torch.as_tensor(next_np, dtype=torch.float32)
        steps += batch
        norm.update(b_clean.reshape(-1, dim))

        # 2. GAE: termination zeroes the bootstrap, truncation bootstraps from the final observation
        with torch.no_grad():
            values = agent.value(b_obs.reshape(-1, dim)).view(T, E)
            next_value = agent.value(obs)
            adv = torch.zeros(T, E)
            last = torch.zeros(E)
            for t in reversed(range(T)):
                nv = next_value if t == T - 1 else values[t + 1]
                nv = torch.where(b_done[t] > 0, b_boot[t], nv)  # ended rows: 0 (terminated) or V(final obs) (truncated)
                delta = b_rew[t] + cfg.gamma * nv * (1.0 - b_term[t]) - values[t]
                last = delta + cfg.gamma * cfg.gae_lambda * (1.0 - b_done[t]) * last
                adv[t] = last
            returns = adv + values

        # 3. PPO update, flat over the batch
        f_obs, f_act, f_logp = b_obs.reshape(batch, dim), b_act.reshape(batch), b_logp.reshape(batch)
        f_adv, f_ret, f_val = adv.reshape(batch), returns.reshape(batch), values.reshape(batch)
        for _ in range(cfg.update_epochs):
            for idx in torch.randperm(batch).split(batch // cfg.num_minibatches):
                dist = torch.distributions.Categorical(logits=agent.actor(f_obs[idx]))
                logratio = dist.log_prob(f_act[idx]) - f_logp[idx]
                ratio = logratio.exp()
                a = (f_adv[idx] - f_adv[idx].mean()) / (f_adv[idx].std() + 1e-8)
                pg_loss = torch.max(-a * ratio, -a * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)).mean()
                v = agent.value(f_obs[idx])
                clipped = f_val[idx] + (v - f_val[idx]).clamp(-cfg.clip_coef, cfg.clip_coef)
                v_loss = 0.5 * torch.max((v - f_ret[idx]) ** 2, (clipped - f_ret[idx]) ** 2).mean()
                loss = pg_loss - cfg.ent_coef * dist.entropy().mean() + cfg.vf_coef * v_loss
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
        if log is not None:
            recent = finished[-100:]
            log({"update": update, "updates": updates, "steps": steps, "return": float(np.mean(recent)) if recent else float("nan"),
                 "episodes": len(finished), "pg_loss": float(pg_loss.detach()), "v_loss": float(v_loss.detach()), "sps": steps / (time.time() - start)})  # fmt: skip
    recent = finished[-100:]
    return agent, {"steps": steps, "wall_s": time.time() - start, "return_last100": float(np.mean(recent)) if recent else None}


def evaluate(policy: Any, env: gym.Env, episodes: int, seed: int) -> list[float]:
    """Returns of ``episodes`` episodes of a frames-to-action ``policy`` (reset before each); episode i uses ``seed + i``."""
    returns = []
    for i in range(episodes):
        obs, info = env.reset(seed=seed + i)
        policy.reset()
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return returns

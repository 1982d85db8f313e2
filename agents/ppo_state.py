"""Reference PPO on the true state vector: the ceiling of `ppo_torchrl.py`'s PPO without pixels.

    python agents/ppo_state.py --env CartPole-v1 --total-steps 100000 --seed 1

The same algorithm and hyper-parameters as ``agents/ppo_torchrl.py`` (tests check that the
shared defaults agree): clipped PPO with GAE, clipped value loss, running observation
normalisation, 64-64 tanh MLPs, ``num_envs`` x ``num_steps`` steps per batch, greedy
evaluation over 100 episodes at seeds 10000+. The only difference is the observation: the
env's own 4 numbers (cart position and velocity, pole angle and angular velocity) instead
of stacked latents of 64x64 frames. Its score at a budget says how much of the pixel agent's
gap to a solved task is the observation and how much the algorithm.

``--positions-stack K`` observes what frames can show instead: CartPole's positions only
(cart x, pole angle), the last K of them (no velocities), each blurred by Gaussian noise of
``--position-noise SX,STHETA`` (for example the state probe's error on 64x64 frames), so the
agent must difference noisy positions to get velocities, as from stacked frames.

Results go to ``<run-dir>/result.json``. No policy is saved: a state policy cannot act on frames.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from worldgym.config_io import parse_cli
from worldgym.policy_io import ObsNorm, mlp


@dataclass
class Args:
    env: str = "CartPole-v1"
    """a Gymnasium env with a Box observation and a Discrete action space"""
    total_steps: int = 100_000
    """env steps of training (the budget)"""
    num_envs: int = 32
    """parallel envs"""
    num_steps: int = 16
    """steps per env per rollout (a batch is num_envs * num_steps steps)"""
    hidden: int = 64
    """width of the two hidden layers of the actor and the critic"""
    learning_rate: float = 1e-3
    """Adam learning rate"""
    anneal_lr: bool = True
    """decay the learning rate linearly to 0"""
    gamma: float = 0.98
    """discount factor"""
    gae_lambda: float = 0.8
    """lambda of generalized advantage estimation"""
    num_minibatches: int = 2
    """minibatches per epoch"""
    update_epochs: int = 10
    """epochs over each batch"""
    clip_coef: float = 0.2
    """PPO clipping coefficient"""
    ent_coef: float = 0.0
    """entropy bonus coefficient"""
    vf_coef: float = 0.5
    """value loss coefficient"""
    max_grad_norm: float = 0.5
    """gradient clipping norm"""
    eval_episodes: int = 100
    """greedy episodes of the final evaluation"""
    eval_seed: int = 10_000
    """final evaluation episode i is reset with eval_seed + i"""
    seed: int = 1
    """seed of torch, of the envs and of the policy's sampling"""
    threads: int = 1
    """torch intra-op threads"""
    positions_stack: int = 0
    """0 = observe the full state; K = only (cart x, pole angle) of the last K steps (CartPole's obs[0], obs[2])"""
    position_noise: str = "0,0"
    """std of Gaussian noise on the observed cart x (m) and pole angle (rad), with --positions-stack"""
    run_dir: str = "runs/agents/ppo_state"
    """where result.json goes"""



class NoisyPositions(gym.ObservationWrapper):
    """CartPole's (x, theta) only, plus N(0, std^2) noise per coordinate from its own seeded generator."""

    def __init__(self, env: gym.Env, std: tuple[float, float], seed: int) -> None:
        super().__init__(env)
        if env.observation_space.shape != (4,):
            raise ValueError(f"--positions-stack needs CartPole's 4-number state, got an observation of shape {env.observation_space.shape}")
        self.std, self.rng = np.asarray(std, dtype=np.float32), np.random.default_rng(seed)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)

    def observation(self, obs: np.ndarray) -> np.ndarray:
        return (obs[[0, 2]] + self.std * self.rng.standard_normal(2)).astype(np.float32)


def make_env(args: Args, index: int) -> gym.Env:
    """The env as the agent observes it: the full state, or --positions-stack noisy positions (flattened)."""
    env = gym.make(args.env)
    if args.positions_stack:
        try:
            sx, st = (float(v) for v in args.position_noise.split(","))
        except ValueError:
            sys.exit(f"--position-noise must be two numbers 'SX,STHETA', got {args.position_noise!r}")
        env = NoisyPositions(env, (sx, st), args.seed * 1000 + index)
        env = gym.wrappers.FlattenObservation(gym.wrappers.FrameStackObservation(env, args.positions_stack, padding_type="reset"))
    return env


if __name__ == "__main__":
    args = parse_cli(Args, __doc__)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    print(command)

    # ENV: num_envs copies, SAME_STEP autoreset (a finished row's next observation is its reset one)
    envs = gym.vector.SyncVectorEnv([lambda i=i: make_env(args, i) for i in range(args.num_envs)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    obs_dim, n_actions = int(np.prod(envs.single_observation_space.shape)), int(envs.single_action_space.n)

    # AGENT: a shared running normalisation, then actor and critic MLPs
    norm = ObsNorm(obs_dim, 1, min_std=1e-4)  # the pixel agent's running normalisation (its 0.1 floor is for latents)
    actor, critic = mlp(obs_dim, [args.hidden, args.hidden], n_actions, 0.01), mlp(obs_dim, [args.hidden, args.hidden], 1, 1.0)  # the pixel agent's MLPs
    params = list(actor.parameters()) + list(critic.parameters())
    optimizer = torch.optim.Adam(params, lr=args.learning_rate, eps=1e-5)

    E, T = args.num_envs, args.num_steps
    batch_size, num_updates = E * T, args.total_steps // (E * T)
    obs = torch.as_tensor(envs.reset(seed=args.seed)[0], dtype=torch.float32)  # (E, D)
    episode_return, recent = np.zeros(E), []
    start = time.time()
    for update in range(1, num_updates + 1):
        if args.anneal_lr:
            optimizer.param_groups[0]["lr"] = args.learning_rate * (1.0 - (update - 1) / num_updates)
        # ROLLOUT: T steps of E envs; next_obs is the true next observation (the final one where an episode ended)
        b_obs, b_next, b_act, b_logp, b_rew, b_term, b_done = [], [], [], [], [], [], []
        for _ in range(T):
            with torch.no_grad():
                dist = torch.distributions.Categorical(logits=actor(norm(obs)))
                action = dist.sample()  # (E,)
            nxt, reward, terminated, truncated, info = envs.step(action.numpy())
            done = terminated | truncated
            true_next = nxt.copy()
            if done.any():  # SAME_STEP autoreset: nxt holds the reset observation, info["final_obs"] the last one
                true_next[done] = np.stack(info["final_obs"][done])
            episode_return += reward
            recent = (recent + episode_return[done].tolist())[-100:]
            episode_return[done] = 0.0
            b_obs.append(obs)
            b_next.append(torch.as_tensor(np.asarray(true_next, dtype=np.float32)))
            b_act.append(action)
            b_logp.append(dist.log_prob(action))
            b_rew.append(torch.as_tensor(reward, dtype=torch.float32))
            b_term.append(torch.as_tensor(terminated, dtype=torch.float32))
            b_done.append(torch.as_tensor(done, dtype=torch.float32))
            obs = torch.as_tensor(nxt, dtype=torch.float32)
        o, o_next = torch.stack(b_obs, 1), torch.stack(b_next, 1)  # (E, T, D)
        norm.update(o_next.reshape(-1, obs_dim))  # statistics from this batch's observations, as ppo_torchrl.py
        reward, terminated, done = torch.stack(b_rew, 1), torch.stack(b_term, 1), torch.stack(b_done, 1)  # (E, T)

        # ALGO: GAE, bootstrapping from the true next observation; only termination (not truncation) zeroes it
        with torch.no_grad():
            value, next_value = critic(norm(o)).squeeze(-1), critic(norm(o_next)).squeeze(-1)  # (E, T)
            delta = reward + args.gamma * next_value * (1.0 - terminated) - value
            advantages, last = torch.zeros_like(delta), torch.zeros(E)
            for t in reversed(range(T)):
                last = delta[:, t] + args.gamma * args.gae_lambda * (1.0 - done[:, t]) * last
                advantages[:, t] = last
            returns = advantages + value

        # ALGO: PPO update, flat over the batch
        f_obs, f_act = o.reshape(batch_size, -1), torch.stack(b_act, 1).reshape(batch_size)
        f_logp, f_adv = torch.stack(b_logp, 1).reshape(batch_size), advantages.reshape(batch_size)
        f_ret, f_val = returns.reshape(batch_size), value.reshape(batch_size)
        for epoch in range(args.update_epochs):
            for idx in torch.randperm(batch_size).split(batch_size // args.num_minibatches):
                x = norm(f_obs[idx])
                dist = torch.distributions.Categorical(logits=actor(x))
                ratio = (dist.log_prob(f_act[idx]) - f_logp[idx]).exp()
                adv = (f_adv[idx] - f_adv[idx].mean()) / (f_adv[idx].std() + 1e-8)
                pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef)).mean()
                new_value = critic(x).squeeze(-1)
                clipped = f_val[idx] + (new_value - f_val[idx]).clamp(-args.clip_coef, args.clip_coef)
                v_loss = 0.5 * torch.max((new_value - f_ret[idx]) ** 2, (clipped - f_ret[idx]) ** 2).mean()
                loss = pg_loss - args.ent_coef * dist.entropy().mean() + args.vf_coef * v_loss
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(params, args.max_grad_norm)
                optimizer.step()
        if update % 20 == 0 or update == num_updates:
            print(f"update {update}/{num_updates} steps {update * batch_size} train_return {np.mean(recent) if recent else float('nan'):.1f}", flush=True)
    train_wall = time.time() - start

    # EVAL: greedy, one env, episode i reset with eval_seed + i
    env, returns = make_env(args, args.num_envs), []
    for i in range(args.eval_episodes):
        o_, _ = env.reset(seed=args.eval_seed + i)
        total, finished = 0.0, False
        while not finished:
            with torch.no_grad():
                a = int(actor(norm(torch.as_tensor(o_, dtype=torch.float32)[None])).argmax())
            o_, r, te, tr, _ = env.step(a)
            total, finished = total + float(r), te or tr
        returns.append(total)
    result = {"command": command, "env": args.env, "observation": f"positions x{args.positions_stack}, noise {args.position_noise}" if args.positions_stack else "state", "env_steps": num_updates * batch_size,
              "train_wall_s": round(train_wall, 1), "train_return_last100": float(np.mean(recent)) if recent else None,
              "eval_episodes": len(returns), "eval_return_mean": float(np.mean(returns)), "eval_return_std": float(np.std(returns)),
              "eval_returns": returns}  # fmt: skip
    (run_dir / "result.json").write_text(json.dumps(result, indent=1))
    print(f"eval {args.env}: mean return {np.mean(returns):.1f} +- {np.std(returns):.1f} over {len(returns)} episodes")

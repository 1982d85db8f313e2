"""Stable-Baselines3 PPO inside a neural world model, evaluated in its real twin.

    .venv/bin/pip install -e ".[sb3]"    # in the clone, after the README's install
    .venv/bin/python examples/sb3_ppo.py --env worldgym/CartPole-v0 --eval-env worldgym/CartPoleReal-v0

A worldgym env is a plain `gymnasium.Env`, so SB3 takes it as it is. Two wrappers make
CartPole learnable from a neural env's latents: ``obs_type="latent"`` gives the (N, C)
latent block of each step, and `FrameStackObservation` stacks the last K of them (one
frame holds no velocity). For the real twin, `worldgym.envs.wrappers.EncodeFrames` turns its
RGB frames into the same latents with the world model's encoder, so the policy trained
in the dream is evaluated unchanged in reality. (For a batched, one-forward-per-step
training loop, see ``agents/ppo_torchrl.py``.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import torch
from gymnasium.wrappers import FlattenObservation, FrameStackObservation
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

import worldgym  # registers worldgym/<Name>-v0 and worldgym/<Name>Real-v0
from worldgym.config_io import HelpFormatter
from worldgym.envs.wrappers import EncodeFrames

parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
parser.add_argument("--env", default="worldgym/CartPole-v0", help="neural env id, or a checkpoint folder")
parser.add_argument("--eval-env", default="worldgym/CartPoleReal-v0", help="real twin id ('' skips evaluation)")
parser.add_argument("--total-timesteps", type=int, default=100_000, help="training budget in env steps")
parser.add_argument("--n-envs", type=int, default=8, help="envs in SB3's DummyVecEnv")
parser.add_argument("--frame-stack", type=int, default=4, help="latent frames stacked as the observation")
parser.add_argument("--eval-episodes", type=int, default=10, help="episodes of the real-twin evaluation")
parser.add_argument("--seed", type=int, default=0, help="seed of SB3 and the envs")
parser.add_argument("--save", default="", help="save the SB3 model to this .zip path, e.g. runs/sb3_ppo.zip")
args = parser.parse_args()
torch.set_num_threads(1)


def make_neural() -> gym.Env:
    """The neural env with latent observations, the last K latent blocks stacked and flattened."""
    if Path(args.env).is_dir():
        env = gym.make("worldgym/WorldModel-v0", checkpoint=args.env, obs_type="latent", max_episode_steps=500)
    else:
        env = gym.make(args.env, obs_type="latent")
    return FlattenObservation(FrameStackObservation(env, args.frame_stack, padding_type="reset"))


# 1. train inside the neural env
vec_env = make_vec_env(make_neural, n_envs=args.n_envs, seed=args.seed)
model = PPO(
    "MlpPolicy", vec_env, n_steps=32, batch_size=256, n_epochs=20, gamma=0.98, gae_lambda=0.8,
    learning_rate=1e-3, ent_coef=0.0, seed=args.seed, verbose=1,
)  # fmt: skip
model.learn(total_timesteps=args.total_timesteps)
if args.save:
    model.save(args.save)

# 2. evaluate in the real twin: its frames, encoded by the same world model, stacked the same way
if args.eval_env:
    world_model = vec_env.envs[0].unwrapped.model
    ae = world_model.config.autoencoder
    real = gym.make(args.eval_env, height=ae.frame_height, width=ae.frame_width)
    real = FlattenObservation(FrameStackObservation(EncodeFrames(real, world_model), args.frame_stack, padding_type="reset"))
    mean, std = evaluate_policy(model, real, n_eval_episodes=args.eval_episodes, deterministic=True)
    print(f"{args.eval_env}: mean return {mean:.1f} +- {std:.1f} over {args.eval_episodes} episodes")

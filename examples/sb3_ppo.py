"""Stable-Baselines3 PPO inside a neural world model, evaluated in its real twin.

    .venv/bin/pip install -e ".[sb3]"    # in the clone, after the README's install
    .venv/bin/python examples/sb3_ppo.py --env worldgym/CartPole-v0 --eval-env worldgym/CartPoleReal-v0

Two ways to give SB3 the envs (``--vec``):

- ``native`` (default): `worldgym.envs.sb3.SB3VecEnv`, SB3's ``VecEnv`` over the native
  batched `WorldModelVectorEnv`: one model forward steps all ``--n-envs`` envs, with SB3's
  autoreset (a done row resets in the same step, ``infos[i]["terminal_observation"]``).
- ``dummy``: SB3's ``DummyVecEnv`` of single ``gym.make`` envs, one forward per env.

``--env`` may also be a real twin (``worldgym/CartPoleReal-v0``, always ``dummy``): PPO then
trains on the real environment's frames encoded by ``--encoder``'s autoencoder, the same
observations at the real environment's speed.

CartPole is learnable from a neural env's latents: ``obs_type="latent"`` gives the (N, C)
latent block of each step, and SB3's ``VecFrameStack`` stacks the last K of them (one frame
holds no velocity). For the real twin, `worldgym.envs.wrappers.EncodeFrames` turns its RGB
frames into the same latents with the world model's encoder, so the policy trained in the
dream is evaluated unchanged in reality. The run prints its training speed (env steps per
second of ``learn``, PPO updates included).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gymnasium as gym
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack, VecMonitor

import worldgym  # registers worldgym/<Name>-v0 and worldgym/<Name>Real-v0
from worldgym.config_io import HelpFormatter
from worldgym.envs.env import load_model
from worldgym.envs.registration import TWIN_ENTRY_POINT
from worldgym.envs.sb3 import SB3VecEnv
from worldgym.envs.wrappers import EncodeFrames

parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
parser.add_argument("--env", default="worldgym/CartPole-v0", help="neural env id, a checkpoint folder, or a real twin id")
parser.add_argument("--vec", default="native", choices=["native", "dummy"], help="SB3VecEnv over the native batch, or DummyVecEnv of single envs")
parser.add_argument("--encoder", default="CartPole", help="model whose encoder turns a real twin's frames into latents (real-twin --env only)")
parser.add_argument("--eval-env", default="worldgym/CartPoleReal-v0", help="real twin id ('' skips evaluation)")
parser.add_argument("--total-timesteps", type=int, default=100_000, help="training budget in env steps")
parser.add_argument("--n-envs", type=int, default=8, help="envs stepped together")
parser.add_argument("--frame-stack", type=int, default=4, help="latent frames stacked as the observation")
parser.add_argument("--eval-episodes", type=int, default=10, help="episodes of the real-twin evaluation")
parser.add_argument("--seed", type=int, default=0, help="seed of SB3 and the envs")
parser.add_argument("--verbose", type=int, default=1, help="SB3's verbosity (0 prints only the summary lines)")
parser.add_argument("--save", default="", help="save the SB3 model to this .zip path, e.g. runs/sb3_ppo.zip")
args = parser.parse_args()
torch.set_num_threads(1)

is_dir = Path(args.env).is_dir()
is_real = not is_dir and gym.spec(args.env).entry_point == TWIN_ENTRY_POINT
checkpoint = args.encoder if is_real else args.env if is_dir else gym.spec(args.env).kwargs["checkpoint"]
world_model = load_model(checkpoint)  # its encoder reads the real twin's frames in the evaluation
ae = world_model.config.autoencoder


def make_real(env_id: str) -> gym.Env:
    """A real twin at the model's frame size, its frames encoded into the model's latents."""
    return EncodeFrames(gym.make(env_id, height=ae.frame_height, width=ae.frame_width), world_model)


def make_neural() -> gym.Env:
    """One neural env with latent observations."""
    if is_dir:
        return gym.make("worldgym/WorldModel-v0", checkpoint=args.env, obs_type="latent", max_episode_steps=500)
    return gym.make(args.env, obs_type="latent")


# 1. the envs: the native batch, or a loop over single envs; the last K latent blocks stacked
if is_real:
    envs = make_vec_env(lambda: make_real(args.env), n_envs=args.n_envs, seed=args.seed)
elif args.vec == "native":
    env_id, limit = ("worldgym/WorldModel-v0", {"max_episode_steps": 500}) if is_dir else (args.env, {})
    envs = SB3VecEnv.make(env_id, args.n_envs, checkpoint=world_model, obs_type="latent", **limit)
    envs.seed(args.seed)
    envs = VecMonitor(envs)  # episode returns for SB3's log, as make_vec_env's Monitor gives single envs
else:
    envs = make_vec_env(make_neural, n_envs=args.n_envs, seed=args.seed)
envs = VecFrameStack(envs, args.frame_stack)

# 2. train
model = PPO(
    "MlpPolicy", envs, n_steps=32, batch_size=256, n_epochs=20, gamma=0.98, gae_lambda=0.8,
    learning_rate=1e-3, ent_coef=0.0, seed=args.seed, verbose=args.verbose,
)  # fmt: skip
start = time.perf_counter()
model.learn(total_timesteps=args.total_timesteps)
seconds = time.perf_counter() - start
vec = "DummyVecEnv (real twin)" if is_real else {"native": "SB3VecEnv (native batch)", "dummy": "DummyVecEnv"}[args.vec]
print(f"trained {model.num_timesteps} steps on {args.env} x{args.n_envs} ({vec}) in {seconds:.1f} s: {model.num_timesteps / seconds:.0f} steps/s")
if args.save:
    model.save(args.save)

# 3. evaluate in the real twin: its frames, encoded by the same world model, stacked the same way
if args.eval_env:
    real = VecFrameStack(DummyVecEnv([lambda: make_real(args.eval_env)]), args.frame_stack)
    mean, std = evaluate_policy(model, real, n_eval_episodes=args.eval_episodes, deterministic=True)
    print(f"{args.eval_env}: mean return {mean:.1f} +- {std:.1f} over {args.eval_episodes} episodes")

"""PPO on TorchRL, trained inside a neural world model and evaluated in its real twin.

    python agents/ppo_torchrl.py --train-env worldgym/CartPole-v0 --eval-env worldgym/CartPoleReal-v0

The agent observes latents (the env's ``obs_type="latent"``, (N, C) per step), stacks the
last K of them (CartPole needs velocities, one frame has none) and acts through an MLP.
Training envs:

* a neural env (``worldgym/<Name>-v0`` or a checkpoint folder): the native batched
  `TorchRLWorldModelEnv`, all envs in one model forward per step;
  with ``--dream-starts DATASET`` imagined episodes start from real contexts cut from
  recorded episodes (`worldgym.envs.starts.StartBank`) and ``--dream-horizon H`` cuts them
  after H steps, the critic bootstrapping the rest (imagination from real states, as
  Dreamer and DIAMOND train their agents); with ``--dream-obs reencode`` the agent does
  not read the generated latents but the decoded frames (``obs_type="rgb"``), encoded by
  the saved policy's `FrameEncoder` (`EncodePixels`): the pipeline real frames go through
  at evaluation;
* a real twin (``worldgym/<Name>Real-v0``): Gymnasium envs whose frames go through the
  world model's encoder (`worldgym.envs.wrappers.EncodeFrames`), so the same PPO can be
  trained on reality with the same budget, for comparison.

Evaluation acts greedily through the saved policy (`worldgym.policy_io.load_policy`),
which encodes the eval env's RGB frames itself: exactly what ``worldgym play --agent``
and ``worldgym record --policy`` run. Logs go to ``<run-dir>/progress.csv`` (one row per
update: neural-env returns and, every ``--eval-every`` steps, real returns) and the
final 100-episode evaluation to ``<run-dir>/result.json``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.collectors import Collector
from torchrl.data import Composite, Unbounded
from torchrl.envs import CatFrames, Compose, ExcludeTransform, FlattenObservation, GymWrapper, ObservationTransform, RewardSum, TransformedEnv

import worldgym
from worldgym.model.checkpoint import load as load_checkpoint
from worldgym.config_io import parse_cli
from worldgym.policy_io import FrameEncoder, ObsNorm, load_policy, policy_net, save_policy
from worldgym.envs.registration import ENTRY_POINT, TWIN_ENTRY_POINT
from worldgym.envs.starts import StartBank
from worldgym.envs.torchrl_env import TorchRLWorldModelEnv
from worldgym.envs.wrappers import EncodeFrames


@dataclass
class Args:
    train_env: str = "worldgym/CartPole-v0"
    """env to train in: a neural env id, a checkpoint folder, or a real twin id (worldgym/CartPoleReal-v0)"""
    eval_env: str = "worldgym/CartPoleReal-v0"
    """env to evaluate in (the real twin); '' skips evaluation"""
    model: str = ""
    """world model whose encoder makes the latents (default: the train env's model; needed when training on a real twin)"""
    total_steps: int = 100_000
    """env steps of training (the budget)"""
    num_envs: int = 32
    """parallel envs (one batched model forward per step in a neural env)"""
    num_steps: int = 16
    """steps per env per rollout (a batch is num_envs * num_steps steps)"""
    frame_stack: int = 4
    """latent frames stacked as the observation"""
    obs_norm: bool = True
    """standardise each latent feature by running statistics (floored std) before the MLPs"""
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
    max_episode_steps: int = 500
    """time limit of a neural env given as a checkpoint folder (registered ids use their own)"""
    sampler_steps: int = 0
    """denoising passes per neural env step (0 = the model's default)"""
    dream_starts: str = ""
    """comma-separated dataset folders: imagined episodes start from real contexts cut from them ('' = the model's start bank)"""
    dream_context: int = 4
    """real frames (with their actions) in each start context cut from --dream-starts"""
    dream_bank: int = 4096
    """start contexts cut from --dream-starts"""
    dream_horizon: int = 0
    """time limit of imagined episodes, bootstrapped by the critic at the cut (0 = the neural env's own limit)"""
    dream_obs: str = "latent"
    """what the agent observes in a neural train env: 'latent' (the generated latents) or 'reencode' (the decoded frames through the policy's encoder, as at evaluation)"""
    obs_noise: float = 0.0
    """std of Gaussian noise added to every training observation (latent units; 0 = none); evaluation observations stay clean"""
    eval_every: int = 25_000
    """evaluate in the eval env every this many training steps (0 = only at the end)"""
    eval_episodes_during: int = 5
    """episodes of each evaluation during training"""
    eval_episodes: int = 100
    """episodes of the final evaluation of the saved policy"""
    dream_eval_episodes: int = 10
    """greedy episodes of the saved policy in the neural train env (its latents), to compare with the real score"""
    eval_seed: int = 10_000
    """final evaluation episode i is reset with eval_seed + i"""
    seed: int = 1
    """seed of torch, of the envs and of the policy's sampling"""
    threads: int = 1
    """torch intra-op threads"""
    run_dir: str = "runs/agents/ppo"
    """where progress.csv, result.json and policy/ go"""
    save_policy_to: str = ""
    """also write the final policy to this folder (e.g. assets/policies/cartpole_ppo)"""



def is_neural(env_id: str) -> bool:
    return Path(env_id).is_dir() or (env_id in gym.registry and gym.registry[env_id].entry_point == ENTRY_POINT)


def make_eval_env(env_id: str, frame_size: tuple[int, int], max_episode_steps: int) -> gym.Env:
    """The eval env with RGB observations at the world model's frame size (real twins are resized to it)."""
    if Path(env_id).is_dir():
        return gym.make("worldgym/WorldModel-v0", checkpoint=env_id, max_episode_steps=max_episode_steps)
    if gym.registry[env_id].entry_point == TWIN_ENTRY_POINT:
        return gym.make(env_id, height=frame_size[0], width=frame_size[1])
    return gym.make(env_id)


def evaluate(policy, env: gym.Env, episodes: int, seed: int) -> tuple[list[float], list[list[float]]]:
    """Returns of ``episodes`` greedy episodes (episode i reset with ``seed + i``) and each one's last ``info["state"]`` (if any)."""
    returns, last_states = [], []
    for i in range(episodes):
        obs, info = env.reset(seed=seed + i)
        policy.reset()
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
        last_states.append(np.asarray(info.get("state", []), dtype=float).round(4).tolist())
    return returns, last_states


class EncodePixels(ObservationTransform):
    """Decoded frames ``"pixels"`` (*B, H, W, 3) uint8 -> ``"observation"`` (*B, N, C) float32 through a `FrameEncoder`.

    With the saved policy's encoder this is what `LatentPolicy` does to a real frame, so
    the agent trains on what it will see at evaluation.
    """

    def __init__(self, encoder: FrameEncoder) -> None:
        super().__init__(in_keys=["pixels"], out_keys=["observation"])
        self.encoder = encoder

    def _apply_transform(self, pixels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.encoder(pixels.reshape(-1, *pixels.shape[-3:])).reshape(*pixels.shape[:-3], -1, self.encoder.config.latent_channels)

    def _reset(self, tensordict, tensordict_reset):  # reset observations are encoded too
        return self._call(tensordict_reset)

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        pixels, ae = observation_spec["pixels"], self.encoder.config
        observation_spec["observation"] = Unbounded(shape=(*pixels.shape[:-3], ae.tokens, ae.latent_channels), dtype=torch.float32, device=pixels.device)
        return observation_spec


class ObservationNoise(ObservationTransform):
    """Adds N(0, std^2) to ``"observation"`` (training only): a policy that must ignore small latent differences.

    The noisy observation is what the collector stores, so PPO's ratios are computed on the
    inputs the actions were sampled from. Noise comes from its own seeded generator.
    """

    def __init__(self, std: float, seed: int) -> None:
        super().__init__(in_keys=["observation"], out_keys=["observation"])
        self.std = std
        self.generator = torch.Generator().manual_seed(seed)

    def _apply_transform(self, obs: torch.Tensor) -> torch.Tensor:
        return obs + self.std * torch.randn(obs.shape, generator=self.generator, dtype=obs.dtype)

    def _reset(self, tensordict, tensordict_reset):  # reset observations are noised too
        return self._call(tensordict_reset)


class Actor(nn.Module):
    """Samples an action from the actor's logits; returns it with its log-probability (the collector's policy)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist = torch.distributions.Categorical(logits=self.net(obs))
        action = dist.sample()
        return action, dist.log_prob(action)


if __name__ == "__main__":
    args = parse_cli(Args, __doc__)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    print(command)
    if args.dream_obs not in ("latent", "reencode"):
        sys.exit(f"--dream-obs must be 'latent' or 'reencode', got {args.dream_obs!r}")
    if not args.obs_noise >= 0:
        sys.exit(f"--obs-noise must be >= 0 (a standard deviation), got {args.obs_noise}")
    reencode = is_neural(args.train_env) and args.dream_obs == "reencode"

    # ENV: the training env, batched, observing latents; the same frame stack for neural and real
    if is_neural(args.train_env):
        spec = gym.registry.get(args.train_env)
        checkpoint = spec.kwargs["checkpoint"] if spec else args.train_env
        max_steps = spec.max_episode_steps if spec and spec.max_episode_steps else args.max_episode_steps
        starts = None
        if args.dream_starts:
            model = load_checkpoint(checkpoint)
            ae = model.config.autoencoder
            paths = [p for p in args.dream_starts.split(",") if p]
            starts = StartBank.from_datasets(paths, args.dream_context, args.dream_bank, args.seed, (ae.frame_height, ae.frame_width))
            checkpoint = model
        base = TorchRLWorldModelEnv(
            checkpoint, batch_size=[args.num_envs], obs_type="rgb" if reencode else "latent",
            max_episode_steps=args.dream_horizon or max_steps, sampler_steps=args.sampler_steps or None, starts=starts,
        )  # fmt: skip
        world_model = base.model
    else:
        if not args.model:
            sys.exit(f"--train-env {args.train_env} is a real env: name the world model whose encoder makes the latents with --model")
        world_model = load_checkpoint(args.model)
        ae = world_model.config.autoencoder

        def make_real() -> gym.Env:
            return EncodeFrames(gym.make(args.train_env, height=ae.frame_height, width=ae.frame_width), world_model)

        vec = gym.vector.SyncVectorEnv([make_real] * args.num_envs, autoreset_mode=gym.vector.AutoresetMode.DISABLED)
        base = GymWrapper(vec, categorical_action_encoding=True)  # integer actions; TorchRL resets done rows itself
    encoder = FrameEncoder.from_model(world_model)  # the saved policy's encoder
    env = TransformedEnv(
        base,
        Compose(
            # --dream-obs reencode: decoded frames (B, H, W, 3) -> latents (B, N, C), as the saved policy encodes real frames
            *([EncodePixels(encoder), ExcludeTransform("pixels")] if reencode else []),
            *([ObservationNoise(args.obs_noise, args.seed + 7)] if args.obs_noise > 0 else []),
            FlattenObservation(-2, -1, in_keys=["observation"]),  # (B, N*C)
            CatFrames(N=args.frame_stack, dim=-1, in_keys=["observation"], out_keys=["stack"]),  # (B, K*N*C), reset rows repeat their first frame
            RewardSum(in_keys=["reward"], out_keys=["episode_reward"]),
        ),
    )
    env.set_seed(args.seed)
    obs_shape = (world_model.config.autoencoder.tokens, world_model.config.autoencoder.latent_channels)
    n_actions = int(world_model.config.action.n)
    frame_size = (world_model.config.autoencoder.frame_height, world_model.config.autoencoder.frame_width)
    eval_env = make_eval_env(args.eval_env, frame_size, args.max_episode_steps) if args.eval_env else None

    # AGENT: actor and critic MLPs on the stacked latents
    frame_dim = int(np.prod(obs_shape))
    norm = ObsNorm(frame_dim, args.frame_stack) if args.obs_norm else None  # shared running statistics
    actor_net = policy_net(frame_dim, args.frame_stack, [args.hidden, args.hidden], n_actions, 0.01, norm)
    critic = policy_net(frame_dim, args.frame_stack, [args.hidden, args.hidden], 1, 1.0, norm)
    params = list(actor_net[1].parameters()) + list(critic[1].parameters())
    optimizer = torch.optim.Adam(params, lr=args.learning_rate, eps=1e-5)
    policy_module = TensorDictModule(Actor(actor_net), in_keys=["stack"], out_keys=["action", "logprob"])

    def snapshot(path: Path) -> Path:
        extra = {"train_env": args.train_env, "command": command, "args": dataclasses.asdict(args)}
        return save_policy(path, actor_net, encoder, args.frame_stack, [args.hidden, args.hidden], n_actions, extra)

    # COLLECTOR: num_envs x num_steps steps per batch from the batched env
    batch_size = args.num_envs * args.num_steps
    num_updates = args.total_steps // batch_size
    collector = Collector(env, policy_module, frames_per_batch=batch_size, total_frames=num_updates * batch_size)
    log_file = open(run_dir / "progress.csv", "w", newline="")
    log = csv.writer(log_file)
    log.writerow(["update", "env_steps", "wall_s", "train_return", "train_episodes", "eval_return", "policy_loss", "value_loss", "entropy", "approx_kl", "sps"])
    start = time.time()
    global_step, next_eval = 0, args.eval_every
    recent: list[float] = []
    for update, batch in enumerate(collector, 1):
        # batch: (E, T) tensordict; row e is env e's consecutive steps
        global_step += batch.numel()
        done = batch["next", "done"].squeeze(-1)  # (E, T)
        finished = batch["next", "episode_reward"].squeeze(-1)[done]
        recent = (recent + finished.tolist())[-100:]

        # ALGO: learning-rate annealing
        if args.anneal_lr:
            optimizer.param_groups[0]["lr"] = args.learning_rate * (1.0 - (update - 1) / num_updates)

        # ALGO: observation statistics from this batch's frames (frozen into the saved policy)
        if norm is not None:
            norm.update(batch["next", "observation"].reshape(-1, frame_dim))

        # ALGO: GAE, bootstrapping from the true next observation; only termination (not truncation) zeroes it
        obs, next_obs = batch["stack"], batch["next", "stack"]  # (E, T, D)
        reward = batch["next", "reward"].squeeze(-1)  # (E, T)
        terminated = batch["next", "terminated"].squeeze(-1).float()  # (E, T)
        with torch.no_grad():
            value = critic(obs).squeeze(-1)  # (E, T)
            next_value = critic(next_obs).squeeze(-1)  # (E, T)
            delta = reward + args.gamma * next_value * (1.0 - terminated) - value  # (E, T)
            advantages = torch.zeros_like(delta)
            last = torch.zeros_like(delta[:, 0])  # (E,)
            for t in reversed(range(delta.shape[1])):
                last = delta[:, t] + args.gamma * args.gae_lambda * (1.0 - done[:, t].float()) * last
                advantages[:, t] = last
            returns = advantages + value  # (E, T)

        # ALGO: PPO update, flat over the batch
        b_obs, b_actions = obs.reshape(batch_size, -1), batch["action"].reshape(batch_size)
        b_logprob, b_adv = batch["logprob"].reshape(batch_size), advantages.reshape(batch_size)
        b_returns, b_values = returns.reshape(batch_size), value.reshape(batch_size)
        minibatch = batch_size // args.num_minibatches
        for epoch in range(args.update_epochs):
            for idx in torch.randperm(batch_size).split(minibatch):
                # 1. new log-probs, entropy, values of the minibatch
                dist = torch.distributions.Categorical(logits=actor_net(b_obs[idx]))
                logratio = dist.log_prob(b_actions[idx]) - b_logprob[idx]
                ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - logratio).mean()
                # 2. clipped policy loss on normalised advantages
                adv = (b_adv[idx] - b_adv[idx].mean()) / (b_adv[idx].std() + 1e-8)
                pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef)).mean()
                # 3. clipped value loss
                new_value = critic(b_obs[idx]).squeeze(-1)
                clipped = b_values[idx] + (new_value - b_values[idx]).clamp(-args.clip_coef, args.clip_coef)
                v_loss = 0.5 * torch.max((new_value - b_returns[idx]) ** 2, (clipped - b_returns[idx]) ** 2).mean()
                # 4. one gradient step
                entropy = dist.entropy().mean()
                loss = pg_loss - args.ent_coef * entropy + args.vf_coef * v_loss
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(params, args.max_grad_norm)
                optimizer.step()
        collector.update_policy_weights_()

        # LOG: training returns in the train env; every eval_every steps, greedy returns in the eval env
        eval_return = ""
        if eval_env is not None and args.eval_every and global_step >= next_eval:
            next_eval += args.eval_every
            current = load_policy(snapshot(run_dir / "policy"))
            eval_return = float(np.mean(evaluate(current, eval_env, args.eval_episodes_during, seed=args.eval_seed + 100_000 + global_step)[0]))
        wall = time.time() - start
        train_return = float(np.mean(recent)) if recent else float("nan")
        log.writerow([update, global_step, f"{wall:.1f}", f"{train_return:.1f}", len(finished), eval_return,
                      f"{pg_loss.item():.4f}", f"{v_loss.item():.4f}", f"{entropy.item():.3f}", f"{approx_kl.item():.4f}", int(global_step / wall)])  # fmt: skip
        log_file.flush()
        shown = f" eval {eval_return:.1f}" if eval_return != "" else ""
        print(f"update {update}/{num_updates} steps {global_step} train_return {train_return:.1f}{shown} sps {global_step / wall:.0f}", flush=True)
    collector.shutdown()
    train_wall = time.time() - start
    log_file.close()

    # SAVE: the final policy (never a checkpoint picked by its real-env score), then evaluate it as loaded from disk
    saved = snapshot(run_dir / "policy")
    if args.save_policy_to:
        snapshot(Path(args.save_policy_to))
    result = {"command": command, "train_env": args.train_env, "env_steps": global_step, "train_wall_s": round(train_wall, 1),
              "train_return_last100": float(np.mean(recent)) if recent else None, "policy": str(saved)}  # fmt: skip
    if eval_env is not None and args.eval_episodes:
        policy = load_policy(saved)
        eval_start = time.time()
        returns, last_states = evaluate(policy, eval_env, args.eval_episodes, seed=args.eval_seed)
        result |= {"eval_env": args.eval_env, "eval_episodes": len(returns), "eval_return_mean": float(np.mean(returns)),
                   "eval_return_std": float(np.std(returns)), "eval_return_min": float(np.min(returns)),
                   "eval_wall_s": round(time.time() - eval_start, 1), "eval_returns": returns,
                   "eval_last_states": last_states}  # fmt: skip
        print(f"eval {args.eval_env}: mean return {np.mean(returns):.1f} +- {np.std(returns):.1f} over {len(returns)} episodes")
        eval_env.close()
    if is_neural(args.train_env) and args.dream_eval_episodes:
        dream_obs_type = "rgb" if reencode else "latent"  # what the agent trained on: decoded frames (encoded by the policy) or latents
        if Path(args.train_env).is_dir():
            dream = gym.make("worldgym/WorldModel-v0", checkpoint=args.train_env, obs_type=dream_obs_type, max_episode_steps=args.max_episode_steps)
        else:
            dream = gym.make(args.train_env, obs_type=dream_obs_type)
        dream_returns, _ = evaluate(load_policy(saved), dream, args.dream_eval_episodes, seed=args.eval_seed)
        result |= {"dream_obs": args.dream_obs, "dream_return_mean": float(np.mean(dream_returns)), "dream_returns": dream_returns}
        print(f"dream {args.train_env}: mean return {np.mean(dream_returns):.1f} over {len(dream_returns)} episodes")
        dream.close()
    (run_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"trained {global_step} steps in {train_wall:.0f}s; policy in {saved}; result in {run_dir / 'result.json'}")

"""Trained policies on disk: safetensors weights + a JSON config, loaded into a callable ``obs -> action``.

A saved policy is a folder with ``policy.safetensors`` (tensors only, never a pickle)
and ``policy.json`` (what to build, how it was trained, and the sha256 of the weights).
The one kind written today, ``"latent_mlp"``, is what ``agents/ppo_torchrl.py`` trains:

    frame (H, W, 3) uint8 ─ encoder (a frozen copy of the world model's) ─► latents (N, C)
    last K latents, oldest first ─ flatten ─► per-feature normalisation ─► MLP actor ─► logits ─► argmax (or a sample)

The policy carries its own copy of the world model's encoder, so it plays the neural env
(``obs_type="rgb"`` or ``"latent"``) and the real twin alike, and keeps working when the
world model it was trained in is retrained. It keeps its frame stack between calls:
call ``reset()`` at the start of every episode (``worldgym play`` and ``worldgym
record`` do).

```python
from worldgym.policy_io import load_policy
policy = load_policy("assets/policies/cartpole_ppo")
obs, info = env.reset(seed=0); policy.reset()
action = policy(obs)
```

From the command line (the classes build themselves with no argument, or with the
action space, which is what the player and the recorder pass):

    worldgym play --agent worldgym.policy_io:CartPolePPO
    worldgym record --env real:CartPole --policy worldgym.policy_io:CartPolePPO --episodes 10 --out runs/ppo
    WORLDGYM_POLICY=runs/agents/x/policy worldgym play --agent worldgym.policy_io:PolicyFromEnv

Dimension letters: B batch, K stacked frames, H/W frame size, N tokens, C latent channels.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from worldgym.config_io import UserError
from worldgym.model.autoencoder import AutoencoderConfig, Encoder
from worldgym.paths import assets_dir

FORMAT = "worldgym-policy"
VERSION = 1
WEIGHTS, CONFIG = "policy.safetensors", "policy.json"
POLICIES = assets_dir() / "policies"


__all__ = ["ActionRepeat", "CartPolePPO", "FrameEncoder", "LatentPolicy", "ObsNorm", "PolicyError", "PolicyFromEnv", "load_policy", "mlp", "policy_net", "save_policy"]


class PolicyError(UserError, ValueError):
    """A policy folder that cannot be loaded (missing files, wrong format, hash mismatch, wrong observation)."""


def mlp(in_dim: int, hidden: list[int], out_dim: int, out_gain: float = 1.0) -> nn.Sequential:
    """Tanh MLP with orthogonal init (the PPO actor and critic). Layer names are the weights' keys."""
    layers: list[nn.Module] = []
    for h in hidden:
        layer = nn.Linear(in_dim, h)
        nn.init.orthogonal_(layer.weight, np.sqrt(2))
        nn.init.zeros_(layer.bias)
        layers += [layer, nn.Tanh()]
        in_dim = h
    last = nn.Linear(in_dim, out_dim)
    nn.init.orthogonal_(last.weight, out_gain)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


class ObsNorm(nn.Module):
    """Per-feature standardisation of one latent frame, applied to each of the K stacked frames.

    Running mean and variance while training (`update`), frozen in a saved policy. The
    standard deviation is floored at ``min_std`` so that features that barely vary (the
    background tokens) are not blown up into noise.
    """

    def __init__(self, frame_dim: int, frame_stack: int, min_std: float = 0.1) -> None:
        super().__init__()
        self.frame_stack, self.min_std = frame_stack, min_std
        self.register_buffer("mean", torch.zeros(frame_dim))
        self.register_buffer("var", torch.ones(frame_dim))
        self.register_buffer("count", torch.tensor(1e-4))

    @torch.no_grad()
    def update(self, frames: torch.Tensor) -> None:
        """Fold a batch of single frames (B, N*C) into the running statistics (parallel Welford)."""
        b_mean, b_var, b = frames.mean(0), frames.var(0, unbiased=False), frames.shape[0]
        delta, total = b_mean - self.mean, self.count + b
        self.mean += delta * b / total
        self.var.copy_((self.var * self.count + b_var * b + delta**2 * self.count * b / total) / total)
        self.count.fill_(float(total))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape  # (..., K*N*C)
        x = x.reshape(*shape[:-1], self.frame_stack, -1)  # (..., K, N*C)
        x = (x - self.mean) / self.var.sqrt().clamp(min=self.min_std)
        return x.clamp(-10.0, 10.0).reshape(shape)


def policy_net(frame_dim: int, frame_stack: int, hidden: list[int], out_dim: int, out_gain: float, norm: ObsNorm | None) -> nn.Sequential:
    """``ObsNorm`` (shared between actor and critic) then the MLP; weights' keys ``0.*`` (norm) and ``1.*`` (MLP)."""
    return nn.Sequential(norm if norm is not None else nn.Identity(), mlp(frame_dim * frame_stack, hidden, out_dim, out_gain))


class FrameEncoder(nn.Module):
    """The world model's encoder and latent statistics: frames (B, H, W, 3) uint8 -> normalised latents (B, N, C)."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.register_buffer("latent_mean", torch.zeros(config.latent_channels))
        self.register_buffer("latent_std", torch.ones(config.latent_channels))

    @classmethod
    def from_model(cls, model: Any) -> "FrameEncoder":
        """A copy of ``model.autoencoder``'s encoder half (``model`` is a `worldgym.model.networks.Model`)."""
        ae = model.autoencoder
        enc = cls(ae.config)
        enc.encoder.load_state_dict(ae.encoder.state_dict())
        enc.latent_mean.copy_(ae.latent_mean)
        enc.latent_std.copy_(ae.latent_std)
        return enc.eval()

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (B, 3, H, W) in [-1, 1], as Autoencoder.encode_raw
        z = self.encoder(x).flatten(2).transpose(1, 2)  # (B, N, C)
        return (z - self.latent_mean) / self.latent_std  # (B, N, C)


class LatentPolicy:
    """A callable policy: pixels or latents in, one action out, with a stack of the last K latents.

    Args:
        actor: MLP from K*N*C inputs to action logits.
        encoder: turns (H, W, 3) uint8 frames into latents; None accepts latents only.
        obs_shape: (N, C), the latent shape.
        frame_stack: K.
        deterministic: argmax of the logits (True) or a sample from them.
        config: the JSON config it was loaded from (kept for inspection).
    """

    def __init__(
        self,
        actor: nn.Module,
        encoder: FrameEncoder | None,
        obs_shape: tuple[int, int],
        frame_stack: int,
        deterministic: bool = True,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.actor, self.encoder = actor.eval(), None if encoder is None else encoder.eval()
        self.obs_shape, self.frame_stack = tuple(obs_shape), frame_stack
        self.deterministic = deterministic
        self.config = config or {}
        self.rng = torch.Generator().manual_seed(0)
        self.stack: torch.Tensor | None = None  # (K, N, C), oldest first

    def reset(self, rng: np.random.Generator | None = None) -> None:
        """Start a new episode: forget the frame stack (and reseed sampling from ``rng`` if given)."""
        self.stack = None
        if rng is not None:
            self.rng.manual_seed(int(rng.integers(2**63 - 1)))

    @torch.no_grad()
    def latents(self, observation: Any) -> torch.Tensor:
        """One observation (a (H, W, 3) uint8 frame or (N, C) latents) as latents (N, C) float32."""
        obs = torch.as_tensor(np.asarray(observation))
        if obs.dim() == 3 and obs.shape[-1] == 3 and obs.dtype == torch.uint8:
            if self.encoder is None:
                raise PolicyError("this policy has no encoder; give it latents (obs_type='latent'), not frames")
            ae = self.encoder.config
            if tuple(obs.shape) != (ae.frame_height, ae.frame_width, 3):
                raise PolicyError(
                    f"frames must be ({ae.frame_height}, {ae.frame_width}, 3) uint8 (the world model's frame size), "
                    f"got {tuple(obs.shape)}; make the env at that size"
                )
            return self.encoder(obs[None])[0]  # (N, C)
        if tuple(obs.shape) != self.obs_shape:
            raise PolicyError(f"observation must be a (H, W, 3) uint8 frame or latents of shape {self.obs_shape}, got {tuple(obs.shape)} {obs.dtype}")
        return obs.float()

    @torch.no_grad()
    def __call__(self, observation: Any, info: dict | None = None) -> int:
        z = self.latents(observation)  # (N, C)
        if self.stack is None:
            self.stack = z[None].repeat(self.frame_stack, 1, 1)  # (K, N, C): the first frame repeated, as CatFrames pads
        else:
            self.stack = torch.cat([self.stack[1:], z[None]])  # (K, N, C)
        logits = self.actor(self.stack.reshape(1, -1))[0]  # (A,)
        if self.deterministic:
            return int(logits.argmax())
        return int(torch.multinomial(logits.softmax(-1), 1, generator=self.rng))


# ---------------------------------------------------------------------------- save / load
def save_policy(
    path: str | Path,
    actor: nn.Module,
    encoder: FrameEncoder,
    frame_stack: int,
    hidden: list[int],
    n_actions: int,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a ``latent_mlp`` policy folder (weights + JSON config with their sha256); returns the folder.

    ``extra`` goes into ``policy.json`` as is; ``{"frame_skip": k}`` there (a policy trained on a twin that
    repeats each action k source steps) makes `load_policy` hold each action k frames by default.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {f"actor.{k}": v.detach().float().cpu().contiguous() for k, v in actor.state_dict().items()}
    tensors |= {f"encoder.{k}": v.detach().float().cpu().contiguous() for k, v in encoder.state_dict().items()}
    tmp = path / (WEIGHTS + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path / WEIGHTS)
    ae = encoder.config
    config = {
        "format": FORMAT,
        "version": VERSION,
        "kind": "latent_mlp",
        "obs_shape": [ae.tokens, ae.latent_channels],
        "frame_stack": frame_stack,
        "hidden": list(hidden),
        "n_actions": n_actions,
        "obs_norm": isinstance(actor, nn.Sequential) and isinstance(actor[0], ObsNorm),
        "autoencoder": dataclasses.asdict(ae),
        "sha256": hashlib.sha256((path / WEIGHTS).read_bytes()).hexdigest(),
        **(extra or {}),
    }
    (path / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    return path


class ActionRepeat:
    """Run a policy trained on a frame-skip twin (each twin step repeats its action ``k`` source steps) on every
    source frame: the policy sees frames 0, k, 2k, ... of an episode and its action is held for the k frames
    in between, which is exactly what the twin did. ``reset()`` starts a new episode. `load_policy` wraps a
    policy in it when its ``policy.json`` says ``frame_skip`` (or the caller passes one)."""

    def __init__(self, policy: Any, k: int) -> None:
        if int(k) < 1:
            raise PolicyError(f"frame_skip must be >= 1, got {k}")
        self.policy, self.k = policy, int(k)
        self.config = getattr(policy, "config", {})
        self.calls, self.action = 0, None

    def reset(self, *args: Any) -> None:
        self.calls, self.action = 0, None
        self.policy.reset(*args)

    def __call__(self, obs: Any, info: dict | None = None) -> Any:
        if self.calls % self.k == 0:
            self.action = self.policy(obs, info)
        self.calls += 1
        return self.action


def load_policy(path: str | Path, deterministic: bool = True, frame_skip: int | None = None, mirror: bool | None = None) -> Any:
    """Load a policy folder (`save_policy`'s ``latent_mlp`` or a ``model_state_mlp``) into a callable ``policy(obs) -> action``.

    Args:
        path: the folder (or its ``policy.json`` / ``policy.safetensors``), or the name of a
            shipped policy in ``assets/policies/``.
        deterministic: act by the argmax of the logits (the default) or sample.
        frame_skip: how many source frames each action is held. A policy trained on a twin that repeats
            each action k times, called on the source env's every frame, reads every k-th frame and holds
            its action in between (`ActionRepeat`). None (the default) takes ``frame_skip`` from the
            folder's ``policy.json``, else 1; an int overrides it (``frame_skip=1`` plays the policy
            as trained, on the frame-skip twin itself).
        mirror: act on each frame and its mirror image at once (`worldgym.policies.model_state.MirroredPolicy`).
            None (the default) does so when the folder's ``policy.json`` has a ``mirror`` entry; False plays
            the policy on the frames alone; True takes the mirror from that entry or else from the real twin
            its world model names.
    """
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    if not folder.exists() and (POLICIES / str(path)).is_dir():
        folder = POLICIES / str(path)
    if not (folder / CONFIG).is_file() or not (folder / WEIGHTS).is_file():
        shipped = sorted(p.name for p in POLICIES.glob("*") if p.is_dir()) if POLICIES.is_dir() else []
        raise PolicyError(f"no policy at {folder}: expected {CONFIG} and {WEIGHTS} (shipped policies: {shipped})")
    config = json.loads((folder / CONFIG).read_text())
    kinds = ("latent_mlp", "model_state_mlp")
    if config.get("format") != FORMAT or config.get("kind") not in kinds:
        raise PolicyError(f"{folder / CONFIG} is not a worldgym policy of kind {kinds} (format {config.get('format')!r}, kind {config.get('kind')!r})")
    if frame_skip is None:
        frame_skip = config.get("frame_skip", 1)
        if not isinstance(frame_skip, int) or isinstance(frame_skip, bool) or frame_skip < 1:
            raise PolicyError(f"{folder / CONFIG}: frame_skip must be an int >= 1 (source steps per action), got {frame_skip!r}")
    elif int(frame_skip) < 1:
        raise PolicyError(f"frame_skip must be >= 1, got {frame_skip}")
    digest = hashlib.sha256((folder / WEIGHTS).read_bytes()).hexdigest()
    if digest != config.get("sha256"):
        raise PolicyError(f"{folder / WEIGHTS} has sha256 {digest}, its config says {config.get('sha256')}; the weights changed or are corrupt")
    if config["kind"] == "model_state_mlp":
        from worldgym.policies.model_state import load_model_state_policy

        policy: Any = load_model_state_policy(folder, config, deterministic, mirror)
    else:
        if mirror:
            raise PolicyError(f"policy {folder} is a {config['kind']} policy; only model_state_mlp policies act mirrored")
        tensors = load_file(str(folder / WEIGHTS))
        obs_shape = tuple(config["obs_shape"])
        frame_dim, stack = int(np.prod(obs_shape)), config["frame_stack"]
        norm = ObsNorm(frame_dim, stack) if config.get("obs_norm") else None
        actor = policy_net(frame_dim, stack, config["hidden"], config["n_actions"], 1.0, norm)
        actor.load_state_dict({k[len("actor.") :]: v for k, v in tensors.items() if k.startswith("actor.")}, strict=True)
        encoder = FrameEncoder(AutoencoderConfig(**config["autoencoder"]))
        encoder.load_state_dict({k[len("encoder.") :]: v for k, v in tensors.items() if k.startswith("encoder.")}, strict=True)
        policy = LatentPolicy(actor, encoder, obs_shape, config["frame_stack"], deterministic, config)
    return policy if frame_skip == 1 else ActionRepeat(policy, frame_skip)


# ---------------------------------------------------------------------------- loaders for the CLIs
class CartPolePPO(LatentPolicy):
    """The shipped PPO policy for CartPole (``assets/policies/cartpole_ppo``), trained only inside the neural CartPole.

    Trained in imagination from real start contexts (``--dream-starts``, horizon 20), on the
    neural env's decoded frames through its own encoder (``--dream-obs reencode``, what it
    sees at evaluation). It does not yet balance the real pole (mean real return 74.4 over
    100 episodes, 497.6 in the dream; BENCHMARKS.md says why); it ships as the reproducible
    headline artifact.

    ``worldgym play --agent worldgym.policy_io:CartPolePPO`` (Tab hands it control) or
    ``worldgym record --policy worldgym.policy_io:CartPolePPO``.
    """

    path: str | Path = POLICIES / "cartpole_ppo"

    def __init__(self, action_space: Any = None) -> None:
        loaded = load_policy(self.path, frame_skip=1)  # this class is the LatentPolicy itself, never wrapped
        super().__init__(loaded.actor, loaded.encoder, loaded.obs_shape, loaded.frame_stack, True, loaded.config)


class PolicyFromEnv(CartPolePPO):
    """The policy in the folder named by the environment variable ``WORLDGYM_POLICY``.

    ``WORLDGYM_POLICY=runs/agents/ppo/policy worldgym play --agent worldgym.policy_io:PolicyFromEnv``
    """

    def __init__(self, action_space: Any = None) -> None:
        if not os.environ.get("WORLDGYM_POLICY"):
            raise PolicyError("set WORLDGYM_POLICY to a policy folder (policy.json + policy.safetensors)")
        self.path = os.environ["WORLDGYM_POLICY"]
        super().__init__(action_space)

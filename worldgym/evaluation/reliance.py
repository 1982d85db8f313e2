"""How much a world model's next-block prediction relies on the action: teacher-forced, against shuffled actions and copying.

On recorded windows the dynamics predicts every block from its clean real context in one
denoising pass from pure noise (the 1-step sampler's pass), once under the recorded actions
and once under actions drawn uniformly at random (a box action: another window's). Both
are compared with two baselines that read no action: copying the last frame's latents and
extrapolating the last two linearly. All in the model's normalised latent space, mean
squared error per latent number, over every predicted block whose window lies inside its
episode (the first block of a window, which has no context, is not predicted).

- ``true`` close to ``shuffled``: the prediction ignores the action (its effect is lost in
  what the model cannot predict, or the model learned what the recording's policy did);
- ``true`` above ``copy``: the model does not even keep what does not move.

```bash
python -m worldgym.evaluation.reliance CartPole --data runs/data/cartpole --episodes 100
```

Dimension letters: B windows, T frames, N tokens, C latent channels.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from worldgym.model.networks import Model


@torch.no_grad()
def action_reliance(model: Model, data: Any, latents: torch.Tensor, windows: int = 256, frames: int = 16, seed: int = 0,
                    batch: int = 32) -> dict[str, float]:  # fmt: skip
    """Teacher-forced latent MSE under the recorded and random actions, and of the copy and extrapolation baselines.

    Args:
        model: the world model.
        data: a `worldgym.training.data.Data` whose episodes' frames are encoded in ``latents``.
        latents: (F, N, C) the normalised latents of ``data.frames[:F]``; windows are drawn from
            the episodes that lie inside them.
        windows, frames: how many recorded windows, of how many frames.
        seed: seed of the window, noise and random-action draws.
    """
    from worldgym.training.data import TrainConfig, dynamics_batch

    dyn, action = model.dynamics, model.config.action
    frames = min(frames, dyn.rotary.max_time)
    ends = data.starts + data.lengths  # (E,) index of each episode's last frame
    weights = data.weights * (ends < len(latents)).double()
    if not bool((weights > 0).any()):
        raise ValueError(f"no episode lies inside the {len(latents)} encoded frames; encode more frames")
    data = copy.copy(data)  # the caller's Data keeps its weights
    data.weights = weights
    g = torch.Generator().manual_seed(seed)
    cfg = TrainConfig(p_t_one=1.0, context_noise=0.0)
    sums = dict.fromkeys(("true", "shuffled", "copy", "extrapolate"), 0.0)
    counts = dict.fromkeys(sums, 0.0)
    for start in range(0, windows, batch):
        b = dynamics_batch(data, latents, g, min(batch, windows - start), frames, cfg)
        x0, valid = b["latents"], b["valid"].clone()  # (B, T, N, C), (B, T)
        valid[:, 0] = False
        shuffled = (torch.randint(0, action.n, b["actions"].shape, generator=g) if action.kind == "discrete"
                    else b["actions"][torch.randperm(len(x0), generator=g)])  # fmt: skip
        zeros, ones = torch.zeros_like(b["t_noisy"]), torch.ones_like(b["t_noisy"])
        preds = {
            "true": dyn.forward_sequence(x0, b["noise"], zeros, ones, b["actions"], b["null"])[0].float(),
            "shuffled": dyn.forward_sequence(x0, b["noise"], zeros, ones, shuffled, b["null"])[0].float(),
            "copy": torch.cat([x0[:, :1], x0[:, :-1]], 1),
            "extrapolate": torch.cat([x0[:, :2], 2 * x0[:, 1:-1] - x0[:, :-2]], 1),
        }
        for name, pred in preds.items():
            w = valid.clone()
            if name == "extrapolate":
                w[:, 1] = False  # needs two earlier frames
            sums[name] += float(((pred - x0) ** 2).mean(dim=(2, 3))[w].sum())
            counts[name] += float(w.sum())
    return {name: sums[name] / max(counts[name], 1.0) for name in sums}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    from worldgym.config_io import HelpFormatter
    from worldgym.model import checkpoint
    from worldgym.training.data import Data
    from worldgym.training.train import encode_all

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("model", help="checkpoint folder or installed model name")
    parser.add_argument("--data", nargs="+", required=True, help="recorded datasets (worldgym record), in the model's frame size")
    parser.add_argument("--episodes", type=int, default=100, help="the first this many episodes are encoded and cut into windows")
    parser.add_argument("--windows", type=int, default=256, help="recorded windows")
    parser.add_argument("--frames", type=int, default=16, help="frames per window")
    parser.add_argument("--seed", type=int, default=0, help="seed of the window, noise and action draws")
    parser.add_argument("--json", default=None, help="also write the result here")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = checkpoint.load(checkpoint.resolve(args.model)).eval()
    data = Data(args.data, model.config.action)
    count = int(data.starts[args.episodes]) if data.episodes > args.episodes else len(data.frames)
    latents = encode_all(model, data.frames[:count], False)
    result = action_reliance(model, data, latents, args.windows, args.frames, args.seed)
    print("teacher-forced next-block latent MSE: " + ", ".join(f"{k} {v:.5f}" for k, v in result.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**vars(args), **result}, f, indent=2)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())

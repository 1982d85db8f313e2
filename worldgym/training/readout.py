"""A state readout of the world model's features: a few numbers an agent observes instead of the whole state.

An agent on the model's features (D numbers, `obs_type="features"`) can learn a policy that
leans on directions of the feature space the dream gets wrong, and a policy trained in one
model's dream then fails in ways that change from model to model (BENCHMARKS.md). Where the
recordings carry the simulator's state (`worldgym record` of a real twin writes ``states.npy``),
a ridge regression from the filter's features to that state, fitted once on the recordings,
gives an observation of S numbers with a physical meaning: the agent sees the model's belief
about the state, in the dream and, through the same filter, on real frames. It is a linear
layer in front of the actor, so a saved policy keeps it (`worldgym.policies.model_state`).

The readout is standardised (each state number divided by its spread in the recordings) so the
agent's `ObsNorm` sees numbers of order one. Nothing here knows CartPole: the state is whatever
vector the recorder stored.

Dimension letters: T steps, D features, S state size.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from worldgym.config_io import UserError
from worldgym.data import dataset as ds
from worldgym.engine import WorldModel
from worldgym.model.networks import Model


@torch.no_grad()
def filter_features(model: Model, frames: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """The filter's features (T+1, D) along one recorded episode: its first frame starts it, every later frame is committed under the action before it."""
    engine = WorldModel(model, 1, features=True)
    engine.reset([0], torch.from_numpy(np.array(frames[:1]))[None])
    out = [engine.features.clone()]
    for t in range(len(actions)):
        engine.observe(torch.from_numpy(np.array(frames[t + 1 : t + 2])), [actions[t].tolist()])
        out.append(engine.features.clone())
    return torch.cat(out).float().numpy()


def fit_readout(model: Model, datasets: Sequence[str], episodes: int = 150, ridge: float = 1.0, holdout: float = 0.2, seed: int = 0) -> tuple[nn.Linear, dict[str, Any]]:
    """Ridge regression from the filter's features to the recorded state, standardised; returns it (frozen) and a report.

    Args:
        datasets: recordings whose episodes carry ``states`` (the first ``episodes`` of each are used).
        ridge: L2 weight on the standardised features.
        holdout: share of the frames (random, seeded) kept out of the fit to report R^2 and RMSE on.
    Returns:
        (readout, report): ``readout(features)`` is the state divided by its spread in the
        recordings (S,); the report has ``frames``, per-dimension held-out ``r2`` and ``rmse``
        (in the state's own units) and the ``scale`` each dimension was divided by.
    """
    if not datasets:
        raise UserError("fit_readout needs at least one recording with states (worldgym record of a real twin writes them)")
    feats, states = [], []
    for path in datasets:
        data = ds.load(path, verify_hashes=False)
        eps = list(data)[:episodes]
        if any(e.states is None for e in eps):
            raise UserError(f"{path}: its episodes carry no states.npy; a readout needs the simulator state (record a real twin with `worldgym record`)")
        for e in eps:
            feats.append(filter_features(model, e.observations, np.asarray(e.actions)))
            states.append(np.asarray(e.states, np.float64))
    x, y = np.concatenate(feats).astype(np.float64), np.concatenate(states)
    idx = np.random.default_rng(seed).permutation(len(x))
    cut = max(1, int(round((1 - holdout) * len(x))))
    tr, te = idx[:cut], idx[cut:] if cut < len(x) else idx[:cut]
    mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-6
    z = np.c_[(x - mu) / sd, np.ones(len(x))]
    w = np.linalg.solve(z[tr].T @ z[tr] + ridge * np.eye(z.shape[1]), z[tr].T @ y[tr])  # (D+1, S)
    err = z[te] @ w - y[te]
    scale = y[tr].std(0) + 1e-8
    readout = nn.Linear(x.shape[1], y.shape[1])
    with torch.no_grad():  # state / scale = (x - mu) / sd @ w[:-1] / scale + w[-1] / scale
        readout.weight.copy_(torch.from_numpy((w[:-1] / sd[:, None] / scale).T))
        readout.bias.copy_(torch.from_numpy((w[-1] - (mu / sd) @ w[:-1]) / scale))
    readout.requires_grad_(False)
    report = {"frames": int(len(x)), "r2": (1 - (err**2).mean(0) / y[te].var(0)).round(4).tolist(),
              "rmse": np.sqrt((err**2).mean(0)).round(5).tolist(), "scale": scale.round(6).tolist()}  # fmt: skip
    return readout, report


class ReadoutObs(gym.vector.VectorWrapper):
    """A features-observing vector env (e.g. `worldgym.training.imagination.dream_envs`) seen through a readout: (num_envs, S) observations.

    Works with either autoreset mode; ``info["final_obs"]`` rows of ended episodes are read out too.
    """

    def __init__(self, env: gym.vector.VectorEnv, readout: nn.Linear) -> None:
        super().__init__(env)
        self.readout = readout
        s = int(readout.out_features)
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (s,), np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (env.num_envs, s), np.float32)

    @torch.no_grad()
    def read(self, obs: Any) -> np.ndarray:
        return self.readout(torch.as_tensor(np.asarray(obs), dtype=torch.float32)).numpy()

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        obs, info = self.env.reset(**kwargs)
        return self.read(obs), info

    def step(self, actions: Any) -> tuple[np.ndarray, Any, Any, Any, dict]:
        obs, reward, terminated, truncated, info = self.env.step(actions)
        if "final_obs" in info:
            final = np.full(len(info["final_obs"]), None, dtype=object)
            for i, row in enumerate(info["final_obs"]):
                if row is not None:
                    final[i] = self.read(np.asarray(row)[None])[0]
            info = {**info, "final_obs": final}
        return self.read(obs), reward, terminated, truncated, info


def turn_readout(folder: str | Path, model: Model, datasets: Sequence[str]) -> nn.Linear:
    """The readout of a loop turn: loaded from ``folder/readout.safetensors`` if a run already fitted it, else fitted and saved there (report in ``readout.json``)."""
    folder = Path(folder)
    path = folder / "readout.safetensors"
    if path.is_file():
        tensors = load_file(str(path))
        readout = nn.Linear(tensors["weight"].shape[1], tensors["weight"].shape[0])
        readout.load_state_dict(tensors)
        return readout.requires_grad_(False)
    readout, report = fit_readout(model, datasets)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "readout.json").write_text(json.dumps(report, indent=2) + "\n")
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in readout.state_dict().items()}, str(tmp))
    os.replace(tmp, path)
    return readout

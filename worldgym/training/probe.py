"""A state probe for training: what the recorded simulator state says a pair of latent blocks shows.

Latent MSE weighs every latent number alike, and in a small-object world (a cart and a pole in
a 64-pixel frame) the numbers that carry the motion are a small part of it: the CartPole
models' one-step error is 25-55 times the copy baseline's and random actions make it only a
few per cent worse, and their rollouts move the pole a third to a half as far as the real
one under a held push (BENCHMARKS.md). Where the recordings carry the simulator's state
(`worldgym record` of a real twin writes ``states.npy``), a frozen probe fitted on real
latents reads that state from two consecutive blocks (two, so velocities are readable), and
``TrainConfig.state_weight`` adds ``|| probe(generated) - probe(real) ||^2`` to the dynamics
and self-forcing losses: a learned metric that weighs latent error by how much state it moves.
The target is the probe's reading of the real blocks, not the recorded state, so the loss is
zero exactly when the generated block is the real one whatever the probe's own error.

A termination probe (`fit_term_probe`) is the same network with one output, fitted on the
recorded ends: ``TrainConfig.term_labels: probe`` labels each generated block with its reading,
and ``term_labels: agree`` uses the state probe to tell which rollouts still show the real state
(`worldgym.training.losses.SelfForcingLoss`). `state_probe` and `termination_probe` fit them for a
`worldgym train` run and log their held-out quality.

Nothing here knows CartPole: the state is whatever vector the recorder stored.

Dimension letters: F frames, B batch, N tokens, C latent channels, S state size.
"""

from __future__ import annotations

import json
import logging
import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from worldgym.config_io import ConfigError

if TYPE_CHECKING:
    from worldgym.training.data import Data, TrainConfig

log = logging.getLogger("worldgym.training.train")  # a run's log: these fits are steps of `worldgym train`


class StateProbe(nn.Module):
    """MLP from two consecutive latent blocks (B, 2, N, C) to the standardised state (B, S)."""

    def __init__(self, tokens: int, channels: int, state_size: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(1), nn.Linear(2 * tokens * channels, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, state_size)
        )
        self.register_buffer("mean", torch.zeros(state_size))
        self.register_buffer("std", torch.ones(state_size))
        self.r2: list[float] = []  # held-out R^2 per state dimension, set by `fit_state_probe`
        self.mse: list[float] = []  # held-out squared error per standardised state dimension
        self.recall = self.false_positive = float("nan")  # a termination probe's held-out rates (`fit_term_probe`)

    def forward(self, older: torch.Tensor, newer: torch.Tensor) -> torch.Tensor:
        """Blocks (B, N, C) at t-1 and t -> standardised state at t (B, S), in float32."""
        return self.net(torch.stack([older, newer], 1).float())


def fit_state_probe(
    latents: torch.Tensor, states: torch.Tensor, first: torch.Tensor, seed: int, steps: int = 2000, batch: int = 512, holdout: float = 0.1
) -> StateProbe:
    """Fit a `StateProbe` on every (t-1, t) pair inside an episode; frozen on return.

    Args:
        latents: (F, N, C) the frozen encoder's normalised latents of every frame.
        states: (F, S) the recorded state of every frame.
        first: (F,) True at each episode's first frame (no pair ends there).
        seed: seeds the split, the weights and the batches, so a resumed run refits the same probe.
    """
    if states.shape[0] != latents.shape[0]:
        raise ValueError(f"expected one state per frame ({latents.shape[0]}), got {states.shape[0]}")
    g = torch.Generator().manual_seed(seed)
    probe, test, train = new_probe(latents, first, states.shape[1], seed, g, holdout)
    s = states.float()
    probe.mean.copy_(s[train].mean(0))
    probe.std.copy_(s[train].std(0).clamp_min(1e-6))
    target = (s - probe.mean) / probe.std  # (F, S)
    fit(probe, latents, train, g, steps, batch, lambda out, idx: ((out - target[idx]) ** 2).mean())
    with torch.no_grad():
        err = ((probe(latents[test - 1], latents[test]) - target[test]) ** 2).mean(0)  # (S,)
        var = target[test].var(0).clamp_min(1e-12)
        probe.r2 = [float(x) for x in 1 - err / var]
        probe.mse = [float(x) for x in err]
    return probe.eval()


def new_probe(latents: torch.Tensor, first: torch.Tensor, outputs: int, seed: int, g: torch.Generator, holdout: float) -> tuple[StateProbe, torch.Tensor, torch.Tensor]:
    """A probe of ``outputs`` outputs with weights seeded by ``seed``, and the held-out / training pair ends drawn from ``g``."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        probe = StateProbe(latents.shape[1], latents.shape[2], outputs)
    ends = torch.nonzero(~first).squeeze(1)  # (P,) frames with a predecessor in their episode
    ends = ends[torch.randperm(len(ends), generator=g)]
    n_test = max(1, int(len(ends) * holdout))
    return probe, ends[:n_test], ends[n_test:]


def fit(probe: StateProbe, latents: torch.Tensor, train: torch.Tensor, g: torch.Generator, steps: int, batch: int, loss_of: Any) -> None:
    """Adam on ``loss_of(probe's reading of pairs ending at idx, idx)`` over batches of ``train`` drawn from ``g``; frozen after."""
    opt = torch.optim.Adam(probe.parameters(), lr=1e-3)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = 1e-3 * (0.05 + 0.95 * (1 - step / steps))
        idx = train[torch.randint(len(train), (batch,), generator=g)]
        loss = loss_of(probe(latents[idx - 1], latents[idx]), idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for p in probe.parameters():
        p.requires_grad_(False)


def state_error(probe: StateProbe, older: torch.Tensor, pred: torch.Tensor, real_older: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Per-row squared probe distance (B,) between the generated pair (older, pred) and the real pair, mean over S.

    Gradients reach ``pred`` and ``older`` (the model's own earlier block in a rollout); the
    real pair's reading is the constant target.
    """
    with torch.no_grad():
        target = probe(real_older, real)
    return ((probe(older, pred) - target) ** 2).mean(1)


def fit_term_probe(
    latents: torch.Tensor, terms: torch.Tensor, first: torch.Tensor, seed: int, steps: int = 2000, batch: int = 512, holdout: float = 0.1,
    lead: int = 0,
) -> StateProbe:
    """Fit a termination probe: a `StateProbe` of one output, the logit that the pair's newer block ends the episode.

    The target of every (t-1, t) pair inside an episode is the recording's termination of
    frame t; plain BCE keeps its probability calibrated, so the self-forcing stage can use it
    as the soft label of a generated block (``TrainConfig.term_labels: probe``). Frozen on
    return, with the held-out recall (share of real ends it reads above 0.5) in ``recall`` and
    the share of non-ending pairs it reads above 0.5 in ``false_positive``.

    Args:
        latents: (F, N, C) the frozen encoder's normalised latents of every frame.
        terms: (F,) 1.0 where the frame is an episode's terminal observation.
        first: (F,) True at each episode's first frame (no pair ends there).
        seed: seeds the split, the weights and the batches, so a resumed run refits the same probe.
        lead: the probe also fires on the ``lead`` frames before an end (the episode ends within
            ``lead`` more steps), for a model whose rollouts reach an end a little late.
    """
    if terms.shape[0] != latents.shape[0]:
        raise ValueError(f"expected one termination flag per frame ({latents.shape[0]}), got {terms.shape[0]}")
    terms = ends_within(terms, first, lead)
    g = torch.Generator().manual_seed(seed + 1)
    probe, test, train = new_probe(latents, first, 1, seed + 1, g, holdout)
    y = terms.float()
    fit(probe, latents, train, g, steps, batch, lambda out, idx: nn.functional.binary_cross_entropy_with_logits(out.squeeze(1), y[idx]))
    with torch.no_grad():
        fired = probe(latents[test - 1], latents[test]).squeeze(1) > 0  # (P,)
        pos = y[test] > 0.5
        probe.recall = float(fired[pos].float().mean()) if pos.any() else float("nan")
        probe.false_positive = float(fired[~pos].float().mean())
    return probe.eval()


def ends_within(terms: torch.Tensor, first: torch.Tensor, lead: int) -> torch.Tensor:
    """(F,) 1.0 on every frame whose episode ends at it or within ``lead`` more frames (episodes laid end to end, ``first`` marks starts)."""
    out, same = terms.float().clone(), torch.ones_like(first)
    for d in range(1, lead + 1):
        same = same[: len(same) - 1] & ~first[d:]  # frames t .. t + d lie in one episode
        out[: len(out) - d] = torch.maximum(out[: len(out) - d], terms[d:].float() * same)
    return out


def state_probe(latents: torch.Tensor, data: Data, cfg: TrainConfig, logf: Any) -> StateProbe:
    """The frozen probe of ``cfg.state_weight``, fitted on the run's latents; its held-out R^2 per state goes to the log."""
    if data.states is None:
        raise ConfigError(
            f"state_weight is {cfg.state_weight} (term_labels {cfg.term_labels!r}) but dataset {data.path} has episodes without recorded states, or states of "
            "different sizes (expected one states.npy of one width beside every episode, as `worldgym record` of a real twin writes); "
            "set state_weight: 0 and term_labels: real"
        )
    probe = fit_state_probe(latents, data.states, data.first, cfg.seed, cfg.state_probe_steps)
    log.info("state probe: held-out R^2 per state dimension %s", " ".join(f"{r:.3f}" for r in probe.r2))
    if logf:
        logf.write(json.dumps({"stage": "state_probe", "step": 0, "of": 0, "loss": sum(probe.mse) / len(probe.mse), "r2": probe.r2}) + "\n")
    return probe


def termination_probe(latents: torch.Tensor, data: Data, cfg: TrainConfig, logf: Any) -> StateProbe:
    """The frozen termination probe of ``cfg.term_labels: probe``; its held-out recall and false-positive share go to the log."""
    if not data.terms.any():
        raise ConfigError(f"term_labels is 'probe' but dataset {data.path} has no terminated episode to fit the probe on; set term_labels: real")
    probe = fit_term_probe(latents, data.terms, data.first, cfg.seed, cfg.state_probe_steps, lead=cfg.term_probe_lead)
    log.info("termination probe: held-out recall %.3f, false positives %.4f", probe.recall, probe.false_positive)
    if logf:  # recall None: the held-out pairs hold no end
        rates = {"recall": None if math.isnan(probe.recall) else probe.recall, "false_positive": probe.false_positive}
        logf.write(json.dumps({"stage": "term_probe", "step": 0, "of": 0, "loss": 0.0, **rates}) + "\n")
    return probe

"""The state-probe loss: the probe reads a state it can read, is refitted identically, and the loss is zero only at the real blocks."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from worldgym.config_io import ConfigError
from worldgym.model import checkpoint
from worldgym.training.data import Data
from worldgym.training.losses import DynamicsLoss, SelfForcingLoss
from worldgym.training.probe import fit_state_probe, state_error
from worldgym.training.recipes import tiny_config
from worldgym.model.networks import Model
from worldgym.training.train import dynamics_batch, encode_all, state_probe, step_generator, train


def synthetic(frames: int = 600, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Latents whose numbers are linear in a random-walk state, so the pair (t-1, t) shows the state and its change."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.cumsum(torch.randn(frames, 2, generator=g) * 0.1, 0)  # (F, 2)
    vel = torch.cat([torch.zeros(1, 2), pos[1:] - pos[:-1]])  # (F, 2)
    mix = torch.randn(2, 4 * 3, generator=g)
    latents = (pos @ mix).view(frames, 4, 3) + 0.01 * torch.randn(frames, 4, 3, generator=g)
    first = torch.zeros(frames, dtype=torch.bool)
    first[::50] = True
    return latents, torch.cat([pos, vel * 10], 1), first


def test_the_probe_reads_positions_and_their_change_and_refits_identically():
    latents, states, first = synthetic()
    probe = fit_state_probe(latents, states, first, seed=3, steps=600)
    assert len(probe.r2) == 4 and min(probe.r2) > 0.8, probe.r2  # positions from one block, velocities from the pair
    again = fit_state_probe(latents, states, first, seed=3, steps=600)
    for a, b in zip(probe.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)  # a resumed run refits exactly the probe the run trained with
    assert not any(p.requires_grad for p in probe.parameters())


def test_the_state_error_is_zero_at_the_real_pair_and_its_gradient_reaches_both_generated_blocks():
    latents, states, first = synthetic()
    probe = fit_state_probe(latents, states, first, seed=0, steps=200)
    older, real = latents[10:20], latents[11:21]
    assert torch.allclose(state_error(probe, older, real, older, real), torch.zeros(10))
    pred = (real + 0.3 * torch.randn_like(real)).requires_grad_(True)
    prev = (older + 0.0).requires_grad_(True)
    err = state_error(probe, prev, pred, older, real)
    assert (err > 0).all()
    err.sum().backward()
    assert pred.grad.abs().sum() > 0 and prev.grad.abs().sum() > 0


def test_a_wrong_count_of_states_is_refused():
    latents, states, first = synthetic()
    with pytest.raises(ValueError, match="one state per frame"):
        fit_state_probe(latents, states[:-1], first, seed=0, steps=1)


def test_training_with_the_state_loss_logs_the_probe_and_the_loss_in_both_stages(data, tmp_path):
    cfg = dataclasses.replace(tiny_config(), state_weight=1.0, state_probe_steps=20)
    model = checkpoint.load(train(cfg, data, tmp_path / "run"))
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    probe_rows = [r for r in rows if r["stage"] == "state_probe"]
    assert len(probe_rows) == 1 and len(probe_rows[0]["r2"]) == 4  # CartPole's x, x', theta, theta'
    for stage in ("dynamics", "selfforce"):
        assert all("state_mse" in r for r in rows if r["stage"] == stage), stage
    assert model.extra["train_config"]["state_weight"] == 1.0


def test_the_state_loss_changes_the_gradient_and_vanishes_at_weight_zero(data):
    cfg = dataclasses.replace(tiny_config(), state_weight=5.0, state_probe_steps=20)
    torch.manual_seed(0)
    model = Model(cfg.model)
    d = Data(data, cfg.model.action)
    latents = encode_all(model, d.frames, False)
    probe = state_probe(latents, d, cfg, None)
    batch = dynamics_batch(d, latents, step_generator(0, "selfforce", 0), 4, 6, cfg, selfforce=True)
    norm = {"frames": 10.0}
    for make in (DynamicsLoss, SelfForcingLoss):
        with_probe, parts = make(model, cfg, probe)(batch, norm)
        without, plain = make(model, dataclasses.replace(cfg, state_weight=0.0), probe)(batch, norm)
        assert "state_mse" in parts and "state_mse" not in plain
        assert float(parts["state_mse"]) > 0
        assert torch.allclose(with_probe, without + 5.0 * parts["state_mse"], rtol=1e-5), make.__name__


def test_state_loss_without_recorded_states_says_what_is_missing(data):
    cfg = dataclasses.replace(tiny_config(), state_weight=1.0)
    d = Data(data, cfg.model.action)
    d.states = None  # as for videos or a neural env's recordings
    with pytest.raises(ConfigError, match="without recorded states.*state_weight: 0"):
        state_probe(torch.zeros(len(d.frames), 4, 4), d, cfg, None)

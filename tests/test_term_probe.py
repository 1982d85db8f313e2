"""Termination labels from a probe: the probe reads an end it can see, and self-forcing's heads learn its reading of the rollout."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from worldgym.config_io import ConfigError
from worldgym.model.networks import Model
from worldgym.training.data import Data
from worldgym.training.losses import SelfForcingLoss, end_weights
from worldgym.training.probe import ends_within, fit_term_probe
from worldgym.training.recipes import tiny_config
from worldgym.training.train import dynamics_batch, encode_all, state_probe, step_generator, termination_probe, train


def falling(frames: int = 3000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Latents linear in an angle that drifts away from 0; an episode ends on the first frame past |1|."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(1, 8, generator=g)
    angles, terms, first = [], [], []
    while len(angles) < frames:
        a, v = 0.0, float(torch.randn((), generator=g)) * 0.05
        for t in range(200):
            angles.append(a)
            first.append(t == 0)
            terms.append(abs(a) > 1.0)
            if abs(a) > 1.0:
                break
            v += float(torch.randn((), generator=g)) * 0.02
            a += v
    angle = torch.tensor(angles[:frames])[:, None]
    latents = (angle @ mix).view(-1, 4, 2) + 0.005 * torch.randn(len(angle), 4, 2, generator=g)
    return latents, torch.tensor(terms[:frames], dtype=torch.float32), torch.tensor(first[:frames])


def test_the_term_probe_reads_the_end_it_can_see_and_refits_identically():
    latents, terms, first = falling()
    assert 20 < terms.sum() < 200
    probe = fit_term_probe(latents, terms, first, seed=1, steps=800)
    assert probe.recall > 0.8 and probe.false_positive < 0.02, (probe.recall, probe.false_positive)
    again = fit_term_probe(latents, terms, first, seed=1, steps=800)
    for a, b in zip(probe.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)  # a resumed run refits the probe it trained with
    assert not any(p.requires_grad for p in probe.parameters())
    with pytest.raises(ValueError, match="one termination flag per frame"):
        fit_term_probe(latents, terms[:-1], first, seed=0, steps=1)


def fused_tiny(**changes):
    """The tiny recipe with a fused-commit dynamics (denoise heads too), with ``changes``."""
    base = tiny_config()
    model = dataclasses.replace(base.model, dynamics=dataclasses.replace(base.model.dynamics, fused_commit=True))
    return dataclasses.replace(base, model=model, **changes)


def setup(data, cfg, frames: int):
    """A fresh tiny model (seed 0), its dataset, latents and the first self-forcing batch of ``frames`` frames."""
    torch.manual_seed(0)
    model = Model(cfg.model)
    d = Data(data, cfg.model.action)
    latents = encode_all(model, d.frames, False)
    return model, d, latents, dynamics_batch(d, latents, step_generator(0, "selfforce", 0), 4, frames, cfg, selfforce=True)


class Says(nn.Module):
    """A stand-in probe whose reading of every pair is the logit ``value``."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, older: torch.Tensor, newer: torch.Tensor) -> torch.Tensor:
        return torch.full((older.shape[0], 1), self.value)


@pytest.mark.parametrize("value", [30.0, -30.0])
def test_generated_blocks_take_the_probes_label_and_real_prefix_blocks_keep_theirs(data, value):
    cfg = fused_tiny(term_labels="probe", sf_context_max=3, sf_start_share=0.0)
    model, d, latents, batch = setup(data, cfg, 8)
    assert (batch["prefix"] > 1).any()  # some rows commit real frames before they generate
    norm = {"frames": 10.0}
    _, probed = SelfForcingLoss(model, cfg, term_probe=Says(value))(batch, norm)
    # the same loss with the labels written into the batch: generated frames take the probe's 1 or 0, prefix frames keep theirs
    T = batch["valid"].shape[1]
    generated = torch.arange(T)[None] >= batch["prefix"][:, None]
    said = batch["valid"].float() if value > 0 else torch.zeros_like(batch["terms"])
    relabelled = dict(batch, terms=torch.where(generated, said, batch["terms"]))
    _, expected = SelfForcingLoss(model, cfg)(relabelled, norm)
    _, recorded = SelfForcingLoss(model, cfg)(batch, norm)
    for key in ("term_bce", "denoise_term_bce"):
        assert torch.allclose(probed[key], expected[key], rtol=1e-5), key
    assert not torch.allclose(probed["term_bce"], recorded["term_bce"])  # the probe's labels are not the recorded ones
    assert torch.allclose(probed["latent_mse"], recorded["latent_mse"])  # only the heads' targets change


def test_a_run_with_probe_labels_logs_the_probe_and_a_bad_value_is_refused(data, tmp_path):
    cfg = fused_tiny(term_labels="probe", state_probe_steps=20, heads_steps=2)
    train(cfg, data, tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    probe_rows = [r for r in rows if r["stage"] == "term_probe"]
    assert len(probe_rows) == 1 and 0.0 <= probe_rows[0]["false_positive"] <= 1.0
    recall = probe_rows[0]["recall"]
    assert recall is None or 0.0 <= recall <= 1.0  # None: the tiny data's held-out pairs hold no end
    assert any(r["stage"] == "selfforce" for r in rows) and any(r["stage"] == "heads" for r in rows)
    with pytest.raises(ConfigError, match="term_labels must be 'real'.*got 'ends'"):
        train(dataclasses.replace(cfg, term_labels="ends"), data, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()  # refused before anything is written


def test_probe_labels_without_any_recorded_end_say_what_is_missing(data):
    cfg = fused_tiny(term_labels="probe")
    d = Data(data, cfg.model.action)
    d.terms = torch.zeros_like(d.terms)  # e.g. a recording of truncated episodes only
    with pytest.raises(ConfigError, match="no terminated episode.*term_labels: real"):
        termination_probe(torch.zeros(len(d.frames), 4, 4), d, cfg, None)


def test_end_weights_mark_the_frames_before_each_recorded_end():
    terms = torch.zeros(3, 10)
    terms[0, 6] = 1.0
    terms[1, 9] = 1.0  # row 2: no end in the window
    w = end_weights(terms, 3, 4.0)
    assert w[0].tolist() == [1, 1, 1, 1, 4, 4, 4, 1, 1, 1]
    assert w[1].tolist() == [1] * 7 + [4] * 3
    assert w[2].tolist() == [1] * 10
    assert torch.equal(end_weights(terms, 3, 1.0), torch.ones(3, 10))  # weight 1: off


def test_the_end_weight_scales_the_rollout_losses_only_near_an_end(data):
    cfg = fused_tiny(state_weight=0.0, sf_start_share=1.0, sf_end_steps=3)
    model, d, latents, batch = setup(data, cfg, 12)
    norm = {"frames": 10.0}
    plain = SelfForcingLoss(model, cfg)(batch, norm)[1]
    weighted = SelfForcingLoss(model, dataclasses.replace(cfg, sf_end_weight=3.0))(batch, norm)[1]
    no_end = dict(batch, terms=torch.zeros_like(batch["terms"]))
    assert batch["terms"].any()  # the tiny episodes end inside a 12-frame window
    assert float(weighted["latent_mse"]) > float(plain["latent_mse"]) * 1.05
    assert torch.allclose(SelfForcingLoss(model, dataclasses.replace(cfg, sf_end_weight=3.0))(no_end, norm)[1]["latent_mse"],
                          SelfForcingLoss(model, cfg)(no_end, norm)[1]["latent_mse"])  # fmt: skip


@pytest.mark.parametrize("tol", [1e9, -1.0])
def test_agree_labels_teach_the_heads_only_on_rollouts_still_on_the_real_track(data, tol):
    cfg = fused_tiny(state_weight=0.0, state_probe_steps=20, sf_context_max=3, sf_start_share=0.0)
    model, d, latents, batch = setup(data, cfg, 8)
    probe = state_probe(latents, d, cfg, None)
    norm = {"frames": 10.0}
    real = SelfForcingLoss(model, cfg, probe)(batch, norm)[1]
    agree = SelfForcingLoss(model, dataclasses.replace(cfg, term_labels="agree", term_agree_tol=tol), probe)(batch, norm)[1]
    assert "state_mse" not in agree  # the probe judges the track; it adds no loss at state_weight 0
    for key in ("term_bce", "denoise_term_bce"):
        if tol > 0:  # every rollout within the tolerance: the recorded labels, all of them
            assert float(agree["term_kept"]) == 1.0 and torch.allclose(agree[key], real[key]), key
        else:  # none within: only the real prefix frames teach the heads
            assert float(agree["term_kept"]) == 0.0 and float(agree[key]) < float(real[key]) * 0.9, key
    assert torch.allclose(agree["latent_mse"], real["latent_mse"])


def test_a_lead_marks_the_frames_before_each_end_inside_its_own_episode():
    terms = torch.tensor([0, 0, 0, 1, 0, 0, 0, 0, 1, 0.0])
    first = torch.tensor([1, 0, 0, 0, 1, 0, 0, 0, 0, 1], dtype=torch.bool)  # episodes 0-3, 4-8, 9-
    assert torch.equal(ends_within(terms, first, 0), terms)
    assert ends_within(terms, first, 2).tolist() == [0, 1, 1, 1, 0, 0, 1, 1, 1, 0]
    assert ends_within(terms, first, 5).tolist() == [1, 1, 1, 1, 1, 1, 1, 1, 1, 0]  # never across into the next episode's start
    latents, ends, starts = falling()
    early = fit_term_probe(latents, ends, starts, seed=1, steps=300, lead=2)
    plain = fit_term_probe(latents, ends, starts, seed=1, steps=300)
    before = torch.nonzero(ends_within(ends, starts, 2) - ends > 0).squeeze(1)  # frames one or two steps before an end
    with torch.no_grad():
        assert (early(latents[before - 1], latents[before]) > plain(latents[before - 1], latents[before])).float().mean() > 0.9

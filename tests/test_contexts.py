"""Starts from real context: a reset from F frames and their actions is the teacher-forced layout's prefix,
and the `worldgym eval` section that times terminations from K real frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worldgym.engine import WorldModel
from worldgym.evaluation import contexts
from worldgym.evaluation.contexts import context_starts, format_table, histogram
from worldgym.evaluation.evaluate import record_real
from worldgym.training.data import context_prefix
from worldgym.worlds.cartpole import replay_end

from conftest import tiny_model


@pytest.mark.parametrize("fused,residual", [(False, False), (True, False), (False, "copy"), (True, "copy"), (False, "velocity"), (True, "velocity")])
@pytest.mark.parametrize("F", [1, 2, 4])
def test_reset_from_frames_and_actions_equals_the_teacher_forced_layout(fused, residual, F):
    """Every step after a reset from F real frames (with the actions that led to them) predicts, within 1e-5, what the
    [clean | noisy] training layout predicts over [those frames' latents | the generated blocks]; the heads the step
    reports are the layout's (commit heads on the clean copy, or denoise_heads on the noisy copy when fused)."""
    steps, B = 6, 2  # past sink + window = 4 blocks: the window evicts
    T = F + steps
    model = tiny_model(steps=1, train_frames=16, fused=fused, residual=residual)
    g = torch.Generator().manual_seed(F)
    h, w = model.config.autoencoder.frame_height, model.config.autoencoder.frame_width
    frames = torch.randint(0, 256, (B, F, h, w, 3), generator=g, dtype=torch.uint8)
    actions = torch.randint(0, 3, (B, T), generator=g)  # the action that led to each frame (the first is unknown)
    engine = WorldModel(model, B)
    engine.reset(None, frames, actions[:, :F].tolist(), seeds=[5, 6])
    gens = [torch.Generator().manual_seed(s) for s in (5, 6)]  # the engine's per-row noise streams
    generated, noise, terms, rewards = [], [], [], []
    for t in range(F, T):
        noise.append(torch.stack([torch.randn(model.config.autoencoder.tokens, model.config.autoencoder.latent_channels, generator=gg) for gg in gens]))
        out = engine.step(actions[:, t].tolist())
        generated.append(out.latents)
        terms.append(out.termination)
        rewards.append(out.reward)
    with torch.no_grad():
        real = torch.stack([torch.cat([model.autoencoder.encode(frames[i, f : f + 1]) for f in range(F)]) for i in range(B)]).float()
        clean = torch.cat([real, torch.stack(generated, 1)], 1)  # (B, T, N, C)
        noisy = torch.zeros_like(clean)
        noisy[:, F:] = torch.stack(noise, 1)
        null = torch.zeros(B, T, dtype=torch.bool)
        null[:, 0] = True
        out = model.dynamics.forward_sequence(clean, noisy, torch.zeros(B, T), torch.ones(B, T), actions[..., None], null, fused)
    pred, reward, term = (out[0], out[3], out[4]) if fused else out
    lo, hi = model.config.reward_range
    assert (pred[:, F:] - clean[:, F:]).abs().max() <= 1e-5
    torch.testing.assert_close(torch.sigmoid(term[:, F:]), torch.stack(terms, 1), atol=1e-5, rtol=0)
    torch.testing.assert_close(reward[:, F:].clamp(lo, hi), torch.stack(rewards, 1), atol=1e-5, rtol=0)


def test_self_forcing_starts_at_episode_starts_may_commit_several_real_frames():
    at_start = torch.tensor([True] * 200 + [False] * 200)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(context_prefix(at_start, 4, torch.Generator().manual_seed(0)), context_prefix(at_start, 4, g, 1))  # default: as before
    prefix = context_prefix(at_start, 4, torch.Generator().manual_seed(1), most_at_start=8)
    assert set(prefix[:200].tolist()) == set(range(1, 9))
    assert set(prefix[200:].tolist()) == {2, 3, 4}
    assert 0.35 < float((prefix[:200] == 1).float().mean()) < 0.65  # single_share 0.5: half of the starts commit one frame
    uniform = context_prefix(at_start, 4, torch.Generator().manual_seed(1), most_at_start=8, single_share=None)
    assert set(uniform[:200].tolist()) == set(range(1, 9)) and float((uniform[:200] == 1).float().mean()) < 0.25
    assert torch.equal(uniform[200:], prefix[200:])  # the inside draw comes first and is the same


@pytest.fixture(scope="module")
def episodes() -> list[dict]:
    return record_real("CartPole", (16, 16), 8, 4321, "random", 500)


def test_true_physics_times_random_episodes_from_any_context_frame(episodes):
    for e in episodes:
        T = len(e["actions"])
        for K in (1, 4, 8):
            if T >= K:
                assert K - 1 + replay_end(e["states"][K - 1], e["actions"][K - 1 :]) == T


class Oracle:
    """A stand-in engine that fires termination exactly at each row's real end (``ends``: frame index per row)."""

    def __init__(self, ends):
        self.ends = ends

    def __call__(self, model, batch_size, dtype, features=False):
        self.count, oracle = 0, self

        class Engine:
            def reset(self, rows, frames, actions, seeds):
                oracle.K = frames.shape[1]
                assert [len(a) for a in actions] == [oracle.K] * batch_size

            def step(self, acts, decode=True):
                oracle.count += 1
                frame = oracle.K - 1 + oracle.count  # the frame this step produces
                term = torch.tensor([float(frame == e) for e in oracle.ends[:batch_size]])

                class Out:
                    termination = term

                return Out()

        return Engine()


def test_section_counts_offsets_from_the_frame_each_step_produces(episodes, monkeypatch, model):
    terminated = [e for e in episodes if e["terminated"]]
    monkeypatch.setattr(contexts, "WorldModel", Oracle([len(e["actions"]) for e in terminated]))
    section = context_starts(model, terminated, contexts=(1,), replay_end=replay_end)
    r = section["per_k"]["1"]
    assert r["share_within"] == 1.0 and set(r["offsets"]) == {0} and r["mean_offset"] == 0.0


def test_section_runs_on_the_tiny_model(episodes, model):
    section = context_starts(model, episodes, contexts=(1, 2, 4, 8), replay_end=replay_end)
    assert section["physics"] and section["tolerance"] == 3
    assert section["per_k"]["8"]["episodes"] == 0 and "exceeds" in section["per_k"]["8"]["skipped"]  # the tiny cache holds 4 blocks
    for K in (1, 2, 4):
        r = section["per_k"][str(K)]
        eligible = [e for e in episodes if e["terminated"] and len(e["actions"]) >= K]
        assert r["episodes"] == len(eligible) and r["physics_timeable"] == len(eligible)  # deterministic CartPole
        assert len(r["offsets"]) == r["physics_timeable"] == sum(r["histogram"].values())
        assert 0.0 <= r["share_within"] <= 1.0
        assert r["share_within"] == pytest.approx(np.mean([o is not None and abs(o) <= 3 for o in r["offsets"]]))
    table = format_table(section)
    assert len(table.splitlines()) == 2 + 4


def test_histogram_bins_every_offset_once():
    h = histogram([-20, -11, -10, -4, -3, 0, 3, 4, 10, 11, None])
    assert h == {"<=-11": 2, "-10..-4": 2, "-3..3": 3, "4..10": 2, ">=11": 1, "never": 1}

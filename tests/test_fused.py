"""The fused commit: each block's commit runs in the pass that denoises the next block.

It must compute the same blocks as the two-pass engine (the commit half of the pass sees
exactly what a separate commit pass sees; the denoise half sees the committed block and
not the block its commit evicts), and read reward and termination from ``denoise_heads``
exactly as the training layout's noisy copy does."""

from __future__ import annotations

import pytest
import torch

from worldgym.engine import WorldModel

from conftest import tiny_model


def start_frames(model, rows: int, frames: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    h, w = model.config.autoencoder.frame_height, model.config.autoencoder.frame_width
    return torch.randint(0, 256, (rows, frames, h, w, 3), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize("sink,window,steps,patch", [(1, 3, 1, 1), (2, 2, 1, 1), (0, 4, 1, 1), (1, 3, 3, 1), (1, 3, 1, 2)])
def test_fused_engine_generates_what_the_two_pass_engine_generates(sink, window, steps, patch):
    two = tiny_model(sink=sink, window=window, steps=steps, train_frames=24, patch=patch)
    one = tiny_model(sink=sink, window=window, steps=steps, train_frames=24, fused=True, patch=patch)
    assert one.dynamics.denoise_heads is not None and not hasattr(two.dynamics, "denoise_heads")
    engines = [WorldModel(two, 3), WorldModel(one, 3)]
    frames = start_frames(two, 3, frames=2)
    for e in engines:
        e.reset(None, frames, actions=[[0, 1], [1, 2], [2, 0]], seeds=[5, 6, 7])
    g = torch.Generator().manual_seed(0)
    worst, saved = 0.0, None
    for i in range(20):
        acts = torch.randint(0, 3, (3,), generator=g).tolist()
        if i == 6:  # a row reset mid-rollout (its neighbours keep their pending blocks)
            for e in engines:
                e.reset([1], start_frames(two, 1, frames=3, seed=1), seeds=[9])
        if i == 9:
            saved = [e.get_state([0, 2]) for e in engines]
        if i == 12:  # restore two rows from the snapshot; both engines replay the same steps
            for e, st in zip(engines, saved):
                e.set_state([0, 2], st)
        if i == 15:
            for e in engines:
                e.flush([2])
        a, b = (e.step(acts) for e in engines)
        worst = max(worst, (a.latents - b.latents).abs().max().item())
        assert (a.frames.int() - b.frames.int()).abs().max() <= 1
    assert worst <= 1e-5, f"fused vs two-pass max abs diff {worst}"
    assert torch.equal(engines[0].cache.count, engines[1].cache.count + 1)  # the newest block waits in the fused engine
    assert bool(engines[1].pending["has"].all())


def test_fused_heads_read_the_denoise_pass_as_training_does():
    T = 12
    model = tiny_model(steps=1, train_frames=T, fused=True)
    engine = WorldModel(model, 2)
    engine.reset(None, start_frames(model, 2), seeds=[0, 1])
    dyn = model.dynamics
    noises = []
    original = dyn.forward_cached

    def recorded(x, t, actions, null, context, position, commit, *args, **kwargs):
        noises.append(x[:, -model.config.autoencoder.tokens :].clone())
        return original(x, t, actions, null, context, position, commit, *args, **kwargs)

    dyn.forward_cached = recorded
    lat, terms, rewards = [engine.pending["latents"].clone()], [], []
    actions = torch.randint(0, 3, (T - 1, 2), generator=torch.Generator().manual_seed(3))
    for a in actions:
        out = engine.step(a.tolist())
        lat.append(out.latents)
        terms.append(out.termination)
        rewards.append(out.reward)
    dyn.forward_cached = original
    clean = torch.stack(lat, 1)  # (B, T, N, C)
    noisy = torch.zeros_like(clean)
    noisy[:, 1:] = torch.stack(noises, 1)
    t_noisy = torch.ones(2, T)
    acts = torch.cat([torch.zeros(2, 1, dtype=torch.int64), actions.T], 1)[..., None]
    null = torch.zeros(2, T, dtype=torch.bool)
    null[:, 0] = True
    with torch.no_grad():
        pred, _, _, rew, term = dyn.forward_sequence(clean, noisy, torch.zeros(2, T), t_noisy, acts, null, denoise_heads=True)
    lo, hi = model.config.reward_range
    assert (pred[:, 1:] - clean[:, 1:]).abs().max() <= 1e-5
    assert torch.allclose(torch.sigmoid(term[:, 1:]), torch.stack(terms, 1), atol=1e-5)
    assert torch.allclose(rew[:, 1:].clamp(lo, hi), torch.stack(rewards, 1), atol=1e-5)


def test_fused_step_failure_commits_nothing():
    model = tiny_model(steps=1, fused=True)
    engine = WorldModel(model, 2)
    engine.reset(None, start_frames(model, 2), seeds=[0, 1])
    for _ in range(5):
        engine.step([0, 1])
    before = engine.get_state()
    with torch.no_grad():
        model.dynamics.denoise_heads[2].weight[1, 0] = float("nan")
    with pytest.raises(Exception, match="non-finite"):
        engine.step([1, 1])
    after = engine.get_state()
    for name in before["cache"]:
        assert torch.equal(before["cache"][name], after["cache"][name]), name
    for name in before["pending"]:
        assert torch.equal(before["pending"][name], after["pending"][name]), name
    assert before["rng"][1].equal(after["rng"][1])


def test_fused_recache_commits_the_pending_block_first():
    model = tiny_model(steps=1, fused=True)
    engine = WorldModel(model, 1)
    engine.reset(None, start_frames(model, 1), seeds=[0])
    for _ in range(2):
        engine.step([2])
    newest = engine.pending["latents"].clone()
    engine.recache([0], actions=[1])
    assert not bool(engine.pending["has"].any())
    assert torch.equal(engine.cache.latents[0, engine.cache.write_slot()[0] - 1], newest[0])
    engine.step([0])  # a row without a pending block steps through the same fused pass
    assert bool(engine.pending["has"].all())

"""Engine mechanics: block-causal attention, cache == recompute, read-only denoising, bounded positions,
per-row reset, determinism, action conditioning, flush and recache."""

from __future__ import annotations

import torch

from worldgym.model.actions import ActionConfig, InvalidActionError
from worldgym.engine import NotResetError, NumericsError, WorldModel
from worldgym.model.window import forward_window

from conftest import tiny_model

import pytest


def start_frames(model, rows: int, frames: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    h, w = model.config.autoencoder.frame_height, model.config.autoencoder.frame_width
    return torch.randint(0, 256, (rows, frames, h, w, 3), generator=g, dtype=torch.uint8)


def record_passes(engine: WorldModel) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]]:
    """Wrap the dynamics so every cached pass records (x, t, pred, commit)."""
    dyn = engine.model.dynamics
    log = []
    original = dyn.forward_cached

    def wrapped(x, t, actions, null, context, position, commit, *args, **kwargs):
        out = original(x, t, actions, null, context, position, commit, *args, **kwargs)
        log.append((x.clone(), t.clone(), out.pred.clone(), commit))
        return out

    dyn.forward_cached = wrapped
    return log


@pytest.mark.parametrize("sink,window,patch,batched", [(1, 3, 1, False), (2, 2, 1, False), (0, 4, 1, False), (1, 3, 2, False), (1, 3, 1, True), (1, 3, 2, True)])
def test_cached_generation_equals_full_sequence_recompute(monkeypatch, sink, window, patch, batched):
    """Each denoise pass of block k equals the training-layout pass over [clean history | noisy block]
    (``batched``: attention by explicit batched matmuls, the path of large batches, instead of SDPA)."""
    if batched:
        from worldgym.model import transformer

        monkeypatch.setattr(transformer, "BATCHED_ATTENTION_MIN", 1)
    T = 14  # well past sink + window: the window rolls over many times
    model = tiny_model(sink=sink, window=window, train_frames=T, patch=patch)
    engine = WorldModel(model, 2)
    frames = start_frames(model, 2)
    engine.reset(None, frames, seeds=[3, 4])
    log = record_passes(engine)
    actions = torch.randint(0, 3, (T - 1, 2), generator=torch.Generator().manual_seed(1))
    latents = [engine.cache.latents[:, 0].clone()]  # context frame (slot 0 holds block 0 for any sink >= 0 before eviction)
    for a in actions:
        latents.append(engine.step(a.tolist()).latents.clone())
    clean = torch.stack(latents, 1)  # (B, T, N, C)
    acts = torch.cat([torch.zeros(2, 1, dtype=torch.int64), actions.T], 1)[..., None]  # (B, T, 1)
    null = torch.zeros(2, T, dtype=torch.bool)
    null[:, 0] = True
    denoise = [entry for entry in log if not entry[3]]
    per_block = len(denoise) // (T - 1)
    worst = 0.0
    with torch.no_grad():
        for k in range(1, T):
            for p in range(per_block):
                x, t, pred, _ = denoise[(k - 1) * per_block + p]
                noisy = torch.zeros_like(clean)
                noisy[:, k] = x
                t_noisy = torch.zeros(2, T)
                t_noisy[:, k] = t
                full, _, _ = model.dynamics.forward_sequence(clean, noisy, torch.zeros(2, T), t_noisy, acts, null)
                worst = max(worst, (full[:, k] - pred).abs().max().item())
    assert worst <= 1e-5, f"cached vs recompute max abs diff {worst}"


def test_commit_pass_keys_match_cache():
    """Heads read by the commit pass equal those of the training layout's clean copy."""
    T = 9
    model = tiny_model(train_frames=T)
    engine = WorldModel(model, 1)
    engine.reset(None, start_frames(model, 1), seeds=[0])
    lat, rewards, terms = [engine.cache.latents[:, 0].clone()], [], []
    actions = [1, 2, 0, 0, 1, 2, 2, 1]
    for a in actions:
        out = engine.step([a])
        lat.append(out.latents)
        rewards.append(out.reward)
        terms.append(out.termination)
    clean = torch.stack(lat, 1)
    acts = torch.tensor([[0] + actions])[..., None]
    null = torch.zeros(1, T, dtype=torch.bool)
    null[:, 0] = True
    with torch.no_grad():
        _, rew, term = model.dynamics.forward_sequence(clean, clean, torch.zeros(1, T), torch.zeros(1, T), acts, null)
    lo, hi = model.config.reward_range
    assert torch.allclose(rew[0, 1:].clamp(lo, hi), torch.cat(rewards), atol=1e-5)
    assert torch.allclose(torch.sigmoid(term[0, 1:]), torch.cat(terms), atol=1e-5)


def test_block_causality():
    """Perturbing block k+1 (clean and noisy copy) leaves every output of blocks <= k unchanged."""
    T = 10
    model = tiny_model(train_frames=T)
    g = torch.Generator().manual_seed(0)
    clean = torch.randn(2, T, 16, 4, generator=g)
    noisy = torch.randn(2, T, 16, 4, generator=g)
    t_noisy = torch.rand(2, T, generator=g)
    acts = torch.randint(0, 3, (2, T, 1), generator=g)
    null = torch.zeros(2, T, dtype=torch.bool)
    with torch.no_grad():
        base, rew, term = model.dynamics.forward_sequence(clean, noisy, torch.zeros(2, T), t_noisy, acts, null)
        for k in range(T - 1):
            c2, n2, a2 = clean.clone(), noisy.clone(), acts.clone()
            c2[:, k + 1 :] += 1.0
            n2[:, k + 1 :] -= 1.0
            a2[:, k + 1 :] = (a2[:, k + 1 :] + 1) % 3
            out, rew2, term2 = model.dynamics.forward_sequence(c2, n2, torch.zeros(2, T), t_noisy, a2, null)
            assert torch.equal(out[:, : k + 1], base[:, : k + 1]), f"block <= {k} changed"
            assert torch.equal(rew2[:, : k + 1], rew[:, : k + 1]) and torch.equal(term2[:, : k + 1], term[:, : k + 1])
            assert not torch.equal(out[:, k + 1], base[:, k + 1])  # the perturbation does reach block k+1


def test_denoise_passes_read_only_and_commit_writes_one_block():
    model = tiny_model(steps=3)
    engine = WorldModel(model, 3)
    engine.reset(None, start_frames(model, 3), seeds=[0, 1, 2])
    for _ in range(5):
        engine.step([0, 1, 2])
    before = {n: t.clone() for n, t in engine.cache.committed().items()}
    seen = {}
    original = engine.cache.append

    def checked_append(*args, **kwargs):
        # every denoise pass has run by now: the committed state must be bit-identical to before the step
        seen["equal"] = all(torch.equal(engine.cache.committed()[n], t) for n, t in before.items())
        seen["calls"] = seen.get("calls", 0) + 1
        return original(*args, **kwargs)

    engine.cache.append = checked_append
    slots = engine.cache.write_slot().clone()
    S = engine.cache.sink
    engine.step([2, 1, 0])
    assert seen == {"equal": True, "calls": 1}
    after = engine.cache.committed()
    for name, offset in (("k_window", S), ("v", 0)):
        changed = (after[name] != before[name]).flatten(4).any(-1).any(2)  # (L, B, slots)
        for row in range(3):
            assert (changed[:, row].any(0).nonzero().flatten() + offset).tolist() == [int(slots[row])]
    assert torch.equal(after["sink_k"], before["sink_k"])
    assert torch.equal(engine.cache.count, before["count"] + 1) and torch.equal(engine.cache.pos, before["pos"] + 1)


def test_bounded_positions_and_constant_memory():
    """10,000 steps: the cache never reallocates, and the output depends only on distances inside
    the window: the same state moved to the smallest rotary positions (what the engine rebases to)
    or 10^9 positions later gives the same block; the automatic rebase keeps positions bounded."""
    model = tiny_model(steps=1)
    S, W = model.config.dynamics.sink, model.config.dynamics.window
    engine = WorldModel(model, 1)
    engine.reset(None, start_frames(model, 1), seeds=[0])
    ptrs = (engine.cache.k.data_ptr(), engine.cache.v.data_ptr())
    nbytes = engine.cache.nbytes()
    for i in range(10_000):
        engine.step([i % 3])
    assert (engine.cache.k.data_ptr(), engine.cache.v.data_ptr()) == ptrs and engine.cache.nbytes() == nbytes
    assert int(engine.cache.pos[0]) == 10_000 + 1
    state = engine.get_state()
    outputs = []
    for delta in (0, S + W - 10_001, 10**9):
        moved = WorldModel(model, 1)
        moved.set_state(None, state)
        model.dynamics.rotate_window(moved.cache, torch.tensor([0]), torch.tensor([delta]))
        outputs.append(moved.step([1]))
    for other in outputs[1:]:
        assert (other.latents - outputs[0].latents).abs().max() <= 1e-5
        assert (other.frames.int() - outputs[0].frames.int()).abs().max() <= 1


@pytest.mark.parametrize("fused", [False, True])
def test_positions_rebase_automatically(monkeypatch, fused):
    """Past POSITION_LIMIT the engine moves a row back to its smallest positions; the rollout does not notice."""
    import worldgym.engine.world_model as engine_module

    model = tiny_model(steps=1, fused=fused)
    S, W = model.config.dynamics.sink, model.config.dynamics.window
    plain, rebased = WorldModel(model, 2), WorldModel(model, 2)
    for e in (plain, rebased):
        e.reset(None, start_frames(model, 2), seeds=[0, 1])
    for i in range(20):
        a = plain.step([i % 3, 2])
        monkeypatch.setattr(engine_module, "POSITION_LIMIT", 12)
        b = rebased.step([i % 3, 2])
        monkeypatch.setattr(engine_module, "POSITION_LIMIT", 2**20)
        assert int(rebased.cache.pos.max()) <= 12
        assert (a.latents - b.latents).abs().max() <= 1e-4
    assert int(plain.cache.pos[0]) == 21 - fused and int(rebased.cache.pos[0]) < 13


def test_reset_row_restores_fresh_state_and_isolates_other_rows():
    model = tiny_model()
    frames = start_frames(model, 4)
    engine = WorldModel(model, 4)
    engine.reset(None, frames, seeds=[10, 11, 12, 13])
    fresh = {n: getattr(engine.cache, n).clone() for n in ("k", "v", "latents", "actions", "null", "count")}
    for _ in range(6):
        engine.step([0, 1, 2, 1])
    before = {n: getattr(engine.cache, n).clone() for n in fresh}
    engine.reset([2], frames[2:3], seeds=[12])
    for n, t in fresh.items():
        now = getattr(engine.cache, n)
        if n in ("k", "v"):
            assert torch.equal(now[:, 2], t[:, 2]), n
            others = [0, 1, 3]
            assert torch.equal(now[:, others], before[n][:, others]), n
        else:
            assert torch.equal(now[2], t[2]), n
            assert torch.equal(now[[0, 1, 3]], before[n][[0, 1, 3]]), n
    assert engine.generators[2].get_state().equal(torch.Generator().manual_seed(12).get_state())


def test_same_seed_same_actions_bit_identical_and_seed_matters():
    model = tiny_model()
    frames = start_frames(model, 2)
    runs = []
    for seeds in ([5, 6], [5, 6], [7, 8]):
        engine = WorldModel(model, 2)
        engine.reset(None, frames, seeds=seeds)
        runs.append(torch.stack([engine.step([i % 3, (i + 1) % 3]).frames for i in range(8)]))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_action_change_shows_in_the_very_next_block_without_flush():
    model = tiny_model()
    frames = start_frames(model, 1)
    outs = {}
    for change in (0, 2):
        engine = WorldModel(model, 1)
        engine.reset(None, frames, seeds=[0])
        seq = [engine.step([1]).frames for _ in range(4)]
        seq.append(engine.step([change]).frames)
        outs[change] = seq
    for k in range(4):
        assert torch.equal(outs[0][k], outs[2][k])
    assert not torch.equal(outs[0][4], outs[2][4])


@pytest.mark.parametrize(
    "action_config,good,bad",
    [
        (ActionConfig(kind="discrete", n=3), [2], [3]),
        (ActionConfig(kind="multi_discrete", nvec=[3, 2]), [[2, 1]], [[2, 2]]),
        (ActionConfig(kind="multi_binary", n=4), [[1, 0, 1, 1]], [[1, 0, 2, 1]]),
        (ActionConfig(kind="box", n=2, low=-1, high=1), [[0.5, -1.0]], [[float("nan"), 0.0]]),
    ],
)
def test_action_kinds_step_and_bad_actions_change_nothing(action_config, good, bad):
    model = tiny_model(action=action_config)
    engine = WorldModel(model, 1)
    engine.reset(None, start_frames(model, 1), seeds=[0])
    engine.step(good)
    before = engine.get_state()
    with pytest.raises(InvalidActionError):
        engine.step(bad)
    after = engine.get_state()
    assert torch.equal(before["cache"]["k"], after["cache"]["k"]) and before["steps"].equal(after["steps"])
    assert before["rng"][0].equal(after["rng"][0])


def test_step_before_reset_and_nonfinite_model_refused():
    model = tiny_model()
    engine = WorldModel(model, 2)
    with pytest.raises(NotResetError):
        engine.step([0, 0])
    engine.reset(None, start_frames(model, 2), seeds=[0, 1])
    before = engine.get_state()
    with torch.no_grad():
        model.dynamics.out.weight[0, 0] = float("nan")
    with pytest.raises(NumericsError, match=r"rows \[0, 1\]"):
        engine.step([0, 1])
    after = engine.get_state()
    assert torch.equal(before["cache"]["k"], after["cache"]["k"]) and before["rng"][1].equal(after["rng"][1])


def test_flush_keeps_sink_and_last_and_recache_recommits():
    model = tiny_model(sink=1, window=3)
    engine = WorldModel(model, 2)
    engine.reset(None, start_frames(model, 2), seeds=[0, 1])
    for i in range(6):
        engine.step([i % 3, 1])
    newest = engine.cache.latents[0, engine.cache.order()[0, 3]].clone()
    newest_k = engine.cache.committed()["k_window"][:, 0, :, engine.cache.order()[0, 3] - 1].clone()
    sink_k = engine.cache.sink_k[:, 0].clone()
    other = engine.get_state([1])
    engine.flush([0])
    assert int(engine.cache.count[0]) == 2 and int(engine.cache.filled()[0]) == 2
    assert torch.equal(engine.cache.sink_k[:, 0], sink_k)
    assert torch.equal(engine.cache.latents[0, 1], newest)
    assert torch.equal(engine.cache.committed()["k_window"][:, 0, :, 0], newest_k)
    assert torch.equal(engine.get_state([1])["cache"]["k"], other["cache"]["k"])
    engine.step([0, 0])  # steps fine after a flush
    # recache with the stored actions reproduces what sequential commits of those latents give
    lat = engine.cache.latents[0, engine.cache.order()[0, :3]].clone()
    engine.recache([0], actions=[2])
    assert torch.equal(engine.cache.latents[0, engine.cache.order()[0, :3]], lat)
    assert int(engine.cache.count[0]) == 3 and int(engine.cache.pos[0]) == 3


@pytest.mark.parametrize("patch,residual", [(1, False), (2, False), (1, "copy"), (2, "velocity")])
def test_window_recompute_matches_cache_before_any_eviction(patch, residual):
    """The cache-free baseline (`forward_window`) computes what the cached pass computes while nothing was evicted."""
    model = tiny_model(sink=1, window=4, patch=patch, residual=residual)
    engine = WorldModel(model, 2)
    engine.reset(None, start_frames(model, 2), seeds=[0, 1])
    for a in ([0, 1], [2, 2], [1, 0]):
        engine.step(a)
    F = int(engine.cache.filled()[0])
    order = engine.cache.order()[:, :F]
    rows = torch.arange(2)[:, None]
    ctx = engine.cache.latents[rows, order]
    acts, null = engine.cache.actions[rows, order], engine.cache.null[rows, order]
    x = torch.randn(2, 16, 4, generator=torch.Generator().manual_seed(0))
    t = torch.full((2,), 0.7)
    a = torch.tensor([[1], [2]])
    no = torch.zeros(2, dtype=torch.bool)
    with torch.no_grad():
        context = model.dynamics.attention_context(engine.cache)
        base = model.dynamics.residual_base(engine.cache.newest_latents(), engine.cache.newest_latents(1)) if residual else None
        cached = model.dynamics.forward_cached(x, t, a, no, context, engine.cache.pos, False, base=base).pred
        window = forward_window(model.dynamics, ctx, torch.zeros(2, F), acts, null, x, t, a, no)
    assert (cached - window).abs().max() <= 1e-5



@pytest.mark.parametrize("fused", [False, True])
def test_bfloat16_engine_is_deterministic_and_within_its_tolerance_of_float32(fused):
    """bf16 autocast is a fast path too: the same seed and actions give bit-identical blocks, and from
    the same state one bf16 step stays within 5 % (of the largest latent) of the float32 step, which
    itself equals the full-sequence recompute (test above). The stated tolerance: bf16 keeps 8
    mantissa bits, about 0.4 % a rounding, through every layer of the pass."""
    model = tiny_model(steps=1, fused=fused)
    frames = start_frames(model, 3, frames=2)
    runs = []
    for dtype in ("bfloat16", "bfloat16", "float32"):
        engine = WorldModel(model, 3, dtype=dtype)
        engine.reset(None, frames, seeds=[0, 1, 2])
        runs.append([engine.step([i % 3, 1, 2]) for i in range(6)])
    for a, b in zip(runs[0], runs[1]):
        assert torch.equal(a.latents, b.latents) and torch.equal(a.frames, b.frames) and torch.equal(a.termination, b.termination)
    first16, first32 = runs[0][0], runs[2][0]
    scale = first32.latents.abs().max()
    assert (first16.latents - first32.latents).abs().max() <= 0.05 * scale
    assert (first16.termination - first32.termination).abs().max() <= 0.05


def test_patched_tokens_read_their_own_cells_and_the_layout_round_trips():
    """patch=2: a 4x4 latent grid becomes 2x2 tokens, each reading the 2x2 cells under it; unpatch inverts the layout."""
    model = tiny_model(patch=2)
    dyn = model.dynamics
    assert (dyn.latent_tokens, dyn.tokens, dyn.grid) == (16, 4, (2, 2))
    x = torch.randn(3, 2 * 16, 4, generator=torch.Generator().manual_seed(0))  # two blocks of 16 cells
    # the layout alone: with an identity-like readout, unpatch(patchified) gives x back
    p, C = 2, 4
    patched = x.reshape(3, 2, 2, p, 2, p, C).permute(0, 1, 2, 4, 3, 5, 6).reshape(3, 8, p * p * C)
    assert torch.equal(dyn.unpatch(patched), x)
    # token 1 of block 0 (top right) reads grid cells (0,2) (0,3) (1,2) (1,3): changing cell (1,3) = index 7 moves only it
    with torch.no_grad():
        base = dyn.embed(x)
        y = x.clone()
        y[:, 7] += 1.0
        moved = (dyn.embed(y) - base).abs().amax(dim=(0, 2)) > 0  # (8,) tokens
    assert moved.tolist() == [False, True, False, False, False, False, False, False]
    engine = WorldModel(model, 2)
    engine.reset(None, torch.randint(0, 256, (2, 1, 16, 16, 3), dtype=torch.uint8), seeds=[0, 1])
    out = engine.step([0, 1])
    assert out.latents.shape == (2, 16, 4) and engine.cache.k.shape[-2] == (engine.cache.slots + engine.cache.workspace) * 4


def test_patch_must_divide_the_latent_grid():
    with pytest.raises(ValueError, match="does not split into 3x3 patches"):
        tiny_model(patch=3)


@pytest.mark.parametrize("fused", [False, True])
def test_large_batch_steps_each_row_as_a_one_row_engine(fused):
    """A batch large enough for the batched paths (attention by batched matmuls with the mask expanded once,
    modulations gathered from a table of the pass's few distinct conditions, rotary tables made once per
    distinct position, in bfloat16 the fused oneDNN linears) steps every row as a one-row engine steps it,
    also after some rows were reset mid-rollout (rows with and without a full window) and with every row at its own
    rotary position."""
    model = tiny_model(steps=1 if fused else 2, fused=fused)
    B = 40  # 40 rows x 2 heads >= BATCHED_ATTENTION_MIN; 40 x 16 tokens >= FUSED_LINEAR_MIN
    frames = start_frames(model, B, frames=2)
    g = torch.Generator().manual_seed(0)
    actions = torch.randint(0, 3, (6, B), generator=g).tolist()
    for dtype, tol in (("float32", 1e-5), ("bfloat16", None)):
        batch = WorldModel(model, B, dtype=dtype)
        batch.reset(None, frames, seeds=list(range(B)))
        rows = [WorldModel(model, 1, dtype=dtype) for _ in range(B)]
        for i, e in enumerate(rows):
            e.reset(None, frames[i : i + 1], seeds=[i])
        for step, acts in enumerate(actions):
            if step == 2:  # a third of the rows start again: positions and windows differ across the batch
                batch.reset(list(range(0, B, 3)), frames[: len(range(0, B, 3)), :1], seeds=list(range(100, 100 + len(range(0, B, 3)))))
                for j, i in enumerate(range(0, B, 3)):
                    rows[i].reset(None, frames[j : j + 1, :1], seeds=[100 + j])
            if step == 3:  # every row at its own rotary position (only distances reach attention): > 16 distinct positions
                shift = torch.arange(B) * 37
                model.dynamics.rotate_window(batch.cache, torch.arange(B), shift)
                for i, e in enumerate(rows):
                    model.dynamics.rotate_window(e.cache, torch.tensor([0]), shift[i : i + 1])
            out = batch.step(acts)
            single = [e.step([a]) for e, a in zip(rows, acts)]
            lat = torch.cat([s.latents for s in single])
            term = torch.cat([s.termination for s in single])
            if tol is not None:
                assert (out.latents - lat).abs().max() <= tol and (out.termination - term).abs().max() <= tol
            else:  # bfloat16: one step from the same state, within the dtype's tolerance (test above); then in step again
                assert (out.latents - lat).abs().max() <= 0.05 * lat.abs().max()
                assert (out.termination - term).abs().max() <= 0.05
                for i, e in enumerate(rows):
                    e.set_state(None, batch.get_state([i]))

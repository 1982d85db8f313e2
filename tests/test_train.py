"""Trainer: configs are dataclass dumps, resume repeats an uninterrupted run exactly, self-forcing runs the engine's computation."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from worldgym.model import checkpoint
from worldgym.config_io import ConfigError, load_yaml
from worldgym.engine import WorldModel
from worldgym.training.losses import AutoencoderLoss, DecoderLoss, SelfForcingLoss
from worldgym.model.networks import Model
from worldgym.policies.builtin import StickyRandomPolicy
from worldgym.play.record import record
from worldgym.training import recipes
from worldgym.training.recipes import (
    cartpole_config,
    cartpole_fast_config,
    cartpole_fast_long_rollouts_config,
    cartpole_fast2_config,
    cartpole_fast2_decoder_config,
    cartpole_fast_decoder32_config,
    cartpole_fused_config,
    cartpole_long_rollouts_config,
    tiny_config,
)
from worldgym.training.averaging import WeightAverage
from worldgym.training.train import TrainConfig, dynamics_batch, Data, train
from worldgym.envs.twins import PixelTwin

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_configs_are_dumps_of_the_dataclasses():
    assert load_yaml(TrainConfig, CONFIGS / "cartpole.yaml") == cartpole_config()
    assert load_yaml(TrainConfig, CONFIGS / "cartpole_long_rollouts.yaml") == cartpole_long_rollouts_config()
    assert load_yaml(TrainConfig, CONFIGS / "cartpole_fused.yaml") == cartpole_fused_config()
    assert load_yaml(TrainConfig, CONFIGS / "cartpole_fast.yaml") == cartpole_fast_config()
    assert load_yaml(TrainConfig, CONFIGS / "cartpole_fast_long_rollouts.yaml") == cartpole_fast_long_rollouts_config()
    assert load_yaml(TrainConfig, CONFIGS / "cartpole_fast2.yaml") == cartpole_fast2_config()
    assert load_yaml(TrainConfig, CONFIGS / "cartpole_fast2_decoder.yaml") == cartpole_fast2_decoder_config()
    assert load_yaml(TrainConfig, CONFIGS / "cartpole_fast_decoder32.yaml") == cartpole_fast_decoder32_config()
    assert load_yaml(TrainConfig, CONFIGS / "cartpole_starts.yaml") == recipes.cartpole_starts_config()
    assert load_yaml(TrainConfig, CONFIGS / "cartpole_fast_starts.yaml") == recipes.cartpole_fast_starts_config()
    assert load_yaml(TrainConfig, CONFIGS / "cartpole_fast_state.yaml") == recipes.cartpole_fast_state_config()
    assert load_yaml(TrainConfig, CONFIGS / "cartpole_fast_state_starts.yaml") == recipes.cartpole_fast_state_starts_config()
    assert load_yaml(TrainConfig, CONFIGS / "cartpole16_state_starts.yaml") == recipes.cartpole16_state_starts_config()
    assert load_yaml(TrainConfig, CONFIGS / "cartpole_state_selfforce.yaml") == recipes.cartpole_state_selfforce_config()
    assert load_yaml(TrainConfig, CONFIGS / "cartpole_random_starts.yaml") == recipes.cartpole_random_starts_config()
    assert load_yaml(TrainConfig, CONFIGS / "cartpole_random_starts_decoder.yaml") == recipes.cartpole_random_starts_decoder_config()
    assert load_yaml(TrainConfig, CONFIGS / "cartpole16_random_starts.yaml") == recipes.cartpole16_random_starts_config()
    assert load_yaml(TrainConfig, CONFIGS / "cartpole16_random_starts_decoder.yaml") == recipes.cartpole16_random_starts_decoder_config()
    assert load_yaml(TrainConfig, CONFIGS / "cartpole16_past_end.yaml") == recipes.cartpole16_past_end_config()
    assert load_yaml(TrainConfig, CONFIGS / "tiny.yaml") == tiny_config()


def state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def losses(run: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [(r["stage"], r["step"], r["loss"]) for r in rows]


def test_resume_repeats_the_uninterrupted_run(data, tmp_path):
    cfg = tiny_config()
    whole = train(cfg, data, tmp_path / "whole")
    # the same run, interrupted twice (inside the autoencoder and inside dynamics), then resumed
    part = tmp_path / "part"
    train(cfg, data, part, stop_after=3)
    saved = checkpoint.load(part / "checkpoint")
    assert saved.extra == {"stage": "autoencoder", "step": 3, "data": str(data)}
    assert (part / "optimizer.safetensors").is_file()
    train(cfg, data, part, stop_after=3)
    assert checkpoint.load(part / "checkpoint").extra["stage"] == "dynamics"
    resumed = train(cfg, data, part)
    a, b = checkpoint.load(whole), checkpoint.load(resumed)
    for k, v in state(a).items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert losses(tmp_path / "whole") == losses(part)
    # the start bank holds real first frames, the latent statistics were measured
    assert b.start_frames.float().mean() > 100 and not torch.equal(b.autoencoder.latent_std, torch.ones_like(b.autoencoder.latent_std))


def test_self_forcing_ends_on_the_average_of_its_checkpoints_and_resumes_it(data, tmp_path):
    """sf_average_from: the stage ends on the float64 mean of its checkpoints' weights from that step; a resumed run ends the same."""
    base = train(tiny_config(), data, tmp_path / "base")
    cfg = dataclasses.replace(tiny_config(), sf_steps=6, ckpt_every=2, sf_average_from=4)
    plain = dataclasses.replace(cfg, sf_average_from=0)
    train(plain, data, tmp_path / "plain", init=base, init_stage="selfforce", stop_after=4)
    w4 = {k: v.clone() for k, v in checkpoint.load(tmp_path / "plain" / "checkpoint").dynamics.named_parameters()}
    w6 = dict(checkpoint.load(train(plain, data, tmp_path / "plain")).dynamics.named_parameters())
    whole = checkpoint.load(train(cfg, data, tmp_path / "whole", init=base, init_stage="selfforce"))
    train(cfg, data, tmp_path / "part", init=base, init_stage="selfforce", stop_after=5)  # killed between two checkpoints
    part = checkpoint.load(train(cfg, data, tmp_path / "part"))
    for k, p in whole.dynamics.named_parameters():
        assert torch.equal(p, ((w4[k].double() + w6[k].double()) / 2).float()), k
        assert torch.equal(p, dict(part.dynamics.named_parameters())[k]), k
    assert any(not torch.equal(w4[k], w6[k]) for k in w4)  # the two checkpoints differ: the mean is not either
    with pytest.raises(ValueError, match="sf_average_from must be at most sf_steps"):
        train(dataclasses.replace(cfg, sf_average_from=7), data, tmp_path / "bad", init=base, init_stage="selfforce")
    for key in ("sf_average_from", "sf_bptt_blocks"):
        with pytest.raises(ValueError, match=f"{key} must be >= 0"):
            train(dataclasses.replace(cfg, **{key: -1}), data, tmp_path / "bad", init=base, init_stage="selfforce")


def test_weight_average_adds_each_step_once(tmp_path):
    """A step already in the sum (a run killed after writing it, before its checkpoint) is not added again."""
    p = torch.nn.Parameter(torch.ones(3))
    avg = WeightAverage({"p": p}, tmp_path / "average.safetensors")
    assert avg.add(2) and not avg.add(2)
    with torch.no_grad():
        p.mul_(3)
    assert avg.add(4)
    avg.apply()
    assert torch.equal(p.detach(), torch.full((3,), 2.0)) and avg.count == 2


def briefly_trained(data: Path, name: str, patch: int = 1, residual: bool | str = False) -> tuple[TrainConfig, Model, Data, torch.Tensor]:
    """The tiny config (with dynamics tokens of patch x patch latent cells) after 2 dynamics steps (no self-forcing),
    its data and every frame's latents."""
    cfg = tiny_config()
    if patch != 1 or residual:
        dyn = dataclasses.replace(cfg.model.dynamics, patch=patch, residual=bool(residual), residual_base=residual or "copy")
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, dynamics=dyn))
    torch.manual_seed(0)
    model = checkpoint.load(train(dataclasses.replace(cfg, dyn_steps=2, sf_steps=0), data, Path(data).parent / name))
    d = Data(data, cfg.model.action)
    latents = torch.cat([model.autoencoder.encode(d.frames[i : i + 64]) for i in range(0, len(d.frames), 64)]).detach()
    return cfg, model, d, latents


@pytest.mark.parametrize("patch,residual", [(1, False), (2, False), (1, "copy"), (1, "velocity")])
def test_self_forcing_rollout_is_the_engine_rollout(data, patch, residual):
    """The self-forcing loss generates exactly the blocks WorldModel.step generates (same noise, same actions)."""
    cfg, model, d, latents = briefly_trained(data, f"sf{patch}{residual or ''}", patch, residual)
    g = torch.Generator().manual_seed(3)
    batch = dynamics_batch(d, latents, g, 2, 6, cfg)
    # the engine's noise: row i's generator seeded with i, one (N, C) draw per step
    N, C = cfg.model.autoencoder.tokens, cfg.model.autoencoder.latent_channels
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    noise = torch.stack([torch.stack([torch.randn(N, C, generator=gg) for _ in range(5)]) for gg in gens])  # (B, 5, N, C)
    batch["noise"] = torch.cat([torch.zeros(2, 1, N, C), noise], 1)
    loss_module = SelfForcingLoss(model, cfg)
    loss, _ = loss_module(batch, {"frames": 1.0})
    loss.backward()
    wm = WorldModel(model, batch_size=2)
    idx, _ = d.sequences(torch.Generator().manual_seed(3), 2, 6)
    wm.reset(None, d.frames[idx[:, :1]], seeds=[0, 1])
    steps = [wm.step(batch["actions"][:, t, 0].tolist()).latents for t in range(1, 6)]
    torch.testing.assert_close(loss_module.last_rollout, torch.stack(steps, 1), atol=1e-5, rtol=1e-5)
    assert all(p.grad is not None for p in model.dynamics.parameters())


def test_self_forcing_prefix_commits_real_frames_then_generates_like_a_reset_with_that_context(data):
    """A rollout with prefix k commits k real frames (as reset with k context frames and their actions does),
    then generates the blocks the engine generates from that context; only generated blocks are scored."""
    cfg, model, d, latents = briefly_trained(data, "prefix")
    cfg = dataclasses.replace(cfg, sf_context_max=3, sf_start_share=0.5)
    g = torch.Generator().manual_seed(11)
    batch = dynamics_batch(d, latents, g, 8, 6, cfg, selfforce=True)
    idx, _ = d.sequences(torch.Generator().manual_seed(11), 8, 6, 0.5)
    at_start = d.first[idx[:, 0]]
    assert at_start.any() and (~at_start).any(), "the draw should hold rollouts at and after episode starts"
    assert torch.equal(batch["prefix"][at_start], torch.ones(int(at_start.sum()), dtype=torch.long))
    inside = batch["prefix"][~at_start]
    assert inside.min() >= 2 and inside.max() <= 3
    batch["valid"][:] = True
    N, C = cfg.model.autoencoder.tokens, cfg.model.autoencoder.latent_channels
    batch["prefix"] = torch.tensor([1, 3, 2, 1, 3, 2, 1, 3])
    for row in range(8):  # row r's noise after its prefix: the draws of an engine row seeded with r
        k, gen = int(batch["prefix"][row]), torch.Generator().manual_seed(row)
        batch["noise"][row, k:] = torch.stack([torch.randn(N, C, generator=gen) for _ in range(k, 6)])
    module = SelfForcingLoss(model, cfg)
    module(batch, {"frames": 1.0})
    for row in (1, 2):
        k = int(batch["prefix"][row])
        # inside the prefix the committed blocks are the real latents
        torch.testing.assert_close(module.last_rollout[row, : k - 1], batch["latents"][row, 1:k])
        wm = WorldModel(model, batch_size=1)
        actions = batch["actions"][row, :k, 0].tolist()
        wm.reset(None, d.frames[idx[row : row + 1, :k]], actions=[actions], seeds=[row])
        steps = [wm.step([int(batch["actions"][row, t, 0])]).latents[0] for t in range(k, 6)]
        torch.testing.assert_close(module.last_rollout[row, k - 1 :], torch.stack(steps), atol=1e-5, rtol=1e-5)


def test_decoder_stage_fits_the_decoder_to_rollout_latents_and_touches_nothing_else(data, tmp_path):
    """The decoder stage trains only the decoder, against the true frames of the rollout's steps."""
    cfg, model, d, latents = briefly_trained(data, "dec")
    batch = dynamics_batch(d, latents, torch.Generator().manual_seed(2), 4, 5, cfg, selfforce=True)
    frames = d.frames[batch["index"]]
    module = DecoderLoss(model, cfg)
    opt = torch.optim.Adam(model.autoencoder.decoder.parameters(), lr=3e-3)
    before = state(model)
    first = float(module(batch, frames, 1.0).detach())
    for _ in range(10):
        opt.zero_grad()
        module(batch, frames, 1.0).backward()
        opt.step()
    assert float(module(batch, frames, 1.0).detach()) < 0.8 * first
    # each block is scored against the true frame of its own step: with every block real (prefix = T) the
    # loss is the autoencoder's reconstruction error of those frames
    real = dict(batch, prefix=torch.full_like(batch["prefix"], 5))
    keep = batch["valid"][:, 1:].reshape(-1)
    expected = AutoencoderLoss(model, cfg.ae_foreground_weight, cfg.ae_foreground_both)(frames[:, 1:].flatten(0, 1)[keep], 1.0)
    torch.testing.assert_close(module(real, frames, 1.0), expected, rtol=1e-4, atol=1e-3)
    after = model.state_dict()
    changed = {k for k, v in before.items() if not torch.equal(v, after[k])}
    assert changed and all(k.startswith("autoencoder.decoder.") for k in changed)
    # through `train`: the stage runs after self-forcing from --init and is logged
    init = checkpoint.load(Path(data).parent / "dec" / "model")
    tuned = checkpoint.load(train(dataclasses.replace(cfg, dec_steps=2), data, tmp_path / "tuned", init=Path(data).parent / "dec" / "model", init_stage="decoder"))
    assert {s for s, _, _ in losses(tmp_path / "tuned")} == {"decoder"}
    same = [torch.equal(v, tuned.state_dict()[k]) for k, v in init.state_dict().items() if not k.startswith("autoencoder.decoder.")]
    assert all(same)
    assert not all(torch.equal(v, tuned.autoencoder.decoder.state_dict()[k]) for k, v in init.autoencoder.decoder.state_dict().items())


def test_decoder_stage_real_weight_adds_the_autoencoder_floor_of_the_same_frames(data):
    """dec_real_weight w: the loss is the rollout term plus w times the true frames' encode -> decode error."""
    cfg, model, d, latents = briefly_trained(data, "dec")
    batch = dynamics_batch(d, latents, torch.Generator().manual_seed(3), 4, 5, cfg, selfforce=True)
    frames = d.frames[batch["index"]]
    keep = batch["valid"][:, 1:].reshape(-1)
    floor = AutoencoderLoss(model, cfg.ae_foreground_weight, cfg.ae_foreground_both)(frames[:, 1:].flatten(0, 1)[keep], 1.0)
    plain = DecoderLoss(model, cfg)(batch, frames, 1.0)
    mixed = DecoderLoss(model, dataclasses.replace(cfg, dec_real_weight=2.5))(batch, frames, 1.0)
    assert float(floor.detach()) > 0
    torch.testing.assert_close(mixed, plain + 2.5 * floor, rtol=1e-4, atol=1e-3)
    # the second term trains the decoder only: the encoder it reads is frozen
    model.zero_grad()
    DecoderLoss(model, dataclasses.replace(cfg, dec_real_weight=1.0))(batch, frames, 1.0).backward()
    assert all(p.grad is None for p in model.autoencoder.encoder.parameters())
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.autoencoder.decoder.parameters())


def test_bptt_rollout_equals_detached_rollout_and_reaches_earlier_blocks(data):
    """sf_bptt generates the same blocks as the detached rollout, and its loss reaches the blocks before the last."""
    cfg, model, d, latents = briefly_trained(data, "bptt")
    batch = dynamics_batch(d, latents, torch.Generator().manual_seed(5), 2, 6, cfg)
    batch["valid"][:] = True
    batch["latents"] = batch["latents"].clone().requires_grad_(True)
    rollouts, start_grads = [], []
    for bptt in (False, True):
        module = SelfForcingLoss(model, dataclasses.replace(cfg, sf_bptt=bptt))
        batch["latents"].grad = None
        loss, _ = module(batch, {"frames": 1.0})
        loss.backward()
        rollouts.append(module.last_rollout)
        start_grads.append(batch["latents"].grad[:, 0].abs().sum())
    torch.testing.assert_close(rollouts[0], rollouts[1], atol=1e-6, rtol=1e-6)
    # the start frame only enters through the cache: detached, its gradient is zero; through the rollout it is not
    assert start_grads[0] == 0 and start_grads[1] > 0


def test_truncated_bptt_cuts_the_rollout_graph_and_keeps_its_blocks(data):
    """sf_bptt_blocks cuts the graph every n blocks: the same rollout, and losses past a cut no longer reach the start frame."""
    cfg, model, d, latents = briefly_trained(data, "bptt")
    batch = dynamics_batch(d, latents, torch.Generator().manual_seed(5), 2, 6, cfg)
    batch["valid"][:] = True
    batch["valid"][:, 1:3] = False  # losses on blocks 3..5 only: past the cut at block 2
    batch["prefix"][:] = 1  # every row generates blocks 1..5 from the start frame alone
    batch["latents"] = batch["latents"].clone().requires_grad_(True)
    rollouts, grads = [], []
    for n in (0, 2):
        module = SelfForcingLoss(model, dataclasses.replace(cfg, sf_bptt=True, sf_bptt_blocks=n))
        batch["latents"].grad = None
        loss, _ = module(batch, {"frames": 1.0})
        loss.backward()
        rollouts.append(module.last_rollout)
        grads.append(batch["latents"].grad.abs().sum(dim=(2, 3)))  # (B, T)
    torch.testing.assert_close(rollouts[0], rollouts[1], atol=1e-6, rtol=1e-6)
    assert (grads[0][:, 0] > 0).all() and (grads[1][:, 0] == 0).all()  # cut at block 2: blocks 3..5's losses stop there
    assert (grads[1][:, 3:] > 0).all()  # their real targets still get gradients: the losses ran


def test_init_starts_a_stage_from_a_models_weights_on_several_datasets(data, tmp_path):
    """--init skips the earlier stages, keeps their weights; --data takes several folders; bad init is refused."""
    cfg = tiny_config()
    base = checkpoint.load(train(cfg, data, tmp_path / "base"))
    more = tmp_path / "more"
    env = PixelTwin("CartPole", height=32, width=32)
    record(env, StickyRandomPolicy(env.action_space), more, episodes=3, seed=50, max_steps=10)
    both = Data([data, more], cfg.model.action, weight_power=0.0)
    assert both.episodes == 9 and torch.equal(both.weights, torch.ones(9, dtype=torch.float64))
    tuned = checkpoint.load(train(cfg, [data, more], tmp_path / "tuned", init=tmp_path / "base" / "model", init_stage="selfforce"))
    assert {s for s, _, _ in losses(tmp_path / "tuned")} == {"selfforce"}
    for k, v in base.autoencoder.state_dict().items():
        assert torch.equal(v, tuned.autoencoder.state_dict()[k]), k
    assert any(not torch.equal(v, tuned.dynamics.state_dict()[k]) for k, v in base.dynamics.state_dict().items())
    other = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, name="Other"))
    with pytest.raises(ValueError, match="different model config"):  # past the dynamics stage the whole config must match
        train(other, data, tmp_path / "bad", init=tmp_path / "base" / "model", init_stage="selfforce")
    wider = dataclasses.replace(cfg.model.autoencoder, latent_channels=cfg.model.autoencoder.latent_channels + 1)
    with pytest.raises(ValueError, match="different model config"):  # another autoencoder: nothing to start from
        train(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, autoencoder=wider)), data, tmp_path / "bad2", init=tmp_path / "base" / "model")


def test_foreground_weight_on_both_counts_a_pole_drawn_in_the_wrong_place():
    """ae_foreground_both weights pixels the reconstruction draws dark where the target is white."""

    model = Model(tiny_config().model)
    frames = torch.full((2, 32, 32, 3), 255, dtype=torch.uint8)  # all background
    frames[:, 10:20, 5] = 0  # a thin dark line: foreground of the target
    with torch.no_grad():
        model.autoencoder.decoder.net[-1].bias.fill_(-1.0)  # the reconstruction is dark everywhere
    target_only, both = AutoencoderLoss(model, 20.0)(frames, 1.0), AutoencoderLoss(model, 20.0, both=True)(frames, 1.0)
    assert both > 10 * target_only


def test_energy_score_rolls_each_context_out_twice_and_scores_the_pair(data):
    """sf_loss="energy": rows 0..B-1 are the mse rollout itself, rows B..2B-1 the same contexts from another
    row's noise; the loss is the energy score of the pairs; and unlike the mse loss it rewards two different
    futures over two copies of their mean."""
    cfg, model, d, latents = briefly_trained(data, "energy")
    batch = dynamics_batch(d, latents, torch.Generator().manual_seed(5), 3, 5, cfg)
    batch["valid"][:] = True
    mse_module = SelfForcingLoss(model, cfg)
    mse_module(batch, {"frames": 1.0})
    module = SelfForcingLoss(model, dataclasses.replace(cfg, sf_loss="energy"))
    loss, parts = module(batch, {"frames": 1.0})
    rolled = SelfForcingLoss(model, cfg)
    rolled({**batch, "noise": torch.roll(batch["noise"], 1, 0)}, {"frames": 1.0})
    torch.testing.assert_close(module.last_rollout[:3], mse_module.last_rollout, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(module.last_rollout[3:], rolled.last_rollout, atol=1e-6, rtol=1e-6)
    a, b, y = module.last_rollout[:3], module.last_rollout[3:], batch["latents"][:, 1:]
    rms = lambda t: (t.pow(2).mean(dim=(2, 3)) + 1e-8).sqrt()  # noqa: E731  (B, T-1)
    expected = (rms(a - y) + rms(b - y) - rms(a - b)).sum()
    torch.testing.assert_close(parts["energy_score"], expected, atol=1e-5, rtol=1e-5)
    # a proper score: for a target that is y1 or y2 with equal odds, the pair (y1, y2) scores better than (m, m), m the mean
    y1, y2 = torch.zeros(1, 4, 4), torch.ones(1, 4, 4)
    m = (y1 + y2) / 2
    score = lambda p, q, t: (rms((p - t)[None]) + rms((q - t)[None]) - rms((p - q)[None])).sum()  # noqa: E731
    assert (score(y1, y2, y1) + score(y1, y2, y2)) < (score(m, m, y1) + score(m, m, y2))
    with pytest.raises(ValueError, match="sf_loss must be"):
        SelfForcingLoss(model, dataclasses.replace(cfg, sf_loss="l1"))


def test_fused_model_trains_and_heads_stage_fits_only_denoise_heads(data, tmp_path):
    """A fused-commit model trains from scratch (both losses read denoise_heads), and the heads stage,
    started from a model without them, fits denoise_heads alone (from copies of the commit heads)."""
    import dataclasses

    from worldgym.engine import WorldModel

    cfg = tiny_config()
    plain = checkpoint.load(train(cfg, data, tmp_path / "plain"))
    fused_model = dataclasses.replace(cfg.model, dynamics=dataclasses.replace(cfg.model.dynamics, fused_commit=True))
    fused_cfg = dataclasses.replace(cfg, model=fused_model, heads_steps=3, heads_batch=4)
    scratch_run = checkpoint.load(train(fused_cfg, data, tmp_path / "scratch"))
    assert scratch_run.config.dynamics.fused_commit
    rows = [json.loads(line) for line in (tmp_path / "scratch" / "log.jsonl").read_text().splitlines()]
    assert {"denoise_term_bce"} <= set(next(r for r in rows if r["stage"] == "dynamics")) and rows[-1]["stage"] == "heads"
    heads_run = checkpoint.load(train(fused_cfg, data, tmp_path / "heads", init=tmp_path / "plain" / "model", init_stage="heads"))
    before, after = state(plain), state(heads_run)
    for name, value in before.items():
        assert torch.equal(after[name], value), f"{name} changed in the heads stage"
    changed = [n for n in after if n.startswith("dynamics.denoise_heads.") and not torch.equal(after[n], before[n.replace("denoise_heads", "heads")])]
    assert changed, "the heads stage did not move denoise_heads away from the commit heads"
    engine = WorldModel(heads_run, 2)
    engine.reset(None, heads_run.start_frames[:2], seeds=[0, 1])
    out = engine.step([0, 1])
    assert out.termination.shape == (2,) and engine.fused
    with pytest.raises(ValueError, match="fused_commit"):
        train(dataclasses.replace(cfg, heads_steps=2), data, tmp_path / "bad")


def test_heads_stage_with_commit_target_fits_only_the_commit_heads(data, tmp_path):
    """``heads_target: commit`` refits the heads an env observing features reads (the loop's dream) on
    self-forced rollouts, also on a model without a fused commit; everything else stays as it was."""
    import dataclasses

    cfg = tiny_config()
    plain = checkpoint.load(train(cfg, data, tmp_path / "plain"))
    refit = checkpoint.load(train(dataclasses.replace(cfg, heads_steps=3, heads_batch=4, heads_target="commit"), data, tmp_path / "commit",
                                  init=tmp_path / "plain" / "model", init_stage="heads"))  # fmt: skip
    before, after = state(plain), state(refit)
    moved = sorted(n for n in before if not torch.equal(after[n], before[n]))
    assert moved and all(n.startswith("dynamics.heads.") for n in moved), moved
    with pytest.raises(ConfigError, match="heads_target must be 'denoise' or 'commit', got 'both'"):
        train(dataclasses.replace(cfg, heads_target="both"), data, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_init_at_dynamics_keeps_the_autoencoder_and_trains_a_new_dynamics_of_another_shape(data, tmp_path):
    """--init-stage dynamics from a model whose dynamics differ (here patch 2): its autoencoder, latent statistics
    and start bank carry over unchanged, the new dynamics trains from scratch; other config changes stay refused."""
    cfg = tiny_config()
    base = checkpoint.load(train(cfg, data, tmp_path / "base"))
    patched_model = dataclasses.replace(cfg.model, dynamics=dataclasses.replace(cfg.model.dynamics, patch=2))
    run = tmp_path / "patched"
    patched = checkpoint.load(train(dataclasses.replace(cfg, model=patched_model), data, run, init=tmp_path / "base" / "model"))
    assert {s for s, _, _ in losses(run)} >= {"dynamics", "selfforce"} and "autoencoder" not in {s for s, _, _ in losses(run)}
    assert patched.dynamics.tokens * 4 == base.dynamics.tokens
    for k, v in base.state_dict().items():
        if k.startswith("autoencoder.encoder.") or not k.startswith(("autoencoder.", "dynamics.")):
            assert torch.equal(v, patched.state_dict()[k]), k
    engine = WorldModel(patched, 2)
    engine.reset(None, patched.start_frames[:2], seeds=[0, 1])
    assert engine.step([0, 1]).frames.shape == (2, 32, 32, 3)
    with pytest.raises(ValueError, match="different model config"):  # a different dynamics needs the dynamics stage
        train(dataclasses.replace(cfg, model=patched_model), data, tmp_path / "bad", init=tmp_path / "base" / "model", init_stage="selfforce")


def test_init_at_decoder_keeps_everything_but_the_decoder_and_trains_a_narrower_one(data, tmp_path):
    """--init-stage decoder from a model whose decoder widths differ: encoder, latent statistics, dynamics and heads
    carry over bit-identical, the new decoder trains from scratch; a decoder change at another stage is refused."""
    cfg = dataclasses.replace(tiny_config(), dec_steps=2, dec_batch=2, dec_blocks=3)
    base = checkpoint.load(train(cfg, data, tmp_path / "base"))
    ae = dataclasses.replace(cfg.model.autoencoder, decoder_widths=[4, 4, 4])
    narrow_model = dataclasses.replace(cfg.model, autoencoder=ae)
    run = tmp_path / "narrow"
    narrow = checkpoint.load(train(dataclasses.replace(cfg, model=narrow_model), data, run, init=tmp_path / "base" / "model", init_stage="decoder"))
    assert {s for s, _, _ in losses(run)} == {"decoder"}
    for k, v in base.state_dict().items():
        if not k.startswith("autoencoder.decoder."):
            assert torch.equal(v, narrow.state_dict()[k]), k
    assert narrow.autoencoder.decoder.net[0].out_channels == 4 and base.autoencoder.decoder.net[0].out_channels == 8
    engine = WorldModel(narrow, 2)
    engine.reset(None, narrow.start_frames[:2], seeds=[0, 1])
    assert engine.step([0, 1]).frames.shape == (2, 32, 32, 3)
    with pytest.raises(ValueError, match="decoder_widths"):  # a different decoder needs the decoder stage
        train(dataclasses.replace(cfg, model=narrow_model), data, tmp_path / "bad", init=tmp_path / "base" / "model", init_stage="selfforce")


@pytest.mark.parametrize("bptt", [False, True])
@pytest.mark.parametrize("residual", [False, "copy", "velocity"])
def test_self_forcing_backward_under_bfloat16_autocast(bptt, residual):
    """The self-forcing loss back-propagates under the bf16 autocast `bf16: true` recipes train in (no autograd
    error from an in-place write into a tensor the backward pass needs), with finite gradients on the dynamics."""
    from conftest import tiny_model

    from worldgym.training.train import autocast

    model = tiny_model(fused=True, residual=residual)
    cfg = TrainConfig(model=model.config, sf_bptt=bptt, bf16=True)
    g = torch.Generator().manual_seed(0)
    B, T, N, C = 2, 5, model.config.autoencoder.tokens, model.config.autoencoder.latent_channels
    batch = {
        "latents": torch.randn(B, T, N, C, generator=g), "valid": torch.ones(B, T, dtype=torch.bool),
        "actions": torch.randint(0, 3, (B, T, 1), generator=g), "null": torch.zeros(B, T, dtype=torch.bool),
        "rewards": torch.zeros(B, T), "terms": torch.zeros(B, T), "noise": torch.randn(B, T, N, C, generator=g),
        "prefix": torch.tensor([1, 3]),
    }  # fmt: skip
    with autocast(True):
        loss, _ = SelfForcingLoss(model, cfg)(batch, {"frames": 1.0})
    loss.backward()
    grads = [p.grad for p in model.dynamics.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(gr).all() for gr in grads)

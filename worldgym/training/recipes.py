"""The training recipes of the shipped models (and of the experiments BENCHMARKS.md cites): `TrainConfig` values, dumped to ``configs/<name>.yaml``.

    python -m worldgym.training.recipes      # rewrite every configs/<name>.yaml below

`worldgym train` reads the YAML files; tests check that each file is a plain dump of its function.
`data_recipe` is the recipe ``worldgym train --data D`` picks without a config: sized to the
data's frames and actions.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import gymnasium as gym
import numpy as np

from worldgym.model.actions import ActionConfig
from worldgym.model.autoencoder import AutoencoderConfig
from worldgym.config_io import ConfigError, dump_yaml
from worldgym.data.dataset import load as load_dataset
from worldgym.model.dynamics import DynamicsConfig
from worldgym.model.networks import WorldModelConfig
from worldgym.model.sampler import SamplerConfig
from worldgym.training.data import TrainConfig


def cartpole_config() -> TrainConfig:
    """The recipe of the shipped ``worldgym/CartPole-v0`` (dumped to configs/cartpole.yaml), one run from scratch.

    On the three CartPole recordings of the model card: an autoencoder that weights the pixels
    that are foreground in the target *or* in its reconstruction (so it learns to draw leaning
    poles); teacher forcing; self-forcing through the rollout (``sf_bptt``) from 2-4 real
    frames inside episodes or from the first frame at episode starts; then the decoder fit to
    the rollouts' latents. Episodes are drawn with weight sqrt(T+1) so the short falls and
    terminations are not drowned out by the 500-step balancing runs.
    """
    return TrainConfig(
        model=WorldModelConfig(
            name="CartPole",
            autoencoder=AutoencoderConfig(frame_height=64, frame_width=64, latent_channels=16, widths=[16, 32, 64, 64], decoder_shuffle=3),
            dynamics=DynamicsConfig(dim=128, depth=4, heads=4, sink=1, window=8, train_frames=24),
            action=ActionConfig(kind="discrete", n=2),
            sampler=SamplerConfig(steps=1),
            context_frames=1,
            start_bank=16,
            fps=50,
            real_twin="CartPole",
            reward_range=[0.0, 1.0],
        ),
        threads=1,  # on a shared 2-core machine 1 thread was 2-10x faster than 2 (OpenMP barrier spinning)
        bf16=False,  # measured slower than fp32 on this machine (conv autoencoder: 2.5x slower)
        ae_steps=3000,
        ae_batch=16,
        ae_foreground_both=True,
        dyn_steps=700,
        dyn_batch=8,
        seq_frames=12,
        episode_weight_power=0.5,
        sf_steps=900,
        sf_batch=8,
        sf_blocks=16,
        sf_bptt=True,
        sf_context_max=4,
        sf_start_share=0.25,
        dec_steps=600,
        dec_batch=8,
        dec_blocks=8,
        warmup=20,
        log_every=10,
        ckpt_every=50,
    )


def cartpole_long_rollouts_config() -> TrainConfig:
    """Second run of the shipped recipe (dumped to configs/cartpole_long_rollouts.yaml), started from the first run's model.

    ``worldgym train configs/cartpole_long_rollouts.yaml --init <first run>/model --init-stage selfforce``:
    600 more self-forcing steps with rollouts of 32 blocks (twice as long, so they cover
    whole falling episodes), half of them from the episode's first frame as ``reset`` does,
    at half the learning rate; then the decoder refit to the new rollouts (300 steps).
    """
    return dataclasses.replace(
        cartpole_config(), sf_steps=600, sf_lr=1.5e-4, sf_blocks=32, sf_start_share=0.5, dec_steps=300
    )


def cartpole_fused_config() -> TrainConfig:
    """Third run of the shipped recipe (dumped to configs/cartpole_fused.yaml): the fused-commit engine.

    ``worldgym train configs/cartpole_fused.yaml --init <second run>/model --init-stage heads``:
    the same model with ``fused_commit``; only its ``denoise_heads`` are fitted (started from the
    commit heads), on detached self-forcing rollouts of 32 blocks, half from episode starts.
    """
    base = cartpole_long_rollouts_config()
    model = dataclasses.replace(base.model, dynamics=dataclasses.replace(base.model.dynamics, fused_commit=True))
    return dataclasses.replace(base, model=model, heads_steps=300, heads_batch=16, heads_lr=1e-3)


def cartpole_fast_config() -> TrainConfig:
    """First run of ``worldgym/CartPoleFast-v0`` (dumped to configs/cartpole_fast.yaml): the shipped
    CartPole's autoencoder, a new dynamics that reads 2x2 latent cells per token (4 tokens a frame
    instead of 16) and commits fused from the start.

    ``worldgym train configs/cartpole_fast.yaml --init assets/models/cartpole --init-stage dynamics``:
    the shipped recipe's teacher forcing, self-forcing (16 blocks) and decoder stages on the
    same three recordings, the autoencoder kept as it is (same latents, same frames).
    """
    base = cartpole_config()
    dynamics = dataclasses.replace(base.model.dynamics, patch=2, fused_commit=True)
    return dataclasses.replace(base, model=dataclasses.replace(base.model, name="CartPoleFast", dynamics=dynamics))


def cartpole_fast_long_rollouts_config() -> TrainConfig:
    """Second run of ``worldgym/CartPoleFast-v0`` (configs/cartpole_fast_long_rollouts.yaml), as the shipped
    CartPole's second and third runs in one: 32-block self-forcing at half the learning rate, the
    decoder refit, then ``denoise_heads`` fitted on 32-block rollouts.

    ``worldgym train configs/cartpole_fast_long_rollouts.yaml --init <first run>/model --init-stage selfforce``.
    """
    base = cartpole_long_rollouts_config()
    fast = cartpole_fast_config().model
    return dataclasses.replace(base, model=fast, heads_steps=300, heads_batch=16, heads_lr=1e-3)


def cartpole_fast2_config() -> TrainConfig:
    """An experiment, not shipped (BENCHMARKS.md, session 8; dumped to configs/cartpole_fast2.yaml): ``worldgym/CartPoleFast-v0``
    trained on, 8.6x longer teacher forcing (6,000 steps of 16 sequences instead of
    700 of 8) and 24-block self-forcing, on the three recordings plus four recordings of policy
    and sustained-push episodes (the states a dream-trained policy visits), then the decoder
    refit and the heads fitted.

    ``worldgym train configs/cartpole_fast2.yaml --init <the first CartPoleFast> --init-stage dynamics``
    (same config, so every weight carries over and training continues).
    """
    return dataclasses.replace(
        cartpole_fast_config(), dyn_steps=6000, dyn_batch=16, dyn_lr=5e-4, sf_steps=1500, sf_lr=2e-4, sf_blocks=24,
        dec_steps=300, heads_steps=300, heads_batch=16, heads_lr=1e-3, log_every=20, ckpt_every=200,
    )  # fmt: skip


def cartpole_fast2_decoder_config() -> TrainConfig:
    """The experiment's second run, not shipped (configs/cartpole_fast2_decoder.yaml): a decoder of width 32 instead
    of 64 (``decoder_widths``), trained from scratch on the first run's rollouts, 6,000 steps.

    ``worldgym train configs/cartpole_fast2_decoder.yaml --init <first run>/model --init-stage decoder``:
    everything but the decoder is kept bit-identical; the decoder's 3x3 convolutions, the largest
    cost of a batched step after the transformer, run at half the width.
    """
    base = cartpole_fast2_config()
    ae = dataclasses.replace(base.model.autoencoder, decoder_widths=[32, 32, 32, 16])
    return dataclasses.replace(base, model=dataclasses.replace(base.model, autoencoder=ae), dec_steps=6000, dec_lr=2e-3, heads_steps=0)


def cartpole_fast_decoder32_config() -> TrainConfig:
    """A width-32 decoder for ``worldgym/CartPoleFast-v0`` (configs/cartpole_fast_decoder32.yaml): its first
    run's recipe with a new decoder (``decoder_widths`` 32 instead of 64) trained from scratch for 6,000
    steps, with the true frames' encoder latents in the loss (``dec_real_weight``) so that it keeps the
    autoencoder floor the width-64 one had.

    ``worldgym train configs/cartpole_fast_decoder32.yaml --init assets/models/cartpolefast --init-stage decoder``
    on the three recordings: everything but the decoder is kept bit-identical.
    """
    base = cartpole_fast_config()
    ae = dataclasses.replace(base.model.autoencoder, decoder_widths=[32, 32, 32, 16])
    return dataclasses.replace(
        base, model=dataclasses.replace(base.model, autoencoder=ae), dec_steps=6000, dec_lr=2e-3, dec_real_weight=1.0,
        log_every=20, ckpt_every=200,
    )  # fmt: skip


def cartpole_starts_config() -> TrainConfig:
    """Fourth run of ``worldgym/CartPole-v0`` (configs/cartpole_starts.yaml): starts from real context.

    ``worldgym train configs/cartpole_starts.yaml --init assets/models/cartpole --init-stage selfforce``:
    self-forcing through 32-block rollouts in which half of the rollouts start at an episode's
    first frame and commit its first 1-8 real frames with the actions that led to them (as
    ``reset(options={"frames", "actions"})`` gives them; before, such rollouts committed one
    frame only; the draw is uniform over 1-8, ``sf_start_single_share: null``), the rest commit
    2-8 real frames inside episodes; every weight of the dynamics and both head pairs train. The
    autoencoder is kept (no decoder or heads stage).
    """
    return dataclasses.replace(
        cartpole_fused_config(), sf_steps=300, sf_lr=1e-4, sf_context_max=8, sf_start_context_max=8, sf_start_single_share=None,
        warmup=10, dec_steps=0, heads_steps=0,
    )  # fmt: skip


def cartpole_fast_starts_config() -> TrainConfig:
    """Third run of ``worldgym/CartPoleFast-v0`` (configs/cartpole_fast_starts.yaml): `cartpole_starts_config` for it,
    with half of the episode-start rollouts committing one frame only (the other half 2-8), then ``denoise_heads``
    refitted on detached rollouts with the same starts (300 steps, as in its second run).

    ``worldgym train configs/cartpole_fast_starts.yaml --init assets/models/cartpolefast --init-stage selfforce``.
    """
    return dataclasses.replace(
        cartpole_starts_config(), model=cartpole_fast_long_rollouts_config().model, sf_start_single_share=0.5, heads_steps=300
    )


def cartpole_fast_state_config() -> TrainConfig:
    """`worldgym/CartPole-v0` refitted with the state-probe loss (configs/cartpole_fast_state.yaml; measured, not shipped).

    ``worldgym train configs/cartpole_fast_state.yaml --init assets/models/cartpole --init-stage dynamics``:
    2,000 teacher-forcing steps (AdamW 3e-4) with ``state_weight: 3`` (`worldgym.training.probe`), then
    `cartpole_fast_starts_config`'s 300 self-forcing steps from real starts and 300 heads steps.
    """
    return dataclasses.replace(cartpole_fast_starts_config(), dyn_steps=2000, dyn_lr=3e-4, state_weight=3.0, state_probe_steps=2000)


def cartpole_fast_state_starts_config() -> TrainConfig:
    """Self-forcing from real starts with the state-probe loss, four times longer (configs/cartpole_fast_state_starts.yaml).

    ``worldgym train configs/cartpole_fast_state_starts.yaml --init RUN/model --init-stage selfforce`` after
    `cartpole_fast_state_config`: 1,200 self-forcing steps through 32-block rollouts with ``state_weight: 3``
    (half from an episode's first 1-8 real frames), 300 heads steps. BENCHMARKS.md, "Starts: the 50 Hz
    models lose their motion".
    """
    return dataclasses.replace(cartpole_fast_state_config(), sf_steps=1200)


def cartpole16_state_starts_config() -> TrainConfig:
    """`worldgym/CartPole16-v0` refitted by self-forcing from real starts with the state-probe loss (configs/cartpole16_state_starts.yaml; measured, not shipped).

    ``worldgym train configs/cartpole16_state_starts.yaml --init assets/models/cartpole16 --init-stage selfforce``:
    1,200 self-forcing steps through 32-block rollouts (AdamW 1e-4) with ``state_weight: 10``, half of them from
    an episode's first 1-8 real frames (half of those one frame), then 300 heads steps. BENCHMARKS.md, "Starts:
    the 50 Hz models lose their motion". (``dyn_steps`` and ``dyn_lr`` are not run from ``--init-stage selfforce``.)
    """
    model = dataclasses.replace(cartpole_starts_config().model, name="CartPole16")
    return dataclasses.replace(
        cartpole_starts_config(), model=model, dyn_steps=2000, dyn_lr=3e-4, state_weight=10.0, state_probe_steps=2000, sf_steps=1200,
        heads_steps=300, sf_start_single_share=0.5,
    )  # fmt: skip


def cartpole_state_selfforce_config() -> TrainConfig:
    """`cartpole16_state_starts_config` for `worldgym/CartPole-v0`'s 4 tokens (configs/cartpole_state_selfforce.yaml).

    ``worldgym train configs/cartpole_state_selfforce.yaml --init RUN_THREE --init-stage selfforce`` (the CartPole-v0
    weights shipped before 2026-12-05, in git at ``71a3717``) on the three 50 Hz recordings: 1,200 self-forcing steps with ``state_weight: 10``, half from real starts, then 300
    heads steps. The first of the three runs behind the shipped weights (the model card).
    """
    base = cartpole16_state_starts_config()
    model = dataclasses.replace(base.model, name="CartPole", dynamics=dataclasses.replace(base.model.dynamics, patch=2))
    return dataclasses.replace(base, model=model)


def random_starts(base: TrainConfig) -> TrainConfig:
    """Self-forcing from the first 1-8 real frames of random-action episodes only, ending on the checkpoint average.

    Every rollout starts at an episode's first frame (``sf_start_share: 1``), on random-action recordings (the
    data the starts protocol replays), and the stage ends on the mean of its checkpoints from step 600
    (``sf_average_from``); then 300 heads steps. BENCHMARKS.md, "Starts: random starts and averaged weights reach 94 %".
    """
    return dataclasses.replace(base, sf_start_share=1.0, sf_average_from=600)


def decoder_refit(base: TrainConfig) -> TrainConfig:
    """The decoder stage alone (600 steps) on the rollouts of ``base``'s model, half of them from episode starts."""
    return dataclasses.replace(base, sf_start_share=0.5, dec_steps=600, heads_steps=0)


def cartpole_random_starts_config() -> TrainConfig:
    """`random_starts` of `cartpole_state_selfforce_config` (configs/cartpole_random_starts.yaml): the shipped CartPole-v0's second run."""
    return random_starts(cartpole_state_selfforce_config())


def cartpole_random_starts_decoder_config() -> TrainConfig:
    """`decoder_refit` after `cartpole_random_starts_config` (configs/cartpole_random_starts_decoder.yaml): its third run."""
    return decoder_refit(cartpole_random_starts_config())


def cartpole16_random_starts_config() -> TrainConfig:
    """`random_starts` of `cartpole16_state_starts_config` (configs/cartpole16_random_starts.yaml): the shipped CartPole16-v0's second run."""
    return random_starts(cartpole16_state_starts_config())


def past_end(base: TrainConfig) -> TrainConfig:
    """``base`` for recordings with steps past each end (``worldgym record --past-end 8``): the termination loss unweighted.

    Past-end frames make about a third of the frames of a random-action recording terminal, so the
    positives need no up-weighting (``term_pos_weight: 1``). Run it on every recording of the model,
    the balancing controller's long episodes included: self-forcing on random-action episodes alone
    fits the starts and forgets the balanced regime, where its head then fires on upright poles;
    only both together kept it quiet (BENCHMARKS.md, "Starts: frames past the end").
    """
    return dataclasses.replace(base, term_pos_weight=1.0)


def cartpole16_past_end_config() -> TrainConfig:
    """`past_end` of `cartpole16_random_starts_config` (configs/cartpole16_past_end.yaml): CartPole16-v0's sixth run, on the four recordings with --past-end 8."""
    return past_end(cartpole16_random_starts_config())


def cartpole16_random_starts_decoder_config() -> TrainConfig:
    """`decoder_refit` after `cartpole16_random_starts_config` (configs/cartpole16_random_starts_decoder.yaml): its third run."""
    return decoder_refit(cartpole16_random_starts_config())


def crafter_config() -> TrainConfig:
    """The recipe of ``worldgym/Crafter-v0`` (dumped to configs/crafter.yaml; docs/crafter.md has the commands).

    Crafter at its native 64x64 with 17 actions: a three-stage autoencoder to an 8x8 grid of
    16-channel latents (64 cells, so the 7-pixel tiles and the inventory digits survive) with a
    narrower decoder (64/32/32), a transformer that reads 2x2 cells per token (16 tokens a frame,
    as CartPoleFast) and commits fused, 128 wide and 4 deep (sized for the speed targets: one env
    p50 <= 16 ms, >= 1,000 env-steps/s at 64 envs); teacher forcing, detached self-forcing from
    1-4 real frames, the decoder refit on rollouts, then the denoise heads. bf16 autocast: on an
    AMD EPYC without AMX (avx512_bf16) a training step of this recipe measured 1.9x (autoencoder)
    and 2.0x (teacher forcing) faster than float32. Step counts sized from the rates measured on
    2 cores (docs/crafter.md) to train in under 4 h; every stage checkpoints every 200 steps and
    the same command resumes.
    """
    return TrainConfig(
        model=WorldModelConfig(
            name="Crafter",
            autoencoder=AutoencoderConfig(frame_height=64, frame_width=64, latent_channels=16, widths=[32, 64, 128], decoder_shuffle=2,
                                          decoder_widths=[64, 32, 32]),  # fmt: skip
            dynamics=DynamicsConfig(dim=128, depth=4, heads=4, sink=1, window=8, train_frames=24, patch=2, fused_commit=True),
            action=ActionConfig(kind="discrete", n=17),
            sampler=SamplerConfig(steps=1),
            context_frames=1,
            start_bank=16,
            fps=10,
            real_twin="Crafter",
            reward_range=[-1.0, 2.0],
        ),
        threads=1,
        bf16=True,
        ae_steps=24000,
        ae_batch=16,
        ae_foreground_weight=0.0,  # no background: every pixel of the map and the inventory counts
        dyn_steps=6000,
        dyn_batch=8,
        seq_frames=12,
        episode_weight_power=0.5,
        term_pos_weight=20.0,  # deaths are rare
        sf_steps=1500,
        sf_batch=8,
        sf_blocks=12,
        sf_context_max=4,
        sf_start_share=0.25,
        dec_steps=1500,
        dec_batch=8,
        dec_blocks=6,
        heads_steps=600,
        heads_batch=16,
        warmup=100,
        log_every=20,
        ckpt_every=200,
    )


def model_name(metadata: dict, fallback: str) -> str:
    """``real:Crafter`` -> ``Crafter``, ``gym:ALE/Pong-v5`` -> ``Pong``, ``import:my videos`` -> ``MyVideos``."""
    env = str(metadata.get("env", "")) or fallback
    base = re.sub(r"-v\d+$", "", env.split(":", 1)[-1].rsplit("/", 1)[-1])
    words = re.split(r"[^A-Za-z0-9]+", base)
    name = "".join(w[:1].upper() + w[1:] for w in words if w)
    return name if name[:1].isalpha() else f"Model{name}"


def action_config(space: gym.Space) -> ActionConfig:
    """The `ActionConfig` of a dataset's action space."""
    if isinstance(space, gym.spaces.Discrete) and space.start == 0:
        return ActionConfig(kind="discrete", n=int(space.n))
    if isinstance(space, gym.spaces.MultiDiscrete) and space.nvec.ndim == 1:
        return ActionConfig(kind="multi_discrete", nvec=[int(v) for v in space.nvec])
    if isinstance(space, gym.spaces.MultiBinary) and np.ndim(space.n) == 0:
        return ActionConfig(kind="multi_binary", n=int(space.n))
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        return ActionConfig(kind="box", n=int(space.shape[0]), low=float(np.min(space.low)), high=float(np.max(space.high)))
    raise ConfigError(f"the default recipe takes Discrete (from 0), MultiDiscrete, MultiBinary or 1-D Box actions, got {space}; write a config")


def data_recipe(data: str | Path | list[str | Path], name: str | None = None, scale: str = "default") -> TrainConfig:
    """The recipe ``worldgym train --data D`` uses without a config: sized to the data.

    The autoencoder takes as many stride-2 stages (2-5) as bring the latent grid to at most
    8x8 cells; the transformer reads 2x2 cells per token when that leaves at least 4 tokens,
    so a frame is 4-16 tokens; the action embedding fits the action space; the reward range
    covers the recorded rewards; ``real_twin`` is the recorded twin (``real:NAME``). ``scale``
    "default" trains for about an hour or two on 2 CPU cores at CartPole's sizes; "tiny"
    trains a few steps (tests, smoke runs).
    """
    if scale not in ("default", "tiny"):
        raise ConfigError(f"recipe scale must be 'default' or 'tiny', got {scale!r}")
    paths = [data] if isinstance(data, (str, Path)) else list(data)
    if not paths:
        raise ConfigError("the default recipe needs a dataset: --data FOLDER")
    ds = load_dataset(paths[0], verify_hashes=False)  # training verifies every file
    H, W = ds.observation_space.shape[:2]
    levels = next((k for k in range(2, 6) if H % 2**k == 0 and W % 2**k == 0 and (H >> k) * (W >> k) <= 64), None)
    if levels is None:
        raise ConfigError(f"frames of {W}x{H} pixels: the default recipe needs sides divisible by 2**k with at most 8x8 cells "
                          "after k <= 5 halvings; record or import with --size/--resize 64 (or write a config)")  # fmt: skip
    h, w = H >> levels, W >> levels
    patch = 2 if h % 2 == 0 and w % 2 == 0 and (h // 2) * (w // 2) >= 4 else 1
    rewards = np.concatenate([np.asarray(e.rewards) for e in ds.episodes] or [np.zeros(1)])
    low, high = float(min(rewards.min(initial=0.0), 0.0)), float(max(rewards.max(initial=1.0), 1.0))
    env = str(ds.metadata.get("env", ""))
    tiny = scale == "tiny"
    model = WorldModelConfig(
        name=name or model_name(ds.metadata, Path(paths[0]).name),
        autoencoder=AutoencoderConfig(frame_height=H, frame_width=W, latent_channels=4 if tiny else 16,
                                      widths=[8] * levels if tiny else [min(16 * 2**i, 64) for i in range(levels)]),  # fmt: skip
        dynamics=DynamicsConfig(dim=32 if tiny else 128, depth=2 if tiny else 4, heads=2 if tiny else 4, sink=1, window=3 if tiny else 8,
                                train_frames=8 if tiny else 24, patch=patch),  # fmt: skip
        action=action_config(ds.action_space),
        sampler=SamplerConfig(steps=1),
        start_bank=4 if tiny else 16,
        fps=int(ds.metadata.get("fps", 30)),
        real_twin=env[5:] if env.startswith("real:") else "",
        reward_range=[low, high],
    )
    if tiny:
        return dataclasses.replace(tiny_config(), model=model)
    return dataclasses.replace(cartpole_config(), model=model, ae_foreground_weight=0.0, sf_bptt=False)


def tiny_config() -> TrainConfig:
    """A few-second config for tests (32x32 frames so the state probe can still see the pole, 2 layers, 32 dims).

    Dumped to configs/tiny.yaml."""
    return TrainConfig(
        model=WorldModelConfig(
            name="Tiny",
            autoencoder=AutoencoderConfig(frame_height=32, frame_width=32, latent_channels=4, widths=[8, 8, 8]),
            dynamics=DynamicsConfig(dim=32, depth=2, heads=2, sink=1, window=3, train_frames=8),
            action=ActionConfig(kind="discrete", n=2),
            sampler=SamplerConfig(steps=1),
            start_bank=4,
            real_twin="CartPole",
            reward_range=[0.0, 1.0],
        ),
        threads=1,
        bf16=False,
        ae_steps=4,
        ae_batch=8,
        dyn_steps=4,
        dyn_batch=4,
        seq_frames=8,
        sf_steps=2,
        sf_batch=4,
        sf_blocks=6,
        warmup=2,
        log_every=1,
        ckpt_every=2,
    )


if __name__ == "__main__":
    configs = {
        "cartpole": cartpole_config(),
        "cartpole_long_rollouts": cartpole_long_rollouts_config(),
        "cartpole_fused": cartpole_fused_config(),
        "cartpole_fast": cartpole_fast_config(),
        "cartpole_fast_long_rollouts": cartpole_fast_long_rollouts_config(),
        "cartpole_fast2": cartpole_fast2_config(),
        "cartpole_fast2_decoder": cartpole_fast2_decoder_config(),
        "cartpole_fast_decoder32": cartpole_fast_decoder32_config(),
        "cartpole_starts": cartpole_starts_config(),
        "cartpole_fast_starts": cartpole_fast_starts_config(),
        "tiny": tiny_config(),
        "crafter": crafter_config(),
    }
    for name, cfg in configs.items():
        dump_yaml(cfg, Path(__file__).resolve().parents[2] / "configs" / f"{name}.yaml")

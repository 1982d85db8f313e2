"""The training recipes of the shipped models (and of the experiments BENCHMARKS.md cites): `TrainConfig` values, dumped to ``configs/<name>.yaml``.

    python -m worldgym.training.recipes      # rewrite every configs/<name>.yaml below

`worldgym train` reads the YAML files; tests check that each file is a plain dump of its function.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from worldgym.model.actions import ActionConfig
from worldgym.model.autoencoder import AutoencoderConfig
from worldgym.config_io import dump_yaml
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
    frame only), the rest commit 2-8 real frames inside episodes; every weight of the dynamics
    and both head pairs train, the autoencoder is kept (no decoder or heads stage).
    """
    return dataclasses.replace(
        cartpole_fused_config(), sf_steps=300, sf_lr=1e-4, sf_context_max=8, sf_start_context_max=8, warmup=10,
        dec_steps=0, heads_steps=0,
    )  # fmt: skip


def cartpole_fast_starts_config() -> TrainConfig:
    """Third run of ``worldgym/CartPoleFast-v0`` (configs/cartpole_fast_starts.yaml): `cartpole_starts_config` for it.

    ``worldgym train configs/cartpole_fast_starts.yaml --init assets/models/cartpolefast --init-stage selfforce``.
    """
    return dataclasses.replace(cartpole_starts_config(), model=cartpole_fast_long_rollouts_config().model)


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
    }
    for name, cfg in configs.items():
        dump_yaml(cfg, Path(__file__).resolve().parent.parent / "configs" / f"{name}.yaml")

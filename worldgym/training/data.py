"""What a training run is configured by and the batches it draws: `TrainConfig`, `Data`, `dynamics_batch`.

`TrainConfig` is the YAML a run is started from (it nests the `WorldModelConfig`); `Data`
holds a recorded dataset in RAM and cuts training windows from it; every random draw of
a stage's step comes from `step_generator` (seeded by seed, stage and step), so a resumed
or multi-process run draws exactly the batches an uninterrupted single-process run draws.
The training loop itself is in train.py.

Dimension letters: B batch, T frames, N tokens, C latent channels, A action width.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from worldgym.model.actions import ActionConfig
from worldgym.data.dataset import DatasetError, load as load_dataset
from worldgym.model.networks import WorldModelConfig

STAGES = ("autoencoder", "dynamics", "selfforce", "decoder", "heads")


@dataclass
class TrainConfig:
    """A whole training run: the model to build and the hyper-parameters of each stage.

    Attributes:
        model: the world model to build.
        seed: seeds weights and every step's random draws.
        threads: torch intra-op threads per process.
        bf16: bf16 autocast for forward passes (weights and optimizer stay fp32).
        ae_steps, ae_batch, ae_lr: autoencoder stage (frames per batch).
        ae_foreground_weight: extra loss weight on non-background pixels.
        ae_foreground_both: weight the pixels that are foreground in the target *or* in the
            reconstruction (so a pole drawn in the wrong place costs as much as a missing one);
            False weights the target's foreground only.
        dyn_steps, dyn_batch, dyn_lr: teacher-forcing stage (sequences per batch).
        seq_frames: frames per training sequence (> sink + window to train evictions).
        episode_weight_power: an episode of T steps is drawn with weight (T+1)^power: 1 makes every
            frame equally likely, 0 every episode; in between keeps long balancing episodes from
            drowning out the short falling ones where actions and terminations show most.
        context_noise: the clean copy gets noise t ~ U[0, context_noise].
        p_t_one: probability that a target frame is trained at t = 1 (the 1-step sampler's level).
        term_weight: weight of the termination BCE; term_pos_weight up-weights the rare positives.
        reward_weight: weight of the reward MSE.
        sf_steps, sf_batch, sf_lr: self-forcing stage (rollouts per batch).
        sf_blocks: blocks generated per self-forcing rollout.
        sf_bptt: back-propagate through the rollout (generated blocks and their keys/values
            keep their gradients) instead of detaching the cache between blocks.
        sf_bptt_blocks: with ``sf_bptt``, cut the rollout's graph every this many blocks (the
            cache's blocks and the residual base are detached there, truncated BPTT), so a
            block's loss reaches back at most 2 x sf_bptt_blocks - 1 blocks; 0 = the whole
            rollout. In an unstable world (a pole falling) the gradient through many blocks
            grows with the rollout (grad norms of 20-400 before clipping on CartPole) and is
            dominated by its far, least informative terms.
        sf_average_from: > 0: the self-forcing stage ends on the average of its checkpoints'
            weights (every ``ckpt_every`` steps) from this step on, its last step included
            (`worldgym.training.averaging`); 0 = on its last weights.
        sf_context_max: a rollout that starts inside an episode first commits 2..sf_context_max
            real frames (uniform) and generates from there, so the model sees the motion it must
            continue; one that starts at the episode's first frame commits that frame only, as
            ``reset`` does. 1 = every rollout starts from one real frame.
        sf_start_share: share of rollouts that start at their episode's first frame (the state
            ``reset`` starts from); the rest start at a uniform offset.
        sf_start_context_max: rollouts that start at their episode's first frame may commit up to
            this many of its first real frames before they generate (the first K frames of a real
            episode and the actions that led to them, as ``reset(options={"frames": ..., "actions":
            ...})`` takes them). 1 = always that frame only, as a reset from the model's start bank
            does; a model trained so never rolls out from a multi-frame context whose sink is an
            episode's first frame, and such starts end the episode early or late far more often.
        sf_start_single_share: with ``sf_start_context_max`` > 1, the share of those rollouts that
            commit one frame only; the others commit 2..sf_start_context_max (uniform). None draws
            1..sf_start_context_max uniformly instead (the draw ``configs/cartpole_starts.yaml`` ran).
        sf_loss: "mse" regresses every generated block to the true one (the conditional mean:
            where the frames leave the state uncertain, an unstable pole then drifts to the
            average of its futures, upright); "energy" rolls every context out twice from
            independent noise and minimises the energy score ||a - y|| + ||b - y|| - ||a - b||
            (RMS over the block), a proper scoring rule whose optimum is the true conditional
            distribution, so the 1-step sampler learns to draw a future rather than average them.
        state_weight: weight of the state-probe loss in the dynamics and self-forcing stages
            (`worldgym.training.probe`): a frozen probe fitted on real latents reads the recorded
            simulator state from two consecutive blocks, and the squared distance between its
            reading of the generated and the real pair joins the loss. It weighs latent error by
            how much state it moves, where plain latent MSE lets a model under-move small objects.
            Needs recordings that carry ``states`` (`worldgym record` of a real twin); 0 = off.
        state_probe_steps: Adam steps that fit the probe (refitted identically on resume).
        sf_end_weight, sf_end_steps: the self-forcing latent and state losses of a generated frame
            within ``sf_end_steps`` frames before a recorded end (the end included) count
            ``sf_end_weight`` times (1 = off). A model that under-moves lets a falling pole lag
            most in its last steps, where the real one accelerates and the ending is timed.
        term_labels: the termination target of a block the self-forcing and heads stages generate.
            "real": the recorded episode's end at that step. "probe": a frozen termination probe
            (`worldgym.training.probe.fit_term_probe`, fitted like the state probe on the real
            latents and the recorded ends) reads the rollout's own (previous, generated) pair, so
            the head learns to end where the generated frame shows an end, not where the real
            episode happened to end while the rollout may still be elsewhere. Real blocks of a
            rollout's prefix keep the recorded label; with ``term_probe_lead`` n the probe also
            fires on the n frames before a recorded end. "agree": the recorded end, but a generated
            block's heads learn it only while the state probe reads the generated pair within
            ``term_agree_tol`` (mean squared standardised distance) of the real pair: a rollout
            that has left the real track carries no termination label, so the head is not taught
            to end frames that show no end (needs recorded states, as ``state_weight``).
        dec_steps, dec_batch, dec_lr: decoder fine-tune (rollouts per batch; 0 steps skips the stage).
        dec_blocks: blocks per decoder fine-tune rollout (prefix and start share as in self-forcing).
        dec_real_weight: weight of a second decoder term, the same true frames reconstructed from
            their encoder latents (the autoencoder's floor); 0 fits the rollouts' latents only. A
            decoder trained from scratch (``--init-stage decoder``) needs it to draw what the
            encoder sees as well as the first one did.
        heads_steps, heads_batch, heads_lr: heads fit on detached self-forced rollouts (rollouts per
            batch of ``sf_blocks`` blocks, prefix and start share as in self-forcing; 0 steps skips the stage).
        heads_target: which heads that stage fits: "denoise" (``denoise_heads``, what a fused-commit
            engine reads; the default) or "commit" (the commit heads, what an env observing features
            reads: `worldgym loop`'s dream). A teacher-forced fine-tune spreads the dream's ends
            (BENCHMARKS.md, "Three levers together"); "commit" refits the ending on the model's own rollouts.
        warmup: linear warm-up steps of every stage (then cosine to 10 %).
        log_every, ckpt_every: steps between log lines / checkpoints.
        start_bank_from: episodes whose first frames fill the start-frame bank.
    """

    model: WorldModelConfig = field(default_factory=WorldModelConfig)
    seed: int = 0
    threads: int = 2
    bf16: bool = False  # the shipped runs are fp32: they were trained on an AVX2-only CPU, where bf16 matmuls ran ~9x slower (CPUs with AMX run them faster than fp32)
    ae_steps: int = 2000
    ae_batch: int = 32
    ae_lr: float = 2e-3
    ae_foreground_weight: float = 20.0
    ae_foreground_both: bool = False
    dyn_steps: int = 3000
    dyn_batch: int = 16
    dyn_lr: float = 1e-3
    seq_frames: int = 24
    episode_weight_power: float = 1.0
    context_noise: float = 0.1
    p_t_one: float = 0.75
    term_weight: float = 1.0
    term_pos_weight: float = 5.0
    reward_weight: float = 0.1
    sf_steps: int = 500
    sf_batch: int = 16
    sf_lr: float = 3e-4
    sf_blocks: int = 24
    sf_bptt: bool = False
    sf_bptt_blocks: int = 0
    sf_average_from: int = 0
    sf_context_max: int = 1
    sf_start_share: float = 0.0
    sf_start_context_max: int = 1
    sf_start_single_share: float | None = 0.5
    sf_loss: str = "mse"
    state_weight: float = 0.0
    state_probe_steps: int = 2000
    sf_end_weight: float = 1.0
    sf_end_steps: int = 6
    term_labels: str = "real"
    term_agree_tol: float = 0.1
    term_probe_lead: int = 0
    dec_steps: int = 0
    dec_batch: int = 8
    dec_lr: float = 3e-4
    dec_blocks: int = 6
    dec_real_weight: float = 0.0
    heads_steps: int = 0
    heads_batch: int = 16
    heads_lr: float = 1e-3
    heads_target: str = "denoise"
    warmup: int = 100
    log_every: int = 50
    ckpt_every: int = 500


# ---------------------------------------------------------------------- data
class Data:
    """A dataset held in RAM as torch tensors, flattened over episodes.

    An episode recorded with steps past its end (`worldgym.data.dataset.AfterEnd`, ``worldgym
    record --past-end N``) goes on with them here: training windows run through the end into
    the scene after it, and each of those frames carries the source's own termination flag, so
    the termination head learns every state past an end as an end, not only the first.

    Attributes:
        frames: (sum T+1, H, W, 3) uint8 every observation of every episode.
        starts: (E,) index in ``frames`` of each episode's first observation.
        lengths: (E,) T of each episode (T+1 observations), its after-end steps included.
        actions: (sum T+1, A) the action that led to each frame (row of frame 0 unused).
        rewards, terms: (sum T+1,) reward / termination of the transition into each frame.
        states: (sum T+1, S) float32 the recorded simulator state of each frame, or None when
            any episode was recorded without one (videos, neural envs).
    """

    def __init__(self, path: str | Path | list[str | Path], action: ActionConfig, weight_power: float = 1.0) -> None:
        paths = [path] if isinstance(path, (str, Path)) else list(path)
        if not paths:
            raise ValueError("no dataset given: pass at least one folder written by `worldgym record`")
        datasets = [load_dataset(p) for p in paths]
        for p, ds in zip(paths, datasets):
            if len(ds) == 0:
                raise DatasetError(f"dataset {p} has no episodes; record some with `worldgym record`")
            shape, first = ds.episodes[0].observations.shape[1:], datasets[0].episodes[0].observations.shape[1:]
            if shape != first:
                raise DatasetError(
                    f"dataset {p} has frames of shape {tuple(shape)}, {paths[0]} has {tuple(first)}; "
                    "train on datasets recorded at one size"
                )
        frames, actions, rewards, terms, starts, lengths, states = [], [], [], [], [], [], []
        n = 0
        for ep in (ep for ds in datasets for ep in ds.episodes):
            parts = [ep] if ep.after_end is None else [ep, ep.after_end]  # the episode, then its steps past the end
            T = sum(len(p) for p in parts)
            frames.extend(np.asarray(p.observations) for p in parts)  # joined once, below
            a = np.zeros((T + 1, action.width), dtype=np.float32 if action.kind == "box" else np.int64)
            a[1:] = np.concatenate([p.actions for p in parts]).reshape(T, action.width)
            actions.append(a)
            rewards.append(np.concatenate([[0.0], *(p.rewards for p in parts)]).astype(np.float32))
            terms.append(np.concatenate([[False], *(p.terminations for p in parts)]))
            states.append(None if ep.states is None else np.concatenate([p.states for p in parts]))
            starts.append(n)
            lengths.append(T)
            n += T + 1
        self.frames = torch.from_numpy(np.concatenate(frames))  # (sum T+1, H, W, 3)
        self.actions = torch.from_numpy(np.concatenate(actions))  # (sum T+1, A)
        self.rewards = torch.from_numpy(np.concatenate(rewards).astype(np.float32))  # (sum T+1,)
        self.terms = torch.from_numpy(np.concatenate(terms).astype(np.float32))  # (sum T+1,)
        same = all(s is not None for s in states) and len({s.shape[1:] for s in states}) == 1
        self.states = torch.from_numpy(np.concatenate(states).astype(np.float32)) if same else None  # (sum T+1, S)
        self.starts = torch.tensor(starts)
        self.lengths = torch.tensor(lengths)
        self.first = torch.zeros(n, dtype=torch.bool)  # (sum T+1,) True at each episode's first frame
        self.first[self.starts] = True
        self.weights = (self.lengths + 1).double() ** weight_power  # (E,) sampling weight of each episode
        self.path = ",".join(str(p) for p in paths)
        self.episodes = len(starts)

    def sequences(self, g: torch.Generator, batch: int, frames: int, start_share: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Random windows: indices (B, T) into the flat arrays and a validity mask (B, T).

        Episodes are drawn with ``self.weights`` ((T+1)^weight_power), the start offset uniformly
        inside the episode (or, for a ``start_share`` of the windows, at its first frame); frames
        past the episode's end repeat its last frame and are invalid.
        """
        ep = torch.multinomial(self.weights, batch, replacement=True, generator=g)  # (B,)
        length = self.lengths[ep]  # (B,)
        offset = (torch.rand(batch, generator=g) * length).long()  # (B,) in [0, T-1]: at least 2 frames
        if start_share > 0:
            offset = torch.where(torch.rand(batch, generator=g) < start_share, 0, offset)
        pos = offset[:, None] + torch.arange(frames)[None]  # (B, T)
        valid = pos <= length[:, None]
        idx = self.starts[ep][:, None] + pos.clamp(max=length[:, None])  # (B, T)
        return idx, valid


# ---------------------------------------------------------------------- optimizer state <-> safetensors


def step_generator(seed: int, stage: str, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + STAGES.index(stage) * 10_000_019 + step)


# ---------------------------------------------------------------------- batches
def dynamics_batch(data: Data, latents: torch.Tensor, g: torch.Generator, batch: int, frames: int, cfg: TrainConfig, selfforce: bool = False) -> dict:
    """One global batch for the teacher-forcing or the self-forcing stage (all random draws from g).

    Besides the sequences it holds ``prefix`` (B,): how many real frames each rollout commits
    before it generates (always 1 outside self-forcing; see ``TrainConfig.sf_context_max``), and
    ``index`` (B, T): the windows' rows in the dataset's flat arrays.
    """
    idx, valid = data.sequences(g, batch, frames, cfg.sf_start_share if selfforce else 0.0)  # (B, T)
    x0 = latents[idx]  # (B, T, N, C)
    null = torch.zeros_like(valid)
    null[:, 0] = True
    t_noisy = torch.where(
        torch.rand(valid.shape, generator=g) < cfg.p_t_one, torch.ones(valid.shape), torch.sigmoid(torch.randn(valid.shape, generator=g))
    )  # (B, T): the sampler's t = 1, else logit-normal
    return {
        "latents": x0,
        "valid": valid,
        "actions": data.actions[idx],  # (B, T, A)
        "null": null,
        "rewards": data.rewards[idx] * valid,
        "terms": data.terms[idx] * valid,
        "t_clean": torch.rand(valid.shape, generator=g) * cfg.context_noise,
        "t_noisy": t_noisy,
        "noise_clean": torch.randn(x0.shape, generator=g),
        "noise": torch.randn(x0.shape, generator=g),
        "prefix": context_prefix(data.first[idx[:, 0]], cfg.sf_context_max if selfforce else 1, g,
                                 cfg.sf_start_context_max if selfforce else 1, cfg.sf_start_single_share),
        "index": idx,  # (B, T) into the dataset's flat arrays (the decoder stage reads the true frames)
    }


def context_prefix(
    at_start: torch.Tensor, most: int, g: torch.Generator, most_at_start: int = 1, single_share: float | None = 0.5
) -> torch.Tensor:
    """Real frames each rollout commits before generating (B,): inside an episode 2..most; at an episode's first
    frame 1, or (with most_at_start > 1) 2..most_at_start for a 1 - single_share share of them (None: 1..most_at_start)."""
    prefix = torch.ones(at_start.shape, dtype=torch.long)
    if most > 1:
        prefix = torch.where(at_start, 1, torch.randint(2, most + 1, at_start.shape, generator=g))
    if most_at_start > 1:  # drawn after the inside draw, so runs with most_at_start = 1 draw exactly as before
        if single_share is None:
            return torch.where(at_start, torch.randint(1, most_at_start + 1, at_start.shape, generator=g), prefix)
        several = at_start & (torch.rand(at_start.shape, generator=g) < 1 - single_share)
        prefix = torch.where(several, torch.randint(2, most_at_start + 1, at_start.shape, generator=g), prefix)
    return prefix

"""The training losses of `worldgym train`, one `nn.Module` per stage (so DDP can wrap each).

- `AutoencoderLoss`: reconstruction MSE with extra weight on foreground pixels.
- `DynamicsLoss`: teacher forcing over the [clean | noisy] layout (`Dynamics.forward_sequence`).
- `SelfForcingLoss`: the model rolled out on its own blocks through the cached inference path
  (`Dynamics.forward_cached`), against a `GradCache` of detached blocks, or (``sf_bptt``) of
  blocks that keep their gradients through the rollout.
- `DecoderLoss`: the decoder fine-tuned on the blocks of detached rollouts against the true frames.

Dimension letters: B batch, T frames, N tokens, C latent channels, H/W frame size,
L layers, Dh head dim.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from worldgym.model.cache import CacheView
from worldgym.model.networks import Model
from worldgym.model.sampler import flow_schedule
from worldgym.training.probe import StateProbe, ends_within, state_error

if TYPE_CHECKING:
    from worldgym.training.data import TrainConfig


def weighted_recon_error(recon: torch.Tensor, frames: torch.Tensor, foreground_weight: float, both: bool) -> torch.Tensor:
    """Summed squared error of reconstructions (B, 3, H, W) in [-1, 1] against uint8 frames (B, H, W, 3), with
    ``1 + foreground_weight`` on the pixels that are not background in the target (``both``: or in the reconstruction)."""
    target = frames.permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (B, 3, H, W)
    fg = (frames.min(dim=-1).values < 250)[:, None]  # (B, 1, H, W) target pixels that are not background
    if both:
        fg = fg | (recon.detach().min(dim=1, keepdim=True).values < 250 / 127.5 - 1.0)
    weight = 1.0 + foreground_weight * fg.float()  # (B, 1, H, W)
    return (weight * (recon.float() - target) ** 2).sum()


def rms_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Root-mean-square distance of blocks (B, N, C) -> (B,), kept differentiable at a == b."""
    return ((a - b).pow(2).mean(dim=(1, 2)) + 1e-8).sqrt()


class AutoencoderLoss(nn.Module):
    """Weighted reconstruction MSE of a batch of uint8 frames."""

    def __init__(self, model: Model, foreground_weight: float, both: bool = False) -> None:
        super().__init__()
        self.ae = model.autoencoder
        self.fg = foreground_weight
        self.both = both

    def forward(self, frames: torch.Tensor, norm: float) -> torch.Tensor:
        recon = self.ae.decoder(self.ae.encoder(frames.permute(0, 3, 1, 2).float() / 127.5 - 1.0))  # (B, 3, H, W)
        return weighted_recon_error(recon, frames, self.fg, self.both) / norm


class DynamicsLoss(nn.Module):
    """Teacher forcing with lightly noised context over [clean | noisy] sequences."""

    def __init__(self, model: Model, cfg: TrainConfig, probe: StateProbe | None = None) -> None:
        super().__init__()
        self.dyn = model.dynamics
        self.cfg = cfg
        self.probe = probe if cfg.state_weight else None  # the frozen state probe (`worldgym.training.probe`)

    def forward(self, batch: dict[str, torch.Tensor], norm: dict[str, float]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x0, valid = batch["latents"], batch["valid"]  # (B, T, N, C), (B, T)
        clean = (1 - batch["t_clean"][..., None, None]) * x0 + batch["t_clean"][..., None, None] * batch["noise_clean"]
        noisy = (1 - batch["t_noisy"][..., None, None]) * x0 + batch["t_noisy"][..., None, None] * batch["noise"]
        fused = self.dyn.config.fused_commit
        out = self.dyn.forward_sequence(clean, noisy, batch["t_clean"], batch["t_noisy"], batch["actions"], batch["null"], fused)
        pred, reward, term = out[:3]
        target = valid.clone()
        target[:, 0] = False  # the first frame has no known action: it is given at reset, never generated
        w = target.float()
        mse = (((pred.float() - x0) ** 2).mean(dim=(2, 3)) * w).sum() / norm["frames"]
        bce, rmse = head_losses(term, reward, batch["terms"], batch["rewards"], w, self.cfg.term_pos_weight)
        bce, rmse = bce / norm["frames"], rmse / norm["frames"]
        loss = mse + self.cfg.term_weight * bce + self.cfg.reward_weight * rmse
        parts = {"latent_mse": mse.detach(), "term_bce": bce.detach(), "reward_mse": rmse.detach()}
        if self.probe is not None:  # the pair (real t-1, predicted t) against (real t-1, real t)
            B, T = valid.shape
            before, after = x0[:, :-1].flatten(0, 1), x0[:, 1:].flatten(0, 1)
            err = state_error(self.probe, before, pred[:, 1:].float().flatten(0, 1), before, after).view(B, T - 1)
            state = (err * w[:, 1:] * valid[:, :-1].float()).sum() / norm["frames"]
            loss = loss + self.cfg.state_weight * state
            parts["state_mse"] = state.detach()
        if fused:  # denoise_heads on the noisy copy, what a fused engine reads
            d_bce, d_rmse = head_losses(out[4], out[3], batch["terms"], batch["rewards"], w, self.cfg.term_pos_weight)
            d_bce, d_rmse = d_bce / norm["frames"], d_rmse / norm["frames"]
            loss = loss + self.cfg.term_weight * d_bce + self.cfg.reward_weight * d_rmse
            parts |= {"denoise_term_bce": d_bce.detach(), "denoise_reward_mse": d_rmse.detach()}
        return loss, parts


def head_losses(
    term: torch.Tensor, reward: torch.Tensor, terms: torch.Tensor, rewards: torch.Tensor, w: torch.Tensor, pos_weight: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed termination BCE and reward squared error of heads' logits/values against targets, all (B, T) or (B,), weighted by w."""
    pw = torch.tensor(pos_weight, device=term.device)
    bce = (F.binary_cross_entropy_with_logits(term, terms, pos_weight=pw, reduction="none") * w).sum()
    return bce, (((reward - rewards) ** 2) * w).sum()


def scratch(k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """Per-layer copies of rotated context buffers (L, B, H, M+N, Dh): each attention layer writes its own
    block into the scratch slots in place, so under autograd no two layers (or passes) may share storage."""
    return [x.clone() for x in k], [x.clone() for x in v], mask


class GradCache:
    """The cache's sink + window order over blocks that keep their autograd history (``sf_bptt``).

    Stands in for the engine's `KVCache` in the self-forcing rollout: the same sink + window
    selection and block-relative positions, but blocks live in Python lists (un-rotated, in
    temporal order, read through `Dynamics.rotate_context`) instead of preallocated buffers, so
    with ``sf_bptt`` a loss on block i reaches the commit passes (and hence the actions) of
    every block it attended to.
    """

    def __init__(self, sink: int, window: int, layers: int, batch: int, heads: int, head_dim: int, device: torch.device) -> None:
        self.sink, self.window = sink, window
        self.empty = torch.zeros(layers, batch, 0, heads, head_dim, device=device)
        self.k: list[torch.Tensor] = []  # per committed block: (L, B, N, H, Dh)
        self.v: list[torch.Tensor] = []

    def filled(self) -> torch.Tensor:
        n = len(self.k)
        return torch.full((self.empty.shape[1],), min(n, self.sink + self.window), dtype=torch.int64, device=self.empty.device)

    def view(self) -> CacheView:
        n = len(self.k)
        keep = list(range(min(self.sink, n))) + list(range(max(self.sink, n - self.window), n))
        if not keep:
            return CacheView(self.empty, self.empty, torch.zeros(self.empty.shape[1], 0, dtype=torch.bool), self.filled())
        k = torch.cat([self.k[j] for j in keep], dim=2)  # (L, B, P*N, H, Dh)
        v = torch.cat([self.v[j] for j in keep], dim=2)
        valid = torch.ones(k.shape[1], k.shape[2], dtype=torch.bool, device=k.device)
        return CacheView(k, v, valid, self.filled())

    def cut(self) -> None:
        """Detach every block held so far: later losses reach back no further (truncated BPTT)."""
        self.k = [x.detach() for x in self.k]
        self.v = [x.detach() for x in self.v]

    def append(self, k: torch.Tensor, v: torch.Tensor, *_: Any) -> None:
        self.k.append(k)
        self.v.append(v)


def end_weights(terms: torch.Tensor, steps: int, weight: float) -> torch.Tensor:
    """(B, T) ``weight`` on every frame within ``steps`` frames before (and at) a recorded end in ``terms`` (B, T), else 1."""
    if steps < 1 or weight == 1.0:
        return torch.ones_like(terms)
    first = torch.zeros(terms.shape, dtype=torch.bool, device=terms.device)
    first[:, 0] = True  # each row is its own stretch of one episode
    near = ends_within(terms.flatten(), first.flatten(), steps - 1).view(terms.shape)
    return 1.0 + (weight - 1.0) * (near > 0).float()


class SelfForcingLoss(nn.Module):
    """Roll the model out on its own blocks through the cached inference path; score against the true latents.

    ``cfg.sf_loss`` "mse" regresses each generated block to the true one; "energy" rolls each
    context out twice from independent noise and minimises the energy score (see `TrainConfig`).

    With ``cfg.sf_bptt`` the generated blocks and their keys/values keep their gradients
    (`GradCache`), so the loss on a block several steps ahead trains the earlier passes that
    produced its context: the only path by which an action's effect, invisible one step
    later and a few pixels ten steps later, can teach the model to read that action.

    The heads learn each generated block's termination from ``cfg.term_labels``: the recorded
    end ("real"), ``term_probe``'s reading of the generated pair ("probe"), or the recorded end
    only while ``probe`` (the state probe) reads the rollout near the real pair ("agree").
    """

    def __init__(self, model: Model, cfg: TrainConfig, probe: StateProbe | None = None, term_probe: StateProbe | None = None) -> None:
        super().__init__()
        if cfg.sf_loss not in ("mse", "energy"):
            raise ValueError(f"sf_loss must be 'mse' or 'energy', got {cfg.sf_loss!r}")
        self.dyn = model.dynamics
        self.cfg = cfg
        self.mc = model.config
        self.probe = probe if cfg.state_weight else None  # the frozen state probe: the rollout's pairs read against the real ones
        self.term_probe = term_probe  # the frozen termination probe: a generated block's label is its reading (term_labels: probe)
        self.agree_probe = probe if cfg.term_labels == "agree" else None  # the state probe that tells a rollout still on the real track

    def forward(self, batch: dict[str, torch.Tensor], norm: dict[str, float]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        dyn, mc, bptt = self.dyn, self.mc, self.cfg.sf_bptt
        energy = self.cfg.sf_loss == "energy"
        if energy:  # every context twice: rows B..2B-1 repeat rows 0..B-1 with another row's (independent) noise
            batch = {k: torch.cat([v, torch.roll(v, 1, 0) if k == "noise" else v]) for k, v in batch.items()}
        x0, valid, acts = batch["latents"], batch["valid"], batch["actions"]  # (B, T, N, C), (B, T), (B, T, A)
        B, T = valid.shape
        dc = dyn.config
        cache = GradCache(dc.sink, dc.window, dc.depth, B, dc.heads, dc.dim // dc.heads, x0.device)
        cut_every = self.cfg.sf_bptt_blocks if bptt else 0  # truncated BPTT: the rollout's graph is cut every this many blocks
        keep = contextlib.nullcontext if bptt else torch.no_grad
        detach = (lambda x: x) if bptt else torch.Tensor.detach
        schedule = flow_schedule(mc.sampler.steps, mc.sampler.shift)
        commit_t = torch.full((B,), mc.sampler.commit_noise, device=x0.device)
        no_null = torch.zeros(B, dtype=torch.bool, device=x0.device)
        fused = dyn.config.fused_commit  # also train denoise_heads on the last denoise pass, as a fused engine reads them
        mse = bce = rmse = score = d_bce = d_rmse = state = kept = judged = x0.new_zeros(())
        half = B // 2 if energy else B  # the rows that hold the original contexts
        generated = []
        # 1. reset: commit the real start frame (action unknown), exactly as WorldModel.reset does
        with keep():
            ctx = scratch(*dyn.rotate_context(cache.view()))
            out = dyn.forward_cached(x0[:, 0], commit_t, acts[:, 0], ~no_null, ctx, cache.filled(), commit=True)
            cache.append(out.k, out.v, x0[:, 0], acts[:, 0], ~no_null)
        prefix = batch["prefix"]  # (B,) real frames committed before the rollout generates
        ending = end_weights(batch["terms"], self.cfg.sf_end_steps, self.cfg.sf_end_weight)  # (B, T)
        prev = older = x0[:, 0]  # (B, N, C) the two newest committed blocks: a residual model's base
        base = (lambda: detach(dyn.residual_base(prev, older))) if dyn.config.residual else (lambda: None)  # noqa: E731
        for i in range(1, T):
            if cut_every and i % cut_every == 0:
                cache.cut()
                prev, older = prev.detach(), older.detach()
            real = prefix > i  # (B,) rows still committing their real frames
            w = valid[:, i].float()  # (B,)
            # 2. read the cache once (detached unless bptt); every pass below gets its own copy of the scratch buffers
            with keep():
                view = cache.view()
                k, v, mask = dyn.rotate_context(view)
            # 3. denoise from noise with the sampler's schedule; gradients only through the last pass
            x = batch["noise"][:, i]
            for j, (t, t_next) in enumerate(zip(schedule[:-1], schedule[1:])):
                last = j == len(schedule) - 2
                with contextlib.nullcontext() if last else torch.no_grad():
                    tt = torch.full((B,), t, device=x0.device)
                    out = dyn.forward_cached(x, tt, acts[:, i], no_null, scratch(k, v, mask), view.filled, False, fused and last, base=base())
                    pred = out.pred.float()
                x = pred if t_next == 0.0 else (x + (t_next - t) * (x - pred) / t).detach()
            terms, hw = batch["terms"][:, i], w  # (B,) the real episode's end and the rows whose heads learn it ...
            if self.term_probe is not None:  # ... or, for a generated block, whether the real world would end on it
                with torch.no_grad():
                    seen = torch.sigmoid(self.term_probe(prev.detach(), pred.detach()).squeeze(1))
                terms = torch.where(real, terms, seen * w)
            elif self.agree_probe is not None:  # ... only while the generated pair still shows the real pair's state
                with torch.no_grad():
                    off = state_error(self.agree_probe, prev.detach(), pred.detach(), x0[:, i - 1], x0[:, i])
                hw = w * (real | (off <= self.cfg.term_agree_tol)).float()
                kept, judged = kept + (hw * (~real).float()).sum(), judged + (w * (~real).float()).sum()
            if fused:
                b, r = head_losses(out.denoise_term_logit, out.denoise_reward, terms, batch["rewards"][:, i], hw, self.cfg.term_pos_weight)
                d_bce, d_rmse = d_bce + b, d_rmse + r
            gen = w * (~real).float() * ending[:, i]  # (B,) rows that generated this block, frames before an end weighted up
            mse = mse + (((pred[:half] - x0[:half, i]) ** 2).mean(dim=(1, 2)) * gen[:half]).sum()
            if energy:
                a, b, y = pred[:half], pred[half:], x0[:half, i]
                score = score + ((rms_distance(a, y) + rms_distance(b, y) - rms_distance(a, b)) * gen[:half]).sum()
            if self.probe is not None:  # the rollout's own previous block (through it too with bptt) and this one
                err = state_error(self.probe, detach(prev[:half]), pred[:half], x0[:half, i - 1], x0[:half, i])
                state = state + (err * gen[:half] * valid[:half, i - 1].float()).sum()
            # 4. commit pass on the generated (or, inside the prefix, the real) block: heads trained; input and k/v
            #    detached unless bptt
            block = torch.where(real[:, None, None], x0[:, i], pred)
            out = dyn.forward_cached(detach(block), commit_t, acts[:, i], no_null, scratch(k, v, mask), view.filled, commit=True)
            b, r = head_losses(out.term_logit, out.reward, terms, batch["rewards"][:, i], hw, self.cfg.term_pos_weight)
            bce, rmse = bce + b, rmse + r
            cache.append(detach(out.k), detach(out.v), block.detach(), acts[:, i], no_null)
            generated.append(block.detach())
            prev, older = block, prev
        self.last_rollout = torch.stack(generated, 1)  # (B, T-1, N, C): the self-generated blocks (for tests; 2B rows with "energy")
        copies = 2.0 if energy else 1.0  # the heads saw every context this many times
        mse, bce, rmse = mse / norm["frames"], bce / norm["frames"] / copies, rmse / norm["frames"] / copies
        fit = score / norm["frames"] if energy else mse
        loss = fit + self.cfg.term_weight * bce + self.cfg.reward_weight * rmse
        parts = {"latent_mse": mse.detach(), "term_bce": bce.detach(), "reward_mse": rmse.detach()}
        if self.probe is not None:
            state = state / norm["frames"]
            loss = loss + self.cfg.state_weight * state
            parts["state_mse"] = state.detach()
        if self.agree_probe is not None:  # share of generated frames whose heads learned the real label
            parts["term_kept"] = kept / judged.clamp_min(1.0)
        if fused:
            d_bce, d_rmse = d_bce / norm["frames"] / copies, d_rmse / norm["frames"] / copies
            loss = loss + self.cfg.term_weight * d_bce + self.cfg.reward_weight * d_rmse
            parts |= {"denoise_term_bce": d_bce.detach(), "denoise_reward_mse": d_rmse.detach()}
        return loss, parts | ({"energy_score": fit.detach()} if energy else {})


class DecoderLoss(nn.Module):
    """The decoder fine-tuned on the latents the engine decodes (encoder and dynamics frozen).

    A detached self-forcing rollout (`SelfForcingLoss`, the engine's inference order) makes the
    blocks; every committed block (generated, or real inside the rollout's prefix) is decoded
    and scored against the true frame of its step with the autoencoder's weighted error. The
    decoder so learns to draw clean frames from the slightly-off latents a rollout produces
    (faint background texture, ghost poles) instead of only from the encoder's latents.
    With ``dec_real_weight`` > 0 the same true frames are also decoded from their encoder
    latents (the batch's ``latents``, made by the frozen encoder) and that error joins the
    loss with this weight.
    """

    def __init__(self, model: Model, cfg: TrainConfig) -> None:
        super().__init__()
        self.ae = model.autoencoder
        self.rollout = SelfForcingLoss(model, dataclasses.replace(cfg, sf_bptt=False, sf_loss="mse"))  # no graph; one rollout per row
        self.fg, self.both = cfg.ae_foreground_weight, cfg.ae_foreground_both
        self.real_weight = cfg.dec_real_weight

    def forward(self, batch: dict[str, torch.Tensor], frames: torch.Tensor, norm: float) -> torch.Tensor:
        """``frames`` (B, T, H, W, 3) uint8: the true frames of the batch's windows."""
        with torch.no_grad():
            self.rollout(batch, {"frames": 1.0})
        latents = self.rollout.last_rollout  # (B, T-1, N, C)
        keep = batch["valid"][:, 1:].reshape(-1)  # (B*(T-1),)
        recon = self.ae.decode_float(latents.flatten(0, 1)[keep]).permute(0, 3, 1, 2)  # (K, 3, H, W)
        target = frames[:, 1:].flatten(0, 1)[keep]  # (K, H, W, 3)
        loss = weighted_recon_error(recon, target, self.fg, self.both)
        if self.real_weight:  # the batch's own latents: the frozen encoder's, of the same frames
            floor = self.ae.decode_float(batch["latents"][:, 1:].flatten(0, 1)[keep]).permute(0, 3, 1, 2)  # (K, 3, H, W)
            loss = loss + self.real_weight * weighted_recon_error(floor, target, self.fg, self.both)
        return loss / norm

"""The world-model engine: the only code that advances, flushes or restores the KV cache.

`WorldModel` runs a `Model` for a batch of rows. One `step(actions)` is one latent block
of action-conditioned autoregressive generation:

1. validate the actions (a bad action changes nothing);
2. take the cache's buffers as the attention context (no copy; only the sink's keys are
   re-rotated, see cache.py);
3. draw noise from each row's own generator and denoise with the few-step sampler,
   every pass reading the cache and writing nothing;
4. run one commit pass on the clean block at noise ~0: its keys/values, the reward and
   the termination logit;
5. refuse non-finite results (naming the rows) before anything is written;
6. append the block to the cache (evicting the oldest window block when full);
7. decode the block to uint8 RGB frames.

With a model whose ``dynamics.fused_commit`` is set, steps 4 and 6 move into the next
step: its first pass runs two blocks per row, the previous block committing (clean) and the
new one denoising, so a 1-step sampler makes one pass per step instead of two; the newest
block of each row waits as ``pending`` (part of every snapshot), and reward and termination
come from the model's ``denoise_heads`` on the new block.

`reset(rows, frames)` flushes rows and pre-fills them with commit passes over start
frames. `flush(rows)` keeps the sink and the newest block (an Infinity-RoPE "KV flush");
`recache(rows, actions)` re-commits the stored window under new action conditioning (a
LongLive-style recache). `get_state` / `set_state` clone and restore rows.

Dimension letters: B batch rows, R selected rows, F frames, N tokens, C latent channels,
H/W frame size, A action width.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from worldgym.engine.fused import denoise_fused
from worldgym.engine.precision import choose_dtype
from worldgym.model.actions import to_tensor
from worldgym.model.cache import KVCache
from worldgym.model.hardware import DTYPE_CHOICES
from worldgym.model.networks import Model
from worldgym.model.sampler import SamplerConfig, draw_noise, flow_schedule, sample

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
POSITION_LIMIT = 2**20  # rotary positions are rebased before they pass this (about 20 hours at 15 blocks/s)


class NumericsError(FloatingPointError):
    """The model produced NaN or inf for some rows; nothing was committed. Picklable (one str)."""


class NotResetError(RuntimeError):
    """A row was stepped before it was ever reset."""


@dataclass
class StepResult:
    """What one engine step returns, for all B rows.

    Attributes:
        frames: decoded frames (B, H, W, 3) uint8 (None when the step was asked not to decode).
        latents: clean latents of the block (B, N, C).
        reward: predicted reward (B,), clipped to the model's reward range.
        termination: predicted probability that the episode ended at this block (B,).
        features: the model's state after committing the block (B, D) float32, in ``features`` mode (else None).
    """

    frames: torch.Tensor | None
    latents: torch.Tensor
    reward: torch.Tensor
    termination: torch.Tensor
    features: torch.Tensor | None = None


class WorldModel:
    """A batch of ``batch_size`` independent rollouts of one model, each with its own cache rows and RNG.

    ``dtype="bfloat16"`` runs the passes under bf16 autocast with a bf16 cache: deterministic
    like float32, and one step from the same state within 5 % (of the largest latent) of the
    float32 step (tests/test_engine.py); rollouts then drift apart, so a bf16 model's fidelity
    is its own `worldgym eval`. ``dtype="auto"`` resolves (`worldgym.engine.precision.choose_dtype`)
    to bfloat16 where it runs faster (AMX CPUs at 32 rows or more, bf16-capable CUDA, and
    avx512_bf16 CPUs where one timed step of each says so) and float32 elsewhere;
    ``self.dtype`` holds the resolved name and ``self.dtype_choice`` how it was chosen.
    """

    def __init__(
        self,
        model: Model,
        batch_size: int = 1,
        *,
        device: str | torch.device = "cpu",
        dtype: str = "float32",
        sampler: SamplerConfig | None = None,
        features: bool = False,
        reencode: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        if dtype not in DTYPE_CHOICES:
            raise ValueError(f"dtype must be one of {list(DTYPE_CHOICES)}, got {dtype!r}")
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was requested but CUDA is not available; use device='cpu'")
        self.model = model.to(self.device).eval()
        self.dynamics, self.autoencoder = self.model.dynamics, self.model.autoencoder
        self.autoencoder.decoder.to(memory_format=torch.channels_last)  # what `Decoder.frames` feeds it (same values)
        self.config = model.config
        self.sampler = sampler or self.config.sampler
        # "auto" -> "float32" or "bfloat16" (a one-time measurement where the CPU's flags cannot tell)
        self.dtype_choice = choose_dtype(model, batch_size, self.device, dtype, sampler=self.sampler, features=features, reencode=reencode)
        self.dtype = dtype = self.dtype_choice["dtype"]
        self.schedule = flow_schedule(self.sampler.steps, self.sampler.shift)
        dyn, ae = self.config.dynamics, self.config.autoencoder
        act = self.config.action
        self.cache = KVCache(
            layers=dyn.depth,
            batch_size=batch_size,
            sink=dyn.sink,
            window=dyn.window,
            tokens=self.dynamics.tokens,  # transformer tokens per block
            latent_tokens=ae.tokens,
            heads=dyn.heads,
            head_dim=dyn.dim // dyn.heads,
            latent_channels=ae.latent_channels,
            action_width=act.width,
            action_dtype=torch.float32 if act.kind == "box" else torch.int64,
            device=self.device,
            dtype=DTYPES[dtype],
            workspace=2 + dyn.sink if dyn.fused_commit else 1,
        )
        # fused commit: each row's newest block waits here and is committed by the next step's pass
        self.fused = dyn.fused_commit and not features
        # features mode: every block is committed in the step that makes it (two passes), and the
        # commit pass's head features (B, D) are each row's observable state (`observe` does the same for real frames)
        self.features = torch.zeros(batch_size, dyn.dim, device=self.device) if features else None
        # reencode: commit the encoding of the decoded frame, not the generated latents (the pipeline
        # `observe` runs on real frames), so the cache and the features only ever hold encoded frames
        if reencode and self.fused:
            raise ValueError("reencode needs two-pass steps: build the engine with features=True (or a model without fused_commit)")
        self.reencode = reencode
        self.pending = {
            "latents": torch.zeros(batch_size, ae.tokens, ae.latent_channels, device=self.device),  # (B, N, C)
            "actions": torch.zeros(batch_size, act.width, dtype=self.cache.actions.dtype, device=self.device),  # (B, A)
            "null": torch.zeros(batch_size, dtype=torch.bool, device=self.device),  # (B,)
            "has": torch.zeros(batch_size, dtype=torch.bool, device=self.device),  # (B,)
        }
        self.generators = [torch.Generator(device=self.device) for _ in range(batch_size)]
        for i, g in enumerate(self.generators):
            g.manual_seed(i)
        self.steps = torch.zeros(batch_size, dtype=torch.int64)  # blocks generated since each row's reset
        self.is_reset = torch.zeros(batch_size, dtype=torch.bool)
        self._all = torch.arange(batch_size, device=self.device)
        self._known = torch.zeros(batch_size, dtype=torch.bool, device=self.device)  # (B,) a step's null flags
        self._levels: dict[tuple[float, ...], torch.Tensor] = {}  # noise levels of the passes (`_level`), made once

    @property
    def batch_size(self) -> int:
        return self.cache.batch_size

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == "bfloat16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _level(self, *t: float) -> torch.Tensor:  # (B,) for one noise level, (B, F) for several: constants, made once
        if t not in self._levels:
            self._levels[t] = torch.tensor([t if len(t) > 1 else t[0]] * self.batch_size, device=self.device)
        return self._levels[t]

    def _rows(self, rows: Sequence[int] | torch.Tensor | None) -> torch.Tensor:
        if rows is None:
            return self._all
        r = torch.as_tensor(rows, dtype=torch.int64).reshape(-1)
        if r.numel() and (int(r.min()) < 0 or int(r.max()) >= self.batch_size):
            raise IndexError(f"rows must lie in [0, {self.batch_size}), got {r.tolist()}")
        if len(set(r.tolist())) != r.numel():
            raise ValueError(f"rows must not repeat, got {r.tolist()}")
        return r.to(self.device)

    # ------------------------------------------------------------------ commit
    def _commit(
        self,
        rows: torch.Tensor | None,
        x0: torch.Tensor,
        actions: torch.Tensor,
        null: torch.Tensor,
        context: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Commit pass for rows (R,) (None = all): write the clean block x0 (R, N, C); return reward, termination logit (R,)."""
        dyn = self.dynamics
        if context is None:
            context = dyn.attention_context(self.cache, rows)
        position = self.cache.pos if rows is None else self.cache.pos[rows]
        count = self.cache.count if rows is None else self.cache.count[rows]
        t = torch.full((x0.shape[0],), self.sampler.commit_noise, device=self.device)
        to_sink = bool((count < self.cache.sink).any())  # only blocks going to the sink need their raw keys
        out = dyn.forward_cached(x0, t, actions, null, context, position, commit=True, keys=to_sink)
        if self.features is not None and out.features is not None:
            self.features[self._all if rows is None else rows] = out.features.float()
        # every layer's keys/values feed the hidden state the heads read: finite heads mean finite k/v
        bad = ~(torch.isfinite(out.reward) & torch.isfinite(out.term_logit))
        if bool(bad.any()):
            named = (self._all if rows is None else rows)[bad].tolist()
            raise NumericsError(f"non-finite keys/values or heads for rows {named}; nothing was committed")
        scratch = slice(context[3], context[3] + self.cache.tokens)  # the commit pass left the block's rotated keys and values there
        self.cache.append(context[0][..., scratch, :], context[1][..., scratch, :], out.k, x0, actions, null, rows)
        return out.reward, out.term_logit

    def _commit_pending(self, rows: torch.Tensor) -> None:
        """Commit the pending blocks of rows (R,) with a plain commit pass (before a flush or recache)."""
        p = self.pending
        for r in rows[p["has"][rows]].tolist():
            one = self._all[r : r + 1]
            with self._autocast():
                self._commit(one, p["latents"][one], p["actions"][one], p["null"][one])
            p["has"][r] = False

    def _bound_positions(self) -> None:
        """Rebase rows whose rotary position passed POSITION_LIMIT (re-rotate their window keys; outputs unchanged)."""
        far = (self.cache.pos >= POSITION_LIMIT).nonzero().flatten() if int(self.cache.pos.max()) >= POSITION_LIMIT else ()
        if len(far):
            shift = self.cache.filled()[far] - self.cache.pos[far]  # (R,) back to the smallest positions
            self.dynamics.rotate_window(self.cache, far, shift)

    # ------------------------------------------------------------------ reset
    @torch.inference_mode()
    def reset(
        self,
        rows: Sequence[int] | torch.Tensor | None,
        frames: torch.Tensor | np.ndarray,
        actions: Any = None,
        seeds: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Flush rows and pre-fill them from start frames.

        Args:
            rows: rows to reset (None = all).
            frames: (R, F, H, W, 3) uint8 context, oldest first; the last frame is the first observation.
            actions: optional (R, F) sequence of actions that led to each frame (None = unknown for all).
            seeds: one seed per row for the row's noise generator (None = keep the generators as they are).

        Returns:
            the latents of the last context frame (R, N, C).
        """
        r = self._rows(rows)
        R = len(r)
        frames = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames)
        H, W = self.config.autoencoder.frame_height, self.config.autoencoder.frame_width
        if frames.dim() != 5 or frames.shape[0] != R or tuple(frames.shape[2:]) != (H, W, 3) or frames.dtype != torch.uint8:
            raise ValueError(
                f"reset frames must be uint8 of shape ({R}, F, {H}, {W}, 3), got {tuple(frames.shape)} {frames.dtype}"
            )
        F = frames.shape[1]
        if not 1 <= F <= self.cache.slots:
            raise ValueError(f"reset needs 1..{self.cache.slots} context frames, got {F}")
        if seeds is not None and len(seeds) != R:
            raise ValueError(f"need one seed per reset row ({R}), got {len(seeds)}")
        act_cfg = self.config.action
        if actions is None:
            acts = torch.zeros(R, F, act_cfg.width, dtype=self.cache.actions.dtype, device=self.device)
            null = torch.ones(R, F, dtype=torch.bool, device=self.device)
        else:
            if len(actions) != R:
                raise ValueError(f"need one action sequence per reset row ({R}), got {len(actions)}")
            acts = torch.stack([to_tensor(act_cfg, list(a), F, self.device) for a in actions])  # (R, F, A)
            null = torch.zeros(R, F, dtype=torch.bool, device=self.device)
            null[:, 0] = True  # the first frame's action is never known
        with self._autocast():
            flat = frames.to(self.device).flatten(0, 1)  # (R*F, H, W, 3)
            latents = torch.cat([self.autoencoder.encode(flat[i : i + 1]) for i in range(R * F)]).float()
        latents = latents.view(R, F, *latents.shape[1:])  # (R, F, N, C)
        saved = self.cache.get_rows(r)
        self.cache.reset_rows(r)
        last = F - 1 if self.fused else F  # fused: the newest frame waits for the first step's pass
        try:
            with self._autocast():
                # one row at a time: a row's fresh state never depends on which rows reset with it
                for i in range(R):
                    for f in range(last):
                        self._commit(r[i : i + 1], latents[i : i + 1, f], acts[i : i + 1, f], null[i : i + 1, f])
        except Exception:
            self.cache.set_rows(r, saved)  # a failed reset leaves the rows as they were
            raise
        p = self.pending
        p["has"][r] = self.fused
        if self.fused:
            p["latents"][r], p["actions"][r], p["null"][r] = latents[:, -1], acts[:, -1], null[:, -1]
        if seeds is not None:
            for i, s in zip(r.tolist(), seeds):
                self.generators[i].manual_seed(int(s))
        self.steps[r.cpu()] = 0
        self.is_reset[r.cpu()] = True
        return latents[:, -1]

    # ------------------------------------------------------------------ step
    @torch.inference_mode()
    def step(self, actions: Any, decode: bool = True) -> StepResult:
        """Generate one block for every row under ``actions`` (B actions in the model's space).

        With ``decode=False`` the frames are not decoded (``frames`` is None): the cheap path
        for agents that observe latents.
        """
        if not bool(self.is_reset.all()):
            missing = (~self.is_reset).nonzero().flatten().tolist()
            raise NotResetError(f"rows {missing} were never reset; call reset() before step()")
        a = to_tensor(self.config.action, actions, self.batch_size, self.device)  # (B, A)
        null = self._known
        dyn = self.dynamics
        ae = self.config.autoencoder
        states = [g.get_state() for g in self.generators]
        try:
            with self._autocast():
                # 1. the cache's buffers are the context every pass below attends to
                self._bound_positions()
                noise = draw_noise(self.generators, (ae.tokens, ae.latent_channels), self.device)  # (B, N, C)
                if self.fused:
                    x0, reward, term_logit, commit, kv = self._denoise_fused(noise, a, null)
                else:
                    context = dyn.attention_context(self.cache)
                    position = self.cache.pos
                    base = dyn.residual_base(self.cache.newest_latents(), self.cache.newest_latents(1)) if dyn.config.residual else None

                    # 2. denoise from per-row noise; the passes only read the cache
                    def denoise(x: torch.Tensor, t: float) -> torch.Tensor:
                        return dyn.forward_cached(x, self._level(t), a, null, context, position, commit=False, base=base).pred.float()

                    x0 = sample(denoise, noise, self.schedule)  # (B, N, C)
                # 3. decode before committing, so a failure leaves the cache untouched
                decode = decode or self.reencode
                frames, finite = self.autoencoder.decode_frames(x0) if decode else (None, None)  # (B, H, W, 3) uint8
                # the step's finiteness checks as one sum per row and one sync (fused: keys/values, heads, latents; frames)
                total = x0.sum((1, 2)) + kv + reward + term_logit if self.fused else x0.sum((1, 2))  # (B,)
                ok = torch.isfinite(total) if finite is None else torch.isfinite(total) & finite
                if not bool(ok.all()):
                    heads = ~(torch.isfinite(reward) & torch.isfinite(term_logit)) if self.fused else x0.new_zeros(0, dtype=torch.bool)
                    for what, bad in [("keys/values", ~torch.isfinite(kv) if self.fused else heads), ("heads", heads),
                                      ("latents", ~torch.isfinite(x0).flatten(1).all(1)), ("frames", ~ok)]:  # in the order of the stages
                        if bool(bad.any()):
                            raise NumericsError(f"non-finite {what} for rows {bad.nonzero().flatten().tolist()}; nothing was committed")
                # 4. commit: one pass writes the clean block (fused: the pass already ran; write the pending blocks)
                if self.fused:
                    commit()
                else:
                    if self.reencode:
                        x0 = self.autoencoder.encode(frames).float()  # (B, N, C): what the frame's encoder reads
                    reward, term_logit = self._commit(None, x0, a, null, context)
        except Exception:
            for g, s in zip(self.generators, states):
                g.set_state(s)
            raise
        lo, hi = self.config.reward_range
        self.steps += 1
        feats = None if self.features is None else self.features.clone()
        return StepResult(frames, x0, reward.float().clamp(lo, hi), torch.sigmoid(term_logit.float()), feats)

    @torch.inference_mode()
    def observe(self, frames: torch.Tensor | np.ndarray, actions: Any, rows: Sequence[int] | torch.Tensor | None = None) -> StepResult:
        """Commit observed frames instead of generated ones: the world model as a filter over a real env.

        For each row, encode its frame (R, H, W, 3) uint8 and commit it under the action that
        led to it, exactly as `step` commits a generated block; the returned ``features`` are
        the same function of (frames, actions) that a neural env computes when it is reset
        with the same frames and actions. Needs ``features=True``.
        """
        if self.features is None:
            raise RuntimeError("observe() needs an engine built with features=True")
        r = self._rows(rows)
        if not bool(self.is_reset[r.cpu()].all()):
            raise NotResetError("rows must be reset (from their first frame) before observe()")
        frames = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames)
        ae = self.config.autoencoder
        if frames.dim() != 4 or frames.shape[0] != len(r) or tuple(frames.shape[1:]) != (ae.frame_height, ae.frame_width, 3) or frames.dtype != torch.uint8:
            raise ValueError(f"observe frames must be uint8 of shape ({len(r)}, {ae.frame_height}, {ae.frame_width}, 3), got {tuple(frames.shape)} {frames.dtype}")
        a = to_tensor(self.config.action, actions, len(r), self.device)  # (R, A)
        null = torch.zeros(len(r), dtype=torch.bool, device=self.device)
        with self._autocast():
            self._bound_positions()
            x = self.autoencoder.encode(frames.to(self.device)).float()  # (R, N, C)
            reward, term_logit = self._commit(None if len(r) == self.batch_size and bool((r == self._all).all()) else r, x, a, null)
        lo, hi = self.config.reward_range
        self.steps[r.cpu()] += 1
        return StepResult(None, x, reward.float().clamp(lo, hi), torch.sigmoid(term_logit.float()), self.features[r].clone())

    def _denoise_fused(self, noise: torch.Tensor, a: torch.Tensor, null: torch.Tensor):
        """The next block with the pending blocks' commit fused into its first denoise pass (`worldgym.engine.fused`)."""
        return denoise_fused(self, noise, a, null)

    # ------------------------------------------------------------------ cache operations
    @torch.inference_mode()
    def flush(self, rows: Sequence[int] | torch.Tensor | None = None) -> None:
        """KV flush: keep the sink and the newest block of rows, drop the rest of their window.

        With a fused commit the rows' pending blocks are committed first (they are the newest).
        """
        r = self._rows(rows)
        self._commit_pending(r)
        self.cache.keep_sink_and_last(r)

    @torch.inference_mode()
    def recache(self, rows: Sequence[int] | torch.Tensor | None = None, actions: Any = None) -> None:
        """Re-commit the blocks in rows' caches, in order, from their stored clean latents.

        Args:
            rows: rows to recache (None = all).
            actions: None keeps each block's stored action; otherwise one action (in the
                model's space) per row, used as the conditioning of every non-null block.
        """
        r = self._rows(rows)
        new = None if actions is None else to_tensor(self.config.action, actions, len(r), self.device)
        self._commit_pending(r)  # fused commit: the newest block joins the blocks re-committed
        order = self.cache.order()
        for i, row in enumerate(r.tolist()):
            n = int(self.cache.filled()[row])
            slots = order[row, :n]
            lat = self.cache.latents[row, slots].clone()  # (n, N, C)
            acts = self.cache.actions[row, slots].clone()  # (n, A)
            null = self.cache.null[row, slots].clone()  # (n,)
            if new is not None:
                acts[~null] = new[i]
            one = torch.tensor([row], device=self.device)
            saved = self.cache.get_rows(one)
            self.cache.reset_rows(one)
            try:
                with self._autocast():
                    for j in range(n):
                        self._commit(one, lat[j : j + 1], acts[j : j + 1], null[j : j + 1])
            except Exception:
                self.cache.set_rows(one, saved)
                raise

    # ------------------------------------------------------------------ snapshots
    def get_state(self, rows: Sequence[int] | torch.Tensor | None = None) -> dict[str, Any]:
        """A deep copy of rows' full state: cache, positions, RNG and step counters."""
        r = self._rows(rows)
        state = {
            "cache": self.cache.get_rows(r),
            "pending": {n: t[r].clone() for n, t in self.pending.items()},
            "rng": [self.generators[i].get_state() for i in r.tolist()],
            "steps": self.steps[r.cpu()].clone(),
            "is_reset": self.is_reset[r.cpu()].clone(),
        }
        if self.features is not None:
            state["features"] = self.features[r].clone()
        return state

    def set_state(self, rows: Sequence[int] | torch.Tensor | None, state: dict[str, Any]) -> None:
        """Restore rows from `get_state` output (possibly taken from other rows of the same model)."""
        r = self._rows(rows)
        keys = {"cache", "pending", "rng", "steps", "is_reset"} | ({"features"} if self.features is not None else set())
        if set(state) != keys or len(state["rng"]) != len(r):
            raise ValueError(f"state does not fit {len(r)} rows; pass the output of get_state() for as many rows")
        if set(state["pending"]) != set(self.pending) or state["pending"]["latents"].shape[1:] != self.pending["latents"].shape[1:]:
            raise ValueError("state's pending block does not fit this engine; snapshots only restore into an engine of the same model")
        self.cache.set_rows(r, state["cache"])
        if self.features is not None:
            self.features[r] = state["features"].to(self.features)
        for n, t in self.pending.items():
            t[r] = state["pending"][n].to(t)
        for i, s in zip(r.tolist(), state["rng"]):
            self.generators[i].set_state(s.clone())
        self.steps[r.cpu()] = state["steps"].clone()
        self.is_reset[r.cpu()] = state["is_reset"].clone()

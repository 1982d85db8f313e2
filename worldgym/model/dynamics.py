"""The dynamics network: a block-causal transformer over latent tokens, conditioned by adaLN.

One *block* is one latent frame of N tokens. Inside a block attention is bidirectional;
across blocks it is causal and limited to the attention sink (the first ``sink`` blocks
of the episode) plus the last ``window`` blocks. Conditioning enters through adaLN-Zero
modulation driven by (noise-level embedding + action embedding), per frame. Rotary
positions run over the latent grid and over time; only temporal *distances* reach the
attention scores, and no query is ever farther than sink + window blocks from a key it
reads, so a rollout of any length sees only distances it was trained on (cache.py). The
transformer pieces (attention, MLP, adaLN blocks) are in transformer.py.

The network has two ways in, which compute the same function:

- `forward_cached`: one block against an attention context of earlier clean blocks: the
  engine's `KVCache` buffers as they are (`attention_context`), or training's blocks in
  temporal order (`rotate_context`).
- `forward_sequence`: a whole training sequence laid out as [clean copy | noisy copy]
  with the block-causal sink + window mask, so that training computes exactly what the
  cached inference computes (the teacher-forcing layout of Self-Forcing / CausVid).

The network never draws random numbers and writes only the scratch slots of the
attention buffers it is given (its own keys and values, so attention needs no
concatenation); the engine decides whether a block is committed.

Dimension letters: B batch, T frames in a sequence, N tokens per frame, L tokens in a sequence,
M cached tokens, C latent channels, D model width, H heads, Dh head dim, A action width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from worldgym.model.actions import ActionConfig, ActionEmbedding
from worldgym.model.cache import CacheView, KVCache
from worldgym.model.conditions import distinct_conditions
from worldgym.model.rope import Rotary, rotate
from worldgym.model.transformer import BATCHED_ATTENTION_MIN, Block, linear, modulate, rope_tables, timestep_embedding


@dataclass
class DynamicsConfig:
    """Sizes of the dynamics transformer and its attention context.

    Attributes:
        dim: model width D.
        depth: number of transformer blocks.
        heads: attention heads (dim must divide evenly).
        mlp_ratio: hidden width of the MLP over dim.
        sink: blocks at the start of an episode kept for the whole episode.
        window: most recent blocks kept after the sink.
        train_frames: longest training sequence (sizes the rotary table for training).
        rope_base: rotary frequency base.
        fused_commit: the engine commits each block in the same pass that denoises the next
            one (one pass per step with a 1-step sampler instead of two); reward and
            termination then come from ``denoise_heads``, read on the denoise pass.
        patch: side of the square of latent grid cells one transformer token reads (DiT's
            patch size): 1 = one token per latent cell; 2 turns a 4x4 latent grid into 2x2
            tokens of 4 cells each, a quarter of the tokens (and of the cost per block).
        residual: the network predicts each block as the newest context block plus a change
            (``x0 = base + net``), so copying the last frame costs nothing and the capacity goes to
            what moves, the action's effect included; the engine passes the newest committed block
            as ``base``. False: the network predicts the block itself (models trained before it).
        residual_base: "copy" (the newest block) or "velocity" (``2 x_t - x_{t-1}``: the network predicts the
            acceleration, as learned simulators do; on CartPole its long rollouts diverged, BENCHMARKS.md).
    """

    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    sink: int = 1
    window: int = 8
    train_frames: int = 32
    rope_base: float = 100.0
    fused_commit: bool = False
    patch: int = 1
    residual: bool = False
    residual_base: str = "copy"

    def __post_init__(self) -> None:
        if self.patch < 1:
            raise ValueError(f"patch must be >= 1 (latent cells per token side), got {self.patch}")
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ValueError(f"dim {self.dim} must split into {self.heads} heads of even size")
        if self.window < 1 or self.sink < 0:
            raise ValueError(f"need window >= 1 and sink >= 0, got window={self.window}, sink={self.sink}")
        if self.residual_base not in ("copy", "velocity"):
            raise ValueError(f'residual_base must be "copy" or "velocity", got {self.residual_base!r}')


@dataclass
class DynamicsOutput:
    """One pass over one block.

    Attributes:
        pred: predicted clean latents (B, N, C).
        reward: predicted reward (B,) of the first block, only from commit passes (else None).
        term_logit: predicted termination logit (B,) of the first block, only from commit passes (else None).
        k: un-rotated keys of the first block per layer (L, B, N, H, Dh), only from commit passes.
        v: values of the first block per layer (L, B, N, H, Dh), only from commit passes.
        denoise_reward, denoise_term_logit: ``denoise_heads`` on the last block (B,), when asked.
        features: the heads' input on the first block (B, D), only from commit passes: the
            model's state after reading this block against its context (what agents observe
            with ``obs_type="features"``).
    """

    pred: torch.Tensor
    reward: torch.Tensor | None = None
    term_logit: torch.Tensor | None = None
    k: torch.Tensor | None = None
    v: torch.Tensor | None = None
    denoise_reward: torch.Tensor | None = None
    denoise_term_logit: torch.Tensor | None = None
    features: torch.Tensor | None = None


MEMO_CONDITIONS = 8  # passes of at most this many (row, frame) conditions memoise their modulations (`Dynamics.modulations`)


class Dynamics(nn.Module):
    """Block-causal, action-conditioned latent transformer with reward and termination heads."""

    def __init__(self, config: DynamicsConfig, action: ActionConfig, grid: tuple[int, int], latent_channels: int) -> None:
        super().__init__()
        self.config, self.action_config = config, action
        p = config.patch
        if grid[0] % p or grid[1] % p:
            raise ValueError(f"latent grid {grid[0]}x{grid[1]} does not split into {p}x{p} patches; use a patch that divides both sides")
        self.latent_grid, self.latent_tokens, self.latent_channels = grid, grid[0] * grid[1], latent_channels
        self.grid = (grid[0] // p, grid[1] // p)  # the token grid
        self.tokens = self.grid[0] * self.grid[1]  # transformer tokens per block
        D = config.dim
        self.head_dim = D // config.heads
        self.inp = nn.Linear(latent_channels * p * p, D)
        self.time = nn.Sequential(nn.Linear(D, D), nn.SiLU(), nn.Linear(D, D))
        self.action = ActionEmbedding(action, D)
        self.blocks = nn.ModuleList(Block(D, config.heads, config.mlp_ratio) for _ in range(config.depth))
        self.norm = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(D, 2 * D))
        nn.init.zeros_(self.final_ada[1].weight)
        nn.init.zeros_(self.final_ada[1].bias)
        self.out = nn.Linear(D, latent_channels * p * p)
        self.heads = nn.Sequential(nn.Linear(D, D), nn.SiLU(), nn.Linear(D, 2))  # (reward, termination logit)
        if config.fused_commit:  # the same heads read on the denoise pass of the block (noisy copy)
            self.denoise_heads = nn.Sequential(nn.Linear(D, D), nn.SiLU(), nn.Linear(D, 2))
        max_time = max(config.sink + config.window + 1, config.train_frames)
        self.rotary = Rotary(self.head_dim, self.grid, max_time, config.rope_base)

    @property
    def max_position(self) -> int:
        """Largest temporal position inference ever uses (sink + window)."""
        return self.config.sink + self.config.window

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Latent blocks (B, F*Nl, C) in grid order -> token features (B, F*N, D), p x p cells per token."""
        p = self.config.patch
        if p == 1:
            return self.inp(x)
        B, L, C = x.shape
        th, tw = self.grid
        x = x.reshape(B, L // self.latent_tokens, th, p, tw, p, C).permute(0, 1, 2, 4, 3, 5, 6)  # (B, F, th, tw, p, p, C)
        return self.inp(x.reshape(B, -1, p * p * C))

    def unpatch(self, y: torch.Tensor) -> torch.Tensor:
        """Token outputs (B, F*N, p*p*C) -> latent blocks (B, F*Nl, C) in grid order (the inverse of `embed`'s layout)."""
        p = self.config.patch
        if p == 1:
            return y
        B, L, _ = y.shape
        (th, tw), C = self.grid, self.latent_channels
        y = y.reshape(B, L // self.tokens, th, tw, p, p, C).permute(0, 1, 2, 4, 3, 5, 6)  # (B, F, th, p, tw, p, C)
        return y.reshape(B, -1, C)

    def condition(self, t: torch.Tensor, actions: torch.Tensor, null: torch.Tensor) -> torch.Tensor:
        """Noise levels (B, F), actions (B, F, A), null flags (B, F) -> conditions (B, F, D)."""
        B, Fr = t.shape
        temb = self.time(timestep_embedding(t, self.config.dim))  # (B, F, D)
        aemb = self.action(actions.reshape(B * Fr, -1), null.reshape(B * Fr)).view(B, Fr, -1)  # (B, F, D)
        return temb + aemb

    def _kept(self, name: str, weights: list[torch.Tensor], make: Callable[[], Any]) -> Any:
        """``make()`` computed without autograd and kept as ``self.<name>`` until one of ``weights`` changes."""
        key = tuple((w._version, w.data_ptr()) for w in weights)
        if getattr(self, name, (None,))[0] != key:
            with torch.inference_mode(False), torch.no_grad():
                setattr(self, name, (key, make()))
        return getattr(self, name)[1]

    def adaln(self, cond: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
        """Every block's `Block.cached_mods` from conditions (B, F, D): one SiLU, and without autograd one
        matmul over the blocks' stacked adaLN weights (kept until a weight changes) whose bias already
        holds the ``1 +`` of the two scales, split into the blocks' six (B, F, 1, D) mods by one operator."""
        act = nn.functional.silu(cond)  # (B, F, D): every block's adaLN input
        linears = [block.ada[1] for block in self.blocks]
        if torch.is_grad_enabled():
            return [block.cached_mods(lin(act)) for block, lin in zip(self.blocks, linears)]

        def stacked() -> tuple[torch.Tensor, torch.Tensor]:  # the bias (L, 6, D) of shift, scale, gate x2 gets the scales' 1
            bias = torch.cat([lin.bias for lin in linears]).view(len(linears), 6, -1)
            return torch.cat([lin.weight for lin in linears]), (bias + bias.new_tensor([0, 1, 0, 0, 1, 0])[:, None]).flatten()

        weight, bias = self._kept("_ada", [w for lin in linears for w in (lin.weight, lin.bias)], stacked)
        B, F_, D = act.shape
        mods = nn.functional.linear(act, weight, bias).view(B, F_, 1, -1, D).unbind(3)  # 6L x (B, F, 1, D)
        return [mods[6 * i : 6 * i + 6] for i in range(len(linears))]

    def qk_weights(self) -> torch.Tensor:
        """Every block's query and key RMS-norm weights (L, 2, 1, Dh); without autograd kept until a weight changes."""
        pairs = [(block.attn.q_norm.weight, block.attn.k_norm.weight) for block in self.blocks]
        stack = lambda: torch.stack([torch.stack(pair) for pair in pairs])[:, :, None]  # noqa: E731
        return stack() if torch.is_grad_enabled() else self._kept("_qk", [w for pair in pairs for w in pair], stack)

    def modulations(self, t: torch.Tensor, actions: torch.Tensor, null: torch.Tensor) -> tuple[list[tuple[torch.Tensor, ...]], torch.Tensor]:
        """Every block's `Block.cached_mods` and ``final_ada(cond)`` (B, F, 2D) from noise levels (B, F), actions
        (B, F, A) and null flags (B, F). Without autograd a pass of at most ``MEMO_CONDITIONS`` conditions (one
        env: the engine's levels are constants, a discrete action has few values) looks them up by value,
        made once per (levels, actions, null flags, precision) until a weight changes; a larger pass with at most
        that many distinct conditions (a batch of envs) gathers its rows from a table of them, kept the same way."""
        if torch.is_grad_enabled():
            cond = self.condition(t, actions, null)  # (B, F, D)
            return self.adaln(cond), self.final_ada(cond)
        weights = [p for m in (self.time, self.action, self.final_ada, *(b.ada for b in self.blocks)) for p in m.parameters()]
        memo = self._kept("_memo", weights, dict)
        device = t.device.type
        autocast = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        if t.numel() > MEMO_CONDITIONS:
            (B, F_), L6 = t.shape, 6 * len(self.blocks)
            found = distinct_conditions(t, actions, null, MEMO_CONDITIONS)  # (U, A+2) sorted, and (B*F,) indices into them
            if found is None:
                cond = self.condition(t, actions, null)  # (B, F, D)
                return self.adaln(cond), self.final_ada(cond)
            distinct, inverse = found
            key = ("table", tuple(distinct.flatten().tolist()), autocast)
            if key not in memo:  # (U, 6L + 2, D): every block's six modulations, then final_ada's two halves
                mods, final = self.modulations(distinct[None, :, 0].to(t.dtype), distinct[None, :, 1:-1].to(actions.dtype), distinct[None, :, -1].bool())
                memo[key] = torch.cat([*(m[0] for block in mods for m in block), final[0].unflatten(-1, (2, -1))], 1)
            rows = memo[key].index_select(0, inverse).view(B, F_, 1, L6 + 2, -1)  # (B, F, 1, 6L + 2, D)
            mods = rows.unbind(3)  # 6L + 2 x (B, F, 1, D): one operator, not one per modulation
            return [mods[i : i + 6] for i in range(0, L6, 6)], rows[:, :, 0, L6:].flatten(2)
        key = (tuple(t.shape), tuple(t.flatten().tolist()), tuple(actions.flatten().tolist()), tuple(null.flatten().tolist()), autocast)
        if key not in memo:
            if len(memo) >= 64:  # continuous actions: keep the memo small
                memo.clear()
            with torch.inference_mode(False), torch.no_grad():
                cond = self.condition(t.clone(), actions.clone(), null.clone())  # (B, F, D)
                memo[key] = (self.adaln(cond), self.final_ada(cond))
        return memo[key]

    def residual_base(self, newest: torch.Tensor, older: torch.Tensor) -> torch.Tensor:  # older: the newest if none
        return newest if self.config.residual_base == "copy" else 2 * newest.float() - older.float()

    def plus_base(self, pred: torch.Tensor, base: torch.Tensor | None) -> torch.Tensor:
        """A residual model's block (B, N, C) from the network's change and the newest context block; else pred."""
        if not self.config.residual:
            return pred
        if base is None:
            raise ValueError("a residual dynamics (config.residual) needs base=, the newest clean block of the context")
        return pred.float() + base.float()

    def readout(self, h: torch.Tensor, final: torch.Tensor, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden (B, F*N, D) and ``final_ada(cond)`` (B, F, 2D) -> predicted clean latents (B, F*Nl, C) and
        per-frame head features (B, F, D)."""
        B, L, D = h.shape
        shift, scale = final.chunk(2, dim=-1)  # (B, F, D) each
        normed = self.norm(h)  # (B, F*N, D)
        hn = modulate(normed, shift, scale, frames)  # (B, F*N, D)
        features = normed.view(B, frames, L // frames, D).mean(dim=2)  # (B, F, D)
        return self.unpatch(self.out(hn)), features

    def rotate_context(self, view: CacheView) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rotate a temporal-order view (training's list cache) by window positions into attention buffers.

        The position of the block being generated is then ``view.filled``.

        Returns keys and values (L, B, H, M+N, Dh) whose last N slots are scratch space for the
        block being generated, and a bool mask (B, 1, 1, M+N).
        """
        L, B, M, H, Dh = view.k.shape
        N = self.tokens
        positions = torch.arange(M // N, device=view.k.device)[None]  # (1, S+W)
        cos, sin = self.rotary.tables(positions)  # (1, M, 1, Dh/2)
        k = view.k.new_empty(L, B, H, M + N, Dh)
        v = view.v.new_empty(L, B, H, M + N, Dh)
        k[:, :, :, :M] = rotate(view.k.reshape(L * B, M, H, Dh), cos, sin).view(L, B, M, H, Dh).transpose(2, 3)
        v[:, :, :, :M] = view.v.transpose(2, 3)
        own = torch.ones(B, N, dtype=torch.bool, device=view.valid.device)
        mask = torch.cat([view.valid, own], dim=1)[:, None, None, :]  # (B, 1, 1, M+N)
        return k, v, mask

    def attention_context(
        self, cache: KVCache, rows: torch.Tensor | None = None, blocks: int = 1, pending: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, int]:
        """The engine cache's buffers as the attention context of rows' next pass.

        Window keys were rotated once, at commit, by their rotary position (cache.py). The sink's
        keys are the only ones whose rotation changes from step to step: this rotates them into
        their slots at the distance they have in the training layout (the number of blocks the
        row can attend to), writing only workspace slots (of the cache, or of the rows' copy).

        Args:
            cache: the engine's cache.
            rows: (R,) rows (None = all).
            blocks: 1 (one block) or 2 (a fused pass: the pending block's commit, then the
                next block, which sees the pending block and not the block its commit evicts).
            pending: (R,) bool, with ``blocks=2``: rows that have a pending block; rows without
                one only denoise (their first block is ignored).

        Returns:
            keys and values (L, R, H, T, Dh) (the cache's own tensors when ``rows`` is None,
            copies of the rows otherwise), the mask (`KVCache.pass_mask`: bool (R, 1, blocks*N, T),
            or one additive (1, 1, blocks*N, T) when every row is in the same state, or None when
            every key may be read), and the token where the pass writes its blocks (scratch).
        """
        S, N, P = cache.sink, cache.tokens, cache.slots
        pos = cache.pos if rows is None else cache.pos[rows]
        filled = cache.filled() if rows is None else cache.filled()[rows]
        k, v = (cache.k, cache.v) if rows is None else (cache.k[:, rows], cache.v[:, rows])
        raw = cache.sink_k if rows is None else cache.sink_k[:, rows]  # (L, R, H, S*N, Dh)

        extra = cache.workspace
        if blocks == 2 and extra < 2 + S:
            raise ValueError(f"a fused pass needs a cache with {2 + S} workspace slots, this one has {extra}")
        if S:  # into k (the cache's workspace or the rows' copy): the sink at its distance from the pass's block(s)
            pend = pending.to(torch.int64) if blocks == 2 else None  # (R,); the next block sees the sink once the pending one is in
            sink_pos = torch.stack([pos - filled, pos + pend - (filled + pend).clamp(max=P)], 1) if blocks == 2 else (pos - filled)[:, None]
            cos, sin = self.rotary.at_full(sink_pos[:, :, None] + cache._slot_index[:S])  # (R, G, S*N, 1, Dh), both views at once
            cos, sin = cos.transpose(2, 3).to(k.dtype), sin.transpose(2, 3).to(k.dtype)  # (R, G, 1, S*N, Dh)
            swapped = raw.roll(raw.shape[-1] // 2, dims=-1)  # (L, R, H, S*N, Dh): `rotate_full` written into the slots
            for g, at in enumerate((0, P + 2)[:blocks]):  # the second copy of the sink is the next block's (same values)
                torch.mul(raw, cos[:, g], out=k[:, :, :, at * N : (at + S) * N]).addcmul_(swapped, sin[:, g])
            if blocks == 2:
                v[:, :, :, (P + 2) * N : (P + 2 + S) * N] = v[:, :, :, : S * N]  # v is the cache's or the rows' copy
        count = cache.count if rows is None else cache.count[rows]
        return k, v, cache.pass_mask(rows, count, pending, blocks, k.dtype), P * N  # one env or a lockstep batch: built once

    def rotate_window(self, cache: KVCache, rows: torch.Tensor, delta: torch.Tensor) -> None:
        """Move rows' rotary positions by ``delta`` (R,): re-rotate their window keys and shift ``pos``.

        Attention scores depend only on distances, so outputs do not change (up to float
        rounding); the engine uses this to keep positions small in endless rollouts.
        """
        S, N, W = cache.sink, cache.tokens, cache.window
        cos, sin = self.rotary.at(delta[:, None].expand(-1, W), grid=False)  # (R, W*N, 1, Dh/2)
        ring = slice(S * N, (S + W) * N)
        cache.k[:, rows, :, ring] = rotate(cache.k[:, rows, :, ring], cos.transpose(1, 2)[None], sin.transpose(1, 2)[None])
        cache.pos[rows] += delta

    def forward_cached(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        actions: torch.Tensor,
        null: torch.Tensor,
        context: tuple,
        position: torch.Tensor,
        commit: bool,
        denoise_heads: bool = False,
        keys: bool = True,
        keys_only: bool = False,
        base: torch.Tensor | None = None,
    ) -> DynamicsOutput:
        """F consecutive blocks x (B, F*N, C) (usually F = 1) against a rotated context.

        Args:
            x: (B, F*N, C) blocks, or (B, N, C) for one.
            t, null: (B, F) noise levels and null-action flags, or (B,) for one block.
            actions: (B, F, A), or (B, A) for one block.
            context: keys, values (L, B, H, T, Dh) rotated relative to ``position`` and a mask
                (B, 1, F*N, T) or None, and optionally the token where this pass's scratch
                starts (default: the last F*N tokens): the output of `attention_context`
                (inference) or `rotate_context` (training).
            position: (B, F) or (B,) rotary position of each block (the cache's ``pos``, or the
                number of blocks in the context for `rotate_context`).
            commit: also return the heads' reward and termination on the first block (a
                commit pass); its rotated keys and its values are then in the context's
                scratch slots.
            denoise_heads: also return ``denoise_heads`` on the last block.
            keys: with ``commit``, also return the first block's un-rotated keys and values
                stacked over layers (training's list cache keeps them; the engine only needs
                the raw keys of blocks that go to the sink).
            keys_only: with ``commit`` and F > 1, the first block only gives keys and values
                (a fused pass: the last layer computes its keys and values, not its outputs,
                and its heads are not read; ``reward`` and ``term_logit`` stay None).
            base: (B, N, C) the newest clean block before the last one (residual models: added to ``pred``;
                a commit pass may leave it out).

        Returns:
            the predicted clean latents of the last block (B, N, C), and what was asked.
        """
        if t.dim() == 1:  # one block
            t, actions, null, position = t[:, None], actions[:, None], null[:, None], position[:, None]
        ctx_k, ctx_v, mask = context[:3]
        F_, N = t.shape[1], self.tokens
        start = context[3] if len(context) > 3 else ctx_k[0].shape[-2] - F_ * N
        mods, final = self.modulations(t, actions, null)  # every block's six (B, F, 1, D) modulations, (B, F, 2D)
        # (B, F*N, 1, Dh): [cos, cos] and [-sin, sin], once for every layer (a batch: once per distinct position)
        distinct, rows = torch.unique(position, return_inverse=True) if position.numel() > 16 else (position, None)
        cos, sin = self.rotary.at_full(distinct) if rows is None else self.rotary.full_tables(distinct[:, None])
        cos, sin = rope_tables(cos, sin, self.qk_weights(), ctx_k[0].dtype, rows)  # (L, B, F*N, 2, 1, Dh): q/k norm weights folded in
        if mask is not None and mask.dtype == torch.bool:
            if bool(mask.all()):
                mask = None  # every slot is valid: let attention take its fast path
            else:  # additive, built once for every layer: a float mask costs attention less than a bool one
                mask = torch.zeros(mask.shape, dtype=ctx_k.dtype, device=mask.device).masked_fill_(~mask, float("-inf"))
        if mask is not None and mask.shape[0] * self.config.heads >= BATCHED_ATTENTION_MIN:  # `attend`'s batched layout, made once
            mask = mask.expand(-1, self.config.heads, -1, -1).reshape(-1, *mask.shape[2:])  # (B*H, F*N, T)
        skip = int(keys_only and commit and F_ > 1)
        B = x.shape[0]
        h = self.embed(x).view(B, F_, N, -1)  # (B, F, N, D): per frame inside the blocks
        ks, vs = [], []
        last = len(self.blocks) - 1
        per_layer = zip(self.blocks, mods, cos.unbind(0), sin.unbind(0), ctx_k, ctx_v)  # one operator per stack, not one per layer
        for i, (block, mod, c, sn, k_buf, v_buf) in enumerate(per_layer):
            h, k, v = block.forward_cached(h, mod, c, sn, k_buf, v_buf, mask, start, skip if i == last else 0, raw_keys=commit and keys)
            if commit and keys:
                ks.append(k[:, :N])
                vs.append(v[:, :N])
        h = h.reshape(B, (F_ - skip) * N, -1)  # (B, (F-skip)*N, D)
        pred, features = self.readout(h, final[:, skip:], F_ - skip)  # (B, (F-skip)*Nl, C), (B, F-skip, D)
        pred = pred[:, -self.latent_tokens :]  # a commit pass's pred is never read: it needs no base
        out = DynamicsOutput(pred=pred if commit and base is None else self.plus_base(pred, base))
        if commit and not skip:
            heads = linear(self.heads[2], linear(self.heads[0], features[:, 0], silu=True)).float()  # (B, 2): `heads`
            out.reward, out.term_logit = heads[:, 0], heads[:, 1]
            out.features = features[:, 0]  # (B, D)
        if commit and keys:
            out.k, out.v = torch.stack(ks), torch.stack(vs)
        if denoise_heads:
            heads = linear(self.denoise_heads[2], linear(self.denoise_heads[0], features[:, -1], silu=True)).float()  # (B, 2)
            out.denoise_reward, out.denoise_term_logit = heads[:, 0], heads[:, 1]
        return out

    def sequence_mask(self, frames: int, device: torch.device | str) -> torch.Tensor:
        """Token-level mask (2*T*N, 2*T*N) for the [clean | noisy] training layout."""
        S, W = self.config.sink, self.config.window
        i = torch.arange(frames, device=device)[:, None]  # query block
        j = torch.arange(frames, device=device)[None, :]  # key block
        context = (j < i) & ((j < S) | (j >= i - W))  # (T, T) cached blocks a block attends to
        own = j == i
        none = torch.zeros_like(own)
        blocks = torch.cat([torch.cat([context | own, none], 1), torch.cat([context, own], 1)], 0)  # (2T, 2T)
        return blocks.repeat_interleave(self.tokens, 0).repeat_interleave(self.tokens, 1)  # (2TN, 2TN)

    def forward_sequence(
        self,
        clean: torch.Tensor,
        noisy: torch.Tensor,
        t_clean: torch.Tensor,
        t_noisy: torch.Tensor,
        actions: torch.Tensor,
        null: torch.Tensor,
        denoise_heads: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        """Training pass over sequences of T frames.

        Args:
            clean: context copy (B, T, N, C) (lightly noised clean latents in training).
            noisy: noisy copy (B, T, N, C).
            t_clean, t_noisy: noise levels (B, T) of each copy.
            actions: (B, T, A) action that led to each frame; null: (B, T) True where unknown.

            denoise_heads: also return ``denoise_heads`` on the noisy copy (what a fused
                engine reads on the denoise pass).

        Returns:
            predicted clean latents of the noisy copy (B, T, N, C), and reward and
            termination logits (B, T) from the clean copy (what a commit pass reads); with
            ``denoise_heads`` also reward and termination logits (B, T) from the noisy copy.
        """
        B, T, Nl, C = clean.shape
        N = self.tokens
        if T > self.rotary.max_time:
            raise ValueError(f"sequence of {T} frames exceeds train_frames={self.rotary.max_time}")
        S, W = self.config.sink, self.config.window
        cond = self.condition(
            torch.cat([t_clean, t_noisy], 1), torch.cat([actions, actions], 1), torch.cat([null, null], 1)
        )  # (B, 2T, D)
        frame = torch.arange(T, device=clean.device).repeat(2)  # (2T,) absolute frame index of each block
        rope_abs = self.rotary.tables(frame[None])  # (1, 2TN, 1, Dh/2) x2
        rope_eff = self.rotary.tables(frame.clamp(max=S + W)[None])
        is_clean = torch.arange(2 * T, device=clean.device) < T
        sink_cols = (is_clean & (frame < S)).repeat_interleave(N)  # (2TN,)
        mask = self.sequence_mask(T, clean.device)
        h = self.embed(torch.cat([clean, noisy], 1).reshape(B, 2 * T * Nl, C))  # (B, 2TN, D)
        for block in self.blocks:
            h = block.forward_sequence(h, cond, rope_abs, rope_eff, sink_cols, mask)
        pred, features = self.readout(h, self.final_ada(cond), 2 * T)  # (B, 2T*Nl, C), (B, 2T, D)
        heads = self.heads(features[:, :T]).float()  # (B, T, 2)
        pred = pred.view(B, 2 * T, Nl, C)[:, T:]  # (B, T, Nl, C)
        if self.config.residual:  # frame i's base comes from the context copies of frames i-1 and i-2 (frame 0 is never a target)
            newest = torch.cat([torch.zeros_like(clean[:, :1]), clean[:, :-1]], 1)
            pred = pred + self.residual_base(newest, torch.cat([newest[:, :2], clean[:, :-2]], 1))
        if denoise_heads:
            noisy_heads = self.denoise_heads(features[:, T:]).float()  # (B, T, 2)
            return pred, heads[..., 0], heads[..., 1], noisy_heads[..., 0], noisy_heads[..., 1]
        return pred, heads[..., 0], heads[..., 1]

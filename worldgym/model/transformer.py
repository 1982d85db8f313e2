"""The transformer pieces of the dynamics network: norms, attention, MLP, adaLN blocks.

`Block` is a pre-norm transformer block modulated per frame by adaLN-Zero (DiT-style). Its
attention has two ways in, which compute the same function: `forward_cached` reads keys
and values from attention buffers (the engine's KV cache or training's rotated list cache)
and writes its own into their scratch slots; `forward_sequence` runs a whole training
sequence under a block-causal mask. `worldgym.model.dynamics` assembles them into the network.

Dimension letters: B batch, F frames in a pass, N tokens, L sequence length, D model
width, H heads, Dh head dim, T context tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from worldgym.model.rope import rotate, rotate_full

FUSED_LINEAR_MIN = 64  # rows from which a bfloat16 CPU linear without autograd runs as one oneDNN call (`linear`)
ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def linear(layer: nn.Linear, x: torch.Tensor, silu: bool = False) -> torch.Tensor:
    """``layer(x)``, then SiLU when asked. Without autograd, bfloat16 x of at least ``FUSED_LINEAR_MIN`` rows on
    a CPU runs as one oneDNN matmul (the op torch's compiler emits) with the bias and the SiLU inside it, on
    bfloat16 weights kept until they change: the bias is not first broadcast into the output and the SiLU is not
    another pass. The same values as ``F.linear``; the SiLU is rounded once instead of twice. Any other x without
    autograd goes straight to ``F.linear`` (a one-env step is dispatch-bound: no module call)."""
    inference = not torch.is_grad_enabled()
    if inference and ONEDNN and x.dtype == torch.bfloat16 and x.device.type == "cpu" and x.numel() >= FUSED_LINEAR_MIN * x.shape[-1]:
        w, b = layer.weight, layer.bias
        key = (w._version, b._version, w.data_ptr(), b.data_ptr())
        if getattr(layer, "_bf16", (None,))[0] != key:
            with torch.inference_mode(False), torch.no_grad():
                layer._bf16 = (key, w.to(torch.bfloat16), b.to(torch.bfloat16))
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), *layer._bf16[1:], "swish" if silu else "none", [], "")
    y = F.linear(x, layer.weight, layer.bias) if inference else layer(x)
    return F.silu(y, inplace=inference) if silu else y


class RMSNorm(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight.to(x.dtype), eps=1e-6)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = RMSNorm(self.head_dim)
        self.k_norm = RMSNorm(self.head_dim)
        self.proj = nn.Linear(dim, dim)

    def qk_norm_weight(self, dtype: torch.dtype) -> torch.Tensor:
        """Both norms' weights stacked (2, 1, Dh) in ``dtype``; without autograd kept until a weight changes."""
        if torch.is_grad_enabled():
            return torch.stack([self.q_norm.weight, self.k_norm.weight])[:, None].to(dtype)
        q, k = self.q_norm.weight, self.k_norm.weight
        key = (q._version, k._version, q.data_ptr(), k.data_ptr(), dtype)
        if getattr(self, "_qk_weight", (None,))[0] != key:
            with torch.inference_mode(False), torch.no_grad():
                self._qk_weight = (key, torch.stack([q, k])[:, None].to(dtype))
        return self._qk_weight[1]

    def qkv_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, L, D) -> normalised queries and keys (B, L, 2, H, Dh), values (B, L, H, Dh)."""
        B, L, D = x.shape
        qkv = self.qkv(x).view(B, L, 3, self.heads, self.head_dim)  # (B, L, 3, H, Dh)
        weight = self.qk_norm_weight(qkv.dtype)  # (2, 1, Dh)
        qk = F.rms_norm(qkv[:, :, :2], (self.head_dim,), eps=1e-6) * weight  # (B, L, 2, H, Dh): both norms in one pass
        return qk, qkv[:, :, 2]

    def forward_cached(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        ctx_k: torch.Tensor,
        ctx_v: torch.Tensor,
        mask: torch.Tensor | None,
        start: int,
        skip: int = 0,
        raw_keys: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """x (B, F*N, D) of F blocks against context buffers (B, H, T, Dh); returns (out, raw k, v).

        ``cos``, ``sin`` are this layer's full rotary tables with the query and key norms'
        weights folded in, (B, F*N, 2, 1, Dh) (`rope_tables`): rotating the unweighted RMS-normed
        queries and keys by them equals rotating the weighted ones by `Rotary.at_full`'s tables.
        The context keys are already rotated; tokens ``start .. start + F*N`` of both buffers
        are scratch space this pass fills with its own keys and values (no concatenation).
        The first ``skip`` tokens only give keys and values: ``out`` is (B, F*N - skip, D).
        The un-rotated normed keys (B, F*N, H, Dh) are returned only with ``raw_keys`` (else None).
        """
        B, N, D = x.shape  # N = F*N tokens here
        qkv = linear(self.qkv, x).view(B, N, 3, self.heads, self.head_dim)  # (B, N, 3, H, Dh)
        qk = rms_normalize(qkv[:, :, :2])  # (B, N, 2, H, Dh), the weights are in the tables
        v = qkv[:, :, 2]  # (B, N, H, Dh)
        qkr = rotate_full(qk, cos, sin)  # (B, N, 2, H, Dh)
        ctx_k[:, :, start : start + N] = qkr[:, :, 1].transpose(1, 2)
        ctx_v[:, :, start : start + N] = v.transpose(1, 2)
        q = qkr[:, skip:, 0].transpose(1, 2)  # (B, H, N - skip, Dh)
        out = attend(q, ctx_k, ctx_v, None if mask is None else mask[..., skip:, :])  # (B, H, N - skip, Dh)
        raw = qk[:, :, 1] * self.k_norm.weight.to(qk.dtype) if raw_keys else None  # (B, N, H, Dh)
        return linear(self.proj, out.transpose(1, 2).reshape(B, N - skip, D)), raw, v  # (B, N-skip, D)

    def forward_sequence(
        self,
        x: torch.Tensor,
        rope_abs: tuple[torch.Tensor, torch.Tensor],
        rope_eff: tuple[torch.Tensor, torch.Tensor],
        sink_cols: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """x (B, L, D) of a whole [clean | noisy] sequence under the block-causal mask (L, L).

        Keys sit at their absolute frame index. A query scores window keys from its absolute
        position (only the distance matters, which equals the cached distance) and sink keys
        from its *effective* position min(t, sink + window), the position it has in the cache.
        """
        B, L, D = x.shape
        qk, v = self.qkv_heads(x)  # (B, L, 2, H, Dh), (B, L, H, Dh)
        q, k = qk.unbind(2)  # (B, L, H, Dh) each
        k = rotate(k, *rope_abs).transpose(1, 2)  # (B, H, L, Dh)
        q_abs = rotate(q, *rope_abs).transpose(1, 2)  # (B, H, L, Dh)
        scale = 1.0 / math.sqrt(self.head_dim)
        scores = (q_abs @ k.transpose(-2, -1)) * scale  # (B, H, L, L)
        if bool(sink_cols.any()):
            q_eff = rotate(q, *rope_eff).transpose(1, 2)  # (B, H, L, Dh)
            sink_scores = (q_eff @ k[:, :, sink_cols].transpose(-2, -1)) * scale  # (B, H, L, #sink)
            scores = scores.clone()
            scores[..., sink_cols] = sink_scores
        scores = scores.masked_fill(~mask, float("-inf"))
        out = scores.softmax(dim=-1) @ v.transpose(1, 2)  # (B, H, L, Dh)
        return self.proj(out.transpose(1, 2).reshape(B, L, D))  # (B, L, D)


def rms_normalize(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``F.rms_norm(x, (Dh,), eps=eps)`` without a weight. For bfloat16 x the norm accumulates in float32 from
    one read of x (rounded to bfloat16 once, a rounding the product rounds again anyway), where F.rms_norm works
    on an upcast copy (five passes, three in float32) and a float32 result dtype costs a strided upcast copy."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), eps=eps)
    mean_square = torch.linalg.vector_norm(x, dim=-1, keepdim=True).float().square_().div_(x.shape[-1])
    return x * mean_square.add_(eps).rsqrt_().to(x.dtype)


def rope_tables(
    cos: torch.Tensor, sin: torch.Tensor, weights: torch.Tensor, dtype: torch.dtype, rows: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Full rotary tables (B, L, 1, Dh) (`Rotary.at_full`) with every layer's query and key norm weights
    ``weights`` (layers, 2, 1, Dh) folded in: (layers, B, L, 2, 1, Dh) each in ``dtype``, for `Attention.forward_cached`.

    Rotating w * y by ``cos`` and ``sin`` is y * (w * cos) + swap(y) * (swap(w) * sin), with swap
    the half swap of `rotate_full`: two tables for all layers instead of a weight product per layer.
    With ``rows`` (R, F) indices into the tables' B, the tables are made for B distinct positions of
    one frame each (a batch's rows share a few) and gathered into (layers, R, F*L, 2, 1, Dh): the same values.
    """
    swapped = weights.roll(weights.shape[-1] // 2, dims=-1)  # (layers, 2, 1, Dh)
    cos, sin = cos[None, :, :, None] * weights[:, None, None], sin[None, :, :, None] * swapped[:, None, None]
    if cos.dtype != dtype:  # bfloat16 engines: the tables in the cache's precision, once for every layer
        cos, sin = cos.to(dtype), sin.to(dtype)
    if rows is None:
        return cos, sin
    shape = (weights.shape[0], rows.shape[0], rows.shape[1] * cos.shape[2], *cos.shape[3:])  # (layers, R, F*L, 2, 1, Dh)
    return cos.index_select(1, rows.flatten()).view(shape), sin.index_select(1, rows.flatten()).view(shape)


BATCHED_ATTENTION_MIN = 64  # batch x heads from which `attend` multiplies explicitly (faster than the CPU SDPA kernel there)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax attention of q (B, H, Lq, Dh) over k, v (B, H, T, Dh) with an additive mask (B, 1, Lq, T) or None
    (from ``BATCHED_ATTENTION_MIN`` rows x heads it may come expanded to the batched layout, (B*H, Lq, T)).

    The same function as `F.scaled_dot_product_attention` (default scale 1/sqrt(Dh)). One
    call of it costs the fewest operators, so small batches use it; from
    ``BATCHED_ATTENTION_MIN`` rows x heads two batched matmuls and a softmax ran faster on
    CPU at the engine's shapes (few queries, tens of keys: 256 x 4 heads x 8 queries x 48 keys,
    1.7 ms against 3.5 ms in bfloat16, 2.0 against 3.0 in float32, one thread).
    """
    B, H, Lq, Dh = q.shape
    if B * H < BATCHED_ATTENTION_MIN:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    T = k.shape[2]
    q, k, v = q.reshape(B * H, Lq, Dh), k.reshape(B * H, T, Dh), v.reshape(B * H, T, Dh)
    if mask is None:
        scores = torch.bmm(q, k.transpose(1, 2)).mul_(Dh**-0.5)  # (B*H, Lq, T)
    else:
        if mask.dim() == 4:  # one mask for every row (1, 1, Lq, T) broadcasts; per-row masks expand over heads
            mask = mask.reshape(1, Lq, T) if mask.shape[0] == 1 else mask.expand(B, H, Lq, T).reshape(B * H, Lq, T)  # (B*H, Lq, T)
        scores = torch.baddbmm(mask, q, k.transpose(1, 2), alpha=Dh**-0.5)
    # a bfloat16 softmax over rows of tens of keys runs 4x slower on CPU than one into float32 (the same values after the cast)
    return torch.bmm(scores.softmax(-1, dtype=torch.float32).to(v.dtype), v).view(B, H, Lq, Dh)  # (B, H, Lq, Dh)


class MLP(nn.Module):
    def __init__(self, dim: int, ratio: float) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.fc = nn.Linear(dim, hidden)
        self.out = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in place when no graph is recorded (inference): one buffer of the widest activation less
        return linear(self.out, linear(self.fc, x, silu=True))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, frames: int) -> torch.Tensor:
    """x (B, F*N, D) modulated per frame by shift, scale (B, F, D): x * (1 + scale) + shift in one pass."""
    B, L, D = x.shape
    x = x.view(B, frames, L // frames, D)  # (B, F, N, D)
    return torch.addcmul(shift[:, :, None], x, 1 + scale[:, :, None]).view(B, L, D)


def gated_add(residual: torch.Tensor, x: torch.Tensor, gate: torch.Tensor, frames: int) -> torch.Tensor:
    """residual + x * gate, x and residual (B, F*N, D) gated per frame by (B, F, D), in one pass."""
    B, L, D = x.shape
    view = (B, frames, L // frames, D)
    return torch.addcmul(residual.view(view), x.view(view), gate[:, :, None]).view(B, L, D)  # (B, F*N, D)


class Block(nn.Module):
    """Pre-norm transformer block with adaLN-Zero modulation from a per-frame condition."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP(dim, mlp_ratio)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def mods(self, cond: torch.Tensor) -> list[torch.Tensor]:
        return list(self.ada(cond).chunk(6, dim=-1))  # 6 x (B, F, D)

    def cached_mods(self, ada: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """`mods` for `forward_cached` from the adaLN output ``ada`` (B, F, 6D) (``self.ada(cond)``):
        shift, 1 + scale, gate, shift, 1 + scale, gate, each (B, F, 1, D) to broadcast over a frame's tokens."""
        s1, c1, g1, s2, c2, g2 = ada[:, :, None].chunk(6, dim=-1)  # 6 x (B, F, 1, D)
        return s1, 1 + c1, g1, s2, 1 + c2, g2

    def forward_cached(self, x, mods, cos, sin, ctx_k, ctx_v, mask, start, skip: int = 0, raw_keys: bool = True):
        """Blocks x (B, F, N, D) modulated by ``cached_mods``; the first ``skip`` blocks only give keys and
        values (x out: (B, F - skip, N, D)); ``cos``, ``sin`` as `Attention.forward_cached` takes them.
        The same function as `forward_sequence`'s per-frame modulation, with the residual stream kept
        per frame so that modulation and gating are one operator each."""
        B, frames, N, D = x.shape
        s1, c1, g1, s2, c2, g2 = mods
        h = torch.addcmul(s1, F.layer_norm(x, (D,), eps=self.norm1.eps), c1).view(B, frames * N, D)  # (B, F*N, D): norm1, no module call
        a, k, v = self.attn.forward_cached(h, cos, sin, ctx_k, ctx_v, mask, start, skip * N, raw_keys)
        if skip:
            x, frames, g1, s2, c2, g2 = x[:, skip:], frames - skip, g1[:, skip:], s2[:, skip:], c2[:, skip:], g2[:, skip:]
        x = torch.addcmul(x, a.view(B, frames, N, D), g1)  # (B, F, N, D)
        x = torch.addcmul(x, self.mlp.forward(torch.addcmul(s2, F.layer_norm(x, (D,), eps=self.norm2.eps), c2)), g2)
        return x, k, v

    def forward_sequence(self, x, cond, rope_abs, rope_eff, sink_cols, mask):
        frames = cond.shape[1]
        s1, c1, g1, s2, c2, g2 = self.mods(cond)
        a = self.attn.forward_sequence(modulate(self.norm1(x), s1, c1, frames), rope_abs, rope_eff, sink_cols, mask)
        x = gated_add(x, a, g1, frames)
        return gated_add(x, self.mlp(modulate(self.norm2(x), s2, c2, frames)), g2, frames)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Noise levels t (...,) in [0, 1] -> sinusoidal features (..., dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * 1000.0)[..., None] * freqs  # (..., dim/2)
    return torch.cat([args.cos(), args.sin()], dim=-1)  # (..., dim)

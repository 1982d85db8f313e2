"""The cache-free baseline: one block against its whole context window, recomputed from latents.

Models without a KV cache compute every step this way; `worldgym bench` measures the cache
against it, and the engine tests check that both compute the same block while nothing was
evicted.

Dimension letters: B batch, F context frames, N tokens, C latent channels, A action width.
"""

from __future__ import annotations

import torch

from worldgym.model.dynamics import Dynamics


def forward_window(
    dyn: Dynamics,
    context: torch.Tensor,
    context_t: torch.Tensor,
    context_actions: torch.Tensor,
    context_null: torch.Tensor,
    x: torch.Tensor,
    t: torch.Tensor,
    actions: torch.Tensor,
    null: torch.Tensor,
) -> torch.Tensor:
    """One block x (B, N, C) against F <= sink + window clean context frames (B, F, N, C), with no cache.

    Recomputes the whole window from its latents (the cache-free way, as models without a
    KV cache do): context frames attend causally to each other, the block to all of them.
    Equals `forward_cached` whenever the cache has never evicted a block. Used as the
    baseline the cache is measured against.

    Returns:
        predicted clean latents of the block (B, N, C).
    """
    B, Fc, Nl, C = context.shape
    N = dyn.tokens
    if Fc > dyn.max_position:
        raise ValueError(f"context of {Fc} frames exceeds sink + window = {dyn.max_position}")
    cond = dyn.condition(
        torch.cat([context_t, t[:, None]], 1),
        torch.cat([context_actions, actions[:, None]], 1),
        torch.cat([context_null, null[:, None]], 1),
    )  # (B, F+1, D)
    frame = torch.arange(Fc + 1, device=x.device)
    rope = dyn.rotary.tables(frame[None])  # (1, (F+1)N, 1, Dh/2) x2
    no_sink = torch.zeros((Fc + 1) * N, dtype=torch.bool, device=x.device)
    mask = (frame[None, :] <= frame[:, None]).repeat_interleave(N, 0).repeat_interleave(N, 1)  # ((F+1)N, (F+1)N)
    h = dyn.embed(torch.cat([context, x[:, None]], 1).reshape(B, (Fc + 1) * Nl, C))  # (B, (F+1)N, D)
    for block in dyn.blocks:
        h = block.forward_sequence(h, cond, rope, rope, no_sink, mask)
    pred, _ = dyn.readout(h, dyn.final_ada(cond), Fc + 1)  # (B, (F+1)Nl, C)
    return dyn.plus_base(pred[:, -Nl:], dyn.residual_base(context[:, -1], context[:, -min(2, Fc)]))  # (B, Nl, C)

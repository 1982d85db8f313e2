"""The fused commit: the pending block commits inside the first denoise pass of the next block.

With ``dynamics.fused_commit`` a step's first pass carries two blocks per row, the previous
block committing (clean) and the new block denoising, so a 1-step sampler makes one pass per
step instead of two. `denoise_fused` runs that sampling for a `worldgym.engine.WorldModel`
and hands back the commit to run once everything is checked; the engine stays the only code
that writes the cache.

Dimension letters: B batch rows, N tokens, C latent channels.
"""

from __future__ import annotations

from typing import Any

import torch

from worldgym.model.sampler import sample


def denoise_fused(wm: Any, noise: torch.Tensor, a: torch.Tensor, null: torch.Tensor):
    """Sample the next block with the pending blocks' commit fused into the first denoise pass.

    The first pass runs two blocks per row: the pending block (clean, committing) and the
    new block (first noise level), which attends to the cache, the pending block and not
    to the block the pending commit will evict. Later passes of a multi-step sampler read
    the same context (the pending block's keys stay in their scratch slot). Nothing is
    written to the cache until the returned ``commit`` is called.

    Returns:
        x0 (B, N, C), reward and termination logit (B,) from ``denoise_heads`` on the last
        pass, the function that commits the pending blocks and makes x0 pending, and (B,) the
        sum of the pending blocks' keys and values over every layer (0 for rows without one).
    """
    dyn, p, B, N = wm.dynamics, wm.pending, wm.batch_size, wm.cache.tokens
    pend = p["has"]
    k, v, mask, start = dyn.attention_context(wm.cache, None, blocks=2, pending=pend)
    position = wm.cache.pos + pend.long()  # (B,) of the new block
    passes = len(wm.schedule) - 1
    done: list[Any] = []
    base = None
    if dyn.config.residual:  # from the newest clean blocks: the pending one (if any), then the cache's
        cached, earlier = wm.cache.newest_latents(), wm.cache.newest_latents(1)
        older = torch.where(pend[:, None, None], torch.where((wm.cache.count > 0)[:, None, None], cached, p["latents"]), earlier)
        base = dyn.residual_base(torch.where(pend[:, None, None], p["latents"], cached), older)
    kv: list[torch.Tensor] = []

    def denoise(x: torch.Tensor, t: float) -> torch.Tensor:
        last = len(done) == passes - 1
        if not done:  # the fused pass: [pending block at the commit level | new block]
            xs, ts = torch.cat([p["latents"], x], 1), wm._level(wm.sampler.commit_noise, t)  # (B, 2N, C), (B, 2)
            acts, nulls = torch.stack([p["actions"], a], 1), torch.stack([p["null"], null], 1)
            both = torch.stack([wm.cache.pos, position], 1)
            to_sink = bool((pend & (wm.cache.count < wm.cache.sink)).any())  # raw keys only for blocks going to the sink
            out = dyn.forward_cached(xs, ts, acts, nulls, (k, v, mask, start), both, True, last, keys=to_sink, keys_only=True, base=base)
            # the pending blocks' keys and values in their scratch slots, every layer (one reduction per buffer)
            scratch = slice(start, start + N)  # each (layer, row, head)'s run of N*Dh contiguous numbers first: fast reductions
            kv_sum = (k[..., scratch, :].sum((3, 4)) + v[..., scratch, :].sum((3, 4))).sum((0, 2))  # (L, B, H) -> (B,)
            kv.append(torch.where(pend, kv_sum, 0.0))  # rows without a pending block commit nothing
            done.append(out)
        else:  # the new block alone, against the same context (its scratch slot is the second one)
            out = dyn.forward_cached(x, wm._level(t), a, null, (k, v, mask[:, :, N:], start + N), position, commit=False, denoise_heads=last, base=base)
            done.append(out)
        return out.pred.float()

    x0 = sample(denoise, noise, wm.schedule)  # (B, N, C)
    final, first = done[-1], done[0]

    def commit() -> None:
        rows = None if bool(pend.all()) else pend.nonzero().flatten()
        if rows is None or rows.numel():
            pick = (lambda t: t) if rows is None else (lambda t: None if t is None else t[:, rows])  # noqa: E731
            scratch = slice(start, start + N)  # the pending blocks' rotated keys and values
            wm.cache.append(
                pick(k[..., scratch, :]), pick(v[..., scratch, :]), pick(first.k),
                *((p[n] if rows is None else p[n][rows]) for n in ("latents", "actions", "null")), rows,
            )  # fmt: skip
        p["latents"].copy_(x0)
        p["actions"].copy_(a)
        p["null"].copy_(null)
        p["has"].fill_(True)

    return x0, final.denoise_reward, final.denoise_term_logit, commit, kv[0]

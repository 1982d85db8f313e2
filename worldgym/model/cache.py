"""The KV cache: preallocated keys/values of committed blocks, an attention sink plus a rolling window.

Each batch row keeps the first ``sink`` blocks of its episode forever and the last
``window`` blocks after them in a ring. The key/value tensors *are* the attention buffers
the dynamics reads: per layer a (B, H, (S+W+1)*N, Dh) tensor that attention takes as is,
with no gather and no copy per step, since attention does not care in which order its
keys sit (the mask marks the slots that hold a block). Token range ``[s*N, (s+1)*N)``
is slot ``s``: slots ``0..S-1`` the sink, ``S..S+W-1`` the window ring, then ``workspace``
slots: scratch space where each pass writes the keys/values of the blocks it is computing
(one, or two for a fused commit + denoise pass, which also keeps a second copy of the
sink rotated for its second block).

Rotary positions. A window block's key is rotated once, when it is committed, by the
block's rotary position ``pos`` (a per-row counter that the commit advances); the next
block's query is rotated by the row's current ``pos``. Attention scores depend only on
the difference, which is the block's distance inside the window (at most S+W), so the
model sees exactly the positions it was trained on however long the rollout runs. The
sink's keys sit at a distance that stops growing once the window is full (the training
layout's "effective" position), so they are stored *un-rotated* in ``sink_k`` and the
dynamics rotates them into their slots before each step (`Dynamics.attention_context`);
those slots and the scratch slot are workspace, not state. The engine rebases ``pos``
(re-rotates the window keys) long before angles could lose precision.

Alongside the keys and values the cache keeps each block's clean latents and action (for
``recache``). The cache never advances itself: the engine (engine.py) calls `append` once
per committed block and `reset_rows` / `keep_sink_and_last` / `set_rows` for flushes and
snapshots. Nothing here runs a network.

Dimension letters: L layers, B batch rows, R selected rows, S+W slots, T = (S+W+workspace)*N
buffer tokens, N tokens per block, H heads, Dh head dim, C latent channels, A action width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

STATE_KEYS = ("k", "v", "sink_k", "latents", "actions", "null", "count", "pos")


@dataclass
class CacheView:
    """Blocks in temporal order with un-rotated keys, as training's list cache (`losses.GradCache`) holds them.

    Attributes:
        k: un-rotated keys (L, B, M, H, Dh), M = (number of blocks) * N, slot order = temporal position.
        v: values (L, B, M, H, Dh).
        valid: (B, M) True where a token holds a committed block.
        filled: (B,) number of valid blocks = temporal position of the next block.
    """

    k: torch.Tensor
    v: torch.Tensor
    valid: torch.Tensor
    filled: torch.Tensor


class KVCache:
    """Sink + rolling-window cache for ``batch_size`` rows, all tensors allocated once."""

    def __init__(
        self,
        *,
        layers: int,
        batch_size: int,
        sink: int,
        window: int,
        tokens: int,
        heads: int,
        head_dim: int,
        latent_channels: int,
        action_width: int,
        action_dtype: torch.dtype,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        workspace: int = 1,
        latent_tokens: int | None = None,
    ) -> None:
        if sink < 0 or window < 1:
            raise ValueError(f"cache needs sink >= 0 and window >= 1, got sink={sink}, window={window}")
        if workspace < 1:
            raise ValueError(f"cache needs at least one workspace slot, got {workspace}")
        self.sink, self.window, self.tokens = sink, window, tokens
        self.slots = sink + window
        self.workspace = workspace
        shape = (layers, batch_size, heads, (self.slots + workspace) * tokens, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)  # (L, B, H, T, Dh) rotated keys
        self.v = torch.zeros(shape, device=device, dtype=dtype)  # (L, B, H, T, Dh)
        self.sink_k = torch.zeros(layers, batch_size, heads, sink * tokens, head_dim, device=device, dtype=dtype)  # un-rotated
        # clean latents per block, (B, S+W, Nl, C): latent cells, more than tokens when a token reads a patch of them
        self.latents = torch.zeros(batch_size, self.slots, latent_tokens or tokens, latent_channels, device=device)
        self.actions = torch.zeros(batch_size, self.slots, action_width, device=device, dtype=action_dtype)
        self.null = torch.zeros(batch_size, self.slots, device=device, dtype=torch.bool)  # (B, S+W)
        self.count = torch.zeros(batch_size, device=device, dtype=torch.int64)  # blocks committed since reset
        self.pos = torch.zeros(batch_size, device=device, dtype=torch.int64)  # rotary position of the next block
        self._rows = torch.arange(batch_size, device=device)
        self._offsets = torch.arange(window, device=device)
        self._slot_index = torch.arange(self.slots, device=device)
        # attention masks of one-row passes, memoised by the dynamics by (blocks, pending, count class, dtype): derived, not state
        self.masks: dict[tuple, torch.Tensor | None] = {}

    @property
    def batch_size(self) -> int:
        return self.count.shape[0]

    def nbytes(self) -> int:
        """Bytes held by the cache's tensors (constant for its lifetime)."""
        return sum(getattr(self, n).numel() * getattr(self, n).element_size() for n in STATE_KEYS)

    def tokens_of(self, slot: int) -> slice:
        """Token range of a slot in the (L, B, H, T, Dh) buffers; slots from ``S+W`` on are workspace."""
        return slice(slot * self.tokens, (slot + 1) * self.tokens)

    def filled(self) -> torch.Tensor:
        """(B,) number of blocks a row can attend to."""
        return self.count.clamp(max=self.slots)

    def valid(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """(R, S+W) True for the slots of rows that hold a committed block (slots fill in order: slot < filled)."""
        filled = self.filled() if rows is None else self.filled()[rows]
        return self._slot_index[None, :] < filled[:, None]

    def order(self) -> torch.Tensor:
        """(B, S+W) slot index of each temporal position (positions past ``filled`` point at unused slots)."""
        s, w = self.sink, self.window
        start = (self.count - w).clamp(min=s)  # (B,) first block number still in the window
        blocks = start[:, None] + self._offsets  # (B, W)
        ring = s + (blocks - s) % w  # (B, W)
        sink = self._offsets.new_tensor(range(s)).expand(self.batch_size, s)  # (B, S)
        return torch.cat([sink, ring], dim=1)  # (B, S+W)

    def attention_mask(
        self, valid: torch.Tensor, count: torch.Tensor, pending: torch.Tensor | None, blocks: int, dtype: torch.dtype | None = None
    ) -> torch.Tensor | None:
        """Which buffer tokens a pass over R rows may read: bool (R, 1, blocks*N, T) (additive in ``dtype``
        when given), or None when every token may be read.

        Args:
            valid: (R, S+W) the rows' slots that hold a block (`valid`); count: (R,) their block counts.
            pending: (R,) bool with ``blocks=2``: rows whose pending block commits in the pass.
            blocks: 1 (a block reads its valid slots and its own scratch slot) or 2 (a fused pass: the
                pending block as 1; the next block also reads the pending block, not the block its
                commit evicts, and reads the sink from its second, re-rotated copy).
        """
        S, N, P, R = self.sink, self.tokens, self.slots, valid.shape[0]
        extra = self.workspace
        if blocks == 1:
            if extra == 1 and bool(valid.all()):
                return None  # every slot is valid: attention takes its fast path
            work = torch.zeros(R, extra, dtype=torch.bool, device=valid.device)
            work[:, 0] = True  # the block's own scratch slot
            slot_mask = torch.cat([valid, work], dim=1)[:, None]  # (R, 1, slots)
        else:
            first = torch.cat([valid, torch.ones(R, 1, dtype=torch.bool, device=valid.device), valid.new_zeros(R, extra - 1)], 1)
            evicted = (count >= P) & pending.bool()  # committing the pending block drops the oldest window block
            slot = (S + (count - S) % self.window)[:, None]  # (R, 1)
            second_valid = valid & ~(evicted[:, None] & (torch.arange(P, device=valid.device)[None] == slot))
            second_valid[:, :S] = False  # the sink is read from its second copy
            second = torch.cat([second_valid, pending.bool()[:, None], torch.ones_like(pending.bool())[:, None], valid[:, :S]], 1)
            slot_mask = torch.stack([first, second], dim=1)  # (R, 2, slots)
        mask = slot_mask.repeat_interleave(N, dim=1).repeat_interleave(N, dim=2)[:, None]  # (R, 1, blocks*N, T)
        if dtype is None:
            return mask
        if bool(mask.all()):
            return None
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))  # additive

    def pass_mask(
        self, rows: torch.Tensor | None, count: torch.Tensor, pending: torch.Tensor | None, blocks: int, dtype: torch.dtype
    ) -> torch.Tensor | None:
        """`attention_mask` of a pass over rows (None = all) with block counts ``count`` (R,). A row's mask is a
        function of its count's class (its count before the window is full, else its ring position) and its
        pending flag: when every row is in the same state (one env; a batch stepped in lockstep, on CPU) it is
        built once per state, additive in ``dtype``, (1, 1, blocks*N, T) for all rows (or None); else bool per row."""
        S, P, R = self.sink, self.slots, count.shape[0]
        if count.device.type != "cpu":
            return self.attention_mask(self.valid(rows), count, pending, blocks)
        if R > 1:
            state = torch.where(count < P, count, P + (count - S) % self.window) * 2 + (pending.long() if blocks == 2 else 0)  # (R,)
            if not bool((state == state[0]).all()):
                return self.attention_mask(self.valid(rows), count, pending, blocks)
        c, has = int(count[0]), blocks == 2 and bool(pending[0])
        key = (blocks, has, c if c < P else P + (c - S) % self.window, dtype)
        if key not in self.masks:
            first = None if pending is None else pending[:1]
            self.masks[key] = self.attention_mask(self.valid(rows)[:1], count[:1], first, blocks, dtype)
        return self.masks[key]

    def newest_latents(self, back: int = 0) -> torch.Tensor:
        """(B, N, C) clean latents of each row's newest committed block, or of the one ``back`` blocks before it
        (the newest where the row has no such block; zeros for an empty row)."""
        c = torch.where(self.count > back, self.count - 1 - back, self.count - 1).clamp(min=0)
        slot = torch.where(c < self.sink, c, self.sink + (c - self.sink) % self.window)  # (B,)
        return self.latents[self._rows, slot] * (self.count > 0)[:, None, None]

    def write_slot(self) -> torch.Tensor:
        """(B,) slot the next committed block of each row goes to (evicting the oldest window block when full)."""
        c = self.count
        return torch.where(c < self.sink, c, self.sink + (c - self.sink) % self.window)

    def append(
        self,
        k: torch.Tensor,
        v: torch.Tensor,
        raw_k: torch.Tensor,
        latents: torch.Tensor,
        actions: torch.Tensor,
        null: torch.Tensor,
        rows: torch.Tensor | None = None,
    ) -> None:
        """Commit one block per row.

        Args:
            k: keys rotated by each row's ``pos`` (L, R, H, N, Dh) (the commit pass's scratch slot).
            v: values (L, R, H, N, Dh).
            raw_k: the same keys un-rotated (L, R, N, H, Dh), read only for rows whose block goes to
                the sink (None when no row's does).
            latents, actions, null: the block's clean latents (R, N, C), action (R, A) and null flag (R,).
            rows: (R,) rows written (default all); other rows are untouched.
        """
        if rows is None and (self.batch_size == 1 or bool(((w := self.write_slot()) == w[0]).all())):
            # one row, or every row writing the same slot (a batch in lockstep): the slot is a Python int, every write a slice
            c = int(self.count[0])
            s = c if c < self.sink else self.sink + (c - self.sink) % self.window
            tok = self.tokens_of(s)
            self.k[:, :, :, tok] = k
            self.v[:, :, :, tok] = v
            if s < self.sink:
                self.sink_k[:, :, :, tok] = raw_k.transpose(2, 3).to(self.sink_k.dtype)
            self.latents[:, s] = latents.float()
            self.actions[:, s] = actions.to(self.actions.dtype)
            self.null[:, s] = null
            self.count += 1
            self.pos += 1
            return
        everyone = rows is None
        rows = self._rows if rows is None else rows
        slot = self.write_slot()[rows]  # (R,)
        for s in torch.unique(slot).tolist():
            here = slot == s  # (R,)
            tok = self.tokens_of(s)
            if everyone and bool(here.all()):  # the common step: every row writes the same slot, plain slices
                self.k[:, :, :, tok] = k
                self.v[:, :, :, tok] = v
            else:
                sel = rows[here]
                self.k[:, sel, :, tok] = k[:, here]
                self.v[:, sel, :, tok] = v[:, here]
            if s < self.sink:
                sink_tok = self.tokens_of(s)
                self.sink_k[:, rows[here], :, sink_tok] = raw_k[:, here].transpose(2, 3).to(self.sink_k.dtype)
        self.latents[rows, slot] = latents.float()
        self.actions[rows, slot] = actions.to(self.actions.dtype)
        self.null[rows, slot] = null
        self.count[rows] += 1
        self.pos[rows] += 1

    def reset_rows(self, rows: torch.Tensor) -> None:
        """Flush rows (R,) to the freshly built state: zeros everywhere, count and position 0."""
        for t in (self.k, self.v, self.sink_k):
            t[:, rows] = 0
        for t in (self.latents, self.actions, self.null, self.count, self.pos):
            t[rows] = 0

    def keep_sink_and_last(self, rows: torch.Tensor) -> None:
        """KV flush: keep the sink blocks and the newest block of rows (R,), drop the rest of the window.

        The newest block keeps its rotated key and its distance (1) to the next block; the
        sink's distance becomes that of a window holding one block.
        """
        for r in rows.tolist():
            c = int(self.count[r])
            if c <= self.sink + 1:
                continue
            s = self.sink
            last = s + (c - 1 - s) % self.window  # slot of the newest block (c > s + 1, so it is in the ring)
            new, old = self.tokens_of(s), self.tokens_of(last)
            for t in (self.k, self.v):
                t[:, r, :, new] = t[:, r, :, old].clone()
                t[:, r, :, (s + 1) * self.tokens : self.slots * self.tokens] = 0
            for t in (self.latents, self.actions, self.null):
                t[r, s] = t[r, last].clone()
                t[r, s + 1 :] = 0
            self.count[r] = s + 1

    def committed(self) -> dict[str, torch.Tensor]:
        """Views of the state the commits write, without the workspace (the sink's rotated keys, the scratch slot).

        ``k_window`` is (L, B, H, W, N, Dh), the window slots' rotated keys; ``v`` is
        (L, B, H, S+W, N, Dh) per slot; the sink's keys are ``sink_k``.
        """
        regions = self._regions()
        per_slot = lambda n: regions[n][0][:, :, :, regions[n][1]].unflatten(3, (-1, self.tokens))  # noqa: E731
        return {
            "k_window": per_slot("k"),
            "v": per_slot("v"),
            "sink_k": self.sink_k,
            **{n: getattr(self, n) for n in ("latents", "actions", "null", "count", "pos")},
        }

    def _regions(self) -> dict[str, tuple[torch.Tensor, slice]]:
        """The buffer regions that hold state: keys of the window slots, values of all slots, the sink's raw keys."""
        N, S = self.tokens, self.sink
        return {
            "k": (self.k, slice(S * N, self.slots * N)),
            "v": (self.v, slice(0, self.slots * N)),
            "sink_k": (self.sink_k, slice(None)),
        }

    def get_rows(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """A deep copy of rows' (R,) state, everything needed to restore them later (not the workspace)."""
        out = {n: t[:, rows, :, tok].clone() for n, (t, tok) in self._regions().items()}  # (L, R, H, tokens, Dh)
        return out | {n: getattr(self, n)[rows].clone() for n in ("latents", "actions", "null", "count", "pos")}

    def set_rows(self, rows: torch.Tensor, state: dict[str, torch.Tensor]) -> None:
        """Restore rows (R,) from `get_rows` output (which may come from other rows or another cache)."""
        if set(state) != set(STATE_KEYS):
            raise ValueError(f"cache state must have keys {sorted(STATE_KEYS)}, got {sorted(state)}")
        regions = self._regions()
        for n, (t, tok) in regions.items():
            want = t[:, :1, :, tok].shape
            got = state[n].shape
            if len(got) != len(want) or got[0] != want[0] or got[2:] != want[2:] or got[1] != len(rows):
                raise ValueError(
                    f"cache state {n!r} of shape {tuple(got)} does not fit {len(rows)} rows of a cache whose rows "
                    f"hold {tuple(want)}; snapshots only restore into an engine of the same model"
                )
        for n, (t, tok) in regions.items():
            t[:, rows, :, tok] = state[n].to(t)
        for n in ("latents", "actions", "null", "count", "pos"):
            getattr(self, n)[rows] = state[n].to(getattr(self, n))

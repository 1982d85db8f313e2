"""The distinct conditions of a batched pass: the few (noise level, action, null flag) rows its many rows share.

A batch of envs stepped together conditions every block on one of a few noise levels and,
with discrete actions, one of a few actions, so the dynamics computes the adaLN modulations
of each distinct condition once and gathers them (`Dynamics.modulations`). This finds the
distinct conditions and which one each (row, frame) has. It never runs a network.

Dimension letters: B batch rows, F frames in a pass, A action width, U distinct conditions.
"""

from __future__ import annotations

import torch

PYTHON_ROWS = 64  # up to this many (row, frame) pairs a Python set finds them faster than sorting tensors


def distinct_conditions(t: torch.Tensor, actions: torch.Tensor, null: torch.Tensor, limit: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The distinct (level, action, null) rows of noise levels (B, F), actions (B, F, A) and null flags (B, F).

    Returns:
        the distinct rows (U, A+2) float64 in sorted (lexicographic) order and each (row, frame)'s index
        into them (B*F,), or None when there are more than ``limit`` of them.
    """
    keys = torch.cat([t[..., None].double(), actions.double(), null[..., None].double()], -1).flatten(0, 1)  # (B*F, A+2)
    if len(keys) <= PYTHON_ROWS:
        rows = keys.tolist()
        index = {k: i for i, k in enumerate(sorted(set(map(tuple, rows))))}
        if len(index) > limit:
            return None
        distinct = torch.tensor(list(index), dtype=torch.float64, device=keys.device)  # (U, A+2)
        return distinct, torch.tensor([index[tuple(k)] for k in rows], device=keys.device)  # (B*F,)
    codes = None  # (B*F,) rank of each row's columns so far among the distinct prefixes: ranks sort as the rows do
    for column in keys.unbind(1):  # the first column most significant (unique(dim=0) is slower than this on CPU)
        values, inverse = torch.unique(column, return_inverse=True)  # sorted
        if len(values) > limit:
            return None
        codes = inverse if codes is None else torch.unique(codes * len(values) + inverse, return_inverse=True)[1]
    count = int(codes.max()) + 1
    if count > limit:
        return None
    return keys.new_empty(count, keys.shape[1]).index_put_((codes,), keys), codes  # rows with one code are equal

"""The distinct conditions of a batched pass: derived data must equal what it stands for."""

from __future__ import annotations

import torch

from worldgym.model.conditions import PYTHON_ROWS, distinct_conditions


def reference(t, actions, null):
    """Sorted distinct (level, action, null) rows and each row's index, by Python sets."""
    keys = torch.cat([t[..., None].double(), actions.double(), null[..., None].double()], -1).flatten(0, 1).tolist()
    index = {k: i for i, k in enumerate(sorted(set(map(tuple, keys))))}
    return torch.tensor(list(index), dtype=torch.float64), torch.tensor([index[tuple(k)] for k in keys])


def test_tensor_path_finds_the_conditions_python_sets_find():
    """Large passes find their conditions by sorting tensors, small ones by Python sets: the same rows, order and indices."""
    g = torch.Generator().manual_seed(0)
    for trial in range(60):
        B, F_, A = (3 + trial % 5 * 40), 1 + trial % 2, 1 + trial % 3
        levels = torch.tensor([0.0, 1.0, 0.5, -0.0])[torch.randint(0, 4, (B, F_), generator=g)]
        actions = torch.randint(-1, 2 + trial % 4, (B, F_, A), generator=g)
        null = torch.rand(B, F_, generator=g) < 0.3
        want_rows, want_index = reference(levels, actions, null)
        found = distinct_conditions(levels, actions, null, limit=8)
        if len(want_rows) > 8:
            assert found is None
            continue
        rows, index = found
        assert torch.equal(rows, want_rows) and torch.equal(index, want_index), (B, F_, A)
    assert any(3 + trial % 5 * 40 > PYTHON_ROWS for trial in range(60))  # both paths ran

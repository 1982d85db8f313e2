"""`TwinSpec`: how a source environment is turned into the pixels of a real twin."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TwinSpec:
    """How to turn a source env into pixels.

    Attributes:
        source_id: Gymnasium id of the source environment.
        crop_rows: (top, bottom) rows of the source render kept before resizing (None = all).
        max_episode_steps: the source env's time limit.
    """

    source_id: str
    crop_rows: tuple[int, int] | None = None
    max_episode_steps: int | None = None

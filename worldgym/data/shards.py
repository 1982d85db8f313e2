"""Datasets recorded in shards: which episodes shard i of n records, and merging shards into one verified dataset.

``worldgym record --shard i/n`` (under ``torchrun``: ``RANK``/``WORLD_SIZE``) records the
episodes i, i+n, i+2n, ... of its ``--episodes``, each with the seed an unsharded recording
gives it, into ``OUT-shard-i-of-n``, with ``metadata["shard"]`` saying which. `merge` (the
CLI's ``worldgym dataset merge OUT --shards ...``) verifies every shard, checks that they
fit together (one observation and action space; for recorded shards one shard count, every
shard present once, no episode twice), writes the episodes in their global order into
``OUT`` (atomically, as `DatasetWriter` does) and verifies the merged manifest. Datasets
without shard metadata merge too, one after the other in the order given.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from worldgym.config_io import UserError
from worldgym.data.dataset import DatasetError, DatasetWriter, check, load


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m or not int(m[1]) < int(m[2]):
        raise UserError(f"--shard takes i/n with 0 <= i < n (shard i of n), got {text!r}; e.g. --shard 0/4")
    return int(m[1]), int(m[2])


def current_shard(text: str | None = None) -> tuple[int, int]:
    """This process's (shard, shard count): ``text`` (``i/n``), else torchrun's ``RANK``/``WORLD_SIZE``, else (0, 1)."""
    if text:
        return parse_shard(text)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return parse_shard(f"{os.environ.get('RANK', '0')}/{os.environ['WORLD_SIZE']}")
    return 0, 1


def shard_path(out: str | Path, index: int, count: int) -> Path:
    """Where shard ``index`` of ``count`` of the dataset ``out`` is written: ``OUT-shard-i-of-n``."""
    out = Path(out)
    return out.with_name(f"{out.name}-shard-{index}-of-{count}")


def merge(out: str | Path, shards: list[str | Path]) -> dict[str, Any]:
    """Join verified shard datasets into ``out`` and verify the result; returns `check`'s summary.

    Raises:
        DatasetError: naming the shard that is missing, corrupt, of another recording or a
            duplicate; nothing is left at ``out`` or ``out.partial`` then.
    """
    out = Path(out)
    if not shards:
        raise UserError("merge needs the shard datasets: --shards OUT-shard-0-of-N OUT-shard-1-of-N ...")
    datasets = [load(p) for p in shards]
    first = datasets[0]
    order: list[tuple[int, int, int]] = []  # (global index, dataset, episode)
    infos = [ds.metadata.get("shard") for ds in datasets]
    for path, ds, info in zip(shards, datasets, infos):
        if ds.observation_space != first.observation_space or ds.action_space != first.action_space:
            raise DatasetError(
                f"{path} holds {ds.observation_space} / {ds.action_space}, {shards[0]} holds "
                f"{first.observation_space} / {first.action_space}; merge shards of one recording"
            )
    if any(infos):
        if not all(infos):
            raise DatasetError(f"{shards[infos.index(None)]} is not a shard (no shard metadata) but {shards[0]} is; merge shards of one recording")
        count = infos[0]["count"]
        seen: dict[int, str] = {}
        for path, info in zip(shards, infos):
            if info["count"] != count or info["episodes"] != infos[0]["episodes"]:
                raise DatasetError(f"{path} is shard {info['index']}/{info['count']} of {info['episodes']} episodes, {shards[0]} one of {count} shards of {infos[0]['episodes']}")
            if info["index"] in seen:
                raise DatasetError(f"{path} and {seen[info['index']]} are both shard {info['index']}/{count}; pass each shard once")
            seen[info["index"]] = str(path)
        missing = sorted(set(range(count)) - set(seen))
        if missing:
            raise DatasetError(f"shards {missing} of {count} are missing (got {sorted(seen)}); record them with --shard i/{count} and pass them all")
        for d, (ds, info) in enumerate(zip(datasets, infos)):
            if len(info["indices"]) != len(ds):
                raise DatasetError(f"{shards[d]} lists {len(info['indices'])} episodes in its shard metadata but holds {len(ds)}")
            order += [(g, d, e) for e, g in enumerate(info["indices"])]
        order.sort()
    else:
        order = [(len(order), d, e) for d, ds in enumerate(datasets) for e in range(len(ds))]
        order = [(g, d, e) for g, (_, d, e) in enumerate(order)]
    metadata = {k: v for k, v in first.metadata.items() if k != "shard"}
    metadata["merged_from"] = [str(p) for p in shards]
    writer = DatasetWriter(out, first.observation_space, first.action_space, metadata)
    try:
        for _, d, e in order:
            ep = datasets[d].episodes[e]
            writer.add_episode(
                np.asarray(ep.observations), np.asarray(ep.actions), np.asarray(ep.rewards), np.asarray(ep.terminations),
                np.asarray(ep.truncations), seed=ep.seed, states=None if ep.states is None else np.asarray(ep.states), after_end=ep.after_end,
            )  # fmt: skip
        writer.close()
    except BaseException:
        shutil.rmtree(writer.partial, ignore_errors=True)
        raise
    summary = check(out)
    if summary["steps"] != sum(ds.total_steps for ds in datasets) or summary["episodes"] != len(order):
        raise DatasetError(f"{out}: the merged manifest counts {summary['episodes']} episodes / {summary['steps']} steps, the shards {len(order)} / "
                           f"{sum(ds.total_steps for ds in datasets)}")  # fmt: skip
    return summary

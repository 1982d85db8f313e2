"""Export a worldgym dataset to Minari (the optional ``minari`` extra): ``worldgym dataset export-minari``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from worldgym.data.dataset import Dataset, load


def minari_buffers(dataset: Dataset) -> list[Any]:
    """The episodes as Minari ``EpisodeBuffer`` objects (needs ``pip install minari``, without ``[create]``)."""
    try:
        from minari.data_collector import EpisodeBuffer
    except ImportError as e:
        raise gym.error.DependencyNotInstalled(f"Minari export needs the optional extra minari ({e}); in the clone: pip install -e '.[minari]'") from e
    out = []
    for i, ep in enumerate(dataset.episodes):
        infos = {} if ep.states is None else {"state": np.asarray(ep.states)}
        out.append(
            EpisodeBuffer(
                id=i, seed=ep.seed, observations=np.asarray(ep.observations), actions=np.asarray(ep.actions),
                rewards=list(np.asarray(ep.rewards)), terminations=list(np.asarray(ep.terminations)),
                truncations=list(np.asarray(ep.truncations)), infos=infos,
            )  # fmt: skip
        )
    return out


def export_minari(path: str | Path, dataset_id: str, data_format: str = "hdf5") -> Any:
    """Write a verified worldgym dataset as a local Minari dataset (``MINARI_DATASETS_PATH`` or ~/.minari).

    Needs ``minari`` plus its storage backend (``h5py`` for hdf5, ``pyarrow`` for arrow); JAX
    (``minari[create]``) is not needed. Returns the ``minari.MinariDataset``.
    """
    ds = load(path)
    buffers = minari_buffers(ds)  # first: without minari it says what to install
    import minari

    return minari.create_dataset_from_buffers(
        dataset_id=dataset_id, buffer=buffers, observation_space=ds.observation_space,
        action_space=ds.action_space, algorithm_name=str(ds.metadata.get("policy", "worldgym record")),
        description=f"exported from the worldgym dataset {ds.path}", data_format=data_format,
    )  # fmt: skip

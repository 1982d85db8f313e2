"""Gymnasium spaces as JSON, the way dataset manifests store them, and `DatasetError` (`worldgym.data.dataset`)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from worldgym.config_io import UserError


class DatasetError(UserError, RuntimeError):
    """A dataset that is missing, incomplete, corrupt or inconsistent; the message names the file. Picklable."""


def space_to_dict(space: gym.Space) -> dict[str, Any]:
    """A Box / Discrete / MultiDiscrete / MultiBinary space as a JSON-ready dict."""
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": np.asarray(space.low).tolist(),
            "high": np.asarray(space.high).tolist(),
        }
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": np.asarray(space.nvec).tolist()}
    if isinstance(space, gym.spaces.MultiBinary):
        return {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}
    raise DatasetError(f"unsupported space {space}; use Box, Discrete, MultiDiscrete or MultiBinary")


def space_from_dict(d: dict[str, Any]) -> gym.Space:
    """Inverse of `space_to_dict`."""
    kind = d.get("type")
    if kind == "Box":
        return gym.spaces.Box(np.array(d["low"]), np.array(d["high"]), tuple(d["shape"]), np.dtype(d["dtype"]))
    if kind == "Discrete":
        return gym.spaces.Discrete(d["n"], start=d.get("start", 0))
    if kind == "MultiDiscrete":
        return gym.spaces.MultiDiscrete(np.array(d["nvec"]))
    if kind == "MultiBinary":
        return gym.spaces.MultiBinary(d["n"])
    raise DatasetError(f"unknown space type {kind!r} in the manifest")

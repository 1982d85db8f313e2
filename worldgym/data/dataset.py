"""Rollout datasets on disk: one documented format, a writer, a verifying read-only loader and a validator.

Format (``format_version`` 1) of a dataset folder::

    <path>/
      manifest.json                      what is in the folder, with a checksum of itself
      episodes/000000/observations.npy   (T+1, H, W, 3) uint8   frame 0 is the reset observation
      episodes/000000/actions.npy        (T, *action_shape)     actions[t] led from obs t to obs t+1
      episodes/000000/rewards.npy        (T,) float32
      episodes/000000/terminations.npy   (T,) bool              the transition into obs t+1 ended the episode
      episodes/000000/truncations.npy    (T,) bool              cut by a time limit or by the recorder
      episodes/000000/states.npy         (T+1, S) float32       optional: the source env's state (probes)
      episodes/000000/after_end_*.npy    optional: N more steps of a terminated episode (see below)
      episodes/000001/...

An episode ends at its last step. A real twin can be stepped on past its end (`worldgym record
--past-end N`): those N steps are kept apart, in ``after_end_observations`` (N, H, W, 3),
``after_end_actions`` (N, ...), ``after_end_rewards`` (N,), ``after_end_terminations`` (N,) (the
source's own flag for each state past the end) and, with states, ``after_end_states`` (N, S).
They are not part of the episode: its length, return and end, a Minari export and every
evaluation ignore them. Training (`worldgym.training.data.Data`) appends them, so a world model
sees how a scene goes on past an end and its termination head learns every such state as an end.

Every array is a plain ``.npy`` file (never pickled). ``manifest.json`` holds::

    {"format": "worldgym-dataset", "format_version": 1,
     "observation_space": {...}, "action_space": {...}, "metadata": {...},
     "total_episodes": E, "total_steps": sum of T,
     "episodes": [{"steps": T, "seed": s | null, "terminated": b, "truncated": b, "after_end": N (only if > 0)}, ...],
     "files": {"episodes/000000/actions.npy": {"bytes": n, "sha256": hex, "shape": [...], "dtype": "int64"}, ...},
     "manifest_sha256": sha256 of the canonical JSON of everything above}

Writing is atomic at the dataset level: `DatasetWriter` writes into ``<path>.partial/``
(marked by a ``PARTIAL`` file and without a manifest until the end) and renames it to
``<path>`` only in `DatasetWriter.close`. A killed writer therefore leaves any previous
dataset at ``<path>`` untouched and a ``.partial`` folder that `load` and `check` refuse.

`load` verifies the manifest (its own checksum, every file's presence, size, sha256,
``.npy`` header shape and dtype, episode invariants) before returning anything, opens the
arrays as read-only memory maps and never writes to disk. `check` is the same
verification as a validator; both raise `DatasetError` naming the file at fault.

Dimension letters: T steps of an episode, H/W frame size, S state width.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import gymnasium as gym
import numpy as np

from worldgym.data.spaces import DatasetError, space_from_dict, space_to_dict  # noqa: F401  (re-exported)

FORMAT, FORMAT_VERSION = "worldgym-dataset", 1
MANIFEST, PARTIAL_MARK = "manifest.json", "PARTIAL"
FIELDS = ("observations", "actions", "rewards", "terminations", "truncations", "states")
AFTER_END = ("observations", "actions", "rewards", "terminations", "states")  # stored as after_end_<name>.npy


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in body.items() if k != "manifest_sha256"}, sort_keys=True).encode()


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a .npy header, without reading the data (raises DatasetError naming the file)."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
    except (ValueError, OSError, SyntaxError) as e:
        raise DatasetError(f"{path} is not a readable .npy file ({e}); the dataset is corrupt, re-record it") from e
    if dtype.hasobject:
        raise DatasetError(f"{path} holds Python objects; worldgym datasets never contain pickled data")
    return tuple(shape), dtype


# ---------------------------------------------------------------------- episodes
@dataclass
class AfterEnd:
    """N steps a terminated episode's source env was stepped on past its end (not part of the episode).

    Attributes:
        observations: (N, H, W, 3) uint8, the frame after each step.
        actions: (N, *action_shape), actions[0] led from the episode's last frame.
        rewards: (N,) float32.
        terminations: (N,) bool, the source's own termination flag for each state.
        states: (N, S) float32, or None (exactly when the episode has no states).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    states: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.actions)


@dataclass
class Episode:
    """One recorded episode (arrays are read-only memory maps when loaded).

    Attributes:
        observations: (T+1, H, W, 3) uint8.
        actions: (T, *action_shape).
        rewards: (T,) float32.
        terminations: (T,) bool.
        truncations: (T,) bool.
        seed: the reset seed, or None.
        states: (T+1, S) float32 source-env states, or None.
        after_end: the steps recorded past a terminated episode's end, or None.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    seed: int | None = None
    states: np.ndarray | None = None
    after_end: AfterEnd | None = None

    def __len__(self) -> int:
        return len(self.actions)

    def __getitem__(self, key: str) -> Any:  # dict-style access, as Minari users expect
        return getattr(self, key)


def _check_episode(ep: Episode, obs_space: gym.Space, act_space: gym.Space, where: str) -> None:
    """Minari-style episode invariants; raises DatasetError mentioning ``where``."""
    T = len(ep.actions)
    if len(ep.observations) != T + 1:
        raise DatasetError(f"{where}: expected len(observations) == len(actions) + 1, got {len(ep.observations)} and {T}")
    for name in ("rewards", "terminations", "truncations"):
        if getattr(ep, name).shape != (T,):
            raise DatasetError(f"{where}: {name} must have shape ({T},), got {getattr(ep, name).shape}")
    if tuple(ep.observations.shape[1:]) != obs_space.shape or ep.observations.dtype != obs_space.dtype:
        raise DatasetError(
            f"{where}: observations must be {obs_space.dtype} of shape (T+1, {', '.join(map(str, obs_space.shape))}), "
            f"got {ep.observations.dtype} {ep.observations.shape}"
        )
    act_shape = act_space.shape or ()
    if tuple(ep.actions.shape[1:]) != tuple(act_shape):
        raise DatasetError(f"{where}: actions must have shape (T, {', '.join(map(str, act_shape))}), got {ep.actions.shape}")
    if T:
        if not _in_space(np.asarray(ep.actions), act_space):
            raise DatasetError(f"{where}: some actions lie outside the action space {act_space}")
        if bool(np.any(ep.terminations[:-1] | ep.truncations[:-1])):
            raise DatasetError(f"{where}: an episode may only terminate or truncate at its last step")
    if ep.states is not None and len(ep.states) != T + 1:
        raise DatasetError(f"{where}: expected len(states) == len(observations) = {T + 1}, got {len(ep.states)}")
    if ep.after_end is not None:
        _check_after_end(ep, obs_space, act_space, where)


def _in_space(a: np.ndarray, act_space: gym.Space) -> bool:
    if isinstance(act_space, gym.spaces.Discrete):
        return bool(np.all((a >= act_space.start) & (a < act_space.start + act_space.n)))
    if isinstance(act_space, gym.spaces.MultiDiscrete):
        return bool(np.all((a >= 0) & (a < act_space.nvec)))
    if isinstance(act_space, gym.spaces.MultiBinary):
        return bool(np.all((a == 0) | (a == 1)))
    return bool(np.all(np.isfinite(a)) and np.all(a >= act_space.low) and np.all(a <= act_space.high))


def _check_after_end(ep: Episode, obs_space: gym.Space, act_space: gym.Space, where: str) -> None:
    tail, N = ep.after_end, len(ep.after_end.actions)
    if not (len(ep) and ep.terminations[-1]) or ep.truncations[-1]:
        raise DatasetError(f"{where}: steps after the end follow a terminated episode only; this one ends "
                           f"{'truncated' if len(ep) and ep.truncations[-1] else 'without terminating'}")  # fmt: skip
    if N == 0:
        raise DatasetError(f"{where}: after_end holds no step; pass after_end=None instead")
    if tuple(tail.observations.shape) != (N, *obs_space.shape) or tail.observations.dtype != obs_space.dtype:
        raise DatasetError(f"{where}: after_end observations must be {obs_space.dtype} of shape ({N}, {', '.join(map(str, obs_space.shape))}) "
                           f"for {N} after-end actions, got {tail.observations.dtype} {tail.observations.shape}")  # fmt: skip
    if tuple(tail.actions.shape[1:]) != tuple(act_space.shape or ()) or not _in_space(np.asarray(tail.actions), act_space):
        raise DatasetError(f"{where}: after_end actions must be {N} elements of the action space {act_space}, got shape {tail.actions.shape}")
    for name in ("rewards", "terminations"):
        if getattr(tail, name).shape != (N,):
            raise DatasetError(f"{where}: after_end {name} must have shape ({N},), got {getattr(tail, name).shape}")
    if (tail.states is None) != (ep.states is None) or (tail.states is not None and tail.states.shape != (N, *ep.states.shape[1:])):
        got = None if tail.states is None else tail.states.shape
        want = None if ep.states is None else (N, *ep.states.shape[1:])
        raise DatasetError(f"{where}: after_end states must be {want} (as the episode's states), got {got}")


# ---------------------------------------------------------------------- writer
class DatasetWriter:
    """Write episodes into ``<path>.partial/`` and publish them at ``<path>`` on `close`.

    Example:
        >>> with DatasetWriter("runs/cartpole", env.observation_space, env.action_space, {"env": "CartPole"}) as w:
        ...     w.add_episode(obs, actions, rewards, terminations, truncations, seed=0)
    """

    def __init__(self, path: str | Path, observation_space: gym.Space, action_space: gym.Space, metadata: dict | None = None):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.observation_space, self.action_space = observation_space, action_space
        self.metadata = dict(metadata or {})
        json.dumps(self.metadata)  # fail now, not at close, if metadata is not JSON-serialisable
        if self.partial.exists():
            shutil.rmtree(self.partial)  # the leftovers of a killed writer
        (self.partial / "episodes").mkdir(parents=True)
        (self.partial / PARTIAL_MARK).write_text("incomplete: the writer has not finished (or was killed)\n")
        self.episodes: list[dict[str, Any]] = []
        self.files: dict[str, dict[str, Any]] = {}
        self.closed = False

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        # on an exception the .partial folder stays, marked and rejected by load()

    def add_episode(
        self,
        observations: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminations: np.ndarray,
        truncations: np.ndarray,
        seed: int | None = None,
        states: np.ndarray | None = None,
        after_end: AfterEnd | None = None,
    ) -> None:
        """Validate and write one episode of T steps, and the steps recorded past its end (see the module docstring)."""
        if self.closed:
            raise DatasetError(f"dataset {self.path} is closed; open a new DatasetWriter to add episodes")
        act_dtype = self.action_space.dtype if self.action_space.dtype is not None else np.float32
        ep = Episode(
            np.ascontiguousarray(observations, dtype=np.uint8),
            np.ascontiguousarray(actions, dtype=act_dtype),
            np.ascontiguousarray(rewards, dtype=np.float32),
            np.ascontiguousarray(terminations, dtype=bool),
            np.ascontiguousarray(truncations, dtype=bool),
            None if seed is None else int(seed),
            None if states is None else np.ascontiguousarray(states, dtype=np.float32),
        )
        if after_end is not None:
            ep.after_end = AfterEnd(
                np.ascontiguousarray(after_end.observations, dtype=np.uint8), np.ascontiguousarray(after_end.actions, dtype=act_dtype),
                np.ascontiguousarray(after_end.rewards, dtype=np.float32), np.ascontiguousarray(after_end.terminations, dtype=bool),
                None if after_end.states is None else np.ascontiguousarray(after_end.states, dtype=np.float32),
            )  # fmt: skip
        index = len(self.episodes)
        _check_episode(ep, self.observation_space, self.action_space, f"episode {index}")
        rel_dir = f"episodes/{index:06d}"
        (self.partial / rel_dir).mkdir()
        arrays = [(name, getattr(ep, name)) for name in FIELDS]
        arrays += [(f"after_end_{name}", getattr(ep.after_end, name)) for name in AFTER_END] if ep.after_end is not None else []
        for name, arr in arrays:
            if arr is None:
                continue
            rel = f"{rel_dir}/{name}.npy"
            with open(self.partial / rel, "wb") as f:
                np.save(f, arr, allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
            self.files[rel] = {
                "bytes": (self.partial / rel).stat().st_size,
                "sha256": _sha256(self.partial / rel),
                "shape": list(arr.shape),
                "dtype": str(arr.dtype),
            }
        self.episodes.append(
            {
                "steps": len(ep),
                "seed": ep.seed,
                "terminated": bool(len(ep) and ep.terminations[-1]),
                "truncated": bool(len(ep) and ep.truncations[-1]),
                "states": ep.states is not None,
                **({"after_end": len(ep.after_end)} if ep.after_end is not None else {}),
            }
        )

    def close(self) -> Path:
        """Write the manifest and atomically publish the dataset at ``path`` (replacing an older one)."""
        if self.closed:
            return self.path
        body: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "observation_space": space_to_dict(self.observation_space),
            "action_space": space_to_dict(self.action_space),
            "metadata": self.metadata,
            "total_episodes": len(self.episodes),
            "total_steps": sum(e["steps"] for e in self.episodes),
            "episodes": self.episodes,
            "files": self.files,
        }
        body["manifest_sha256"] = hashlib.sha256(_canonical(body)).hexdigest()
        with open(self.partial / MANIFEST, "w") as f:
            json.dump(body, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        (self.partial / PARTIAL_MARK).unlink()
        old = self.path.with_name(self.path.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        if self.path.exists():
            os.rename(self.path, old)
        os.rename(self.partial, self.path)
        if old.exists():
            shutil.rmtree(old)
        self.closed = True
        return self.path


# ---------------------------------------------------------------------- loader
class Dataset:
    """A verified, read-only dataset: ``len(dataset)`` episodes in ``dataset.episodes``."""

    def __init__(self, path: Path, manifest: dict[str, Any], episodes: list[Episode]):
        self.path = path
        self.manifest = manifest
        self.episodes = episodes
        self.observation_space = space_from_dict(manifest["observation_space"])
        self.action_space = space_from_dict(manifest["action_space"])
        self.metadata = manifest["metadata"]

    def __len__(self) -> int:
        return len(self.episodes)

    def __iter__(self) -> Iterator[Episode]:
        return iter(self.episodes)

    @property
    def total_steps(self) -> int:
        return int(self.manifest["total_steps"])


def _read_manifest(path: Path) -> dict[str, Any]:
    if path.name.endswith(".partial") or (path / PARTIAL_MARK).exists():
        raise DatasetError(
            f"{path} is a partial dataset (its writer did not finish or was killed); it is rejected. "
            "Re-record it, or delete the folder"
        )
    if not path.is_dir():
        partial = path.with_name(path.name + ".partial")
        hint = f" (only the unfinished {partial} exists: its writer was killed)" if partial.exists() else ""
        raise DatasetError(f"dataset folder {path} does not exist{hint}")
    mf = path / MANIFEST
    if not mf.is_file():
        raise DatasetError(f"{mf} is missing; {path} is not a complete worldgym dataset")
    try:
        body = json.loads(mf.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{mf} is not valid JSON ({e}); the manifest is corrupt") from e
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise DatasetError(f"{mf} is not a worldgym dataset manifest (expected format {FORMAT!r})")
    if body.get("format_version", 0) > FORMAT_VERSION:
        raise DatasetError(f"{mf} is format {body['format_version']}, newer than this worldgym ({FORMAT_VERSION}); upgrade")
    if hashlib.sha256(_canonical(body)).hexdigest() != body.get("manifest_sha256"):
        raise DatasetError(f"{mf} was edited: its content does not match its manifest_sha256")
    return body


def _verify(path: Path, body: dict[str, Any], hashes: bool = True) -> None:
    """Every listed file present with its size, sha256 and .npy header; no unlisted arrays; counts add up."""
    mf = path / MANIFEST
    files = body["files"]
    for rel, entry in files.items():
        f = path / rel
        if not f.is_file():
            raise DatasetError(f"{f} is missing (listed in {mf}); the dataset is incomplete, re-record it")
        size = f.stat().st_size
        if size != entry["bytes"]:
            raise DatasetError(f"{f} has {size} bytes, the manifest says {entry['bytes']} (truncated or grown); re-record it")
        if hashes and _sha256(f) != entry["sha256"]:
            raise DatasetError(f"{f} does not match its sha256 in {mf} (bit flip or edit); re-record it")
        shape, dtype = _npy_header(f)
        if list(shape) != entry["shape"] or str(dtype) != entry["dtype"]:
            raise DatasetError(f"{f} holds {dtype} {shape}, the manifest says {entry['dtype']} {tuple(entry['shape'])}")
    on_disk = {p.relative_to(path).as_posix() for p in (path / "episodes").rglob("*.npy")} if (path / "episodes").is_dir() else set()
    extra = sorted(on_disk - set(files))
    if extra:
        raise DatasetError(f"{path / extra[0]} is not listed in {mf}; the folder was modified after recording")
    eps = body["episodes"]
    if body["total_episodes"] != len(eps) or body["total_steps"] != sum(e["steps"] for e in eps):
        raise DatasetError(f"{mf}: total_episodes/total_steps do not match the episode list")
    for i, e in enumerate(eps):
        for name in FIELDS[:5] + (("states",) if e.get("states") else ()):
            rel = f"episodes/{i:06d}/{name}.npy"
            if rel not in files:
                raise DatasetError(f"{path / rel} is not listed in {mf}; episode {i} is incomplete")
            n = e["steps"] + (1 if name in ("observations", "states") else 0)
            if files[rel]["shape"][0] != n:
                raise DatasetError(f"{path / rel} has {files[rel]['shape'][0]} rows, episode {i} needs {n} ({mf})")
        tail_names = [n for n in AFTER_END if n != "states" or e.get("states")] if e.get("after_end") else []
        for name in tail_names:
            rel = f"episodes/{i:06d}/after_end_{name}.npy"
            if rel not in files:
                raise DatasetError(f"{path / rel} is not listed in {mf}; episode {i} lists {e['after_end']} steps after its end")
            if files[rel]["shape"][0] != e["after_end"]:
                raise DatasetError(f"{path / rel} has {files[rel]['shape'][0]} rows, episode {i} lists {e['after_end']} steps after its end ({mf})")


def load(path: str | Path, verify_hashes: bool = True) -> Dataset:
    """Verify and open a dataset read-only (see the module docstring). Never writes to disk.

    Args:
        path: the dataset folder.
        verify_hashes: check every file's sha256 (on by default; sizes and headers are always checked).

    Raises:
        DatasetError: naming the file for a missing, truncated, bit-flipped or unlisted file, an
            edited manifest, or a partial (killed) recording.
    """
    path = Path(path)
    body = _read_manifest(path)
    _verify(path, body, hashes=verify_hashes)
    obs_space, act_space = space_from_dict(body["observation_space"]), space_from_dict(body["action_space"])
    episodes = []
    for i, e in enumerate(body["episodes"]):
        d = path / f"episodes/{i:06d}"
        # frames stay on disk (memory-mapped); the small per-step arrays are read into memory, read-only, so a
        # mapping (which holds a file descriptor) is kept per episode, not per array: thousands of episodes load
        arrays = {
            name: np.load(d / f"{name}.npy", mmap_mode="r" if name == "observations" else None, allow_pickle=False)
            for name in FIELDS
            if name != "states" or e.get("states")
        }
        tail = {  # a few frames: read into memory, so an episode still holds one mapping at most
            name: np.load(d / f"after_end_{name}.npy", allow_pickle=False)
            for name in AFTER_END
            if e.get("after_end") and (name != "states" or e.get("states"))
        }
        for name, a in arrays.items():
            if name != "observations":
                a.setflags(write=False)
        for a in tail.values():
            a.setflags(write=False)
        ep = Episode(seed=e["seed"], states=arrays.pop("states", None), **arrays)
        ep.after_end = AfterEnd(**tail) if tail else None
        _check_episode(ep, obs_space, act_space, f"{d}")
        if bool(len(ep) and ep.terminations[-1]) != e["terminated"]:
            raise DatasetError(f"{d}/terminations.npy disagrees with the manifest's episode {i} 'terminated' flag")
        episodes.append(ep)
    return Dataset(path, body, episodes)


def check(path: str | Path) -> dict[str, Any]:
    """Validate a dataset; returns a summary dict or raises `DatasetError` naming the file at fault."""
    ds = load(path)
    steps = [len(e) for e in ds.episodes]
    return {
        "path": str(ds.path),
        "episodes": len(ds),
        "steps": ds.total_steps,
        "files": len(ds.manifest["files"]),
        "observation_space": str(ds.observation_space),
        "action_space": str(ds.action_space),
        "terminated": sum(e["terminated"] for e in ds.manifest["episodes"]),
        "truncated": sum(e["truncated"] for e in ds.manifest["episodes"]),
        "after_end_steps": sum(e.get("after_end", 0) for e in ds.manifest["episodes"]),
        "mean_length": float(np.mean(steps)) if steps else 0.0,
    }

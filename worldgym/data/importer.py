"""Import recordings made elsewhere into a worldgym dataset: videos or frame folders plus action logs, or a Minari dataset.

Examples:
    worldgym import recordings/ --action-names noop,left,right,up,down --out runs/data/mine
    worldgym import gameplay.mp4 --actions gameplay.csv --num-actions 17 --resize 64 --out runs/data/mine
    worldgym import minari:atari/pong/expert-v0 --resize 64 --out runs/data/pong

A source folder holds one episode per video file (MP4, WebM, MKV, AVI, MOV: decoded by
FFmpeg through PyAV, ``pip install 'worldgym[video]'``; GIF through Pillow) or per
sub-folder of PNG frames (in name order), each with its action log beside it: the same
name with ``.csv`` or ``.jsonl`` (``ep1.mp4`` + ``ep1.csv``), or in ``--actions DIR``.

An action log has one row per action: a CSV file with a header, or a JSON object per line.
Its ``action`` is an action index or, with ``--action-names``, a name. The rows are either

- **one per frame** (no ``time`` column): row t is the action taken at frame t, which led to
  frame t+1; T+1 frames take T rows (or T+1: the last frame's action, whose result was never
  filmed, is dropped); an optional ``frame`` column must count 0, 1, 2, ...;
- **timestamped** (a ``time`` column, in seconds from the video's start): the action in force
  at each frame is the last one logged at or before the frame's time (``--default-action``
  before the first), as a key logger writes them. Frame times come from the video (GIF: its
  frame durations; PNG frames: ``--fps``).

Optional columns ``reward`` (float) and ``terminated`` (0/1, true/false) give the rewards and
episode end; without ``terminated`` an episode is marked truncated. Frames keep their size
unless ``--resize N`` (an area filter to NxN, after an optional ``--crop top,bottom,left,right``);
every frame of every episode must then have the size of the first. A Minari dataset
(``minari:ID``, found in ``MINARI_DATASETS_PATH`` or ``~/.minari``) imports if its observations
are RGB images (``--obs-key`` picks one from a Dict observation).

Every mistake is a `DatasetError` naming the file and the position: lengths that do not
match, an unknown action, an unreadable or truncated video, a frame of the wrong size. The
dataset is written to ``OUT.partial``, verified and renamed to ``OUT`` only when every episode
is in; on an error nothing is left behind.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import gymnasium as gym
import numpy as np

from worldgym.config_io import UserError
from worldgym.data.dataset import DatasetError, DatasetWriter, check

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v")
IMAGE_SUFFIXES = (".png",)
LOG_SUFFIXES = (".csv", ".jsonl")
TRUE = ("1", "true", "yes", "t", "y")


@dataclass
class Frames:
    """The decoded frames of one episode source: (F, H, W, 3) uint8 and each frame's time in seconds (F,) or None."""

    frames: np.ndarray
    times: np.ndarray | None


# ---------------------------------------------------------------------- frame sources
def natural_key(path: Path) -> list[Any]:
    """``frame_2.png`` before ``frame_10.png``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def fit(frame: np.ndarray, where: str, size: tuple[int, int] | None, crop: tuple[int, int, int, int] | None) -> np.ndarray:
    """One RGB frame cropped and resized (area filter) as asked; `DatasetError` naming ``where`` if it is not RGB."""
    from PIL import Image

    if frame.ndim != 3 or frame.shape[2] != 3:
        raise DatasetError(f"{where}: expected an RGB frame (h, w, 3), got shape {frame.shape}")
    if crop is not None:
        top, bottom, left, right = crop
        if bottom > frame.shape[0] or right > frame.shape[1]:
            raise DatasetError(f"{where}: --crop {crop} does not fit a frame of {frame.shape[1]}x{frame.shape[0]} pixels")
        frame = frame[top:bottom, left:right]
    if size is not None and frame.shape[:2] != size:
        frame = np.asarray(Image.fromarray(np.ascontiguousarray(frame)).resize((size[1], size[0]), Image.BOX))
    return np.ascontiguousarray(frame, dtype=np.uint8)


def read_video(path: Path, size: tuple[int, int] | None, crop: tuple[int, int, int, int] | None) -> Frames:
    """Every frame of a video file through PyAV, with its presentation time."""
    try:
        import av
    except ImportError as e:
        raise gym.error.DependencyNotInstalled(f"{path}: reading videos needs PyAV ({e}); pip install 'worldgym[video]'") from e
    frames, times = [], []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DatasetError(f"{path}: no video stream in the file; expected a video with one")
            stream = container.streams.video[0]
            declared = int(stream.frames or 0)
            for frame in container.decode(stream):
                frames.append(fit(frame.to_ndarray(format="rgb24"), f"{path} frame {len(frames)}", size, crop))
                times.append(float(frame.time) if frame.time is not None else np.nan)
    except (av.error.FFmpegError, OSError) as e:
        at = f" at frame {len(frames)}" if frames else ""
        raise DatasetError(f"{path}: unreadable or truncated video{at} ({e}); re-export it or remove it from the folder") from e
    if not frames:
        raise DatasetError(f"{path}: the video holds no frames")
    if declared and len(frames) < declared:
        raise DatasetError(f"{path}: truncated video: its header declares {declared} frames, {len(frames)} decode; re-export it")
    return Frames(np.stack(frames), np.asarray(times))


def read_gif(path: Path, size: tuple[int, int] | None, crop: tuple[int, int, int, int] | None) -> Frames:
    """Every frame of an animated GIF through Pillow, timed by the frames' durations."""
    from PIL import Image

    frames, times, t = [], [], 0.0
    try:
        with Image.open(path) as image:
            for i in range(getattr(image, "n_frames", 1)):
                image.seek(i)
                frames.append(fit(np.asarray(image.convert("RGB")), f"{path} frame {i}", size, crop))
                times.append(t)
                t += image.info.get("duration", 100) / 1000.0
    except (OSError, EOFError, SyntaxError, ValueError, IndexError, struct.error) as e:  # Pillow's errors on a cut GIF
        raise DatasetError(f"{path}: unreadable or truncated GIF at frame {len(frames)} ({e}); re-export it") from e
    return Frames(np.stack(frames), np.asarray(times))


def read_png_folder(path: Path, size: tuple[int, int] | None, crop: tuple[int, int, int, int] | None, fps: float | None) -> Frames:
    """The PNG files of a folder, in natural name order (times from ``fps`` if given)."""
    from PIL import Image

    files = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key)
    if not files:
        raise DatasetError(f"{path}: a frame folder needs PNG files (frame_000.png, ...), found none")
    frames: list[np.ndarray] = []
    for f in files:
        try:
            with Image.open(f) as image:
                frames.append(fit(np.asarray(image.convert("RGB")), str(f), size, crop))
        except (OSError, SyntaxError, ValueError, IndexError, struct.error) as e:
            raise DatasetError(f"{f}: unreadable PNG (frame {len(frames)} of {path}) ({e})") from e
        if frames[-1].shape != frames[0].shape:
            (h, w), (h0, w0) = frames[-1].shape[:2], frames[0].shape[:2]
            raise DatasetError(f"{f} (frame {len(frames) - 1} of {path}) is {w}x{h} pixels, frame 0 is {w0}x{h0}; pass --resize N")
    times = np.arange(len(frames)) / fps if fps else None
    return Frames(np.stack(frames), times)


def read_frames(path: Path, size: tuple[int, int] | None, crop: tuple[int, int, int, int] | None, fps: float | None) -> Frames:
    if path.is_dir():
        return read_png_folder(path, size, crop, fps)
    if path.suffix.lower() == ".gif":
        return read_gif(path, size, crop)
    return read_video(path, size, crop)


# ---------------------------------------------------------------------- action logs
def read_log(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV (with a header) or JSONL action log, as dicts of strings."""
    try:
        if path.suffix.lower() == ".jsonl":
            rows = []
            for n, line in enumerate(path.read_text().splitlines(), start=1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise DatasetError(f"{path} line {n}: not a JSON object ({e})") from e
                    if not isinstance(row, dict):
                        raise DatasetError(f"{path} line {n}: expected a JSON object like {{\"action\": 1}}, got {line.strip()[:40]!r}")
                    rows.append({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in row.items()})
            return rows
        with open(path, newline="") as f:
            return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in csv.DictReader(f)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"{path}: unreadable action log ({e})") from e


class ActionParser:
    """Action values in logs -> indices of ``Discrete(n)`` (by name with ``names``)."""

    def __init__(self, names: list[str] | None, n: int | None):
        self.names, self.n = names, (len(names) if names else n)

    def __call__(self, value: str, where: str) -> int:
        if self.names and value in self.names:
            return self.names.index(value)
        try:
            action = int(value)
        except ValueError:
            known = f"one of {self.names} or an index" if self.names else "an integer index (pass --action-names to log names)"
            raise DatasetError(f"{where}: unknown action {value!r}; expected {known}") from None
        if action < 0 or (self.n is not None and action >= self.n):
            raise DatasetError(f"{where}: unknown action {action}; expected an index in [0, {self.n if self.n is not None else 'n'})")
        return action


def episode_arrays(rows: list[dict[str, str]], frames: Frames, log: Path, source: Path, parse: ActionParser,
                   default_action: str | None) -> dict[str, np.ndarray]:  # fmt: skip
    """Actions, rewards, terminations and truncations (T,) for F = T+1 frames from the log's rows."""
    F = len(frames.frames)
    if rows and "action" not in rows[0]:
        raise DatasetError(f"{log}: the log needs an 'action' column, got columns {sorted(rows[0])}")
    if rows and "time" in rows[0]:
        if frames.times is None or np.isnan(frames.times).any():
            raise DatasetError(f"{log} is timestamped but {source} has no frame times; pass --fps for PNG frame folders")
        times = []
        for i, row in enumerate(rows):
            try:
                times.append(float(row["time"]))
            except ValueError:
                raise DatasetError(f"{log} row {i + 1}: time must be seconds, got {row['time']!r}") from None
        if any(b < a for a, b in zip(times, times[1:])):
            raise DatasetError(f"{log}: times must not decrease (row {next(i for i in range(1, len(times)) if times[i] < times[i - 1]) + 1})")
        index = np.searchsorted(np.asarray(times), frames.times[:-1] + 1e-6, side="right") - 1  # (T,) last row at or before each frame
        if (index < 0).any() and default_action is None:
            raise DatasetError(f"{log}: frame 0 of {source} is at {frames.times[0]:.3f} s, before the first logged action at "
                               f"{times[0]:.3f} s; log an action at time 0 or pass --default-action")  # fmt: skip
        picked = [int(i) for i in index]
    else:
        if len(rows) not in (F - 1, F):
            raise DatasetError(
                f"{log} has {len(rows)} actions, {source} has {F} frames: one action per frame needs {F - 1} "
                f"(or {F}, the last one dropped); fix the log or the video, or log times in a 'time' column"
            )
        for i, row in enumerate(rows):
            if "frame" in row and row["frame"] != str(i):
                raise DatasetError(f"{log} row {i + 1}: frame must count 0, 1, 2, ...; expected {i}, got {row['frame']!r}")
        picked = list(range(F - 1))
    default = {"action": str(default_action)}
    actions = np.array([parse((rows[i] if i >= 0 else default)["action"], f"{log} row {i + 1}" if i >= 0 else "--default-action")
                        for i in picked], dtype=np.int64)  # fmt: skip
    rewards = np.zeros(len(picked), np.float32)
    for t, i in enumerate(picked):
        try:
            rewards[t] = float(rows[i].get("reward") or 0.0) if i >= 0 else 0.0
        except ValueError:
            raise DatasetError(f"{log} row {i + 1}: reward must be a number, got {rows[i]['reward']!r}") from None
    ends = np.array([i >= 0 and str(rows[i].get("terminated", "")).lower() in TRUE for i in picked], dtype=bool)
    if ends[:-1].any():
        raise DatasetError(f"{log}: terminated at transition {int(np.argmax(ends))} of {len(ends)}; an episode may only end at its last step")
    terminations = ends
    truncations = np.zeros_like(ends)
    if len(ends):
        truncations[-1] = not ends[-1]
    return {"actions": actions, "rewards": rewards, "terminations": terminations, "truncations": truncations}


def episode_sources(src: Path, actions: Path | None) -> list[tuple[Path, Path]]:
    """(frames source, action log) of every episode under ``src`` (a folder, or one video/GIF)."""
    if not src.exists():
        raise UserError(f"{src} does not exist; pass a folder of videos or frame folders, a video file, or minari:ID")
    if src.is_file() or any(p.suffix.lower() in IMAGE_SUFFIXES for p in src.iterdir()):
        sources = [src]  # one video, GIF or frame folder
    else:
        sources = sorted((p for p in src.iterdir() if p.is_dir() or p.suffix.lower() in (*VIDEO_SUFFIXES, ".gif")), key=natural_key)
    if not sources:
        raise UserError(f"{src} holds no videos ({', '.join(VIDEO_SUFFIXES)}), GIFs or PNG frame folders")
    pairs = []
    for source in sources:
        if actions is not None and actions.is_file():
            logs = [actions] if len(sources) == 1 else []
        else:
            where = actions if actions is not None else source.parent
            logs = [where / f"{source.stem if source.is_file() else source.name}{s}" for s in LOG_SUFFIXES]
        log = next((p for p in logs if p.is_file()), None)
        if log is None:
            raise UserError(f"{source}: no action log; expected {' or '.join(str(p) for p in logs) or 'one log per episode in --actions DIR'}")
        pairs.append((source, log))
    return pairs


# ---------------------------------------------------------------------- the importers
def import_videos(
    src: str | Path, out: str | Path, actions: str | Path | None = None, action_names: list[str] | None = None,
    num_actions: int | None = None, resize: tuple[int, int] | None = None, crop: tuple[int, int, int, int] | None = None,
    fps: float | None = None, default_action: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Import videos / GIFs / PNG frame folders with their action logs (see the module docstring); returns `check`'s summary."""
    pairs = episode_sources(Path(src), None if actions is None else Path(actions))
    parse = ActionParser(action_names, num_actions)
    logs = [(source, log, read_log(log)) for source, log in pairs]
    if parse.n is None:  # Discrete(largest logged index + 1)
        parse.n = 1 + max((parse(r["action"], f"{log} row {i + 1}") for _, log, rows in logs for i, r in enumerate(rows) if "action" in r), default=0)
    metadata = {"env": f"import:{Path(src).name}", "policy": "imported", "source": str(src), "action_names": action_names or []}
    writer: DatasetWriter | None = None
    try:
        for source, log, rows in logs:
            frames = read_frames(source, resize, crop, fps)
            shape = frames.frames.shape[1:]
            if writer is None:
                first = source
                writer = DatasetWriter(out, gym.spaces.Box(0, 255, shape, np.uint8), gym.spaces.Discrete(parse.n), metadata)
            elif shape != writer.observation_space.shape:
                (h, w), (h0, w0) = shape[:2], writer.observation_space.shape[:2]
                raise DatasetError(f"{source} frame 0 is {w}x{h} pixels, {first} is {w0}x{h0}; every episode needs one frame size (pass --resize N)")
            writer.add_episode(frames.frames, **episode_arrays(rows, frames, log, source, parse, default_action))
        assert writer is not None  # episode_sources found at least one source
        writer.close()
    except BaseException:
        if writer is not None:
            shutil.rmtree(writer.partial, ignore_errors=True)
        raise
    return check(out)


def import_minari(dataset_id: str, out: str | Path, obs_key: str | None = None, resize: tuple[int, int] | None = None,
                  crop: tuple[int, int, int, int] | None = None) -> dict[str, Any]:  # fmt: skip
    """Import a local Minari dataset whose observations are RGB images; returns `check`'s summary."""
    try:
        import minari
    except ImportError as e:
        raise gym.error.DependencyNotInstalled(f"importing Minari datasets needs minari ({e}); pip install 'worldgym[minari]'") from e
    try:
        mds = minari.load_dataset(dataset_id)
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise UserError(f"minari:{dataset_id}: cannot load it ({e}); see `minari list local` (MINARI_DATASETS_PATH)") from e
    space = mds.observation_space
    if isinstance(space, gym.spaces.Dict):
        if obs_key not in space.spaces:
            raise DatasetError(f"minari:{dataset_id} observes a Dict with keys {sorted(space.spaces)}; pass --obs-key with the image one")
        space = space[obs_key]
    if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and space.shape[2] == 3 and space.dtype == np.uint8):
        raise DatasetError(f"minari:{dataset_id} observations are {space}; expected RGB images Box(0, 255, (H, W, 3), uint8)")
    metadata = {"env": f"minari:{dataset_id}", "policy": "imported", "source": f"minari:{dataset_id}"}

    def episodes() -> Iterator[dict[str, Any]]:
        for i, ep in enumerate(mds.iterate_episodes()):
            obs = ep.observations[obs_key] if obs_key else ep.observations
            frames = np.stack([fit(np.asarray(f), f"minari:{dataset_id} episode {i} frame {t}", resize, crop) for t, f in enumerate(obs)])
            yield {"observations": frames, "actions": np.asarray(ep.actions), "rewards": np.asarray(ep.rewards, np.float32),
                   "terminations": np.asarray(ep.terminations), "truncations": np.asarray(ep.truncations), "seed": None}  # fmt: skip

    shape = (resize or space.shape[:2]) if crop is None else None
    if shape is None:  # the crop decides the size: look at the first frame
        first = next(mds.iterate_episodes()).observations
        shape = fit(np.asarray((first[obs_key] if obs_key else first)[0]), f"minari:{dataset_id}", resize, crop).shape[:2]
    writer = DatasetWriter(out, gym.spaces.Box(0, 255, (*shape, 3), np.uint8), mds.action_space, metadata)
    try:
        for ep in episodes():
            writer.add_episode(**ep)
        writer.close()
    except BaseException:
        shutil.rmtree(writer.partial, ignore_errors=True)
        raise
    return check(out)


# ---------------------------------------------------------------------- CLI
def numbers(text: str, n: int, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in re.split(r"[,x ]+", text.strip()))
    except ValueError:
        values = ()
    if len(values) not in ((n,) if n != 1 else (1, 2)) or min(values) < 0:
        raise UserError(f"{flag} takes {n} non-negative integers separated by commas, got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="a folder of videos / GIFs / PNG frame folders, one video, or minari:DATASET_ID")
    parser.add_argument("--out", required=True, help="dataset folder to write")
    parser.add_argument("--actions", default=None, help="the action log of a single source, or a folder of logs named like the episodes (default: beside them)")
    parser.add_argument("--action-names", default=None, help="comma-separated action names, index order (the logs may use them)")
    parser.add_argument("--num-actions", type=int, default=None, help="Discrete(n) actions (default: from --action-names, else the largest logged index + 1)")
    parser.add_argument("--resize", default=None, help="N or H,W: resize every frame (area filter); without it all frames must have one size")
    parser.add_argument("--crop", default=None, help="top,bottom,left,right pixels kept before resizing")
    parser.add_argument("--fps", type=float, default=None, help="frame rate of PNG frame folders (for timestamped logs)")
    parser.add_argument("--default-action", default=None, help="action before the first timestamped log row")
    parser.add_argument("--obs-key", default=None, help="minari: the image key of a Dict observation")


def run(args: argparse.Namespace) -> int:
    resize = numbers(args.resize, 1, "--resize") if args.resize else None
    size = None if resize is None else (resize[0], resize[-1])
    crop = numbers(args.crop, 4, "--crop") if args.crop else None
    if args.source.startswith("minari:"):
        summary = import_minari(args.source[7:], args.out, args.obs_key, size, crop)
    else:
        names = [n.strip() for n in args.action_names.split(",")] if args.action_names else None
        summary = import_videos(args.source, args.out, args.actions, names, args.num_actions, size, crop, args.fps, args.default_action)
    print(f"wrote {summary['path']}: {summary['episodes']} episodes, {summary['steps']} steps, "
          f"{summary['observation_space']}, {summary['action_space']} (manifest verified)")  # fmt: skip
    return 0

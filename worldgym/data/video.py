"""Video files from uint8 RGB frames: GIF through Pillow, MP4 through an ffmpeg executable.

`open_video(path, fps)` picks the format from the suffix and fails *at open* when it
cannot write it (an MP4 without ffmpeg), so a recording session never ends in an error.
Frames are scaled up with nearest neighbour by an integer factor, so a 64x64 model's
pixels stay sharp. GIF frames are kept in memory (as small palette images, unscaled)
until `close()`; MP4 frames stream to ffmpeg. This module knows files, not windows.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from worldgym.config_io import UserError

FORMATS = (".gif", ".mp4")


class VideoError(UserError, RuntimeError):
    """A video file that cannot be written (unknown suffix, no encoder, bad frames)."""


def upscale(frame: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour integer upscaling of an (H, W, 3) frame -> (H*scale, W*scale, 3)."""
    if scale == 1:
        return frame
    return frame.repeat(scale, axis=0).repeat(scale, axis=1)  # (H*s, W*s, 3)


def find_ffmpeg() -> str | None:
    """An ffmpeg executable: on PATH, or the one bundled by the optional ``imageio-ffmpeg`` package."""
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    return imageio_ffmpeg.get_ffmpeg_exe()


class GifWriter:
    """Collect frames and write an animated GIF with Pillow on `close()`."""

    def __init__(self, path: str | Path, fps: float, scale: int = 1):
        self.path, self.fps, self.scale = Path(path), float(fps), int(scale)
        self.frames: list = []

    def append(self, frame: np.ndarray) -> None:
        from PIL import Image

        frame = check_frame(frame, self.frames[0].size[::-1] if self.frames else None)
        self.frames.append(Image.fromarray(frame).quantize(colors=256, method=Image.Quantize.MEDIANCUT))

    def close(self) -> None:
        from PIL import Image

        if not self.frames:
            return
        frames = self.frames
        if self.scale > 1:
            frames = [f.resize((f.width * self.scale, f.height * self.scale), Image.NEAREST) for f in frames]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        duration = max(20, round(1000 / self.fps))  # GIF delays are in 10 ms units; browsers slow < 20 ms
        frames[0].save(self.path, save_all=True, append_images=frames[1:], duration=duration, loop=0, optimize=False)
        self.frames = []


class Mp4Writer:
    """Stream frames to an ``ffmpeg`` process writing H.264 MP4 (yuv420p, playable everywhere)."""

    def __init__(self, path: str | Path, fps: float, scale: int = 1):
        exe = find_ffmpeg()
        if exe is None:
            raise VideoError(
                f"cannot write {path}: MP4 needs ffmpeg. Install it (`apt-get install ffmpeg`, or "
                f"`pip install imageio-ffmpeg`), or record a .gif instead"
            )
        self.path, self.fps, self.scale, self.exe = Path(path), float(fps), int(scale), exe
        self.proc: subprocess.Popen | None = None
        self.shape: tuple[int, int] | None = None

    def append(self, frame: np.ndarray) -> None:
        frame = check_frame(frame, self.shape)
        self.shape = frame.shape[:2]
        frame = upscale(frame, self.scale)  # (H*s, W*s, 3)
        if self.proc is None:
            h, w = frame.shape[:2]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            cmd = [self.exe, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
                   "-r", f"{self.fps:g}", "-i", "-", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",
                   "-c:v", "libx264", "-pix_fmt", "yuv420p", str(self.path)]  # fmt: skip
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdin is not None
        self.proc.stdin.write(np.ascontiguousarray(frame).tobytes())

    def close(self) -> None:
        if self.proc is None:
            return
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
        code = self.proc.wait()
        self.proc = None
        if code != 0:
            raise VideoError(f"ffmpeg failed writing {self.path} (exit {code}): {err.strip()}")


def check_frame(frame: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """An (H, W, 3) uint8 frame, of size ``size`` (H, W) if given, else a VideoError."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise VideoError(f"video frames must be (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
    if size is not None and tuple(frame.shape[:2]) != tuple(size):
        raise VideoError(f"all video frames must have the first frame's size {tuple(size)}, got {frame.shape[:2]}")
    return frame


def open_video(path: str | Path, fps: float, scale: int = 1) -> GifWriter | Mp4Writer:
    """A writer for ``path`` (.gif or .mp4) with ``append(frame)`` and ``close()``; fails now if it cannot write."""
    suffix = Path(path).suffix.lower()
    if suffix == ".gif":
        return GifWriter(path, fps, scale)
    if suffix == ".mp4":
        return Mp4Writer(path, fps, scale)
    raise VideoError(f"video path must end in one of {FORMATS}, got {str(path)!r}")

"""Checkpoints: a folder with safetensors weights, the JSON config that builds the model, and a sha256 manifest.

Layout of a checkpoint folder::

    model.safetensors   weights (and the start-frame bank), loaded with load_state_dict(strict=True)
    config.json         {"format_version": 1, "config": <WorldModelConfig as a dict>}
    manifest.json       {"format_version": 1, "files": {name: {"bytes": n, "sha256": hex}}}

Saving writes a temporary folder, fsyncs it and renames it into place, so a crash never
leaves a half checkpoint under the final name. Loading checks the manifest (presence,
size, sha256) before reading anything, then builds the model from the config and loads
the weights strictly. Nothing is ever unpickled: a pickle or ``torch.save`` file is
refused by its magic bytes before any parser sees it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from worldgym.config_io import ConfigError, UserError, from_dict, to_dict
from worldgym.paths import model_dirs
from worldgym.model.networks import Model, WorldModelConfig

FORMAT_VERSION = 1
WEIGHTS, CONFIG, MANIFEST = "model.safetensors", "config.json", "manifest.json"



class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be loaded; the message names the file and the fix. Picklable (one str)."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_write(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def save(model: Model, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` to the checkpoint folder ``path`` atomically; returns the folder.

    Args:
        model: the model to save.
        path: destination folder (replaced if it exists).
        extra: JSON-serialisable metadata stored in config.json under "extra" (training step, data, ...).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS), metadata={"format_version": str(FORMAT_VERSION)})
        with open(tmp / WEIGHTS, "rb+") as f:
            os.fsync(f.fileno())
        body = {"format_version": FORMAT_VERSION, "config": to_dict(model.config), "extra": extra or {}}
        _fsync_write(tmp / CONFIG, json.dumps(body, indent=2))
        files = {n: {"bytes": (tmp / n).stat().st_size, "sha256": sha256(tmp / n)} for n in (WEIGHTS, CONFIG)}
        _fsync_write(tmp / MANIFEST, json.dumps({"format_version": FORMAT_VERSION, "files": files}, indent=2))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700 folders: give the checkpoint the usual permissions
        for name in (WEIGHTS, CONFIG, MANIFEST):
            os.chmod(tmp / name, 0o666 & ~umask)
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


# former names of shipped model folders -> their folder now (the 4-token CartPole shipped as "cartpolefast"
# before it became the default CartPole; the 16-token model it replaced is "cartpole16")
RENAMED = {"cartpolefast": "cartpole"}


def resolve(name_or_path: str | Path) -> Path:
    """A checkpoint folder from a path, a path to its model.safetensors, or the folder name of an installed model
    (or a former name of one, `RENAMED`)."""
    p = Path(name_or_path)
    if p.is_file() and p.name in (WEIGHTS, CONFIG, MANIFEST):
        return p.parent
    if p.exists():
        return p
    for folder in model_dirs():
        for name in dict.fromkeys((str(name_or_path), str(name_or_path).lower())):  # as given, then lower case
            named = folder / name
            if (named / CONFIG).is_file():
                return named
    if str(name_or_path).lower() in RENAMED:
        return resolve(RENAMED[str(name_or_path).lower()])
    names = sorted({d.name for folder in model_dirs() if folder.is_dir() for d in folder.glob("*") if (d / CONFIG).is_file()})
    raise CheckpointError(
        f"no checkpoint at {p} (missing file or folder) and no installed model of that name; installed: {names} "
        f"(shipped models and the user models directory {model_dirs()[1]})"
    )


def _refuse_pickle(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(9)
    size = path.stat().st_size
    # a safetensors file: an 8-byte little-endian header length, then the JSON header (its first
    # byte may be 0x80, a pickle's first byte, so this is checked first)
    if len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") <= size - 8:
        return
    if head[:1] == b"\x80" or head[:4] == b"PK\x03\x04":
        raise CheckpointError(
            f"{path} is a pickle / torch.save file; worldgym never unpickles checkpoints. "
            "Load it yourself with torch.load(..., weights_only=True) if you trust it and save it with worldgym.model.checkpoint.save"
        )


def read_config(path: str | Path) -> tuple[WorldModelConfig, dict[str, Any]]:
    """Verify a checkpoint folder against its manifest and return its config and extra metadata."""
    folder = resolve(path)
    if not folder.is_dir():
        _refuse_pickle(folder)
        raise CheckpointError(f"{folder} is a file, not a checkpoint folder (expected {WEIGHTS}, {CONFIG}, {MANIFEST} inside)")
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(f"{manifest_path} is missing: not a worldgym checkpoint (save it with worldgym.model.checkpoint.save)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{manifest_path} is not valid JSON ({e}); the checkpoint is corrupt") from e
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if not isinstance(version, int):
        raise CheckpointError(f"{manifest_path} has no integer format_version; the checkpoint is corrupt")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{manifest_path} has format_version {version}, newer than this worldgym reads ({FORMAT_VERSION}); upgrade worldgym"
        )
    files = manifest.get("files", {})
    for name in (WEIGHTS, CONFIG):
        f = folder / name
        if name not in files:
            raise CheckpointError(f"{manifest_path} does not list {name}; the checkpoint is corrupt")
        if not f.is_file():
            raise CheckpointError(f"{f} is missing")
        size = f.stat().st_size
        if size == 0:
            raise CheckpointError(f"{f} is empty (0 bytes, expected {files[name]['bytes']})")
        _refuse_pickle(f)
        if size != files[name]["bytes"]:
            raise CheckpointError(f"{f} has {size} bytes, the manifest says {files[name]['bytes']}: truncated or replaced")
        if sha256(f) != files[name]["sha256"]:
            raise CheckpointError(f"{f} does not match its sha256 in {manifest_path}: the file is corrupt (bit flip or edit)")
    body = json.loads((folder / CONFIG).read_text())
    if body.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{folder / CONFIG} is from a newer worldgym (format {body['format_version']}); upgrade worldgym")
    try:
        config = from_dict(WorldModelConfig, body["config"], str(folder / CONFIG))
    except (ConfigError, KeyError) as e:
        raise CheckpointError(f"{folder / CONFIG} does not describe a worldgym model: {e}") from e
    return config, body.get("extra", {})


def load(path: str | Path, device: str | torch.device = "cpu") -> Model:
    """Load a checkpoint folder (or a shipped model by name): verify, build from config, load strictly."""
    folder = resolve(path)
    config, extra = read_config(folder)
    model = Model(config)
    try:
        state = load_file(str(folder / WEIGHTS), device="cpu")
    except SafetensorError as e:
        raise CheckpointError(f"{folder / WEIGHTS} is not a readable safetensors file: {e}") from e
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()]
        shown = "; ".join(lines[:4]) + (f"; ... {len(lines) - 4} more" if len(lines) > 4 else "")
        raise CheckpointError(
            f"{folder / WEIGHTS} does not fit the architecture in {folder / CONFIG} (wrong architecture): {shown}"
        ) from e
    model.extra = extra
    model.source = str(folder)
    return model.to(device)

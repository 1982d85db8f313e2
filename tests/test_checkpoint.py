"""Checkpoints: round trip, atomic save, and a clear error naming the file for every fault."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import pytest
import torch

from worldgym.model import checkpoint
from worldgym.model.checkpoint import CheckpointError

from conftest import tiny_model


@pytest.fixture
def saved(tmp_path):
    model = tiny_model()
    return model, checkpoint.save(model, tmp_path / "ckpt", extra={"step": 7})


def test_round_trip_is_exact(saved):
    model, path = saved
    loaded = checkpoint.load(path)
    assert loaded.config == model.config and loaded.extra == {"step": 7}
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert checkpoint.load(path / "model.safetensors").config == model.config  # the weights file path works too


def test_save_replaces_atomically_and_leaves_no_temp(saved, tmp_path):
    model, path = saved
    checkpoint.save(model, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "manifest.json", "model.safetensors"]


def test_missing(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at .*nowhere"):
        checkpoint.load(tmp_path / "nowhere")


def test_missing_weights(saved):
    _, path = saved
    os.remove(path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"model\.safetensors is missing"):
        checkpoint.load(path)


def test_empty(saved):
    _, path = saved
    open(path / "model.safetensors", "wb").close()
    with pytest.raises(CheckpointError, match=r"model\.safetensors is empty"):
        checkpoint.load(path)


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated(saved, keep):
    _, path = saved
    f = path / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match=r"model\.safetensors has \d+ bytes, the manifest says \d+: truncated"):
        checkpoint.load(path)


def test_bit_flip(saved):
    _, path = saved
    f = path / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[-100] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors does not match its sha256"):
        checkpoint.load(path)


def rehash(path):
    manifest = json.loads((path / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        entry["bytes"] = (path / name).stat().st_size
        entry["sha256"] = checkpoint.sha256(path / name)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_wrong_architecture(saved):
    _, path = saved
    body = json.loads((path / "config.json").read_text())
    body["config"]["dynamics"]["dim"] = 64
    (path / "config.json").write_text(json.dumps(body))
    rehash(path)
    with pytest.raises(CheckpointError, match=r"model\.safetensors does not fit the architecture .*size mismatch"):
        checkpoint.load(path)


def test_newer_format(saved):
    _, path = saved
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"manifest\.json has format_version 99.*upgrade worldgym"):
        checkpoint.load(path)


class Payload:
    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


@pytest.mark.parametrize("as_torch_save", [False, True])
def test_pickle_payload_never_runs(saved, tmp_path, as_torch_save):
    _, path = saved
    sentinel = tmp_path / "pwned"
    target = path / "model.safetensors"
    if as_torch_save:
        torch.save({"x": Payload(str(sentinel))}, target)
    else:
        target.write_bytes(pickle.dumps(Payload(str(sentinel))))
    rehash(path)  # even a manifest that matches the malicious file does not get it loaded
    code = (
        "import sys; from worldgym.model import checkpoint\n"
        "try:\n    checkpoint.load(sys.argv[1])\nexcept checkpoint.CheckpointError as e:\n    print('REFUSED', e)\n"
    )
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env, timeout=120)
    assert "REFUSED" in out.stdout and "pickle" in out.stdout, out.stdout + out.stderr
    assert not sentinel.exists()
    # a bare pickle file given directly is refused too
    bare = tmp_path / "model.pt"
    bare.write_bytes(pickle.dumps(Payload(str(sentinel))))
    with pytest.raises(CheckpointError, match="pickle"):
        checkpoint.load(bare)
    assert not sentinel.exists()


def test_directory_without_manifest(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"manifest\.json is missing"):
        checkpoint.load(tmp_path / "empty")


def test_errors_pickle_round_trip():
    e = CheckpointError("x is corrupt")
    assert str(pickle.loads(pickle.dumps(e))) == "x is corrupt"


def test_saved_checkpoint_has_ordinary_permissions(saved):
    _, path = saved
    umask = os.umask(0)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == 0o777 & ~umask
    assert ((path / "model.safetensors").stat().st_mode & 0o777) == 0o666 & ~umask


def test_safetensors_header_length_starting_like_a_pickle_loads(tmp_path):
    """A safetensors header length whose low byte is 0x80 (a pickle's first byte) is not mistaken for a pickle."""
    from safetensors.torch import save_file

    from worldgym.model.checkpoint import _refuse_pickle

    for pad in range(0, 512):
        path = tmp_path / "w.safetensors"
        save_file({"x": torch.zeros(3)}, str(path), metadata={"pad": "p" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no header length with low byte 0x80 found")
    _refuse_pickle(path)  # no error
    with pytest.raises(CheckpointError, match="pickle"):
        bad = tmp_path / "bad.safetensors"
        bad.write_bytes(b"\x80\x04" + b"\x00" * 64)
        _refuse_pickle(bad)

"""Dataset format: record -> load round trip, invariants, and every fault the loader must name (reliability rows 20-21)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from worldgym.data.dataset import DatasetError, DatasetWriter, check, load
from worldgym.data.minari_export import minari_buffers

OBS = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)
ACT = gym.spaces.Discrete(2)


def episode(T: int, seed: int, terminated: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    term = np.zeros(T, bool)
    trunc = np.zeros(T, bool)
    (term if terminated else trunc)[-1] = True
    return dict(
        observations=rng.integers(0, 256, (T + 1, 8, 8, 3), dtype=np.uint8),
        actions=rng.integers(0, 2, T),
        rewards=np.ones(T, np.float32),
        terminations=term,
        truncations=trunc,
        seed=seed,
        states=rng.normal(size=(T + 1, 4)).astype(np.float32),
    )


def write(path: Path, lengths=(5, 7, 3)) -> list[dict]:
    eps = [episode(T, i, terminated=i % 2 == 0) for i, T in enumerate(lengths)]
    with DatasetWriter(path, OBS, ACT, {"env": "test"}) as w:
        for e in eps:
            w.add_episode(**e)
    return eps


def snapshot(path: Path) -> dict:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(path.rglob("*")) if p.is_file()}


def test_round_trip_and_invariants(tmp_path):
    eps = write(tmp_path / "ds")
    ds = load(tmp_path / "ds")
    assert len(ds) == 3 and ds.total_steps == 15
    assert ds.observation_space == OBS and ds.action_space == ACT and ds.metadata["env"] == "test"
    for e, got in zip(eps, ds.episodes):
        for key in ("observations", "actions", "rewards", "terminations", "truncations", "states"):
            np.testing.assert_array_equal(np.asarray(got[key]), e[key])
        assert got.seed == e["seed"] and len(got.observations) == len(got.actions) + 1
    summary = check(tmp_path / "ds")
    assert summary["episodes"] == 3 and summary["terminated"] == 2 and summary["truncated"] == 1


def test_loader_never_writes_and_arrays_are_read_only(tmp_path):
    write(tmp_path / "ds")
    before = snapshot(tmp_path / "ds")
    ds = load(tmp_path / "ds")
    check(tmp_path / "ds")
    with pytest.raises(ValueError):
        ds.episodes[0].observations[0, 0, 0, 0] = 1  # read-only memory map
    for name in ("actions", "rewards", "terminations", "truncations", "states"):
        with pytest.raises(ValueError):
            getattr(ds.episodes[0], name)[0] = 1  # read into memory, read-only too
    assert snapshot(tmp_path / "ds") == before
    assert sorted(os.listdir(tmp_path)) == ["ds"]


def test_writer_rejects_bad_episodes(tmp_path):
    with DatasetWriter(tmp_path / "ds", OBS, ACT) as w:
        e = episode(4, 0)
        with pytest.raises(DatasetError, match="len\\(observations\\) == len\\(actions\\) \\+ 1"):
            w.add_episode(**{**e, "observations": e["observations"][:-1]})
        with pytest.raises(DatasetError, match="outside the action space"):
            w.add_episode(**{**e, "actions": np.array([0, 1, 2, 0])})
        with pytest.raises(DatasetError, match="observations must be uint8"):
            w.add_episode(**{**e, "observations": np.zeros((5, 4, 4, 3), np.uint8)})
        with pytest.raises(DatasetError, match="only terminate or truncate at its last step"):
            w.add_episode(**{**e, "terminations": np.array([True, False, False, True])})
        w.add_episode(**e)
    assert check(tmp_path / "ds")["episodes"] == 1


def _flip(p: Path) -> None:
    b = bytearray(p.read_bytes())
    b[-3] ^= 0x01
    p.write_bytes(bytes(b))


def _truncate(frac: float):
    def f(p: Path) -> None:
        data = p.read_bytes()
        p.write_bytes(data[: len(data) - 1] if frac == 0 else data[: int(len(data) * frac)])

    return f


def _edit_manifest_shape(p: Path) -> None:
    body = json.loads(p.read_text())
    body["files"]["episodes/000001/actions.npy"]["shape"] = [99]
    p.write_text(json.dumps(body))


def _edit_manifest_seed(p: Path) -> None:
    body = json.loads(p.read_text())
    body["episodes"][0]["seed"] = 12345
    p.write_text(json.dumps(body, indent=1))


@pytest.mark.parametrize(
    "target, fault, message",
    [
        ("episodes/000001/observations.npy", Path.unlink, "missing"),
        ("episodes/000001/actions.npy", _truncate(0), "has .* bytes"),
        ("episodes/000001/observations.npy", _truncate(0.5), "has .* bytes"),
        ("episodes/000002/rewards.npy", _flip, "sha256"),
        ("episodes/000000/states.npy", _flip, "sha256"),
        ("manifest.json", _edit_manifest_shape, "was edited"),
        ("manifest.json", _edit_manifest_seed, "was edited"),
    ],
)
def test_faults_are_named(tmp_path, target, fault, message):
    write(tmp_path / "ds")
    fault(tmp_path / "ds" / target)
    for fn in (load, check):
        with pytest.raises(DatasetError, match=message) as err:
            fn(tmp_path / "ds")
        assert target in str(err.value)


def test_unlisted_file_is_named(tmp_path):
    write(tmp_path / "ds")
    np.save(tmp_path / "ds" / "episodes/000000/extra.npy", np.zeros(3))
    with pytest.raises(DatasetError, match="extra.npy is not listed"):
        check(tmp_path / "ds")


def test_killed_writer_leaves_previous_dataset_valid_and_partial_rejected(tmp_path):
    path = tmp_path / "ds"
    write(path)
    before = snapshot(path)
    script = textwrap.dedent(f"""
        import sys, time, numpy as np, gymnasium as gym
        from worldgym.data.dataset import DatasetWriter
        w = DatasetWriter({str(path)!r}, gym.spaces.Box(0, 255, (8, 8, 3), np.uint8), gym.spaces.Discrete(2))
        T = 4
        w.add_episode(np.zeros((T + 1, 8, 8, 3), np.uint8), np.zeros(T, np.int64), np.ones(T), np.eye(T)[-1] > 0, np.zeros(T, bool))
        print("written", flush=True)
        time.sleep(60)
        w.close()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "written"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert snapshot(path) == before  # the previous dataset is untouched and still valid
    assert check(path)["episodes"] == 3
    partial = tmp_path / "ds.partial"
    assert (partial / "PARTIAL").is_file()
    with pytest.raises(DatasetError, match="partial dataset"):
        load(partial)
    with pytest.raises(DatasetError, match="ds.partial"):
        check(partial)


def test_missing_dataset_points_at_partial(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load(tmp_path / "nothing")
    w = DatasetWriter(tmp_path / "ds", OBS, ACT)
    w.add_episode(**episode(3, 0))  # never closed: as if killed
    with pytest.raises(DatasetError, match="writer was killed"):
        load(tmp_path / "ds")


def test_cli_check(tmp_path, capsys):
    from worldgym.cli import main

    write(tmp_path / "ds")
    assert main(["dataset", "check", str(tmp_path / "ds")]) == 0
    assert '"valid": true' in capsys.readouterr().out
    _flip(tmp_path / "ds" / "episodes/000000/actions.npy")
    assert main(["dataset", "check", str(tmp_path / "ds")]) == 1
    out = capsys.readouterr().out
    assert "INVALID" in out and "episodes/000000/actions.npy" in out


def test_minari_export(tmp_path, monkeypatch):
    pytest.importorskip("minari", reason="Minari export is the optional extra worldgym[minari]")
    write(tmp_path / "ds")
    buffers = minari_buffers(load(tmp_path / "ds"))
    assert len(buffers) == 3 and buffers[1].seed == 1 and len(buffers[1].rewards) == 7
    pytest.importorskip("h5py", reason="Minari's hdf5 storage backend is not installed")
    import minari

    from worldgym.data.minari_export import export_minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    export_minari(tmp_path / "ds", "worldgym/test/random-v0")
    mds = minari.load_dataset("worldgym/test/random-v0")
    assert mds.total_episodes == 3 and mds.total_steps == 15
    ep = next(mds.iterate_episodes())
    np.testing.assert_array_equal(ep.observations, load(tmp_path / "ds").episodes[0].observations)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open file descriptors through /proc")
def test_a_loaded_dataset_holds_one_file_descriptor_per_episode_at_most(tmp_path):
    """Every memory map holds a descriptor; only frames are mapped, so thousands of episodes stay under the fd limit."""
    write(tmp_path / "ds", lengths=(2,) * 40)
    before = len(os.listdir("/proc/self/fd"))
    ds = load(tmp_path / "ds")
    held = len(os.listdir("/proc/self/fd")) - before
    assert len(ds) == 40 and held <= 40, f"{held} descriptors held for 40 episodes"

"""worldgym import: videos, GIFs and PNG frame folders with CSV/JSONL action logs, Minari datasets, and every bad input named."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from PIL import Image

from worldgym.cli import main
from worldgym.config_io import UserError
from worldgym.data.dataset import DatasetError, DatasetWriter, load
from worldgym.data.importer import import_minari, import_videos

NAMES = ["noop", "left", "right"]


def clip(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8 frames: a bright square moving right over a dark background (survives lossy codecs)."""
    frames = np.full((n, size, size, 3), 30, np.uint8)
    for t in range(n):
        frames[t, 4:12, t % (size - 8) : t % (size - 8) + 8] = (220, 180, 40)
    return frames


def write_mp4(path: Path, frames: np.ndarray, fps: int = 10) -> Path:
    av = pytest.importorskip("av", reason="MP4/WebM import needs the optional extra worldgym[video] (PyAV)")
    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:  # header first: a cut file still opens
        stream = c.add_stream("libx264", rate=fps, options={"qp": "0"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv444p"
        for f in frames:
            c.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(stream.encode())
    return path


def write_gif(path: Path, frames: np.ndarray, ms: int = 100) -> Path:
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=ms, loop=0)
    return path


def write_pngs(folder: Path, frames: np.ndarray) -> Path:
    folder.mkdir(parents=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"frame_{i}.png")  # frame_10 after frame_9: natural order
    return folder


def write_csv(path: Path, rows: list[dict]) -> Path:
    keys = list(rows[0])
    path.write_text(",".join(keys) + "\n" + "".join(",".join(str(r[k]) for k in keys) + "\n" for r in rows))
    return path


def nothing_left(out: Path) -> bool:
    return not out.exists() and not out.with_name(out.name + ".partial").exists()


def test_mp4_gif_and_png_folders_with_csv_and_jsonl_logs(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    frames = clip(12)
    write_mp4(src / "ep0.mp4", frames)
    write_csv(src / "ep0.csv", [{"action": NAMES[t % 3]} for t in range(11)])
    write_gif(src / "ep1.gif", frames[:6], ms=100)  # frames at 0.0, 0.1, ... s; keys logged at 0.0 and 0.25 s
    (src / "ep1.jsonl").write_text(json.dumps({"time": 0.0, "action": "right"}) + "\n" + json.dumps({"time": 0.25, "action": 1}) + "\n")
    write_pngs(src / "ep2", frames[:11])
    rows = [{"frame": t, "action": t % 3, "reward": 0.5, "terminated": int(t == 9)} for t in range(10)]
    write_csv(src / "ep2.csv", rows)
    summary = import_videos(src, tmp_path / "out", action_names=NAMES)
    ds = load(tmp_path / "out")
    assert summary["episodes"] == 3 and ds.action_space == gym.spaces.Discrete(3) and ds.observation_space.shape == (16, 16, 3)
    mp4, gif, png = ds.episodes
    assert len(mp4) == 11 and np.abs(np.asarray(mp4.observations, np.int16) - frames).mean() < 4  # near-lossless codec
    np.testing.assert_array_equal(mp4.actions, [t % 3 for t in range(11)])
    assert mp4.truncations[-1] and not mp4.terminations.any()
    np.testing.assert_array_equal(gif.actions, [2, 2, 2, 1, 1])  # the key in force at frames 0-4
    np.testing.assert_array_equal(np.asarray(png.observations), frames[:11])  # PNG is lossless, in natural order
    assert png.terminations[-1] and not png.truncations.any() and np.allclose(png.rewards, 0.5)
    assert ds.metadata["action_names"] == NAMES


def test_resize_and_crop_and_the_cli(tmp_path, capsys):
    write_gif(tmp_path / "a.gif", clip(5, size=32))
    write_csv(tmp_path / "a.csv", [{"action": a} for a in (0, 1, 2, 1, 0)])  # one per frame: the last is dropped
    assert main(["import", str(tmp_path / "a.gif"), "--resize", "8", "--crop", "0,32,0,32", "--out", str(tmp_path / "out")]) == 0
    assert "manifest verified" in capsys.readouterr().out
    ds = load(tmp_path / "out")
    assert ds.observation_space.shape == (8, 8, 3) and ds.action_space == gym.spaces.Discrete(3) and len(ds.episodes[0]) == 4
    assert main(["import", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err and nothing_left(tmp_path / "x")


def test_minari_dataset_of_images_round_trips(tmp_path, monkeypatch):
    pytest.importorskip("minari", reason="Minari import is the optional extra worldgym[minari]")
    pytest.importorskip("h5py", reason="Minari's hdf5 storage backend is not installed")
    from worldgym.data.minari_export import export_minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    rng = np.random.default_rng(0)
    with DatasetWriter(tmp_path / "ds", gym.spaces.Box(0, 255, (8, 8, 3), np.uint8), gym.spaces.Discrete(4)) as w:
        for T in (3, 5):
            w.add_episode(rng.integers(0, 256, (T + 1, 8, 8, 3), dtype=np.uint8), rng.integers(0, 4, T), rng.normal(size=T),
                          np.eye(T, dtype=bool)[-1], np.zeros(T, bool))  # fmt: skip
    export_minari(tmp_path / "ds", "test/images/random-v0")
    assert main(["import", "minari:test/images/random-v0", "--out", str(tmp_path / "back")]) == 0
    a, b = load(tmp_path / "ds"), load(tmp_path / "back")
    assert a.action_space == b.action_space and a.observation_space == b.observation_space
    for x, y in zip(a.episodes, b.episodes):
        for key in ("observations", "actions", "rewards", "terminations", "truncations"):
            np.testing.assert_array_equal(np.asarray(x[key]), np.asarray(y[key]))
    # a Minari dataset whose observations are not images is refused
    import minari
    from minari.data_collector import EpisodeBuffer

    buf = EpisodeBuffer(id=0, observations=np.zeros((3, 4), np.float32), actions=np.zeros(2, np.int64), rewards=[0.0, 0.0],
                        terminations=[False, True], truncations=[False, False], infos={})  # fmt: skip
    minari.create_dataset_from_buffers("test/vectors/random-v0", [buf], action_space=gym.spaces.Discrete(2),
                                       observation_space=gym.spaces.Box(-1, 1, (4,), np.float32), author="worldgym tests",
                                       author_email="none", algorithm_name="zeros", description="vectors", code_permalink="none")  # fmt: skip
    with pytest.raises(DatasetError, match=r"minari:test/vectors/random-v0 observations are Box.*expected RGB images"):
        import_minari("test/vectors/random-v0", tmp_path / "vec_out")
    assert nothing_left(tmp_path / "vec_out")
    with pytest.raises(UserError, match="minari:test/none-v0: cannot load it"):
        import_minari("test/none-v0", tmp_path / "none_out")


def good_folder(root: Path, n: int = 6) -> Path:
    root.mkdir()
    write_pngs(root / "ep0", clip(n))
    write_csv(root / "ep0.csv", [{"action": NAMES[t % 3]} for t in range(n - 1)])
    return root


BAD = {
    "mismatched lengths": (lambda r: write_csv(r / "ep0.csv", [{"action": "left"}] * 3), r"ep0\.csv has 3 actions.*ep0 has 6 frames"),
    "unknown action": (lambda r: write_csv(r / "ep0.csv", [{"action": a} for a in ("left", "jump", "noop", "left", "right")]),
                       r"ep0\.csv row 2: unknown action 'jump'; expected one of \['noop', 'left', 'right'\]"),
    "index out of range": (lambda r: write_csv(r / "ep0.csv", [{"action": a} for a in (0, 1, 7, 0, 1)]), r"ep0\.csv row 3: unknown action 7"),
    "frame column skips": (lambda r: write_csv(r / "ep0.csv", [{"frame": f, "action": 0} for f in (0, 1, 3, 4, 5)]),
                           r"ep0\.csv row 3: frame must count .* expected 2, got '3'"),
    "no action column": (lambda r: write_csv(r / "ep0.csv", [{"key": 0}] * 5), r"ep0\.csv: the log needs an 'action' column"),
    "no log": (lambda r: (r / "ep0.csv").unlink(), r"ep0: no action log; expected .*ep0\.csv"),
    "wrong frame size in a folder": (lambda r: Image.fromarray(clip(1, size=20)[0]).save(r / "ep0" / "frame_3.png"),
                                     r"frame_3\.png \(frame 3 of .*ep0\) is 20x20 pixels, frame 0 is 16x16"),
    "wrong frame size between episodes": (lambda r: (write_pngs(r / "ep1", clip(3, size=20)),
                                                     write_csv(r / "ep1.csv", [{"action": 0}] * 2)),
                                          r"ep1 frame 0 is 20x20 pixels, .*ep0 is 16x16"),
    "unreadable png": (lambda r: (r / "ep0" / "frame_2.png").write_bytes(b"not a png"), r"frame_2\.png: unreadable PNG \(frame 2"),
    "late first timestamp": (lambda r: write_csv(r / "ep0.csv", [{"time": 0.5, "action": 1}]), r"frame 0 .* before the first logged action"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_inputs_name_the_file_and_position_and_leave_nothing(tmp_path, case):
    src = good_folder(tmp_path / "src")
    spoil, message = BAD[case]
    spoil(src)
    with pytest.raises((DatasetError, UserError), match=message):
        import_videos(src, tmp_path / "out", action_names=NAMES, fps=10)
    assert nothing_left(tmp_path / "out")


def test_unreadable_and_truncated_videos_are_named(tmp_path):
    video = write_mp4(tmp_path / "ep0.mp4", clip(40, size=32))
    write_csv(tmp_path / "ep0.csv", [{"action": 0}] * 39)
    whole = video.read_bytes()
    video.write_bytes(whole[: len(whole) * 2 // 3])  # cut: the header still declares 40 frames
    with pytest.raises(DatasetError, match=r"ep0\.mp4: (unreadable or )?truncated video"):
        import_videos(video, tmp_path / "out", actions=tmp_path / "ep0.csv", num_actions=2)
    assert nothing_left(tmp_path / "out")
    video.write_bytes(b"this is not a video" * 50)
    with pytest.raises(DatasetError, match=r"ep0\.mp4: unreadable or truncated video"):
        import_videos(video, tmp_path / "out", actions=tmp_path / "ep0.csv", num_actions=2)
    assert nothing_left(tmp_path / "out")
    (tmp_path / "cut.gif").write_bytes(write_gif(tmp_path / "g.gif", clip(8)).read_bytes()[:200])
    write_csv(tmp_path / "cut.csv", [{"action": 0}] * 7)
    with pytest.raises(DatasetError, match=r"cut\.gif: unreadable or truncated GIF"):
        import_videos(tmp_path / "cut.gif", tmp_path / "out", num_actions=2)
    assert nothing_left(tmp_path / "out")

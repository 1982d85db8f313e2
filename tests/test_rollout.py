"""`worldgym rollout` (the README's main job) runs end to end on a checkpoint, headless, and writes its GIF."""

from __future__ import annotations

from PIL import Image

from worldgym.model import checkpoint
from worldgym.cli import main

from conftest import tiny_model


def test_rollout_writes_gif_and_reports(tmp_path, capsys):
    path = checkpoint.save(tiny_model(), tmp_path / "tiny")
    gif = tmp_path / "out.gif"
    assert main(["rollout", str(path), "--agent", "random", "--episodes", "2", "--max-steps", "12", "--gif", str(gif)]) == 0
    out = capsys.readouterr().out
    assert "episode 1 (seed 1)" in out and "neural step time" in out
    with Image.open(gif) as im:
        assert im.n_frames >= 2

"""Open-world fidelity (evaluation/openworld.py) on small fakes: a scrolling tile map, hand-made rewards and frame streams."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import randomized, tiny_config
from worldgym.evaluation import openworld as ow
from worldgym.model.actions import ActionConfig
from worldgym.model.networks import Model
from worldgym.worlds.crafter import view_area

TILE = 4
AREA = (0, 0, 5 * TILE, 7 * TILE, TILE, TILE)  # a 7x5-tile view at the top of a 24x28 frame, 4 rows below it


def world_map(seed: int = 0, tiles: int = 40, uniform: bool = False) -> np.ndarray:
    """A (tiles*TILE, tiles*TILE, 3) map of random flat-coloured tiles (one colour when uniform)."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(80, 170, (tiles, tiles, 3), dtype=np.uint8)  # muted, as a game map: changes stay small
    if uniform:
        colours[:] = colours[0, 0]
    return np.repeat(np.repeat(colours, TILE, 0), TILE, 1)


def view(m: np.ndarray, x: int, y: int) -> np.ndarray:
    """The frame with the player at tile (x, y): the 7x5-tile view around it above a fixed inventory strip."""
    frame = np.zeros((6 * TILE, 7 * TILE, 3), np.uint8)
    frame[: 5 * TILE] = m[(y - 2) * TILE : (y + 3) * TILE, (x - 3) * TILE : (x + 4) * TILE]
    frame[5 * TILE :] = 120
    return frame


def episode(moves: list[tuple[int, int]], seed: int = 0, uniform: bool = False, rewards: list[float] | None = None) -> dict:
    m = world_map(seed, uniform=uniform)
    pos = [(20, 20)]
    for dx, dy in moves:
        pos.append((pos[-1][0] + dx, pos[-1][1] + dy))
    frames = np.stack([view(m, x, y) for x, y in pos])
    T = len(moves)
    return {"frames": frames, "actions": np.zeros(T, int), "rewards": np.array(rewards or [0.0] * T, np.float32),
            "states": np.array(pos, np.float32), "terminated": False, "seed": seed}  # fmt: skip


MOVES = [(1, 0), (1, 0), (0, 1), (0, 0), (-1, 0), (0, -1), (0, -1), (1, 0), (0, 0), (0, 1)] * 2


def neural_of(real: list[dict], segs: list, horizon: int) -> np.ndarray:
    """The real frames of each segment, the last one held past its end: a perfect model's output."""
    out = []
    for e, t, n in segs:
        f = real[e]["frames"][t : t + n + 1]
        out.append(np.concatenate([f, np.repeat(f[-1:], horizon + 1 - len(f), 0)]))
    return np.stack(out)


def test_view_shift_finds_each_move_and_knows_when_it_cannot():
    m = world_map()
    for k, (dx, dy) in enumerate(ow.SHIFTS):
        a, b = view(m, 20, 20)[None], view(m, 20 + dx, 20 + dy)[None]
        shift, determined = ow.view_shift(a, b, AREA)
        assert shift[0] == k and determined[0]
    flat = world_map(uniform=True)
    _, determined = ow.view_shift(view(flat, 20, 20)[None], view(flat, 21, 20)[None], AREA)
    assert not determined[0]  # a uniform map shows no shift either way


def test_movement_agreement_is_one_for_the_real_frames_and_zero_for_a_frozen_view():
    real = [episode(MOVES, seed=1), episode(MOVES[::-1], seed=2)]
    segs = ow.segments([len(e["actions"]) for e in real], 10)
    perfect = ow.movement_agreement(real, segs, neural_of(real, segs, 10), AREA, steps=10, position=(0, 1))
    assert perfect["share_agree"] == 1.0 and perfect["real_estimate_matches_player_position"] == 1.0
    assert perfect["determined_steps"] == perfect["steps"] == 40
    frozen = np.repeat(neural_of(real, segs, 10)[:, :1], 11, 1)
    stuck = ow.movement_agreement(real, segs, frozen, AREA, steps=10)
    assert stuck["share_agree_when_moving"] == 0.0 and stuck["moving_steps"] == 32
    mirrored = [dict(real[0], frames=real[0]["frames"][:, :, ::-1].copy())]  # left and right swapped
    segs1 = ow.segments([20], 10)
    wrong = ow.movement_agreement(real[:1], segs1, neural_of(mirrored, segs1, 10), AREA, steps=10)
    assert wrong["share_agree"] < 0.7


def test_psnr_by_horizon_against_copying_the_last_frame():
    real = [episode(MOVES, seed=3)]
    segs = ow.segments([20], 10)
    assert segs == [(0, 0, 10), (0, 10, 10)]
    perfect = ow.psnr_by_horizon(real, segs, neural_of(real, segs, 10), horizons=(1, 5, 10))
    assert all(perfect[h]["above_copy"] and perfect[h]["segments"] == 2 for h in ("1", "5", "10"))
    copy = np.repeat(neural_of(real, segs, 10)[:, :1], 11, 1)
    same = ow.psnr_by_horizon(real, segs, copy, horizons=(1, 5))
    assert not same["5"]["above_copy"] and same["5"]["psnr_db"] == pytest.approx(same["5"]["copy_last_frame_psnr_db"])


def test_reward_event_precision_and_recall():
    rewards = [0.0] * 20
    rewards[3], rewards[12], rewards[15] = 1.0, 1.0, 0.1  # two events; +0.1 is a health change, not an event
    real = [episode(MOVES, rewards=rewards)]
    segs = ow.segments([20], 10)
    predicted = np.zeros((2, 10))
    predicted[0, 3] = 0.9  # on time
    predicted[1, 3] = 0.8  # step 13: one late
    predicted[1, 7] = 0.7  # step 17: no real event
    exact = ow.reward_events(real, segs, predicted, tolerance=0)
    assert (exact["real_events"], exact["predicted_events"]) == (2, 3)
    assert exact["precision"] == pytest.approx(1 / 3) and exact["recall"] == 0.5
    loose = ow.reward_events(real, segs, predicted, tolerance=1)
    assert loose["precision"] == pytest.approx(2 / 3) and loose["recall"] == 1.0
    none = ow.reward_events(real, segs, np.zeros((2, 10)))
    assert none["precision"] is None and none["recall"] == 0.0


def test_stability_tells_a_healthy_stream_from_collapse_and_flicker():
    real = [episode(MOVES, seed=s) for s in range(3)]
    frames = np.concatenate([e["frames"] for e in real])
    healthy = ow.stability(lambda a, it=iter(range(10**6)): (frames[next(it) % len(frames)], 0.0), 300, 5, real, period=4)
    assert not healthy["collapse"] and healthy["outside_real_range_share"] == 0.0
    grey = ow.stability(lambda a: (np.full_like(frames[0], 128), 0.9), 300, 5, real, period=4)
    assert grey["collapse"] and grey["termination_prob_above_half_share"] == 1.0
    noise = np.random.default_rng(0)
    flicker = ow.stability(lambda a: (noise.integers(0, 256, frames[0].shape, dtype=np.uint8), 0.0), 300, 5, real, period=4)
    assert flicker["flicker_share_above_real_max_change"] > 0.9


def test_crafter_view_area_is_the_map_above_the_inventory():
    assert view_area(64, 64) == (0, 0, 49, 63, 7, 7)
    assert view_area(128, 128) == (0, 0, 98, 126, 14, 14)
    assert view_area(16, 16) is None  # a tile of 1.75 pixels: no whole-tile shifts to test


def test_evaluate_world_runs_on_a_tiny_crafter_model(tmp_path):
    pytest.importorskip("crafter", reason="Crafter is the optional extra worldgym[crafter]")
    cfg = dataclasses.replace(tiny_config(fused=True), name="TinyCrafter", action=ActionConfig(kind="discrete", n=17), real_twin="Crafter")
    model = randomized(Model(cfg))
    report = ow.evaluate_world(model, "tiny", episodes=2, seed=0, policy="mix", max_steps=12, stability_steps=20,
                               strip=tmp_path / "strip.png", dtype="float32", horizon=5)  # fmt: skip
    assert report["policy"] == "crafter_explorer" and report["segments"] == 6
    assert set(report["psnr"]) == {"1", "5"} and "skipped" in report["movement"]  # 16x16: no whole tiles
    assert report["stability"]["steps"] == 20 and (tmp_path / "strip.png").is_file()
    assert set(ow.summary(report)) >= {"psnr_db", "movement_agreement", "stability_collapse"}


def test_worldgym_eval_measures_a_crafter_checkpoint_as_an_open_world(tmp_path, capsys):
    pytest.importorskip("crafter", reason="Crafter is the optional extra worldgym[crafter]")
    import json

    from worldgym import cli
    from worldgym.model import checkpoint

    cfg = dataclasses.replace(tiny_config(fused=True), name="TinyCrafter", action=ActionConfig(kind="discrete", n=17), real_twin="Crafter")
    checkpoint.save(randomized(Model(cfg)), tmp_path / "model")
    out = tmp_path / "eval.json"
    assert cli.main(["eval", str(tmp_path / "model"), "--episodes", "1", "--max-steps", "8", "--stability-steps", "10", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["twin"] == "Crafter" and report["episodes"] == 1 and "reward_events" in report
    assert "movement_agreement" in capsys.readouterr().out

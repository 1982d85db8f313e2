"""Headless tests of the keyboard player (SDL_VIDEODRIVER=dummy, set in conftest).

The player's state machine is driven with hand-made pygame events through `Player.tick`;
the real-time loop `Player.run` is driven with events posted to pygame's queue.
"""

from __future__ import annotations

import os
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.error import DependencyNotInstalled

from conftest import tiny_model
from worldgym import cli
from worldgym.policies import agents as play_agents
from worldgym.play import player as player_mod
from worldgym.data import video
from worldgym.model.actions import ActionConfig
from worldgym.envs.display import NoDisplayError, check_driver
from worldgym.play.keymap import KEYMAP_DIR, ActionMapper, Keymap, MissingKeysToAction, find_keymap, load_keymap
from worldgym.worlds.cartpole import ScriptedCartPole, pole_lean
from worldgym.play.player import Player, compose
from worldgym.envs.twins import PixelTwin

pygame = pytest.importorskip("pygame")


# ---------------------------------------------------------------------------- helpers
class Spy(gym.Wrapper):
    """Remembers every action stepped and every reset's seed and options."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.actions: list = []
        self.resets: list = []

    def reset(self, *, seed=None, options=None):
        self.resets.append((seed, options))
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        self.actions.append(action)
        return self.env.step(action)


def down(key: int) -> pygame.event.Event:
    return pygame.event.Event(pygame.KEYDOWN, key=key)


def up(key: int) -> pygame.event.Event:
    return pygame.event.Event(pygame.KEYUP, key=key)


def cartpole(**kwargs) -> Spy:
    return Spy(PixelTwin(render_mode="rgb_array", **kwargs))


def mapper_for(env: gym.Env, name: str | None = "CartPole") -> ActionMapper:
    keymap, path = find_keymap(name, env.action_space)
    return ActionMapper(keymap, env.action_space, strict=keymap.kind != path.stem)


def world_env(**kwargs) -> Spy:
    from worldgym.envs.env import WorldModelEnv

    # random weights predict random terminations: keep episodes going so the steps are deterministic
    return Spy(WorldModelEnv(tiny_model(**kwargs), render_mode="rgb_array", termination_fn=lambda obs, action: False))


def make_player(env: gym.Env | None = None, **kwargs) -> Player:
    env = env or cartpole()
    surface = kwargs.pop("surface", pygame.Surface((64, 64)))
    return Player(env, kwargs.pop("mapper", None) or mapper_for(env), surface=surface, seed=0, **kwargs)


# ---------------------------------------------------------------------------- keymaps
def test_every_keymap_file_loads_and_cartpole_has_arrows_and_wasd():
    files = sorted(KEYMAP_DIR.glob("*.yaml"))
    assert {p.stem for p in files} >= {"CartPole", "discrete", "multi_discrete", "multi_binary", "box"}
    for path in files:
        load_keymap(path)
    assert find_keymap(["Tiny", "worldgym/CartPoleReal-v0"], spaces.Discrete(2))[1].stem == "CartPole"  # twin's keys
    mapper = mapper_for(PixelTwin())
    assert mapper.action(["left"]) == mapper.action(["a"]) == 0
    assert mapper.action(["right"]) == mapper.action(["d"]) == 1


def test_discrete_combinations_most_keys_then_latest_press():
    keymap = Keymap("discrete", {"up": 1, "left": 2, "up+left": 3}, idle=[0])
    m = ActionMapper(keymap, spaces.Discrete(4))
    assert m.action([]) == 0
    assert m.action(["up"]) == 1
    assert m.action(["left", "up"]) == 3  # the combination beats its parts
    assert m.action(["up", "left", "x"]) == 3  # unbound keys are ignored
    both = ActionMapper(Keymap("discrete", {"left": 0, "right": 1}), spaces.Discrete(2))
    assert both.action(["left", "right"]) == 1 and both.action(["right", "left"]) == 0  # latest press wins


def test_idle_actions_cycle_when_nothing_is_held():
    m = mapper_for(PixelTwin())  # CartPole has no null action: alternate pushes
    assert [m.action([]) for _ in range(4)] == [0, 1, 0, 1]


@pytest.mark.parametrize(
    "space, held, expected",
    [
        (spaces.MultiDiscrete([3, 3]), [], [1, 1]),
        (spaces.MultiDiscrete([3, 3]), ["up", "left"], [0, 0]),  # a diagonal from two axes
        (spaces.MultiDiscrete([3, 3]), ["down", "d"], [2, 2]),
        (spaces.MultiBinary(5), ["w", "space"], [1, 0, 0, 0, 1]),
        (spaces.MultiBinary(5), [], [0, 0, 0, 0, 0]),
        (spaces.Box(-1, 1, (2,), np.float32), ["left", "up"], [-1, 1]),
        (spaces.Box(-1, 1, (2,), np.float32), ["left", "a"], [-1, 0]),  # summed, then clipped to the box
        (spaces.Box(0, 1, (2,), np.float32), [], [0, 0]),
    ],
)
def test_generic_keymaps_for_every_space_kind(space, held, expected):
    action = mapper_for(_Env(space), None).action(held)
    assert space.contains(action)
    np.testing.assert_allclose(action, expected)


class _Env:
    def __init__(self, space):
        self.action_space = space


def test_keymap_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="reserved"):
        Keymap("discrete", {"r": 0})
    with pytest.raises(ValueError, match="multi_discrete"):
        ActionMapper(Keymap("discrete", {"a": 0}), spaces.MultiDiscrete([2, 2]))
    with pytest.raises(ValueError, match=r"in \[0, 2\)"):
        ActionMapper(Keymap("discrete", {"a": 5}), spaces.Discrete(2))
    with pytest.raises(MissingKeysToAction):
        ActionMapper(Keymap("discrete", {"a": 5}), spaces.Discrete(2), strict=False)  # nothing left to press
    with pytest.raises(MissingKeysToAction):
        find_keymap("CartPole", spaces.Dict({"a": spaces.Discrete(2)}))
    # generic defaults drop the bindings the space cannot take instead
    assert ActionMapper(load_keymap(KEYMAP_DIR / "discrete.yaml"), spaces.Discrete(2), strict=False).action(["7"]) == 0


# ---------------------------------------------------------------------------- the player state machine
def test_held_keys_map_to_actions_and_no_key_to_idle():
    env = cartpole()
    p = make_player(env)
    p.tick([])  # first tick: reset
    p.tick([down(pygame.K_LEFT)])
    p.tick([])
    p.tick([up(pygame.K_LEFT), down(pygame.K_d)])
    p.tick([up(pygame.K_d)])
    p.tick([])
    assert env.actions == [0, 0, 1, 0, 1]  # held left, left, D; then nothing held: alternate
    assert p.steps == 5 and p.action == 1


def test_a_tap_shorter_than_a_frame_still_counts_and_keys_apply_at_step_boundaries():
    env = cartpole()
    p = make_player(env, ticks_per_step=3)
    p.tick([])  # reset
    p.tick([down(pygame.K_RIGHT), up(pygame.K_RIGHT)])  # a tap between two steps
    p.tick([])
    assert env.actions == []  # keys are read every frame but applied at the next step
    p.tick([])  # step: the tap counts
    p.tick([down(pygame.K_LEFT)])
    p.tick([])
    p.tick([])  # step: left held
    assert env.actions == [1, 0]


def test_reset_key_starts_a_new_seeded_episode():
    env = cartpole()
    p = make_player(env)
    for _ in range(4):
        p.tick([])
    assert p.steps == 3 and p.episodes == 1
    first_seed = p.seed
    p.tick([down(pygame.K_r)])
    assert p.steps == 0 and p.episodes == 2 and len(env.resets) == 2 and p.seed != first_seed
    assert env.resets[1][0] == p.seed
    again = make_player(cartpole())  # the same player seed gives the same episode seeds
    again.tick([])
    assert again.seed == first_seed


def test_pause_freezes_and_n_steps_exactly_one_block():
    env = cartpole()
    p = make_player(env)
    p.tick([])
    p.tick([down(pygame.K_p)])
    for _ in range(5):
        p.tick([])
    assert p.paused and p.steps == 0
    p.tick([down(pygame.K_RIGHT), down(pygame.K_n)])
    p.tick([])
    p.tick([down(pygame.K_n)])
    assert p.steps == 2 and env.actions == [1, 1]
    p.tick([down(pygame.K_n), down(pygame.K_n)])  # two presses within one frame are two blocks
    p.tick([])
    assert p.steps == 4
    p.tick([down(pygame.K_p)])
    p.tick([])
    assert not p.paused and p.steps == 6


def test_episode_end_resets_on_the_next_frame():
    env = Spy(gym.wrappers.TimeLimit(PixelTwin(render_mode="rgb_array"), max_episode_steps=3))
    p = make_player(env)
    for _ in range(5):
        p.tick([])
    assert p.episodes == 2 and p.steps == 0 and len(env.actions) == 3
    p.tick([down(pygame.K_p)])  # paused: the last frame of an episode stays until the next N
    for _ in range(3):
        p.tick([down(pygame.K_n)])
    for _ in range(3):
        p.tick([])
    assert p.episodes == 2 and p.steps == 3 and "END" in p.hud_lines()[2]
    p.tick([down(pygame.K_n)])
    assert p.episodes == 3 and p.steps == 0


def test_tab_toggles_between_human_and_agent():
    env = cartpole()
    p = make_player(env, agent=lambda obs: 1)
    p.tick([])
    p.tick([down(pygame.K_LEFT)])
    p.tick([down(pygame.K_TAB)])
    p.tick([down(pygame.K_TAB)])
    assert env.actions == [0, 1, 0]
    assert "agent" not in p.hud_lines()[0]
    class InfoAgent:  # the worldgym.policies.builtin protocol: reset(rng), (obs, info) -> action
        def reset(self, rng):
            self.rng = rng

        def __call__(self, obs, info):
            return int(info["state"][2] > 0)

    env, agent = cartpole(), InfoAgent()
    p = make_player(env, agent=agent, start_with_agent=True)
    p.tick([])
    expected = int(p.main.info["state"][2] > 0)  # from the reset's info
    p.tick([])
    assert env.actions == [expected] and isinstance(agent.rng, np.random.Generator)
    lonely = make_player(cartpole())
    lonely.tick([down(pygame.K_TAB)])
    assert not lonely.use_agent and "--agent" in lonely.hud_lines()[-1]


def test_escape_and_window_close_quit():
    for event in (down(pygame.K_ESCAPE), pygame.event.Event(pygame.QUIT)):
        p = make_player()
        assert p.tick([])
        assert not p.tick([event])


def test_hud_shows_fps_step_ms_step_action_reward_termination():
    env = world_env(action=ActionConfig(kind="discrete", n=2))
    p = make_player(env, mapper=mapper_for(env, "Tiny"))
    p.tick([])
    p.tick([down(pygame.K_RIGHT)])
    text = "\n".join(p.hud_lines())
    for word in ("fps", "ms/step", "step 1", "action 1", "reward", "termination"):
        assert word in text
    assert f"termination {p.main.info['termination_prob']:.2f}" in text  # the model's head, not a bool
    assert p.main.step_ms > 0


def test_frames_are_scaled_up_with_nearest_neighbour():
    frame = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    big = compose([frame], 5)
    assert big.shape == (80, 80, 3)
    np.testing.assert_array_equal(big[::5, ::5], frame)
    np.testing.assert_array_equal(big[4::5, 4::5], frame)
    env = world_env()
    p = make_player(env, mapper=mapper_for(env, "Tiny"))
    assert p.frame_scale() * 16 >= 384


def test_player_draws_the_frame_into_the_surface():
    env = cartpole()
    p = make_player(env, surface=None)
    w, h = p.window_size()
    p.surface = pygame.Surface((w, h))
    p.tick([])
    shown = pygame.surfarray.array3d(p.surface).transpose(1, 0, 2)  # (H, W, 3)
    x0 = (w - p.canvas().shape[1]) // 2
    np.testing.assert_array_equal(shown[: p.canvas().shape[0], x0 : x0 + p.canvas().shape[1]], p.canvas())


def test_side_by_side_starts_both_from_the_same_frames_and_sends_the_same_keys():
    twin = Spy(PixelTwin(render_mode="rgb_array", height=16, width=16))
    env = world_env(action=ActionConfig(kind="discrete", n=2))
    p = make_player(env, twin=twin, mapper=mapper_for(env, "CartPole"))
    p.tick([])
    np.testing.assert_array_equal(p.sides[0].frame, p.sides[1].frame)  # the neural env starts from the twin's frame
    assert env.resets[0][1]["frames"].shape == (1, 16, 16, 3)
    p.tick([down(pygame.K_LEFT)])
    p.tick([up(pygame.K_LEFT), down(pygame.K_RIGHT)])
    assert twin.actions == env.actions == [0, 1]
    assert p.canvas().shape[1] == 2 * 16 * p.frame_scale() + 4
    labels = [line.split(":")[0] for line in p.hud_lines()]
    assert "real" in labels and "neural" in labels


def test_render_mode_must_be_rgb_array():
    with pytest.raises(ValueError, match="rgb_array"):
        Player(PixelTwin(render_mode=None), mapper_for(PixelTwin()))


# ---------------------------------------------------------------------------- recording
def test_recording_round_trips_through_the_dataset_format_and_a_gif(tmp_path):
    from PIL import Image

    from worldgym.data.dataset import load

    env = cartpole()
    recorder = player_mod.DatasetRecorder(tmp_path / "play", env, {"recorded_by": "test"})
    gif = video.open_video(tmp_path / "play.gif", fps=50, scale=2)
    p = make_player(env, recorder=recorder, video=gif)
    p.tick([])
    p.tick([down(pygame.K_LEFT)])
    p.tick([])
    p.tick([down(pygame.K_r)])  # a reset cuts episode 0 (truncated)
    p.tick([down(pygame.K_RIGHT)])
    p.tick([])
    assert not p.tick([down(pygame.K_ESCAPE)])
    p.close()
    data = load(tmp_path / "play")
    assert len(data.episodes) == 2
    first, second = data.episodes
    np.testing.assert_array_equal(first.actions, [0, 0])
    np.testing.assert_array_equal(second.actions, [1, 1])
    assert first.truncations[-1] and not first.terminations.any()
    assert first.observations.shape == (3, 64, 64, 3) and first.states.shape == (3, 4)
    replay = PixelTwin(render_mode="rgb_array")  # the recorded seed reproduces the episode
    obs, _ = replay.reset(seed=first.seed)
    np.testing.assert_array_equal(obs, first.observations[0])
    for action, expected in zip(first.actions, first.observations[1:]):
        np.testing.assert_array_equal(replay.step(int(action))[0], expected)
    with Image.open(tmp_path / "play.gif") as im:
        total = 0
        for i in range(im.n_frames):  # Pillow merges equal consecutive frames and adds up their durations
            im.seek(i)
            total += im.info["duration"]
        assert total == 6 * 20 and im.size == (128, 128)  # 2 resets + 4 steps at 50 fps, scaled x2


def test_a_session_that_records_nothing_leaves_an_existing_dataset_alone(tmp_path):
    from worldgym.data.dataset import load

    env = cartpole()
    first = player_mod.DatasetRecorder(tmp_path / "play", env, {})
    p = make_player(env, recorder=first)
    p.tick([])
    p.tick([])
    p.close()
    p = make_player(env, recorder=player_mod.DatasetRecorder(tmp_path / "play", env, {}))
    p.tick([down(pygame.K_ESCAPE)])  # quits before any step
    p.close()
    assert len(load(tmp_path / "play").episodes) == 1


def test_mp4_without_ffmpeg_fails_when_opened(monkeypatch, tmp_path):
    monkeypatch.setattr(video, "find_ffmpeg", lambda: None)
    with pytest.raises(video.VideoError, match="ffmpeg"):
        video.open_video(tmp_path / "a.mp4", fps=30)
    with pytest.raises(video.VideoError, match=".gif"):
        video.open_video(tmp_path / "a.avi", fps=30)


def test_mp4_frames_stream_to_ffmpeg_scaled(monkeypatch, tmp_path):
    fake = tmp_path / "ffmpeg"  # stands in for ffmpeg: stores the raw frames it is piped in its output file
    fake.write_text('#!/bin/sh\nfor last; do :; done\ncat > "$last"\n')
    fake.chmod(0o755)
    monkeypatch.setattr(video, "find_ffmpeg", lambda: str(fake))
    writer = video.open_video(tmp_path / "a.mp4", fps=30, scale=3)
    frames = [np.full((4, 5, 3), i, np.uint8) for i in range(3)]
    for frame in frames:
        writer.append(frame)
    writer.close()
    raw = np.frombuffer((tmp_path / "a.mp4").read_bytes(), np.uint8).reshape(3, 12, 15, 3)
    np.testing.assert_array_equal(raw, [video.upscale(f, 3) for f in frames])


@pytest.mark.skipif(video.find_ffmpeg() is None, reason="no ffmpeg executable on this machine")
def test_mp4_is_written_with_ffmpeg(tmp_path):
    writer = video.open_video(tmp_path / "a.mp4", fps=30, scale=2)
    for i in range(5):
        writer.append(np.full((16, 16, 3), i * 40, np.uint8))
    writer.close()
    assert (tmp_path / "a.mp4").stat().st_size > 0


# ---------------------------------------------------------------------------- agents
def test_scripted_cartpole_pushes_toward_the_lean():
    env = PixelTwin(render_mode="rgb_array")
    for push, expected in ((0, 1), (1, 0)):  # pushing left tips the pole right, and the agent pushes right
        obs, _ = env.reset(seed=0)
        for _ in range(6):
            obs, *_, info = env.step(push)
        assert np.sign(pole_lean(obs)) == np.sign(info["state"][2])
        assert ScriptedCartPole(damping=0)(obs) == expected


def test_agents_load_from_names_and_module_specs():
    env = PixelTwin(render_mode="rgb_array")
    assert env.action_space.contains(play_agents.load_agent("random", env, seed=0)(None))
    assert isinstance(play_agents.load_agent("scripted", env), ScriptedCartPole)
    assert isinstance(play_agents.load_agent("worldgym.worlds.cartpole:ScriptedCartPole", env), ScriptedCartPole)
    for bad in ("nonsense", "no_such_module:f", "worldgym.policies.agents:__doc__"):
        with pytest.raises(play_agents.PlayerError):
            play_agents.load_agent(bad, env)


# ---------------------------------------------------------------------------- the real-time loop and the CLI
def test_run_loop_reads_posted_key_events_and_quits_on_escape(tmp_path):
    pygame.display.init()
    env = cartpole()
    p = make_player(env, surface=None)
    pygame.event.post(down(pygame.K_RIGHT))
    p.run(max_steps=4, display_fps=0, allow_headless=True, screenshot=tmp_path / "shot.png")
    assert env.actions == [1, 1, 1, 1] and (tmp_path / "shot.png").is_file()
    assert not pygame.display.get_init()  # the window is closed
    p = make_player(cartpole(), surface=None)
    pygame.display.init()
    pygame.event.post(down(pygame.K_ESCAPE))
    p.run(display_fps=0, allow_headless=True)  # returns: Esc quits
    assert p.total_steps == 0 and not pygame.display.get_init()


def test_invisible_window_is_refused(monkeypatch):
    with pytest.raises(NoDisplayError, match="invisible"):
        check_driver("offscreen")
    check_driver("x11")
    check_driver("dummy", allow_headless=True)
    # SDL_VIDEODRIVER=dummy opens an invisible window: the player refuses it unless told it is unattended
    p = make_player(surface=None)
    with pytest.raises(NoDisplayError):
        p.run(allow_headless=False)
    assert not pygame.display.get_init()
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(NoDisplayError, match="xvfb-run"):
        make_player(surface=None).run()


def test_cli_without_display_or_pygame_says_what_to_do(monkeypatch, capsys):
    assert cli.main(["play", "worldgym/CartPoleReal-v0"]) == 2  # SDL_VIDEODRIVER=dummy without --headless
    assert "--headless" in capsys.readouterr().err
    assert cli.main(["play", "worldgym/CartPoleReal-v0", "--headless"]) == 2  # would never end
    assert "--max-steps" in capsys.readouterr().err
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(var, raising=False)
    assert cli.main(["play", "worldgym/CartPoleReal-v0"]) == 2
    assert "xvfb-run" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "pygame", None)  # import pygame now fails
    with pytest.raises(DependencyNotInstalled, match="pip install"):
        Player(PixelTwin(render_mode="rgb_array"), mapper_for(PixelTwin()))
    assert cli.main(["play", "worldgym/CartPoleReal-v0"]) == 2
    assert "pip install" in capsys.readouterr().err


def test_cli_headless_run_plays_records_and_screenshots(tmp_path, capsys):
    from worldgym.model.checkpoint import save
    from worldgym.data.dataset import load

    save(tiny_model(action=ActionConfig(kind="multi_discrete", nvec=[3, 3])), tmp_path / "model")
    args = ["play", str(tmp_path / "model"), "--headless", "--max-steps", "3", "--agent", "random", "--start", "agent"]
    outputs = ["--record", str(tmp_path / "data"), "--video", str(tmp_path / "v.gif")]
    outputs += ["--screenshot", str(tmp_path / "s.png")]
    code = cli.main(args + outputs)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "multi_discrete.yaml" in out  # the generic keymap of the model's action space
    assert sum(len(ep) for ep in load(tmp_path / "data").episodes) == 3
    assert (tmp_path / "v.gif").is_file() and (tmp_path / "s.png").is_file()
    assert os.environ.get("SDL_VIDEODRIVER") == "dummy"

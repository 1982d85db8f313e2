"""Keymaps that move the player's own keys (``player_keys``), and Crafter's layout (SDL_VIDEODRIVER=dummy, set in conftest)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from worldgym.play.keymap import KEYMAP_DIR, PLAYER_KEYS, ActionMapper, Keymap, find_keymap, load_keymap
from worldgym.play.player import Player, help_line

pygame = pytest.importorskip("pygame")


class Frames(gym.Env):
    """A frame-only env with Crafter's ``Discrete(17)`` actions that remembers what it was sent."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self) -> None:
        self.action_space = spaces.Discrete(17)
        self.observation_space = spaces.Box(0, 255, (16, 16, 3), np.uint8)
        self.render_mode = "rgb_array"
        self.actions: list[int] = []
        self.resets = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.resets += 1
        return np.zeros((16, 16, 3), np.uint8), {}

    def step(self, action):
        self.actions.append(int(action))
        return np.zeros((16, 16, 3), np.uint8), 0.0, False, False, {}

    def render(self):
        return np.zeros((16, 16, 3), np.uint8)


def down(key: int) -> pygame.event.Event:
    return pygame.event.Event(pygame.KEYDOWN, key=key)


def crafter_player(agent=None) -> tuple[Player, Frames]:
    env = Frames()
    keymap, path = find_keymap(["worldgym/Crafter-v0", "Crafter"], env.action_space)
    assert path.stem == "Crafter"
    return Player(env, ActionMapper(keymap, env.action_space), surface=pygame.Surface((64, 64)), seed=0, agent=agent), env


def test_crafter_keymap_is_crafters_own_layout():
    mapper = ActionMapper(load_keymap(KEYMAP_DIR / "Crafter.yaml"), spaces.Discrete(17))
    # crafter's run_gui: WASD move, space do, Tab sleep, R/T/F/P place stone/table/furnace/plant, 1-6 make
    names = {"a": "move_left", "d": "move_right", "w": "move_up", "s": "move_down", "space": "do", "tab": "sleep",
             "r": "place_stone", "t": "place_table", "f": "place_furnace", "p": "place_plant",
             "1": "make_wood_pickaxe", "2": "make_stone_pickaxe", "3": "make_iron_pickaxe",
             "4": "make_wood_sword", "5": "make_stone_sword", "6": "make_iron_sword"}  # fmt: skip
    from worldgym.worlds.crafter import ACTIONS

    for key, action in names.items():
        assert ACTIONS[mapper.action([key])] == action, key
    assert mapper.action([]) == 0  # noop
    assert set(mapper.keymap.controls().values()).isdisjoint(names)


def test_crafter_keys_act_in_the_game_and_the_player_commands_moved():
    agent_actions = []
    p, env = crafter_player(agent=lambda obs: agent_actions.append(16) or 16)
    p.tick([])  # reset
    for key in (pygame.K_TAB, pygame.K_r, pygame.K_p):
        p.tick([down(key), pygame.event.Event(pygame.KEYUP, key=key)])
    assert env.actions == [6, 7, 10] and env.resets == 1 and not p.paused and not p.use_agent
    p.tick([down(pygame.K_RETURN)])  # pause
    assert p.paused
    p.tick([down(pygame.K_n)])
    assert len(env.actions) == 4
    p.tick([down(pygame.K_RETURN)])
    p.tick([down(pygame.K_BACKQUOTE)])  # agent
    assert p.use_agent and env.actions[-1] == 16
    p.tick([down(pygame.K_BACKSPACE)])  # reset
    assert env.resets == 2
    assert "Backspace reset" in help_line(p.controls) and "` human/agent" in help_line(p.controls)
    assert not p.tick([down(pygame.K_ESCAPE)])


def test_player_keys_default_and_errors_say_how_to_fix():
    assert Keymap("discrete", {"a": 0}).controls() == PLAYER_KEYS
    assert help_line() == "R reset  P pause  N step  Tab human/agent  Esc quit"
    with pytest.raises(ValueError, match=r"reserved by the player for reset.*player_keys: \{reset: KEY\}"):
        Keymap("discrete", {"r": 0})
    with pytest.raises(ValueError, match="reserved by the player for pause"):
        Keymap("discrete", {"return": 0}, player_keys={"pause": "return"})
    with pytest.raises(ValueError, match="unknown player command 'jump'"):
        Keymap("discrete", {"a": 0}, player_keys={"jump": "j"})
    with pytest.raises(ValueError, match="one key per player command"):
        Keymap("discrete", {"a": 0}, player_keys={"reset": "p"})
    with pytest.raises(ValueError, match="takes one key name"):
        Keymap("discrete", {"a": 0}, player_keys={"reset": "a+b"})
    moved = Keymap("discrete", {"r": 1}, player_keys={"reset": "backspace"})
    assert moved.controls()["reset"] == "backspace" and ActionMapper(moved, spaces.Discrete(2)).action(["r"]) == 1

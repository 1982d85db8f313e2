"""Crafter: a Gymnasium adapter for crafter 1.8.x, its twin spec, its state layout and a scripted explorer.

Everything here knows Crafter and nothing else; the general library looks it up through
`worldgym.worlds`. Crafter (``pip install 'worldgym[crafter]'``) is imported lazily, so
this module imports without it.

crafter 1.8.x speaks the old gym API (``reset()`` returns the observation only, ``step()`` a
4-tuple, seeding through the constructor); `CrafterEnv` gives it the Gymnasium one: its own
``reset(seed=...)`` contract, ``terminated`` when the player dies, never ``truncated`` (the
registered id adds Crafter's 10,000-step limit). ``info`` keeps Crafter's ``inventory``,
``achievements``, ``semantic`` (the (64, 64) world map of material and object ids) and
``player_pos``, and adds ``state``: ``STATE_NAMES`` as float32, for probes and evaluation.

`CrafterExplorer` is a scripted policy that reads ``info`` (never the pixels): it walks to
what it needs on the semantic map and collects wood, saplings, stone, coal, iron and water,
places tables, furnaces, stones and plants, crafts pickaxes and swords, eats cows, sleeps
when tired, and wanders with sticky random moves when it sees nothing it wants.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from worldgym.worlds.spec import TwinSpec

TWIN = TwinSpec(
    "worldgym.worlds.crafter:CrafterEnv", pixels="observation", max_episode_steps=10000, requires=("crafter",), extra="crafter"
)

# crafter.constants.actions, in order (Discrete(17))
ACTIONS = (
    "noop", "move_left", "move_right", "move_up", "move_down", "do", "sleep",
    "place_stone", "place_table", "place_furnace", "place_plant",
    "make_wood_pickaxe", "make_stone_pickaxe", "make_iron_pickaxe",
    "make_wood_sword", "make_stone_sword", "make_iron_sword",
)  # fmt: skip
A = {name: i for i, name in enumerate(ACTIONS)}
ITEMS = (
    "health", "food", "drink", "energy", "sapling", "wood", "stone", "coal", "iron", "diamond",
    "wood_pickaxe", "stone_pickaxe", "iron_pickaxe", "wood_sword", "stone_sword", "iron_sword",
)  # fmt: skip
STATE_NAMES = ("x", "y", "facing_x", "facing_y", "sleeping", *ITEMS)
# ids of the semantic map: crafter's materials (0 = none), then its object types
MATERIALS = ("none", "water", "grass", "stone", "path", "sand", "tree", "lava", "coal", "iron", "diamond", "table", "furnace")
OBJECTS = ("player", "cow", "zombie", "skeleton", "arrow", "plant")
SEM = {name: i for i, name in enumerate(MATERIALS + OBJECTS)}
WALKABLE = (SEM["grass"], SEM["sand"], SEM["path"])
EVAL_POLICY = "crafter_explorer"  # the policy `worldgym eval` records held-out episodes with by default
POSITION = (STATE_NAMES.index("x"), STATE_NAMES.index("y"))  # the player's tile in info["state"], for evaluation
MOVES = {(-1, 0): A["move_left"], (1, 0): A["move_right"], (0, -1): A["move_up"], (0, 1): A["move_down"]}


def import_crafter() -> Any:
    try:
        import crafter
    except ImportError as e:
        raise gym.error.DependencyNotInstalled(f"Crafter needs the optional extra crafter ({e}); pip install 'worldgym[crafter]'") from e
    return crafter


class CrafterEnv(gym.Env):
    """Crafter (Hafner, 2021) through the Gymnasium API.

    ## Description
    An open 64x64-tile world seen from above, 9x7 tiles around the player plus an inventory
    bar, drawn at 64x64 pixels. The player collects materials, crafts tools, eats, drinks,
    sleeps and fights zombies and skeletons.

    ## Action Space
    ``Discrete(17)``: `ACTIONS` (noop, four moves, do, sleep, four places, six makes).

    ## Observation Space
    ``Box(0, 255, (size, size, 3), uint8)``; 64 is Crafter's native size.

    ## Rewards
    Crafter's: +1 for each achievement unlocked for the first time in the episode, +-0.1 per
    health point gained or lost.

    ## Starting State
    A new world generated from a seed drawn from ``np_random``; the player stands at its centre.

    ## Episode End
    Terminated when the player's health reaches 0. ``worldgym/CrafterReal-v0`` truncates
    after 10,000 steps, as Crafter does.

    ## Arguments
    ```python
    import gymnasium as gym
    import worldgym
    env = gym.make("worldgym/CrafterReal-v0")  # needs pip install 'worldgym[crafter]'
    ```
    ``area`` (world size in tiles), ``view`` (tiles seen), ``size`` (pixels), ``reward``.

    ## Version History
    * v0: first version (crafter 1.8.x).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, area: tuple[int, int] = (64, 64), view: tuple[int, int] = (9, 9), size: int = 64, reward: bool = True,
                 render_mode: str | None = None) -> None:  # fmt: skip
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
        crafter = import_crafter()
        self.render_mode = render_mode
        self.env = crafter.Env(area=tuple(area), view=tuple(view), size=(size, size), reward=reward, length=None, seed=0)
        self.action_space = spaces.Discrete(len(ACTIONS))
        self.observation_space = spaces.Box(0, 255, (size, size, 3), np.uint8)
        self._obs: np.ndarray | None = None

    def _state(self) -> np.ndarray:
        player = self.env._player
        inventory = [player.inventory[k] for k in ITEMS]
        return np.array([*player.pos, *player.facing, float(player.sleeping), *inventory], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.env._seed, self.env._episode = int(self.np_random.integers(2**31 - 1)), 0  # crafter seeds each world from (seed, episode)
        self._obs = np.asarray(self.env.reset(), dtype=np.uint8)
        player = self.env._player
        info = {
            "inventory": player.inventory.copy(), "achievements": player.achievements.copy(), "semantic": self.env._sem_view(),
            "player_pos": np.array(player.pos), "state": self._state(),
        }  # fmt: skip
        return self._obs.copy(), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._obs is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if not self.action_space.contains(action):
            raise gym.error.InvalidAction(f"action must be an int in [0, {len(ACTIONS)}), got {action!r}")
        obs, reward, _, info = self.env.step(int(action))
        self._obs = np.asarray(obs, dtype=np.uint8)
        info = {**info, "player_pos": np.array(info["player_pos"]), "state": self._state()}
        return self._obs.copy(), float(reward), bool(info["discount"] == 0.0), False, info

    def render(self) -> np.ndarray | None:
        return None if self._obs is None else self._obs.copy()


def view_area(height: int, width: int) -> tuple[int, int, int, int, int, int] | None:
    """Where the twin's (height, width) frames show the map that scrolls with the player: (top, left, rows, cols, tile height, tile width) pixels.

    Crafter draws its 64x64 frame as 9x9 tiles of 7 pixels (the top 9x7 the map around the
    player, the bottom 2 rows the inventory, one spare pixel row and column), and the twin
    resizes it: the map is the top 49 rows by 63 columns at 64x64, scaled at other sizes.
    None when a tile is not a whole number of pixels at that size.
    """
    th, tw = 7 * height / 64, 7 * width / 64
    if th != int(th) or tw != int(tw) or th < 1 or tw < 1:
        return None
    return 0, 0, 7 * int(th), 9 * int(tw), int(th), int(tw)


# ---------------------------------------------------------------------- the scripted explorer
def costs() -> tuple[dict, dict]:
    """Crafter's place and make rules (``uses`` and ``nearby``) from its own data file."""
    constants = import_crafter().constants
    return constants.place, constants.make


class CrafterExplorer:
    """A scripted Crafter player that walks, collects, places and crafts, reading ``info`` only.

    Each step it picks the first goal it can pursue (drink, eat, sleep, craft the next tool,
    place a table, furnace, stone or plant, collect a material), walks to the nearest tile
    of it on the semantic map by breadth-first search over walkable tiles, faces it and
    acts; with nothing in sight it wanders with held random moves. ``noise`` is the share
    of uniformly random actions. All randomness comes from the generator given to `reset`.

    Args:
        action_space: Crafter's ``Discrete(17)``.
        noise: probability of a uniform random action at each step.
        radius: how far (in tiles) it looks for targets.
    """

    def __init__(self, action_space: gym.Space | None = None, noise: float = 0.1, radius: int = 6) -> None:
        self.noise, self.radius = noise, radius
        self.place_rules, self.make_rules = costs()
        self.rng = np.random.default_rng(0)
        self.facing = (0, 1)
        self.heading = (0, 1)

    def reset(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.facing = (0, 1)  # Crafter's player starts facing down
        self.heading = MOVES_LIST[int(rng.integers(4))]

    def __call__(self, observation: np.ndarray, info: dict) -> int:
        action = self.choose(info) if "semantic" in info else int(self.rng.integers(len(ACTIONS)))
        if self.rng.random() < self.noise:
            action = int(self.rng.integers(len(ACTIONS)))
        for delta, move in MOVES.items():
            if action == move:
                self.facing = delta  # a move turns the player even when it is blocked
        return action

    # -- helpers -----------------------------------------------------------------------
    def can(self, inventory: dict, rule: dict) -> bool:
        return all(inventory.get(k, 0) >= v for k, v in rule["uses"].items())

    def near(self, sem: np.ndarray, pos: np.ndarray, name: str) -> bool:
        x, y = int(pos[0]), int(pos[1])
        return bool((sem[max(x - 1, 0) : x + 2, max(y - 1, 0) : y + 2] == SEM[name]).any())

    def path_to(self, sem: np.ndarray, pos: np.ndarray, targets: tuple[int, ...]) -> int | None:
        """The first action towards the nearest tile whose id is in ``targets``: a move, or ``do`` when facing it."""
        x0, y0 = int(pos[0]), int(pos[1])
        W, H = sem.shape
        start = (x0, y0)
        parent: dict[tuple[int, int], tuple[int, int] | None] = {start: None}
        queue = deque([start])
        while queue:
            x, y = queue.popleft()
            for dx, dy in MOVES_LIST:
                nx, ny = x + dx, y + dy
                if not (0 <= nx < W and 0 <= ny < H) or abs(nx - x0) > self.radius or abs(ny - y0) > self.radius:
                    continue
                if int(sem[nx, ny]) in targets:  # stand at (x, y), face (dx, dy), act
                    if (x, y) == start:
                        return A["do"] if self.facing == (dx, dy) else MOVES[(dx, dy)]
                    step = (x, y)
                    while parent[step] != start:
                        step = parent[step]
                    return MOVES[(step[0] - x0, step[1] - y0)]
                if (nx, ny) not in parent and int(sem[nx, ny]) in WALKABLE:
                    parent[(nx, ny)] = (x, y)
                    queue.append((nx, ny))
        return None

    def front(self, sem: np.ndarray, pos: np.ndarray) -> int:
        x, y = int(pos[0]) + self.facing[0], int(pos[1]) + self.facing[1]
        return int(sem[x, y]) if 0 <= x < sem.shape[0] and 0 <= y < sem.shape[1] else -1

    def choose(self, info: dict) -> int:
        inv, sem, pos = info["inventory"], np.asarray(info["semantic"]), np.asarray(info["player_pos"])
        place, make = self.place_rules, self.make_rules
        free = self.front(sem, pos) in WALKABLE
        goals: list[tuple[str, tuple[int, ...]]] = []
        # 1. needs
        if inv["drink"] < 6:
            goals.append(("go", (SEM["water"],)))
        if inv["food"] < 5:
            goals.append(("go", (SEM["cow"],)))
        if inv["energy"] < 3:
            return A["sleep"]
        # 2. craft what the inventory and the tiles around allow
        table, furnace = self.near(sem, pos, "table"), self.near(sem, pos, "furnace")
        for tool in ("wood_pickaxe", "wood_sword", "stone_pickaxe", "stone_sword", "iron_pickaxe", "iron_sword"):
            rule = make[tool]
            if inv[tool] == 0 and self.can(inv, rule) and (table or "table" not in rule["nearby"]) and (
                furnace or "furnace" not in rule["nearby"]
            ):
                return A[f"make_{tool}"]
        # 3. place: a table when there is none around, a furnace beside it, plants and the odd stone
        if not table and free and self.can(inv, place["table"]) and inv["wood_pickaxe"] == 0:
            return A["place_table"]
        if table and not furnace and free and self.can(inv, place["furnace"]):
            return A["place_furnace"]
        if inv["sapling"] and self.front(sem, pos) == SEM["grass"]:
            return A["place_plant"]
        if inv["stone"] > 2 and free and self.rng.random() < 0.1:
            return A["place_stone"]
        # 4. collect the next material
        if inv["wood_pickaxe"] and inv["stone"] < 5:
            goals.append(("go", (SEM["stone"],)))
        if inv["wood_pickaxe"] and inv["coal"] < 2:
            goals.append(("go", (SEM["coal"],)))
        if inv["stone_pickaxe"] and inv["iron"] < 2:
            goals.append(("go", (SEM["iron"],)))
        if inv["wood"] < 6:
            goals.append(("go", (SEM["tree"],)))
        if inv["sapling"] == 0 and self.rng.random() < 0.2:
            goals.append(("go", (SEM["grass"],)))
        if not table and inv["stone_pickaxe"] == 0 and self.can(inv, make["stone_pickaxe"]):
            goals.append(("go", (SEM["table"],)))  # back to a table to craft
        for _, targets in goals:
            action = self.path_to(sem, pos, targets)
            if action is not None:
                return action
        # 5. nothing in sight: wander, holding a heading for a while
        if self.rng.random() < 0.15:
            self.heading = MOVES_LIST[int(self.rng.integers(4))]
        return MOVES[self.heading]


MOVES_LIST = list(MOVES)

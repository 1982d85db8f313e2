"""The keyboard player: a pygame window over a worldgym env (or any Gymnasium env with RGB frames).

`Player` is the state machine the `worldgym play` command (play_cli.py) drives: one `tick`
per display frame reads held keys through the env's keymap, steps the env (one latent
block for a neural env) at its own rate, hands control to an agent on Tab, and draws the
frames (side by side with a twin) and the heads-up display. The keys, the display rules
and the headless mode are documented once, in play_cli.py (the command's help).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import gymnasium as gym
import numpy as np

from worldgym.envs.display import check_display, check_driver, import_pygame
from worldgym.play.keymap import PLAYER_KEYS, ActionMapper
from worldgym.policies.agents import Policy, PlayerError, required_args
from worldgym.play.recorder import DatasetRecorder
from worldgym.data.video import upscale

HELP_NAMES = {"reset": "reset", "pause": "pause", "step": "step", "agent": "human/agent", "quit": "quit"}


def help_line(controls: dict[str, str] = PLAYER_KEYS) -> str:
    """The player's keys, one line: ``R reset  P pause  N step  Tab human/agent  Esc quit`` by default."""
    return "  ".join(f"{key_label(key)} {HELP_NAMES[command]}" for command, key in controls.items())


def key_label(name: str) -> str:
    """A pygame key name as the HUD writes it: ``r`` -> ``R``, ``escape`` -> ``Esc``, ``backspace`` -> ``Backspace``."""
    return {"escape": "Esc"}.get(name, name.upper() if len(name) == 1 else name.title())

MIN_WIDTH = 520  # room for the HUD lines
MESSAGE_TICKS = 180  # how long a HUD message stays (display frames)


# ----------------------------------------------------------------------------------------
# The player
# ----------------------------------------------------------------------------------------
@dataclass
class Side:
    """One env shown in the window: its frame and what its last step returned."""

    env: gym.Env
    label: str
    obs: Any = None
    frame: np.ndarray | None = None
    reward: float = 0.0
    episode_return: float = 0.0
    terminated: bool = False
    truncated: bool = False
    termination: float = 0.0
    step_ms: float = 0.0
    info: dict = field(default_factory=dict)


def episode_seeds(seed: int | None) -> Iterator[int]:
    """The reset seeds of a player's episodes: drawn from ``seed``, so each recorded episode can be replayed."""
    rng = np.random.default_rng(seed)
    while True:
        yield int(rng.integers(2**31))


def compose(frames: list[np.ndarray], scale: int, gap: int = 4) -> np.ndarray:
    """Frames side by side, scaled up by ``scale`` with nearest neighbour, on a dark canvas -> (H, W, 3)."""
    scaled = [upscale(f, scale) for f in frames]
    h = max(f.shape[0] for f in scaled)
    w = sum(f.shape[1] for f in scaled) + gap * (len(scaled) - 1)
    canvas = np.full((h, w, 3), 24, dtype=np.uint8)  # (H, W, 3)
    x = 0
    for f in scaled:
        canvas[: f.shape[0], x : x + f.shape[1]] = f
        x += f.shape[1] + gap
    return canvas


def frame_of(env: gym.Env, obs: Any) -> np.ndarray:
    """The env's current RGB frame: ``render()`` (render_mode rgb_array), checked to be (H, W, 3) uint8."""
    frame = env.render()
    if frame is None and isinstance(obs, np.ndarray):
        frame = obs
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise PlayerError(f"the player shows (H, W, 3) uint8 frames, but the env rendered {frame.shape} {frame.dtype}")
    return frame


def context_frames(env: gym.Env) -> int:
    """How many frames a world-model env's reset takes as context (1 for any other env)."""
    model = getattr(env.unwrapped, "model", None)
    return int(getattr(getattr(model, "config", None), "context_frames", 1))


def check_render_mode(env: gym.Env) -> None:
    if env.render_mode != "rgb_array":
        raise ValueError(f"the player needs an env made with render_mode='rgb_array', got {env.render_mode!r}")


class Player:
    """The keyboard player's state machine; `tick(events)` advances it by one display frame.

    Tests drive `tick` with hand-made pygame events and an off-screen surface; `run()` is
    the real-time loop on top (events from the window's queue, a clock at display rate).

    Args:
        env: the env played, made with ``render_mode="rgb_array"``.
        mapper: keys -> action for ``env.action_space``.
        twin: an env shown left of ``env`` (side-by-side mode) and stepped with the same
            actions; at every reset ``env`` starts from the twin's first frame (``start_options``).
        agent: what Tab hands control to: a callable ``obs -> action`` or ``(obs, info) -> action``;
            its ``reset()`` or ``reset(rng)``, if any, is called at every episode start.
        seed: seeds the sequence of episode seeds (each reset draws the next one).
        ticks_per_step: display frames per env step (held keys are read every frame).
        scale: integer nearest-neighbour upscaling of frames (default: frames at least 384 px).
        surface: draw here instead of opening a window (tests, screenshots).
        hud: draw the heads-up display.
        recorder: writes played episodes (`DatasetRecorder`); the player closes it.
        video: a `worldgym.data.video` writer for the shown frames (no HUD); the player closes it.
        start_options: ``(frames (F, H, W, 3), actions) -> reset options`` that start ``env``
            from the twin's first frames (default ``{"frames": ..., "actions": ...}``).
        start_with_agent: hand control to the agent from the first step.
        title: window title prefix.
    """

    def __init__(
        self,
        env: gym.Env,
        mapper: ActionMapper,
        *,
        twin: gym.Env | None = None,
        agent: Policy | None = None,
        seed: int | None = None,
        ticks_per_step: int = 1,
        scale: int | None = None,
        surface: Any = None,
        hud: bool = True,
        recorder: DatasetRecorder | None = None,
        video: Any = None,
        start_options: Callable[[np.ndarray, list], dict] | None = None,
        start_with_agent: bool = False,
        title: str = "worldgym play",
    ):
        check_render_mode(env)
        if twin is not None:
            check_render_mode(twin)
            if twin.action_space != env.action_space:
                raise PlayerError(
                    f"side by side needs one action space, got {twin.action_space} (twin) and {env.action_space}"
                )
        if ticks_per_step < 1:
            raise ValueError(f"ticks_per_step must be >= 1, got {ticks_per_step}")
        self.pg = import_pygame()
        self.main = Side(env, "neural" if twin is not None else "")
        self.sides = [Side(twin, "real"), self.main] if twin is not None else [self.main]
        self.mapper, self.agent = mapper, agent
        self.controls = mapper.keymap.controls()  # player command -> key name (the keymap may move them)
        self.commands = {key: command for command, key in self.controls.items()}
        self._seeds = episode_seeds(seed)
        self.ticks_per_step, self.scale, self.hud = ticks_per_step, scale, hud
        self.surface, self.recorder, self.video = surface, recorder, video
        self.start_options = start_options or (lambda frames, actions: {"frames": frames, "actions": actions})
        self.title = title
        self.use_agent = start_with_agent and agent is not None
        self.held: list[str] = []  # key names held, oldest press first
        self.tapped: list[str] = []  # pressed since the last step (kept even if released before it)
        self.paused = False
        self.quit = False
        self.steps = 0  # steps in this episode
        self.total_steps = 0
        self.episodes = 0
        self.ticks = 0
        self.action: Any = None
        self.message = ""
        self._message_until = 0
        self.fps = 0.0
        self.seed: int | None = None
        self._reset_requested = True
        self._single_steps = 0  # N presses not yet stepped: each press is one block, even two in one frame
        self._episode_over = False
        self._font: Any = None
        self._caption = ""
        self._window_opened = False

    # -- events ------------------------------------------------------------------------
    def handle(self, event: Any) -> None:
        """Apply one pygame event: control keys act at once, other keys join or leave the held set."""
        pg = self.pg
        if event.type == pg.QUIT:
            self.quit = True
        elif event.type == pg.KEYDOWN:
            name = pg.key.name(event.key).lower()
            command = self.commands.get(name)
            if command == "quit":
                self.quit = True
            elif command == "reset":
                self._reset_requested = True
            elif command == "pause":
                self.paused = not self.paused
            elif command == "step":
                if self.paused:
                    self._single_steps += 1
                else:
                    self.paused = True
            elif command == "agent":
                if self.agent is None:
                    self.say("no agent: start with --agent random|scripted|module:callable")
                else:
                    self.use_agent = not self.use_agent
            else:
                if name in self.held:
                    self.held.remove(name)
                self.held.append(name)
                self.tapped.append(name)
        elif event.type == pg.KEYUP:
            name = pg.key.name(event.key).lower()
            if name in self.held:
                self.held.remove(name)
        elif event.type == getattr(pg, "WINDOWFOCUSLOST", -1):
            self.held.clear()  # keys released while unfocused never send KEYUP

    def say(self, message: str) -> None:
        """Show ``message`` in the HUD for a few seconds."""
        self.message, self._message_until = message, self.ticks + MESSAGE_TICKS

    def keys_for_step(self) -> list[str]:
        """Held keys plus keys tapped since the last step, oldest first."""
        return [k for k in self.tapped if k not in self.held] + self.held

    # -- env -------------------------------------------------------------------------------
    def reset(self) -> None:
        """Start a new episode in every env (the twin first; the neural env from its frame)."""
        if self.recorder is not None:
            self.recorder.finish()
        self.seed = next(self._seeds)
        if len(self.sides) == 2:
            # the twin plays the neural env's context frames (idle actions), then both go on from there
            twin = self.sides[0]
            twin.obs, info = twin.env.reset(seed=self.seed)
            frames, actions = [frame_of(twin.env, twin.obs)], [self.mapper.neutral()]
            for _ in range(context_frames(self.main.env) - 1):
                actions.append(self.mapper.action([]))
                twin.obs, *_ = twin.env.step(actions[-1])
                frames.append(frame_of(twin.env, twin.obs))
            twin.frame = frames[-1]
            options = self.start_options(np.stack(frames), actions)  # (F, H, W, 3)
            self.main.obs, info = self.main.env.reset(seed=self.seed, options=options)
        else:
            self.main.obs, info = self.main.env.reset(seed=self.seed)
        self.main.frame = frame_of(self.main.env, self.main.obs)
        for side in self.sides:
            side.reward = side.episode_return = side.termination = 0.0
            side.terminated = side.truncated = False
        self.steps, self.action, self._episode_over = 0, None, False
        self.episodes += 1
        self.tapped.clear()
        self.main.info = info
        agent_reset = getattr(self.agent, "reset", None)
        if agent_reset is not None:  # reset() or reset(rng), as worldgym.policies.builtin' policies take
            agent_reset(np.random.default_rng(self.seed)) if required_args(agent_reset) else agent_reset()
        if self.recorder is not None:
            self.recorder.start(self.main.obs, self.seed, info.get("state"))
        if self.video is not None:
            self.video.append(compose([s.frame for s in self.sides], 1))

    def step(self) -> None:
        """One env step (one latent block) with the human's keys or the agent's action."""
        if self.use_agent:
            takes_info = required_args(self.agent) >= 2
            action = self.agent(self.main.obs, self.main.info) if takes_info else self.agent(self.main.obs)
        else:
            action = self.mapper.action(self.keys_for_step())
        self.tapped.clear()
        self.action = action
        for side in self.sides:
            start = time.perf_counter()
            side.obs, reward, side.terminated, side.truncated, info = side.env.step(action)
            elapsed = (time.perf_counter() - start) * 1000
            side.frame = frame_of(side.env, side.obs)
            side.reward = float(reward)
            side.episode_return += side.reward
            model_time = getattr(side.env.unwrapped, "last_step_time", None)  # a worldgym env's own step, no wrappers
            side.step_ms = float(info["step_ms"] if "step_ms" in info else info.get("step_time", model_time or elapsed / 1000) * 1000)
            side.termination = float(info.get("termination_prob", float(side.terminated)))
            side.info = info
        self.steps += 1
        self.total_steps += 1
        main = self.main
        if self.recorder is not None:
            self.recorder.add(action, main.reward, main.terminated, main.truncated, main.obs, main.info.get("state"))
        if self.video is not None:
            self.video.append(compose([s.frame for s in self.sides], 1))
        if any(s.terminated or s.truncated for s in self.sides):
            self._episode_over = True

    # -- one display frame ----------------------------------------------------------------
    def tick(self, events: list) -> bool:
        """Handle ``events``, reset or step if due, draw. Returns False once the player should quit."""
        for event in events:
            self.handle(event)
        if self.quit:
            return False
        single = self.paused and self._single_steps > 0
        due = single or (not self.paused and self.ticks % self.ticks_per_step == 0)
        self._single_steps = self._single_steps - 1 if single else 0
        if self._reset_requested or (self._episode_over and due):  # a finished episode stays shown until then
            self._reset_requested = False
            self.reset()
        elif due:
            self.step()
        self.ticks += 1
        if self.message and self.ticks >= self._message_until:
            self.message = ""
        self.draw()
        return True

    # -- drawing ---------------------------------------------------------------------------
    def frame_shape(self) -> tuple[int, int]:
        """(H, W) of the main env's frames, from its observation space before the first reset."""
        if self.main.frame is not None:
            return self.main.frame.shape[:2]
        shape = getattr(self.main.env.observation_space, "shape", None)
        if shape is not None and len(shape) == 3 and shape[2] == 3:
            return int(shape[0]), int(shape[1])
        self.reset()
        self._reset_requested = False
        return self.main.frame.shape[:2]

    def frame_scale(self) -> int:
        if self.scale is not None:
            return self.scale
        return max(1, 384 // max(self.frame_shape()))

    def hud_lines(self) -> list[str]:
        """The heads-up display's text, one string per line."""
        main = self.main
        who = "agent" if self.use_agent else "human"
        lines = [
            f"{who}  step {self.steps}  episode {self.episodes}  {self.fps:4.0f} fps  {main.step_ms:5.1f} ms/step",
            f"action {format_action(self.action)}  keys {'+'.join(self.keys_for_step()) or '-'}",
        ]
        for side in self.sides:
            name = f"{side.label}: " if side.label else ""
            lines.append(
                f"{name}reward {side.reward:+.2f}  return {side.episode_return:.1f}  "
                f"termination {side.termination:.2f}{'  END' if side.terminated or side.truncated else ''}"
            )
        status = []
        if self.paused:
            status.append(f"PAUSED: {key_label(self.controls['step'])} step, {key_label(self.controls['pause'])} resume")
        if self.recorder is not None or self.video is not None:
            status.append("REC")
        if self.message:
            status.append(self.message)
        lines.append("  ".join(status) or help_line(self.controls))
        return lines

    def canvas(self) -> np.ndarray:
        """The frames as shown (side by side, scaled), without the HUD -> (H, W, 3) uint8."""
        return compose([s.frame for s in self.sides], self.frame_scale())

    def window_size(self) -> tuple[int, int]:
        h, w = self.frame_shape()
        scale, n = self.frame_scale(), len(self.sides)
        width, height = w * scale * n + 4 * (n - 1), h * scale
        return max(width, MIN_WIDTH), height + (self._line_height() * (3 + n) + 8 if self.hud else 0)

    def _line_height(self) -> int:
        return 18

    def draw(self) -> None:
        """Draw frames and HUD on the surface (and flip the window if the player owns one)."""
        pg = self.pg
        if self.surface is None or any(side.frame is None for side in self.sides):
            return
        canvas = self.canvas()
        self.surface.fill((16, 16, 16))
        x0 = max(0, (self.surface.get_width() - canvas.shape[1]) // 2)  # frames centred above the HUD
        self.surface.blit(pg.surfarray.make_surface(np.ascontiguousarray(canvas.transpose(1, 0, 2))), (x0, 0))
        if self.hud:
            if self._font is None:
                pg.font.init()
                self._font = pg.font.Font(None, 20)
            if len(self.sides) == 2:
                x = x0
                for side in self.sides:
                    self._text(side.label, (x + 4, 4), background=(0, 0, 0))
                    x += side.frame.shape[1] * self.frame_scale() + 4
            y = canvas.shape[0] + 4
            for line in self.hud_lines():
                self._text(line, (6, y))
                y += self._line_height()
        if self._window_opened:
            pg.display.flip()
            who = "agent" if self.use_agent else "human"
            caption = f"{self.title} | step {self.steps} | {who}{' | paused' if self.paused else ''}"
            if caption != self._caption:
                pg.display.set_caption(caption)
                self._caption = caption

    def _text(self, text: str, pos: tuple[int, int], background: tuple[int, int, int] | None = None) -> None:
        image = self._font.render(text, True, (235, 235, 235), background)
        self.surface.blit(image, pos)

    # -- the real-time loop ------------------------------------------------------------------
    def open(self, allow_headless: bool = False) -> None:
        """Open the window; refuse an invisible one (see `worldgym.envs.display.check_driver`)."""
        pg = self.pg
        if self.surface is not None:
            return
        check_display()
        size = self.window_size()
        pg.display.init()
        try:
            self.surface = pg.display.set_mode(size)
            check_driver(pg.display.get_driver(), allow_headless)
        except Exception:
            pg.display.quit()
            raise
        self._window_opened = True
        pg.key.set_repeat()  # held keys are tracked by KEYDOWN/KEYUP, never by auto-repeat

    def run(self, max_steps: int | None = None, display_fps: float = 60.0, allow_headless: bool = False,
            screenshot: str | Path | None = None) -> None:  # fmt: skip
        """Play until Esc, window close or ``max_steps`` steps; always closes recorders and the window."""
        pg = self.pg
        try:
            self.open(allow_headless)
            clock = pg.time.Clock()
            while self.tick(pg.event.get()):
                ms = max(clock.tick(display_fps), 1)  # this frame's duration
                self.fps = 1000 / ms if self.fps == 0 else 0.9 * self.fps + 0.1 * (1000 / ms)  # smoothed
                if max_steps is not None and self.total_steps >= max_steps:
                    break
            if screenshot is not None:
                self.save_screenshot(screenshot)
        finally:
            self.close()

    def save_screenshot(self, path: str | Path) -> None:
        """Save what the window shows (frames and HUD) as a PNG."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.pg.image.save(self.surface, str(path))

    def close(self) -> None:
        """Finish recordings and close the window (not the envs: their owner closes them)."""
        try:
            if self.recorder is not None:
                self.recorder.close()
            if self.video is not None:
                self.video.close()
        finally:
            self.recorder = self.video = None
            if self._window_opened:
                self.pg.display.quit()
                self._window_opened = False


def format_action(action: Any) -> str:
    if action is None:
        return "-"
    if isinstance(action, np.ndarray):
        return np.array2string(action, precision=2, separator=",")
    return str(action)

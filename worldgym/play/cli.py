"""Play a worldgym env (or any Gymnasium env with RGB frames) with the keyboard in a pygame window.

    worldgym play                                   # the shipped neural CartPole
    worldgym play worldgym/CartPoleReal-v0          # its real twin
    worldgym play assets/models/cartpole            # a checkpoint directory
    worldgym play --side-by-side                    # real twin left, neural env right, same keys
    worldgym play --agent scripted --record data/play --video play.gif

Keys: the env's keymap (assets/keymaps/<Env>.yaml, else the default for its action
space; arrows and WASD), R reset, P pause, N one step while paused, Tab switch between
you and the loaded agent (--agent), Esc quit; a keymap's ``player_keys`` may move these
(Crafter's keymap does: its game uses Tab, R and P). Held keys are read at display rate (about
60 Hz) and applied at the next step (one latent block); a tap shorter than a frame still
counts. With no key held the keymap's idle action is sent. The heads-up display shows
frames per second, step milliseconds, the step count, the action, and the predicted
reward and termination.

Without a display (no DISPLAY, or SDL falling back to its invisible offscreen driver) the
player stops with an error instead of waiting for keys in a window nobody sees: run it on
a desktop or under `xvfb-run`. `--headless` (with SDL_VIDEODRIVER=dummy) allows unattended
runs that end by themselves (--max-steps), e.g. to make a screenshot.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import gymnasium as gym

from worldgym.config_io import ConfigError, UserError
from worldgym.envs.display import HEADLESS_DRIVERS, check_display, import_pygame
from worldgym.play.keymap import ActionMapper, MissingKeysToAction, find_keymap, load_keymap, space_kind
from worldgym.policies.agents import PlayerError, load_agent
from worldgym.play.recorder import DatasetRecorder
from worldgym.play.player import Player, help_line
from worldgym.data.video import open_video

DEFAULT_ENV = "worldgym/CartPole-v0"


def make_env(target: str, **kwargs: Any) -> tuple[gym.Env, str]:
    """An env with rgb_array rendering from an env id or a checkpoint path, and the name its keymap is filed under."""
    path = Path(target)
    if path.exists():
        from worldgym.envs.env import WorldModelEnv

        env = WorldModelEnv(checkpoint=path, render_mode="rgb_array", **kwargs)
        name = getattr(env, "name", None) or path.name
        return env, str(name)
    from worldgym.envs.registration import register_all

    register_all()  # what `import worldgym` does (idempotent), in case the package was imported oddly
    try:
        return gym.make(target, render_mode="rgb_array", **kwargs), target
    except gym.error.Error as e:
        known = ", ".join(sorted(k for k in gym.registry if k.startswith("worldgym/")))
        raise PlayerError(f"cannot make {target!r}: {e}. Registered worldgym envs: {known}; or a checkpoint") from e


def twin_name(env: gym.Env, name: str) -> str:
    """The name of a neural env's real twin (``CartPole``): its model's ``real_twin``, else the env's own name."""
    from worldgym.play.keymap import env_name
    from worldgym.envs.twins import TWINS

    model = getattr(env.unwrapped, "model", None)
    real = getattr(getattr(model, "config", None), "real_twin", "") or env_name(name)
    by_source = {spec.source_id: twin for twin, spec in TWINS.items()}
    return by_source.get(real, real)


def twin_id(env: gym.Env, name: str) -> str:
    """The registered real twin of a neural env: ``worldgym/CartPole-v0`` -> ``worldgym/CartPoleReal-v0``."""
    return f"worldgym/{twin_name(env, name)}Real-v0"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("env", nargs="?", default=DEFAULT_ENV, help="env id or checkpoint directory")
    add("--keymap", help="keymap YAML (default assets/keymaps/<Env>.yaml, else the one for the action space)")
    add("--side-by-side", action="store_true", help="the real twin left of the neural env, driven by the same keys")
    add("--twin", help="env id of the twin for --side-by-side (default: the model's real twin)")
    add("--agent", help="policy for Tab: random, scripted (CartPole), a worldgym.policies.builtin name, policy:PATH (a folder saved by agents/), or module:callable")
    add("--start", choices=("human", "agent"), default="human", help="who controls the first step")
    add("--seed", type=int, default=None, help="seed of the episode seeds")
    add("--fps", type=float, default=None, help="env steps per second (default: the env's render_fps)")
    add("--scale", type=int, default=None, help="integer upscaling of frames (default: at least 384 px)")
    add("--no-hud", action="store_true", help="hide the heads-up display")
    add("--paused", action="store_true", help="start paused (N steps, P resumes)")
    add("--record", metavar="PATH", help="write played episodes to this dataset")
    add("--video", metavar="PATH", help="write the shown frames to a .gif (or .mp4 with ffmpeg)")
    add("--video-scale", type=int, default=4, help="nearest-neighbour upscaling of video frames")
    add("--max-steps", type=int, default=None, help="quit after this many steps")
    add("--screenshot", metavar="PATH", help="save the window as PNG when the player quits")
    add("--threads", type=int, default=1, help="torch CPU threads, process-wide (default 1: torch's one per core stalls when other work shares the cores)")
    add("--headless", action="store_true", help="allow an invisible window (SDL_VIDEODRIVER=dummy); needs --max-steps")


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    if args.headless and args.max_steps is None:
        raise UserError("--headless runs nobody can see; add --max-steps N so the run ends")
    if os.environ.get("SDL_VIDEODRIVER") in HEADLESS_DRIVERS and not args.headless:
        raise UserError(f"SDL_VIDEODRIVER={os.environ['SDL_VIDEODRIVER']} gives an invisible window; "
                        f"unset it to play, or add --headless --max-steps N for an unattended run")  # fmt: skip
    import_pygame()  # NoDisplayError / DependencyNotInstalled: the CLI prints what to do
    check_display()
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    envs: list[gym.Env] = []
    try:
        env, name = make_env(args.env)
        envs.append(env)
        twin = None
        if args.side_by_side:
            h, w = env.observation_space.shape[:2]
            twin_env_id = args.twin or twin_id(env, name)
            if twin_env_id not in gym.registry:
                raise PlayerError(f"no real twin {twin_env_id!r} is registered for {name}; pass --twin ENV_ID")
            twin, _ = make_env(twin_env_id, height=h, width=w)
            envs.append(twin)
        if args.keymap:
            keymap, keymap_file = load_keymap(args.keymap), Path(args.keymap)
        else:
            keymap, keymap_file = find_keymap([name, twin_name(env, name)], env.action_space)
        try:
            mapper = ActionMapper(keymap, env.action_space, strict=keymap.kind != Path(keymap_file).stem)
        except MissingKeysToAction:
            raise
        except ValueError as e:  # a binding that does not fit the env's action space
            raise ConfigError(f"keymap {keymap_file}: {e}; fix the binding or pass another --keymap") from e
        agent = load_agent(args.agent, env, args.seed) if args.agent else None
        if args.start == "agent" and agent is None:
            raise PlayerError("--start agent needs --agent")
        step_fps = args.fps or float(env.metadata.get("render_fps") or 30)
        ticks_per_step = max(1, round(60 / step_fps)) if step_fps < 60 else 1
        recorder = None
        if args.record:
            meta = {"recorded_by": "worldgym play", "env": args.env, "keymap": str(keymap_file), "agent": args.agent}
            recorder = DatasetRecorder(args.record, env, meta)
        video = open_video(args.video, step_fps, args.video_scale) if args.video else None
        player = Player(
            env, mapper, twin=twin, agent=agent, seed=args.seed, ticks_per_step=ticks_per_step, scale=args.scale,
            hud=not args.no_hud, recorder=recorder, video=video, start_with_agent=args.start == "agent",
            title=f"worldgym play: {args.env}",
        )  # fmt: skip
        player.paused = args.paused
        print(f"worldgym play {args.env} ({space_kind(env.action_space)} actions; keymap {keymap_file})")
        print(f"  keys: {mapper.describe()}; {help_line(player.controls)}")
        player.run(args.max_steps, step_fps * ticks_per_step, allow_headless=args.headless, screenshot=args.screenshot)
        if recorder is not None:
            print(f"recorded {recorder.episodes} episodes to {args.record}")
        if args.video:
            print(f"wrote {args.video}")
        if args.screenshot:
            print(f"wrote {args.screenshot}")
        return 0
    finally:
        for e in envs:
            e.close()

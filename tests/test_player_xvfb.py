"""The player in a real X window: Xvfb gives a screen, xdotool presses keys, screenshots are checked.

`worldgym play worldgym/CartPoleReal-v0 --paused --seed 0` runs as its own process on a
fresh Xvfb display (a free number chosen by Xvfb itself through ``-displayfd``). The test
focuses the window, holds Left (then D) and taps N to step exactly six blocks, and reads
the screen from Xvfb's framebuffer file (``-fbdir``, XWD format). Every screenshot must
come to show exactly the frame the real twin gives for the same seed and actions, scaled
up with nearest neighbour, and the cart must have moved the way the keys pushed it. The player
reports its step count in the window title, which the test reads with xdotool to know
when a key has been handled (no sleeps, no timed assertions). Skipped, with the reason,
only where Xvfb or xdotool are not installed (`.ci/run` installs them).
"""

from __future__ import annotations

import os
import re
import select
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from worldgym.worlds.cartpole import pole_lean
from worldgym.play.player import episode_seeds
from worldgym.envs.twins import PixelTwin

WAIT = 60.0  # seconds before a wait gives up and fails with the player's log (never a timing assertion)


# ---------------------------------------------------------------------------- X helpers
def read_xwd(path: Path) -> np.ndarray:
    """The screen in an Xvfb ``-fbdir`` file (XWD, 24/32-bit TrueColor) as (H, W, 3) uint8."""
    data = path.read_bytes()
    fields = struct.unpack(">25I", data[:100])
    header_size, width, height = fields[0], fields[4], fields[5]
    byte_order, bits_per_pixel, bytes_per_line = fields[7], fields[11], fields[12]
    masks, ncolors = fields[14:17], fields[19]
    assert bits_per_pixel == 32, f"expected a 32-bit framebuffer, got {bits_per_pixel} bits per pixel"
    offset = header_size + 12 * ncolors
    dtype = "<u4" if byte_order == 0 else ">u4"
    pixels = np.frombuffer(data, dtype=dtype, count=height * bytes_per_line // 4, offset=offset)
    pixels = pixels.reshape(height, bytes_per_line // 4)[:, :width]  # (H, W)
    channels = [((pixels & m) >> ((m & -m).bit_length() - 1)).astype(np.uint8) for m in masks]
    return np.stack(channels, axis=-1)  # (H, W, 3)


def wait_for(what: str, check, log: Path, proc: subprocess.Popen | None = None):
    """Poll ``check()`` until it returns something truthy; fail with the player's log after WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while True:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the player exited ({proc.returncode}) while waiting for {what}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what} after {WAIT} s; player log:\n{log.read_text()}")
        time.sleep(0.05)


@pytest.fixture
def display(tmp_path):
    """A fresh Xvfb screen: (DISPLAY value, framebuffer file). The server is killed afterwards."""
    missing = [tool for tool in ("Xvfb", "xdotool") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed: `apt-get install xvfb xdotool` (.ci/run does)")
    fbdir = tmp_path / "fb"
    fbdir.mkdir()
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "800x600x24", "-fbdir", str(fbdir), "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], WAIT)
        number = os.read(read_end, 64).decode().strip() if ready else ""
        if not number.isdigit():
            pytest.fail(f"Xvfb did not report a display number (exit code {server.poll()})")
        yield f":{number}", fbdir / "Xvfb_screen0"
    finally:
        os.close(read_end)
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# ---------------------------------------------------------------------------- the test
def test_player_window_responds_to_keys_under_xvfb(display, tmp_path):
    display_name, framebuffer = display
    env = {k: v for k, v in os.environ.items() if k not in ("SDL_VIDEODRIVER", "WAYLAND_DISPLAY")}
    env.update(DISPLAY=display_name, SDL_AUDIODRIVER="dummy", PYGAME_HIDE_SUPPORT_PROMPT="1")
    log = tmp_path / "player.log"

    def xdotool(*args: str) -> str:
        out = subprocess.run(["xdotool", *args], env=env, capture_output=True, text=True, timeout=WAIT)
        return out.stdout.strip()

    with open(log, "w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worldgym.cli", "play", "worldgym/CartPoleReal-v0", "--paused", "--seed", "0"],
            env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[1],
        )  # fmt: skip
    try:
        # 1. find the window by the player's pid (an SDL window is never found by --name)
        def player_window() -> str | None:
            for wid in xdotool("search", "--pid", str(proc.pid)).split():
                if xdotool("getwindowname", wid).startswith("worldgym play"):
                    return wid
            return None

        wid = wait_for("the player's window", player_window, log, proc)

        def step_shown(n: int):
            return lambda: re.search(rf"\| step {n} \|", xdotool("getwindowname", wid))

        wait_for("step 0", step_shown(0), log, proc)
        geometry = dict(line.split("=") for line in xdotool("getwindowgeometry", "--shell", wid).split())
        x, y, width = int(geometry["X"]), int(geometry["Y"]), int(geometry["WIDTH"])
        scale = 384 // 64  # 64x64 frames scaled to at least 384 px, centred at the top of the window
        x0 = x + (width - 64 * scale) // 2

        def shown() -> np.ndarray:
            return read_xwd(framebuffer)[y : y + 64 * scale, x0 : x0 + 64 * scale]  # (384, 384, 3) the frame

        def screenshot(name: str, frame: np.ndarray) -> np.ndarray:
            """Wait until the window shows ``frame`` scaled up (the X server may lag a draw), save and return it."""
            from PIL import Image

            matches = lambda: np.array_equal(shown()[::scale, ::scale], frame)  # noqa: E731
            wait_for(f"the window to show the {name} frame", matches, log, proc)
            image = shown()
            np.testing.assert_array_equal(image, frame.repeat(scale, 0).repeat(scale, 1))  # nearest neighbour
            Image.fromarray(read_xwd(framebuffer)).save(tmp_path / f"{name}.png")
            return image

        def cart_x(shown: np.ndarray) -> float:
            return float(np.nonzero(shown.max(axis=-1) < 80)[1].mean())  # the black cart

        def expected(seed: int, actions: list[int]) -> np.ndarray:
            twin = PixelTwin(render_mode="rgb_array")
            frame, _ = twin.reset(seed=seed)
            for a in actions:
                frame = twin.step(a)[0]
            return frame

        seeds = episode_seeds(0)
        xdotool("windowfocus", wid)
        wait_for("keyboard focus on the window", lambda: xdotool("getwindowfocus") == wid, log, proc)

        # 2. each episode: the first frame, then a key held while N steps exactly 6 blocks
        for key, action in (("Left", 0), ("d", 1)):
            seed = next(seeds)
            start = screenshot(f"{key}_start", expected(seed, []))
            xdotool("keydown", key)
            xdotool("key", "--delay", "30", *["n"] * 6)  # 6 pushes: CartPole's pole falls after 8 to 10
            wait_for("step 6", step_shown(6), log, proc)
            xdotool("keyup", key)
            pushed = screenshot(f"{key}_pushed", expected(seed, [action] * 6))
            moved = cart_x(pushed) - cart_x(start)
            assert (moved < -2) if action == 0 else (moved > 2), f"{key}: the cart moved {moved:+.1f} px"
            assert np.sign(pole_lean(pushed)) == (1 if action == 0 else -1)  # the pole tips away from the push
            xdotool("key", "r")
            wait_for("the reset", step_shown(0), log, proc)

        # 3. P runs the game in real time, Esc quits cleanly
        xdotool("key", "p")
        wait_for("running steps", lambda: "paused" not in xdotool("getwindowname", wid), log, proc)
        xdotool("key", "Escape")
        assert proc.wait(timeout=WAIT) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

"""A minimal pygame window for ``render_mode="human"``: show a frame, scaled up with nearest neighbour.

pygame is imported lazily. Without a display the window refuses to open with a clear
error instead of rendering into SDL's invisible offscreen driver, unless
``SDL_VIDEODRIVER`` is set to ``dummy``/``offscreen`` on purpose (tests).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium.error import DependencyNotInstalled


class NoDisplayError(RuntimeError):
    """No screen to open a window on. Picklable (one str)."""


HEADLESS_DRIVERS = ("dummy", "offscreen")


@dataclass
class Window:
    surface: Any
    clock: Any
    scale: int


def import_pygame() -> Any:
    try:
        import pygame
    except ImportError as e:
        raise DependencyNotInstalled('pygame is not installed; run `pip install "pygame>=2.5"`') from e
    return pygame


def check_display() -> None:
    """Raise `NoDisplayError` when no screen is reachable and no headless driver was asked for."""
    driver = os.environ.get("SDL_VIDEODRIVER", "")
    if driver in ("dummy", "offscreen"):
        return
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise NoDisplayError(
            "no display: DISPLAY and WAYLAND_DISPLAY are unset. Run on a desktop, under `xvfb-run`, or use "
            "render_mode='rgb_array' (set SDL_VIDEODRIVER=dummy only for tests)"
        )


def check_driver(driver: str, allow_headless: bool = False) -> None:
    """Raise `NoDisplayError` if SDL opened the window on an invisible driver and that was not allowed.

    pygame 2.6 does not fail when ``DISPLAY`` is unset or unreachable: SDL silently falls
    back to its ``offscreen`` driver and the window exists nowhere. Call this after
    ``pygame.display.set_mode`` with ``pygame.display.get_driver()``.
    """
    if driver in HEADLESS_DRIVERS and not allow_headless:
        raise NoDisplayError(
            f"no display: SDL opened an invisible window (video driver {driver!r}), so nobody could see it or "
            f"press keys. Check that DISPLAY points to a running X server (or run under `xvfb-run`); set "
            f"SDL_VIDEODRIVER=dummy only for tests and unattended runs"
        )


def show_frame(window: Window | None, frame: np.ndarray, fps: int, title: str, min_size: int = 384) -> Window:
    """Draw an (H, W, 3) uint8 frame in the window (opened on first use) and wait for the frame time."""
    pygame = import_pygame()
    if window is None:
        check_display()
        pygame.init()
        pygame.display.init()
        h, w = frame.shape[:2]
        scale = max(1, min_size // max(h, w))
        surface = pygame.display.set_mode((w * scale, h * scale))
        check_driver(pygame.display.get_driver(), allow_headless=os.environ.get("SDL_VIDEODRIVER") in HEADLESS_DRIVERS)
        pygame.display.set_caption(title)
        window = Window(surface, pygame.time.Clock(), scale)
    pygame.event.pump()
    image = pygame.surfarray.make_surface(np.ascontiguousarray(frame.transpose(1, 0, 2)))
    if window.scale > 1:
        image = pygame.transform.scale_by(image, window.scale)
    window.surface.blit(image, (0, 0))
    pygame.display.flip()
    window.clock.tick(fps)
    return window


def close_window(window: Window) -> None:
    pygame = import_pygame()
    pygame.display.quit()
    pygame.quit()

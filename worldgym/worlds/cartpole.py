"""CartPole: its twin spec, a state probe that reads cart position and pole angle from RGB frames, and two scripted controllers.

Everything here knows CartPole and nothing else; the general library (envs, evaluation,
policies) looks it up through `worldgym.worlds`.

`CartPoleProbe` is not a neural network, so it cannot be fooled by the same artefacts a world
model might learn: it measures *where the dark cart is* and *which way the tan pole
leans* with soft colour masks, then maps those pixel measurements to the source env's
units (cart position in metres, pole angle in radians) with a linear calibration fitted
on real frames and their true states (`CartPoleProbe.fit`). On a frame with no cart or
no pole it returns NaN, which evaluation counts as an error.

Dimension letters: B frames, H/W frame size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from worldgym.worlds.spec import TwinSpec

# mirrored left to right, CartPole is CartPole: the pushes swap and the state (x, x_dot, theta, theta_dot) changes sign
TWIN = TwinSpec("CartPole-v1", crop_rows=(100, 400), max_episode_steps=500, mirror={"actions": [1, 0], "state_sign": [-1, -1, -1, -1]})

# screen geometry of the CartPole twin (TWIN): the render is 600 px wide (4.8 m of track)
# and the crop keeps 300 rows, so one column is 600/W px and one row is 300/H px of the render
RENDER_WIDTH, RENDER_ROWS = 600.0, 300.0


@dataclass
class CartPoleProbe:
    """Pixel measurements -> (cart x, pole theta) with a linear calibration.

    Attributes:
        x_coef: (slope, intercept) from cart column to metres.
        theta_coef: (slope, intercept) from raw lean angle to radians.
    """

    x_coef: list[float] = field(default_factory=lambda: [4.8 / 64, -2.4])
    theta_coef: list[float] = field(default_factory=lambda: [1.0, 0.0])

    @staticmethod
    def measure(frames: np.ndarray) -> np.ndarray:
        """Frames (B, H, W, 3) uint8 -> raw measurements (B, 2): cart column, lean angle (NaN if absent)."""
        f = np.asarray(frames, dtype=np.float32)
        B, H, W, _ = f.shape
        r, b = f[..., 0], f[..., 2]
        dark = np.clip((110.0 - f.max(-1)) / 60.0, 0.0, 1.0)  # (B, H, W): the cart is black
        tan = np.clip((r - b - 30.0) / 40.0, 0.0, 1.0) * (r > 120)  # (B, H, W): the pole is tan (r >> b)
        cols = np.arange(W, dtype=np.float32) + 0.5
        rows = np.arange(H, dtype=np.float32)[:, None] + 0.5
        out = np.full((B, 2), np.nan, dtype=np.float64)
        for i in range(B):
            wc, wp = dark[i].sum(), tan[i].sum()
            if wc < 1.0 or wp < 1.0:
                continue
            cx = float((dark[i] * cols).sum() / wc)
            cy = float((dark[i] * rows).sum() / wc)
            px = float((tan[i] * cols).sum() / wp)
            py = float((tan[i] * rows).sum() / wp)
            sx, sy = RENDER_WIDTH / W, RENDER_ROWS / H  # render pixels per frame pixel
            out[i] = cx, np.arctan2((px - cx) * sx, (cy - py) * sy)
        return out

    def fit(self, frames: np.ndarray, states: np.ndarray) -> "CartPoleProbe":
        """Least-squares calibration on real frames (B, H, W, 3) and states (B, 4) = [x, x_dot, theta, theta_dot]."""
        m = self.measure(frames)
        ok = np.isfinite(m).all(1)
        if ok.sum() < 2:
            raise ValueError(f"the probe needs at least 2 frames with a visible cart and pole, got {int(ok.sum())}")
        self.x_coef = np.polyfit(m[ok, 0], states[ok, 0], 1).tolist()
        self.theta_coef = np.polyfit(m[ok, 1], states[ok, 2], 1).tolist()
        return self

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """Frames (B, H, W, 3) uint8 -> (B, 2) [cart x in metres, pole angle in radians] (NaN if unreadable)."""
        m = self.measure(frames)
        x = np.polyval(self.x_coef, m[:, 0])
        theta = np.polyval(self.theta_coef, m[:, 1])
        return np.stack([x, theta], axis=1)  # (B, 2)


class CartPoleController:
    """A linear balance controller that steers the cart towards ``target`` metres, with random actions mixed in.

    Reads the state from ``info["state"]`` when the env provides it (real twin), else from
    the pixels through `CartPoleProbe` (neural env; velocities from frame differences).

    Args:
        noise: probability of a uniform random action at each step.
        target: cart position the controller steers to; None draws one per episode in [-1.5, 1.5].
    """

    def __init__(self, noise: float = 0.1, target: float | None = None) -> None:
        self.noise, self.fixed_target = noise, target
        self.rng = np.random.default_rng(0)
        self.probe = CartPoleProbe()
        self.prev: np.ndarray | None = None

    def reset(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.target = self.fixed_target if self.fixed_target is not None else float(rng.uniform(-1.5, 1.5))
        self.prev = None

    def state(self, observation: np.ndarray, info: dict) -> np.ndarray:
        if "state" in info:
            return np.asarray(info["state"], dtype=np.float64)
        x, theta = self.probe(observation[None])[0]
        prev = self.prev if self.prev is not None else np.array([x, theta])
        self.prev = np.array([x, theta])
        return np.nan_to_num(np.array([x, (x - prev[0]) * 50.0, theta, (theta - prev[1]) * 50.0]))

    def __call__(self, observation: np.ndarray, info: dict) -> int:
        x, x_dot, theta, theta_dot = self.state(observation, info)
        if self.rng.random() < self.noise:
            return int(self.rng.integers(2))
        u = theta + 0.5 * theta_dot + 0.03 * (x - self.target) + 0.1 * x_dot
        return int(u > 0)


def replay_end(state: np.ndarray, actions: np.ndarray, extra: int = 10) -> int | None:
    """Steps until the true CartPole physics terminates, replaying ``actions`` open loop from ``state``.

    ``state`` is the source env's observation ``[x, x_dot, theta, theta_dot]``; after the
    actions run out the last one repeats for up to ``extra`` steps. Returns the number of
    steps to the terminating one (1 = the first action ends the episode), or None.
    """
    from gymnasium.envs.classic_control.cartpole import CartPoleEnv

    env = CartPoleEnv()
    env.reset(seed=0)
    env.state = np.asarray(state, dtype=np.float64).copy()
    actions = np.asarray(actions).reshape(-1)
    for t, a in enumerate(np.concatenate([actions, np.full(extra, actions[-1])]) if len(actions) else []):
        _, _, terminated, _, _ = env.step(int(a))
        if terminated:
            return t + 1
    return None


def pole_lean(frame: np.ndarray) -> float:
    """How far CartPole's pole leans right, from pixels: -dx/dy of a line fit to the tan pole pixels."""
    f = frame.astype(np.int16)
    ys, xs = np.nonzero(f[..., 0] - f[..., 2] > 30)  # the pole is tan (R >> B); cart, rail, sky are grey
    if len(ys) < 2 or ys.max() == ys.min():
        return 0.0
    return float(-np.polyfit(ys, xs, 1)[0])  # image y grows downwards


class ScriptedCartPole:
    """Push toward the side the pole leans, plus a damping term from the lean's change (pixels only)."""

    def __init__(self, damping: float = 4.0):
        self.damping, self.previous = damping, None

    def reset(self) -> None:
        self.previous = None

    def __call__(self, obs: np.ndarray) -> int:
        lean = pole_lean(obs)
        change = 0.0 if self.previous is None else lean - self.previous
        self.previous = lean
        return int(lean + self.damping * change > 0)

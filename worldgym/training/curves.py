"""The loop's learning curves: ``OUT/loop.csv`` and ``OUT/baseline.csv`` rows, and ``OUT/loop.png``, real return
against real env steps for the loop and the model-free baseline on one axis."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

CSV_FIELDS = ["turn", "real_steps", "collected_steps", "real_return", "real_return_std", "dream_return", "wall_s"]


def write_csv(path: Path, rows: list[dict[str, Any]], fields: list[str] = CSV_FIELDS) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def read_curve(path: Path, x: str = "real_steps", y: str = "real_return") -> tuple[list[float], list[float]]:
    if not path.is_file():
        return [], []
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return [float(r[x]) for r in rows], [float(r[y]) for r in rows]


def plot_curves(out: Path, size: tuple[int, int] = (640, 400)) -> Path:
    """``OUT/loop.png``: real return against real env steps, the loop (blue) and the model-free baseline (red)."""
    from PIL import Image, ImageDraw

    curves = {"loop": (read_curve(out / "loop.csv"), (31, 119, 180)), "model-free PPO": (read_curve(out / "baseline.csv"), (214, 39, 40))}
    W, H = size
    left, right, top, bottom = 60, 20, 20, 40
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    xs = [x for (cx, _), _ in curves.values() for x in cx] or [0.0, 1.0]
    x_max = max(xs) * 1.05 or 1.0
    y_max = 520.0

    def px(x: float, y: float) -> tuple[float, float]:
        return left + (W - left - right) * x / x_max, H - bottom - (H - top - bottom) * min(y, y_max) / y_max

    draw.rectangle([left, top, W - right, H - bottom], outline="black")
    for y in (0, 100, 200, 300, 400, 500):
        draw.line([px(0, y), px(x_max, y)], fill=(225, 225, 225))
        draw.text((8, px(0, y)[1] - 6), f"{y}", fill="black")
    for i in range(6):
        x = x_max * i / 5
        draw.text((px(x, 0)[0] - 15, H - bottom + 6), f"{x / 1000:.0f}k", fill="black")
    draw.text((W // 2 - 60, H - 18), "real env steps", fill="black")
    for n, (name, ((cx, cy), colour)) in enumerate(curves.items()):
        pts = [px(x, y) for x, y in zip(cx, cy)]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        for p in pts:
            draw.ellipse([p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3], fill=colour)
        draw.text((left + 10, top + 8 + 14 * n), f"{name} (real return)", fill=colour)
    path = out / "loop.png"
    img.save(path)
    return path

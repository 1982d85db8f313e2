"""The tree shows the architecture: every import points down the layers, and no module grows past 500 lines.

Layers, lowest first (README "Where things live"): paths, config_io -> worlds, model, data ->
engine -> envs -> policies -> play, training, evaluation -> cli. A module may import its
own package, a package of its own layer, or any lower layer; never a higher one.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "worldgym"

LAYERS = {
    "paths": 0, "config_io": 0,
    "worlds": 1, "model": 1, "data": 1,
    "engine": 2,
    "envs": 3,
    "policies": 4, "policy_io": 4,
    "play": 5, "training": 5, "evaluation": 5,
    "cli": 6, "__init__": 6,
}


def unit(module: str) -> str:
    """The layer unit of a dotted worldgym module name: its first component below ``worldgym``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every worldgym import in a file, at any depth (lazy imports count too)."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.split(".")[0] == "worldgym":
            if node.module == "worldgym":
                found += [(node.lineno, f"worldgym.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "worldgym"]
    return found


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "assets" not in p.relative_to(PACKAGE).parts)


def test_every_unit_has_a_layer():
    units = {unit("worldgym." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts)) for p in modules()}
    assert units <= set(LAYERS), f"new top-level modules or packages need a layer in tests/test_layout.py: {sorted(units - set(LAYERS))}"


def test_imports_point_down_the_layers():
    upward = []
    for path in modules():
        own = unit("worldgym." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
        for line, module in imports(path):
            target = unit(module)
            if target != own and LAYERS[target] > LAYERS[own]:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module} (layer {LAYERS[target]} > {LAYERS[own]})")
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_no_module_over_500_lines():
    long = [f"{p.relative_to(PACKAGE.parent)}: {n}" for p in modules() if (n := len(p.read_text().splitlines())) > 500]
    assert not long, f"split these along concept lines: {long}"

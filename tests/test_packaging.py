"""The wheel: pyproject.toml's package list is the package tree, and a built wheel carries every shipped asset."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"


def setuptools_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_package_list_is_every_package_under_worldgym_plus_the_assets():
    """The list is explicit (assets/ maps to worldgym.assets), so a new subpackage must be added to it."""
    config = setuptools_config()
    on_disk = {"worldgym"} | {
        "worldgym." + ".".join(p.parent.relative_to(ROOT / "worldgym").parts) for p in (ROOT / "worldgym").rglob("*/__init__.py")
    }
    listed = set(config["packages"])
    assert listed - {"worldgym.assets"} == on_disk, f"add to / remove from [tool.setuptools] packages in pyproject.toml: {sorted(on_disk ^ (listed - {'worldgym.assets'}))}"
    assert config["package-dir"] == {"worldgym.assets": "assets"}


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory) -> list[str]:
    """The file list of a wheel built by ``pip wheel --no-deps`` from a copy of the sources (the work tree stays clean)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("worldgym", "assets"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(tmp / "dist")],
                   check=True, capture_output=True, text=True, timeout=300)  # fmt: skip
    (wheel,) = (tmp / "dist").glob("worldgym-*.whl")
    with zipfile.ZipFile(wheel) as z:
        return z.namelist()


def test_wheel_carries_every_shipped_model_policy_and_keymap(wheel_files):
    files = set(wheel_files)
    models = sorted(p for p in (ASSETS / "models").iterdir() if (p / "config.json").is_file())
    assert models, "no shipped models under assets/models/"
    expected = [f"worldgym/assets/models/{m.name}/{f}" for m in models for f in ("model.safetensors", "config.json", "manifest.json")]
    expected += [f"worldgym/assets/{p.relative_to(ASSETS).as_posix()}" for p in (ASSETS / "policies").rglob("*") if p.is_file()]
    expected += [f"worldgym/assets/keymaps/{p.name}" for p in (ASSETS / "keymaps").glob("*.yaml")]
    assert any("/policies/" in f for f in expected) and any("/keymaps/" in f for f in expected)
    assert sorted(set(expected) - files) == []


def test_wheel_carries_every_module_and_no_screenshots(wheel_files):
    files = set(wheel_files)
    modules = {f"worldgym/{p.relative_to(ROOT / 'worldgym').as_posix()}" for p in (ROOT / "worldgym").rglob("*.py")}
    assert sorted(modules - files) == []
    assert "worldgym/py.typed" in files  # pyproject's package-data names it: the package ships its type hints
    assert [f for f in files if "screenshots" in f] == []

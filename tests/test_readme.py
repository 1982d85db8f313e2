"""The README's two opening commands stay true: CI runs the README's test command verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    first = re.search(r"```bash\n(.*?)```", text, re.S)
    assert first, "README.md must open with a bash block holding the two commands"
    return [ln for ln in first.group(1).splitlines() if ln.strip() and not ln.startswith("#")]


def test_readme_opens_with_two_commands():
    assert len(readme_commands()) == 2


def test_ci_runs_the_readme_test_command():
    test_cmd = readme_commands()[1]
    pytest_part = test_cmd.split("&&")[-1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert pytest_part in ci.splitlines(), f"CI must run the README's test command {pytest_part!r}"
    assert "pip install -q torch==2.13.0" in ci or "pip install torch==2.13.0" in ci

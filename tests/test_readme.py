"""README.md runs as written.

The opening bash block holds exactly the two setup commands, and CI runs its test command
verbatim. Every other block runs in these tests, top to bottom:

* every ```python block, in order, in one subprocess sharing one namespace (a later block may
  use names an earlier one defined), from the repository root;
* every ```bash block after the first, each in a bash subprocess (``set -euo pipefail``) from
  the repository root, with the venv's bin first on PATH;
* a bash block preceded by the marker ``<!-- not run: interactive -->`` waits for a human at
  a keyboard. Only ``worldgym play`` commands may carry it, and each of them still runs here,
  headless (SDL's dummy driver, ``--headless --max-steps 3``).

Pygame and SDL get dummy video and audio drivers, so nothing opens a window.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INTERACTIVE = "<!-- not run: interactive -->"
FENCE = re.compile(r"^(?P<marker><!--[^\n]*-->\n)?```(?P<lang>[^\n`]*)\n(?P<body>.*?)^```$", re.S | re.M)

# Run each python block in a namespace shared by all of them; a traceback names the block by its README line.
DRIVER = """
import json, sys
namespace = {"__name__": "__main__"}
for line, code in json.load(sys.stdin):
    exec(compile(code, f"README.md (python block at line {line})", "exec"), namespace)
"""


def readme_blocks() -> list[dict]:
    """Every fenced block of README.md: language, body, the line of its opening fence, its marker comment."""
    text = (ROOT / "README.md").read_text()
    blocks = []
    for m in FENCE.finditer(text):
        fence_start = m.start("lang") - 3
        blocks.append({
            "lang": m.group("lang").strip(),
            "body": m.group("body"),
            "line": text.count("\n", 0, fence_start) + 1,
            "marker": (m.group("marker") or "").strip(),
        })
    return blocks


def commands(body: str) -> list[str]:
    """A shell block's commands: continuation lines joined, blank and comment lines dropped."""
    joined = body.replace("\\\n", " ")
    return [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def readme_commands() -> list[str]:
    first = readme_blocks()[0]
    assert first["lang"] == "bash", "README.md must open with a bash block holding the two commands"
    return commands(first["body"])


def run_env() -> dict:
    env = dict(os.environ, SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def failure(what: str, proc: subprocess.CompletedProcess) -> str:
    return f"{what} failed (exit {proc.returncode}):\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"


def test_readme_opens_with_two_commands():
    assert len(readme_commands()) == 2


def test_ci_runs_the_readme_test_command():
    test_cmd = readme_commands()[1]
    pytest_part = test_cmd.split("&&")[-1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert pytest_part in ci.splitlines(), f"CI must run the README's test command {pytest_part!r}"
    assert "pip install -q torch==2.13.0" in ci or "pip install torch==2.13.0" in ci


def test_readme_blocks_are_runnable_kinds():
    """Commands live in bash or python blocks, and only the interactive marker exempts a block."""
    text = (ROOT / "README.md").read_text()
    assert text.count("<!--") == text.count(INTERACTIVE), f"the only README marker comment is {INTERACTIVE!r}"
    for block in readme_blocks():
        where = f"README.md line {block['line']}"
        assert block["lang"] in ("bash", "python", "", "text", "yaml", "json"), (
            f"{where}: a ```{block['lang']} block; write commands as ```bash or ```python so the test runs them"
        )
        if block["marker"]:
            assert block["marker"] == INTERACTIVE and block["lang"] == "bash", f"{where}: unexpected marker"
            for cmd in commands(block["body"]):
                assert cmd.startswith("worldgym play"), (
                    f"{where}: only `worldgym play` commands may be marked interactive, got {cmd!r}"
                )


def test_readme_python_blocks_run():
    blocks = [(b["line"], b["body"]) for b in readme_blocks() if b["lang"] == "python"]
    assert blocks, "README.md has python blocks"
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER], input=json.dumps(blocks), cwd=ROOT, env=run_env(),
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, failure("README python blocks", proc)


def test_readme_bash_blocks_run():
    blocks = [b for b in readme_blocks()[1:] if b["lang"] == "bash" and not b["marker"]]
    assert blocks, "README.md has bash blocks besides the setup commands"
    for block in blocks:
        proc = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + block["body"]], cwd=ROOT, env=run_env(),
            capture_output=True, text=True, timeout=600,
        )
        assert proc.returncode == 0, failure(f"README bash block at line {block['line']}", proc)


def test_readme_interactive_blocks_run_headless():
    blocks = [b for b in readme_blocks() if b["marker"] == INTERACTIVE]
    for block in blocks:
        for cmd in commands(block["body"]):
            cmd = cmd.split("#", 1)[0].strip() + " --headless --max-steps 3 --threads 1"
            proc = subprocess.run(
                ["bash", "-c", cmd], cwd=ROOT, env=run_env(), capture_output=True, text=True, timeout=600,
            )
            assert proc.returncode == 0, failure(f"README line {block['line']}: {cmd!r}", proc)

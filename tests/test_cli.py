"""The `worldgym` command: input errors are one line on stderr with exit status 2 (tracebacks only for bugs), and every --help shows its defaults."""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from worldgym import cli
from worldgym.config_io import parse_cli

ROOT = Path(__file__).resolve().parent.parent


def one_line_error(capsys, argv: list[str]) -> str:
    """Run ``worldgym ARGV``, expect an input error, return its message."""
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    prefix = f"worldgym {argv[0]}: error: "
    assert lines[0].startswith(prefix), lines[0]
    return lines[0][len(prefix):]


@pytest.fixture(scope="module")
def data16(tmp_path_factory) -> Path:
    """Two real CartPole episodes recorded at 16x16 (configs/tiny.yaml's model needs 32x32)."""
    from worldgym.envs.twins import PixelTwin
    from worldgym.play.record import record
    from worldgym.policies.builtin import RandomPolicy

    env = PixelTwin("CartPole", height=16, width=16)
    return record(env, RandomPolicy(env.action_space), tmp_path_factory.mktemp("data") / "cartpole16", episodes=2, max_steps=3)


@pytest.mark.parametrize("argv", [["rollout", "no/such/checkpoint"], ["eval", "no/such/checkpoint"], ["bench", "--model", "no/such/checkpoint"]])
def test_a_missing_checkpoint_is_one_line(capsys, argv):
    assert "no checkpoint at no/such/checkpoint" in one_line_error(capsys, argv)


def test_a_missing_dataset_is_one_line(capsys, tmp_path):
    assert f"dataset folder {tmp_path / 'nope'} does not exist" in one_line_error(capsys, ["dataset", "check", str(tmp_path / "nope")])


def test_an_unknown_env_id_is_one_line_naming_the_known_ones(capsys, tmp_path):
    message = one_line_error(capsys, ["record", "--env", "NoSuchEnv-v0", "--episodes", "1", "--out", str(tmp_path / "d")])
    assert "NoSuchEnv" in message and "worldgym/CartPoleReal-v0" in message
    assert "real:CartPole" in one_line_error(capsys, ["record", "--env", "real:NoSuch", "--episodes", "1", "--out", str(tmp_path / "d")])
    assert "policy must be one of" in one_line_error(capsys, ["record", "--policy", "bogus", "--episodes", "1", "--out", str(tmp_path / "d")])
    assert not (tmp_path / "d").exists() and not (tmp_path / "d.partial").exists()


def test_bad_agent_and_bench_flags_are_one_line(capsys):
    assert "cannot load agent 'nomodule:fn'" in one_line_error(capsys, ["rollout", "CartPole", "--agent", "nomodule:fn"])
    assert "unknown sections ['nope']" in one_line_error(capsys, ["bench", "--sections", "nope"])


def test_a_config_with_a_wrong_field_is_one_line(capsys, tmp_path, data16):
    config = tmp_path / "bad.yaml"
    config.write_text((ROOT / "configs/tiny.yaml").read_text().replace("seed: 0", "sead: 0"))
    message = one_line_error(capsys, ["train", str(config), "--data", str(data16), "--out", str(tmp_path / "run")])
    assert "unknown keys ['sead']" in message and "TrainConfig" in message
    assert "does not exist" in one_line_error(capsys, ["train", str(tmp_path / "none.yaml"), "--data", str(data16), "--out", str(tmp_path / "run")])


def test_a_dataset_that_does_not_fit_the_config_is_one_line(capsys, tmp_path, data16):
    message = one_line_error(capsys, ["train", str(ROOT / "configs/tiny.yaml"), "--data", str(data16), "--out", str(tmp_path / "run")])
    assert "(16, 16, 3)" in message and "(32, 32, 3)" in message and "--size 32" in message


def test_debug_shows_the_traceback_and_bugs_always_do(capsys, monkeypatch):
    from worldgym.model.checkpoint import CheckpointError

    with pytest.raises(CheckpointError):
        cli.main(["rollout", "no/such/checkpoint", "--debug"])
    monkeypatch.setenv("WORLDGYM_DEBUG", "1")
    with pytest.raises(CheckpointError):
        cli.main(["rollout", "no/such/checkpoint"])
    monkeypatch.delenv("WORLDGYM_DEBUG")

    def bug(args: argparse.Namespace) -> int:
        raise KeyError("a bug, not an input error")

    monkeypatch.setattr(importlib.import_module("worldgym.evaluation.bench"), "run", bug)
    with pytest.raises(KeyError):
        cli.main(["bench"])


def test_the_installed_command_prints_no_traceback():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "worldgym.cli", "rollout", "no/such/checkpoint"], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("worldgym rollout: error: no checkpoint at no/such/checkpoint")


# ---------------------------------------------------------------------------- --help shows defaults
def stated_defaults(parser: argparse.ArgumentParser) -> list[str]:
    """``(default: X)`` of every option whose default means something and whose help does not state its own."""
    return [
        f"(default: {a.default})" for a in parser._actions
        if a.default not in (None, "", False, argparse.SUPPRESS) and a.help and "(default" not in a.help
    ]  # fmt: skip


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_subcommand_help_shows_its_defaults(capsys, command):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    module = importlib.import_module(cli.COMMANDS[command][0])
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    assert module.__doc__.split("\n")[0] in text  # the module docstring is the description
    for default in stated_defaults(parser):
        assert default in text, f"worldgym {command} --help lacks {default}"
    assert "(default: None)" not in text


def test_parse_cli_help_shows_field_docs_and_defaults(capsys):
    @dataclass
    class Args:
        steps: int = 100
        """env steps of training"""
        env: str = "worldgym/CartPole-v0"
        """env id"""
        out: str = ""
        """where results go (default: print only)"""
        anneal: bool = True
        """decay the learning rate"""

    with pytest.raises(SystemExit):
        parse_cli(Args, "An agent.\n\n    indented example line", ["--help"])
    text = capsys.readouterr().out
    assert "    indented example line" in text  # the docstring keeps its layout
    flat = " ".join(text.split())
    assert "env steps of training (default: 100)" in flat and "env id (default: worldgym/CartPole-v0)" in flat
    assert "decay the learning rate (default: True)" in flat and "(default: print only)" in flat and "(default: )" not in flat
    assert parse_cli(Args, None, ["--steps", "5", "--no-anneal"]) == Args(steps=5, anneal=False)


@pytest.mark.parametrize("script", [*sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "agents").glob("*.py")), "examples/sb3_ppo.py"])
def test_agent_and_example_help_shows_defaults(script):
    if script.startswith("examples/sb3"):
        pytest.importorskip("stable_baselines3", reason="examples/sb3_ppo.py needs the sb3 extra")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "(default: " in out.stdout and "(default: None)" not in out.stdout and "(default: )" not in out.stdout

"""Dataclass configs <-> plain dicts, YAML files and command-line flags; configs/*.yaml are plain dumps of these dataclasses.

Unknown keys and wrong nesting raise a `ConfigError` that names the key and the
dataclass, so a typo in a YAML file never passes silently.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class UserError(Exception):
    """A mistake in what the user asked for (a path, a name, a config, a flag), not a bug in worldgym.

    The project's error types for user input derive from it (`ConfigError`, `CheckpointError`,
    `DatasetError`, `PolicyError`, `PlayerError`, ...); the `worldgym` command prints their
    message as one line and exits with status 2, and shows a traceback for anything else.
    """


class ConfigError(UserError, ValueError):
    """A config that does not match its dataclass."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` that keeps the description's layout and appends each option's default.

    Defaults that say nothing (None, an empty string, False of a ``store_true`` flag) are left
    out, and so is the default of a help text that already states its own.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        flag_off = action.default is False and not isinstance(action, argparse.BooleanOptionalAction)
        if action.default is None or action.default == "" or flag_off or "(default" in text:  # also "%(default)s"
            return action.help
        return super()._get_help_string(action)


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as a plain, JSON/YAML-ready dict."""
    return dataclasses.asdict(config)


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``, recursing into nested dataclass fields."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown} for {cls.__name__}; known keys are {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = from_dict(hint, value, f"{where}.{key}")
        else:
            kwargs[key] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from e


def load_yaml(cls: type[T], path: str | Path) -> T:
    """Read a YAML file written by `dump_yaml` (or by hand) into dataclass ``cls``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    return from_dict(cls, data, str(path))


def dump_yaml(config: Any, path: str | Path) -> None:
    """Write a dataclass config as plain YAML."""
    with open(path, "w") as f:
        yaml.safe_dump(to_dict(config), f, sort_keys=False)


def parse_cli(cls: type[T], description: str | None = None, argv: list[str] | None = None) -> T:
    """Dataclass ``cls`` (int/float/str/bool fields with defaults) from ``--field-name`` flags.

    Each field's docstring (the string literal under it, as cleanrl writes ``Args``) is its
    ``--help``; bools get ``--flag/--no-flag``. ``argv`` None reads ``sys.argv``.
    """
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    docs = {a.target.id: b.value.value for a, b in zip(body, body[1:]) if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr)}
    parser = argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)
    for f in dataclasses.fields(cls):
        kind = {"bool": argparse.BooleanOptionalAction}.get(f.type)
        parser.add_argument(
            "--" + f.name.replace("_", "-"), default=f.default, help=docs[f.name],
            **({"action": kind} if kind else {"type": {"int": int, "float": float, "str": str}[f.type]}),
        )  # fmt: skip
    return cls(**vars(parser.parse_args(argv)))

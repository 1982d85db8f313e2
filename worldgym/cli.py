"""The `worldgym` command: one entry point, one module per subcommand.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``; its
module docstring is the subcommand's ``--help`` text. Modules are imported only when
their subcommand runs, so ``worldgym --help`` is instant.

A mistake in the input (a missing path, an unknown id, a config or dataset that does not
fit) is reported here, in one place: one line ``worldgym CMD: error: MESSAGE`` on stderr
and exit status 2, as argparse reports a bad flag. Anything else is a bug and keeps its
traceback; ``--debug`` (or ``WORLDGYM_DEBUG=1``) shows the traceback of user errors too.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from worldgym.config_io import HelpFormatter, UserError

COMMANDS = {
    "rollout": ("worldgym.play.rollout", "roll a model out beside its real twin: returns, speed, GIF of real vs neural"),
    "play": ("worldgym.play.cli", "play an env with the keyboard (HUD, agent toggle, side by side, recording)"),
    "record": ("worldgym.play.record", "record episodes from a real twin or a neural env into a dataset"),
    "dataset": ("worldgym.data.cli", "check a recorded dataset, export it to Minari, or merge recorded shards"),
    "import": ("worldgym.data.importer", "turn videos + action logs, or a Minari dataset, into a worldgym dataset"),
    "train": ("worldgym.training.train", "train a world model (autoencoder, dynamics, self-forcing) from a YAML config"),
    "eval": ("worldgym.evaluation.evaluate", "measure a world model against its real twin: PSNR, state probe, control, termination"),
    "loop": ("worldgym.training.loop", "the model-based loop: collect real episodes, fine-tune the world model, train the agent in imagination"),
    "bench": ("worldgym.evaluation.bench", "measure step latency, throughput, cache speed-up and memory"),
}


def is_user_error(e: BaseException) -> bool:
    """Whether ``e`` is a mistake in the command's input (reported in one line) rather than a bug (a traceback)."""
    import gymnasium as gym

    from worldgym.envs.display import NoDisplayError

    if isinstance(e, (UserError, NoDisplayError, gym.error.UnregisteredEnv, gym.error.DependencyNotInstalled)):
        return True
    return isinstance(e, OSError) and e.filename is not None  # a path named on the command line that cannot be read or written


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = os.environ.get("WORLDGYM_DEBUG", "") not in ("", "0")
    if argv[:1] == ["--debug"]:
        debug, argv = True, argv[1:]
    parser = argparse.ArgumentParser(
        prog="worldgym",
        description="Neural world models as environments: play them, record data, train, evaluate and benchmark.",
        epilog="Run `worldgym COMMAND --help` for the options of one command.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of input errors too (or set WORLDGYM_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        sub.add_parser(name, help=summary, add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    if argv[0] not in COMMANDS:
        parser.print_usage(sys.stderr)
        print(f"worldgym: error: unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    cmd = argparse.ArgumentParser(prog=f"worldgym {argv[0]}", description=module.__doc__, formatter_class=HelpFormatter)
    module.add_arguments(cmd)
    cmd.add_argument("--debug", action="store_true", help="show the traceback of input errors too (or set WORLDGYM_DEBUG=1)")
    args = cmd.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except Exception as e:
        if debug or args.debug or not is_user_error(e):
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"{cmd.prog}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

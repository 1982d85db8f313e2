"""The `worldgym` command: one entry point, one module per subcommand.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``; its
module docstring is the subcommand's ``--help`` text. Modules are imported only when
their subcommand runs, so ``worldgym --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "rollout": ("worldgym.play.rollout", "roll a model out beside its real twin: returns, speed, GIF of real vs neural"),
    "play": ("worldgym.play.cli", "play an env with the keyboard (HUD, agent toggle, side by side, recording)"),
    "record": ("worldgym.play.record", "record episodes from a real twin or a neural env into a dataset"),
    "dataset": ("worldgym.data.dataset", "check a recorded dataset, or export it to Minari"),
    "train": ("worldgym.training.train", "train a world model (autoencoder, dynamics, self-forcing) from a YAML config"),
    "eval": ("worldgym.evaluation.evaluate", "measure a world model against its real twin: PSNR, state probe, control, termination"),
    "bench": ("worldgym.evaluation.bench", "measure step latency, throughput, cache speed-up and memory"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="worldgym",
        description="Neural world models as environments: play them, record data, train, evaluate and benchmark.",
        epilog="Run `worldgym COMMAND --help` for the options of one command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        sub.add_parser(name, help=summary, add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    if argv[0] not in COMMANDS:
        parser.print_usage(sys.stderr)
        print(f"worldgym: unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    cmd = argparse.ArgumentParser(
        prog=f"worldgym {argv[0]}",
        description=module.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(cmd)
    return int(module.run(cmd.parse_args(argv[1:])) or 0)


if __name__ == "__main__":
    sys.exit(main())

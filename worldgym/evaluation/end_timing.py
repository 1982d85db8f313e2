"""Does the dream end where reality does? Termination timing near the real ends of recorded episodes.

    python -m worldgym.evaluation.end_timing MODEL --data runs/loop/turn_1/data --before 12 \\
        --thresholds 0.5 0.3 0.2 0.1

For every recorded episode that terminated (not truncated) and is long enough, the neural env
starts from the ``--context`` real frames (and the actions that led to them) ending ``--before``
steps before the real end, replays the recorded actions, and notes the first step whose
termination probability passes each threshold (up to ``--extra`` steps past the real end). It
reports, per threshold, how many predicted ends fall within ±``--tolerance`` of the real one,
how many come earlier and how many later or never, the median offset and every episode's offset
(predicted minus real end, null if it never fired). It also folds the
real frames through the model as a filter (`WorldModel.observe`) and reports the head's
probability at the real terminal frame: a head unsure there (median well below 0.5) lets a
rollout run on past the real end even when its dynamics are right.

Run it on the episodes a policy collected (a loop turn's ``data``): an agent trained in a dream
that ends a few steps late on exactly those failures is forgiven them, and the dream's
``termination_threshold`` (``worldgym loop --termination-threshold``) is the knob that moves the
end (BENCHMARKS.md, "Mirror symmetry, greedy collection and where the dream starts"). By
default the rollout runs the engine ``gym.make`` gives (with a fused commit, the termination
head reads the denoising pass); ``--features`` runs the two-pass engine of an env observing
``obs_type="features"`` (the head reads the commit pass), which is the dream `worldgym loop`
trains its agents in. The two can time ends a few episodes apart. The
random-action protocol from the episode start is ``worldgym eval``'s ``starts`` section.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from worldgym.config_io import HelpFormatter, UserError
from worldgym.data.dataset import load as load_dataset
from worldgym.engine.world_model import WorldModel
from worldgym.evaluation.contexts import first_ends, neural_probs, reset_from_context
from worldgym.model import checkpoint


def end_windows(paths: Sequence[str | Path], context: int, before: int) -> list[dict[str, Any]]:
    """The last ``context + before`` frames of every terminated episode with that many: frames, actions, seed."""
    out = []
    for p in paths:
        for ep in load_dataset(p).episodes:
            T = len(ep)
            if bool(ep.terminations[-1]) and T >= before + context:
                s = T - before - (context - 1)
                out.append({"frames": np.asarray(ep.observations[s:]), "actions": np.asarray(ep.actions[s:]), "seed": int(ep.seed or 0)})
    return out


@torch.no_grad()
def end_timing(model: Any, windows: list[dict[str, Any]], context: int = 4, thresholds: Sequence[float] = (0.5, 0.3, 0.2, 0.1),
               tolerance: int = 3, extra: int = 10, features: bool = False) -> dict[str, Any]:  # fmt: skip
    """Rollout and filter termination timing on ``end_windows`` (all of one length): the module docstring's report.

    ``features`` rolls out in the two-pass engine of a features-observing env (the loop's dream).
    """
    if not windows:
        raise UserError("no terminated episode is long enough: record longer episodes or lower --before")
    L = len(windows[0]["actions"])  # the real end is frame L
    P = neural_probs(model, windows, context, extra, "float32", features=features)  # column j: the frame context + j
    report: dict[str, Any] = {"episodes": len(windows), "before": L - (context - 1), "context": context, "tolerance": tolerance,
                              "engine": "features" if features else "default", "rollout": {}}  # fmt: skip
    for thr in thresholds:
        d = np.array([10**6 if e is None else e - L for e in first_ends(P, windows, context, extra, thr)])
        fired = d[d < 10**6]
        report["rollout"][f"{thr:g}"] = {"within": int((np.abs(d) <= tolerance).sum()), "early": int((d < -tolerance).sum()),
                                         "late_or_never": int((d > tolerance).sum()), "median_offset": float(np.median(fired)) if len(fired) else None,
                                         "offsets": [int(x) if x < 10**6 else None for x in d]}  # fmt: skip
    wm = reset_from_context(WorldModel(model, batch_size=len(windows), features=True), windows, context)
    for t in range(context - 1, L):
        last = wm.observe(np.stack([w["frames"][t + 1] for w in windows]), [w["actions"][t].tolist() for w in windows]).termination
    report["filter_prob_at_real_end"] = {"median": float(last.median()), "share_above_0.5": float((last > 0.5).float().mean())}
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="world model: checkpoint folder or installed name")
    parser.add_argument("--data", nargs="+", required=True, help="recorded datasets (e.g. a loop turn's data)")
    parser.add_argument("--before", type=int, default=12, help="the start context ends this many steps before the real end")
    parser.add_argument("--context", type=int, default=4, help="real frames in the start context")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.3, 0.2, 0.1], help="termination probabilities to time")
    parser.add_argument("--tolerance", type=int, default=3, help="a predicted end this close to the real one counts as right")
    parser.add_argument("--features", action="store_true", help="roll out in the engine of an env observing features (worldgym loop's dream)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--json", default=None, help="also write the report here")


def run(args: argparse.Namespace) -> int:
    if args.before < 1 or args.context < 1:
        raise UserError(f"--before and --context must be >= 1, got {args.before} and {args.context}")
    if not all(0.0 < t < 1.0 for t in args.thresholds):
        raise UserError(f"--thresholds must be probabilities in (0, 1), got {args.thresholds}")
    torch.set_num_threads(args.threads)
    model = checkpoint.load(checkpoint.resolve(args.model))
    report = {"model": str(args.model), **end_timing(model, end_windows(args.data, args.context, args.before), args.context, args.thresholds, args.tolerance, features=args.features)}
    text = json.dumps(report, indent=1)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    prog = "python -m worldgym.evaluation.end_timing"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=HelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UserError as e:
        print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

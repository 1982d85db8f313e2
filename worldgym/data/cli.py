"""Check a recorded dataset, export it to Minari, merge recorded shards, or mirror one.

Examples:
    worldgym dataset check runs/data/cartpole
    worldgym dataset export-minari runs/data/cartpole --id worldgym/cartpole/mix-v0
    worldgym dataset merge runs/data/crafter --shards runs/data/crafter-shard-*-of-4
    worldgym dataset mirror runs/data/cartpole_mirror --source runs/data/cartpole

The format itself (files, manifest, checks) is documented in `worldgym.data.dataset`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from worldgym.config_io import UserError
from worldgym.data.dataset import DatasetError, check


def add_arguments(parser: Any) -> None:
    parser.add_argument("action", choices=["check", "export-minari", "merge", "mirror"],
                        help="check: validate; export-minari: write a Minari dataset; merge: join --shards into PATH (worldgym.data.shards); "
                             "mirror: write the mirror image of --source into PATH (worldgym.worlds.symmetry)")  # fmt: skip
    parser.add_argument("path", help="dataset folder (merge, mirror: the one to write)")
    parser.add_argument("--shards", nargs="+", default=[], help="merge: the datasets to join, e.g. the OUT-shard-i-of-n of `worldgym record --shard`")
    parser.add_argument("--id", default=None, help="Minari dataset id for export-minari, e.g. worldgym/cartpole/mix-v0")
    parser.add_argument("--source", default=None, help="mirror: the dataset to mirror")
    parser.add_argument("--actions", default=None, help="mirror: the action each action becomes, e.g. 1,0 (default: the mirror of the source's twin)")
    parser.add_argument("--state-sign", default=None, help="mirror: -1 or 1 per state entry, written with =, e.g. --state-sign=-1,-1,-1,-1 (default: the source twin's)")
    parser.add_argument("--format", default="hdf5", choices=["hdf5", "arrow"], help="Minari storage backend")


def run(args: Any) -> int:
    if args.action == "mirror":
        from worldgym.worlds.symmetry import mirror_from_cli

        return mirror_from_cli(args)
    if args.action == "merge":
        from worldgym.data.shards import merge  # imports this module
        return print(json.dumps({"valid": True, **merge(args.path, args.shards)}, indent=1)) or 0
    if args.action == "check":
        try:
            summary = check(args.path)
        except DatasetError as e:
            if not Path(args.path).is_dir():
                raise  # a wrong path, not a verdict on a dataset: the CLI reports it as an input error
            print(f"INVALID: {e}")
            return 1
        print(json.dumps({"valid": True, **summary}, indent=1))
        return 0
    if not args.id:
        raise UserError("export-minari needs --id NAMESPACE/NAME-vN, e.g. --id worldgym/cartpole/mix-v0")
    from worldgym.data.minari_export import export_minari

    mds = export_minari(args.path, args.id, args.format)
    print(f"wrote Minari dataset {args.id}: {mds.total_episodes} episodes, {mds.total_steps} steps")
    return 0

"""The command line of :mod:`util_lib.step.contract`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from util_lib.names import PROJECT_ROOT
from util_lib.step.contract import GROUP_FOLDER


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``infer FILE --target COLUMN --name NAME [--conf-dir DIR] [--force]``."""
    parser = argparse.ArgumentParser(
        prog="python -m util_lib.step.contract",
        description="Write a dataset's data contract (conf/dataset/NAME.yaml) from its file.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    infer = commands.add_parser(
        "infer",
        help="infer the contract of a Parquet file: dtypes, ranges, categories, roles, labels",
    )
    infer.add_argument("file", help="the Parquet file (its path or a file:// URL)")
    infer.add_argument("--target", required=True, help="the column the model predicts")
    infer.add_argument("--name", required=True, help="the dataset's name (dataset=NAME)")
    infer.add_argument(
        "--conf-dir",
        default=str(PROJECT_ROOT / GROUP_FOLDER),
        help="where NAME.yaml is written (default: the project's conf/dataset/)",
    )
    infer.add_argument("--force", action="store_true", help="replace an existing NAME.yaml")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the command; a problem exits non-zero with one line naming it."""
    from util_lib.step.contract.infer import ContractInferenceError, write_contract

    args = parse_args(argv)
    try:
        path = write_contract(
            Path(args.file), args.target, args.name, Path(args.conf_dir), force=args.force
        )
    except ContractInferenceError as error:
        print(f"python -m util_lib.step.contract infer: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"wrote {path}: read it, edit the ranges and roles, then run with dataset={args.name}")

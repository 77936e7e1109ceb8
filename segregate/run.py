"""Split the preprocessed data into train and test artifacts."""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import pandas as pd

from segregate.gate import require_checked
from segregate.split import split_data
from util_lib.step.arguments import optional
from util_lib.step.process_exit import exit_quickly
from util_lib.step.run import start_run

logger = logging.getLogger("segregate.run")
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def flag(value: str) -> bool:
    """Read a true/false parameter (MLflow hands ``true``, ``True``, ``1``...) as a bool."""
    text = value.strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise argparse.ArgumentTypeError(f"{value!r} is not true or false")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the step's command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--input_artifact", type=str, required=True, help="e.g. preprocessed_data:v3"
    )
    parser.add_argument(
        "--artifact_root",
        type=str,
        required=True,
        help="prefix of the outputs: <root>_train and <root>_test",
    )
    parser.add_argument("--artifact_type", type=str, required=True, help="e.g. segregated_data")
    parser.add_argument("--test_size", type=float, required=True, help="fraction, in (0, 1)")
    parser.add_argument("--random_seed", type=int, required=True)
    parser.add_argument(
        "--stratify", type=str, required=True, help='column to stratify by; "" or null: none'
    )
    parser.add_argument(
        "--allow_unchecked",
        type=flag,
        default=False,
        help="split data that failed its check or was never checked (a warning is logged)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Read ``--input_artifact``, split it and log ``<root>_train`` and ``<root>_test``."""
    args = parse_args(argv)
    stratify = optional(args.stratify)
    with (
        start_run(step="segregate", job_type="split_data", config=vars(args)) as run,
        tempfile.TemporaryDirectory() as tmp_dir,
    ):
        version = run.resolve(args.input_artifact)
        require_checked(version, args.allow_unchecked)
        # The version just checked, even if `latest` moved meanwhile.
        data = run.use_artifact(version.qualified_spec).path
        train, test = split_data(pd.read_parquet(data), args.test_size, args.random_seed, stratify)

        for part, frame in (("train", train), ("test", test)):
            name = f"{args.artifact_root}_{part}"
            out_path = Path(tmp_dir) / f"{name}.parquet"
            frame.to_parquet(out_path, index=False)
            spec = run.log_artifact(
                out_path,
                name=name,
                type=args.artifact_type,
                description=f"{part.capitalize()} split of {args.input_artifact}",
                metadata={
                    "rows": len(frame),
                    "test_size": args.test_size,
                    "seed": args.random_seed,
                    "stratify": stratify,
                },
            )
            logger.info("Logged %s (%d rows)", spec, len(frame))
        run.log_summary({"train_rows": len(train), "test_rows": len(test)})


if __name__ == "__main__":
    main()
    exit_quickly()

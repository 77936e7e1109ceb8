"""Clean the raw data and log it as the preprocessed_data artifact."""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import pandas as pd

from preprocess.cleaning import preprocess
from util_lib.step.process_exit import exit_quickly
from util_lib.step.run import start_run

logger = logging.getLogger("preprocess.run")

OUTPUT_FILE = "preprocessed_data.parquet"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the step's command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--input_artifact", type=str, required=True, help="e.g. raw_data.parquet:latest"
    )
    parser.add_argument("--artifact_name", type=str, required=True, help="e.g. preprocessed_data")
    parser.add_argument("--artifact_type", type=str, required=True, help="e.g. preprocessed_data")
    parser.add_argument("--artifact_description", type=str, required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Read ``--input_artifact``, clean it and log the result as ``--artifact_name``."""
    args = parse_args(argv)
    with (
        start_run(step="preprocess", job_type="preprocess_data", config=vars(args)) as run,
        tempfile.TemporaryDirectory() as tmp_dir,
    ):
        raw_path = run.use_artifact(args.input_artifact).path
        raw = pd.read_parquet(raw_path)
        clean = preprocess(raw)

        out_path = Path(tmp_dir) / OUTPUT_FILE
        clean.to_parquet(out_path, index=False)
        counts = {
            "rows_in": len(raw),
            "rows_out": len(clean),
            "duplicates_dropped": len(raw) - len(clean),
        }
        spec = run.log_artifact(
            out_path,
            name=args.artifact_name,
            type=args.artifact_type,
            description=args.artifact_description,
            metadata=counts,
        )
        run.log_summary(counts)
        # No alias here: the drift reference is data check_data has passed (it sets the alias).
        logger.info("Logged %s: %s", spec, counts)


if __name__ == "__main__":
    main()
    exit_quickly()

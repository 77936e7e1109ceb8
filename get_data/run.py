"""Download the raw dataset, check it, and log it as a versioned artifact."""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from get_data.contract_check import check_file_columns
from get_data.download import DownloadError, download_dataset
from util_lib.redact import redact_url
from util_lib.step.arguments import optional, project_path, reveal
from util_lib.step.contract import read_contract
from util_lib.step.data_schema import DataContractError
from util_lib.step.process_exit import exit_quickly
from util_lib.step.run import start_run

logger = logging.getLogger("get_data.run")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the step's command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--file_url",
        type=str,
        required=True,
        help="http(s) URL, file:// URL or local path (relative: under the project root)",
    )
    parser.add_argument(
        "--sha256",
        type=str,
        default="",
        help="expected sha256 hex digest of the file; empty or null: not verified",
    )
    parser.add_argument("--artifact_name", type=str, required=True, help="e.g. raw_data.parquet")
    parser.add_argument("--artifact_type", type=str, required=True, help="e.g. raw_data")
    parser.add_argument("--artifact_description", type=str, required=True)
    parser.add_argument(
        "--dataset",
        type=str,
        required=True,
        help="The data contract the file must meet (its columns and dtypes): a file of "
        "conf/dataset/ (a relative path is under the project root), or the section main.py "
        "writes",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Fetch ``--file_url`` and log it as artifact ``--artifact_name``."""
    args = parse_args(argv)
    expected = optional(args.sha256) or ""
    # The real URL (with its token) when the driver passed it through the environment.
    source = project_path(reveal("file_url", args.file_url))
    file_name = args.artifact_name
    if not file_name.endswith(".parquet"):
        file_name += ".parquet"
    try:
        with (
            start_run(step="get_data", job_type="download_data", config=vars(args)) as run,
            tempfile.TemporaryDirectory() as tmp_dir,
        ):
            contract = read_contract(args.dataset)
            fetched = download_dataset(source, Path(tmp_dir) / file_name, expected)
            if not expected:
                logger.info("No sha256 given: digest not verified (got %s)", fetched.sha256)
            # Before anything is stored: a file that is not the dataset stops here, named.
            check_file_columns(fetched.path, contract, redact_url(args.file_url))
            logger.info("%s has the columns and dtypes of the data contract", args.file_url)
            spec = run.log_artifact(
                fetched.path,
                name=args.artifact_name,
                type=args.artifact_type,
                description=args.artifact_description,
                metadata={
                    "source": redact_url(args.file_url),
                    "sha256": fetched.sha256,
                    "bytes": fetched.n_bytes,
                    "rows": fetched.rows,
                },
            )
            run.log_summary({"rows": fetched.rows, "bytes": fetched.n_bytes})
            logger.info("Logged %s (%d rows) from %s", spec, fetched.rows, args.file_url)
    except (DownloadError, DataContractError) as exc:
        # start_run has logged "get_data failed: ..." (the message names the URL, redacted,
        # and the cause), marked the run failed and discarded any version: exit non-zero
        # without a traceback.
        raise SystemExit(1) from exc


if __name__ == "__main__":
    main()
    exit_quickly()

"""Helpers of the tests that run the data-check suite as its MLproject runs it."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
import yaml

from util_lib.step.run import start_run

STEP_DIR = Path(__file__).resolve().parents[2] / "check_data"


def log_versions(*frames: pd.DataFrame, name: str = "preprocessed_data") -> list[str]:
    """Log each frame as a new version of ``name``; return their specs."""
    specs = []
    with start_run("test_setup", "test") as run, tempfile.TemporaryDirectory() as tmp:
        for i, frame in enumerate(frames):
            path = Path(tmp) / f"{i}" / f"{name}.parquet"
            path.parent.mkdir()
            frame.to_parquet(path, index=False)
            specs.append(run.log_artifact(path, name, name, "test data"))
    return specs


def run_suite(reference: str, sample: str, ks_alpha: float = 0.05) -> subprocess.CompletedProcess:
    """Run the MLproject's command, as `mlflow run check_data` would, in the step folder."""
    project = yaml.safe_load((STEP_DIR / "MLproject").read_text())
    command = project["entry_points"]["main"]["command"].format(
        reference_artifact=reference,
        sample_artifact=sample,
        ks_alpha=ks_alpha,
        dataset="conf/dataset/genres.yaml",
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        command, shell=True, cwd=STEP_DIR, env=env, capture_output=True, text=True, timeout=300
    )


def check_runs() -> list[mlflow.entities.Run]:
    """The check_data runs of the test's store, oldest first."""
    return mlflow.search_runs(
        search_all_experiments=True,
        filter_string="tags.`util_lib.step` = 'check_data'",
        order_by=["attributes.start_time ASC"],
        output_format="list",
    )


def last_run() -> mlflow.entities.Run:
    """The one check_data run of the test's store."""
    runs = check_runs()
    assert len(runs) == 1, runs
    return runs[0]


def output(result: subprocess.CompletedProcess) -> str:
    """The tail of a suite's stdout and stderr, for assertion messages."""
    return result.stdout[-3000:] + result.stderr[-3000:]

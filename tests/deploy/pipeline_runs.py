"""Helpers of the "run it anywhere" tests: pipeline runs through the real `mlflow run`.

Every run goes through the `mlflow run` command in a subprocess, against its own tracking
store (or a server), with W&B disabled unless a test says otherwise.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROJECT = "music_genre_classification"
STEPS = ("get_data", "preprocess", "check_data", "segregate", "train_random_forest", "evaluate")
DATA_ARTIFACTS = ("raw_data.parquet", "preprocessed_data", "data_train", "data_test")
# Where the test is not about the model's quality, a small forest keeps it quick.
SMALL_FOREST = "random_forest_pipeline.random_forest.n_estimators=20"


def pipeline_env(workdir: Path, tracking_uri: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a pipeline run whose outputs (store, log, W&B) stay in ``workdir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "WANDB_"))}
    env.pop("PYTHONPATH", None)
    env.update(
        WANDB_MODE="disabled",
        WANDB_DIR=str(workdir),
        ML_PIPELINE_LOG=str(workdir / "ml_pipeline.log"),
        # MLflow clones remote projects into a temporary folder: keep it in the test's folder.
        TMPDIR=str(workdir),
    )
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    env.update(extra)
    return env


@dataclass
class PipelineRun:
    """A finished `mlflow run` of the pipeline."""

    workdir: Path
    tracking_uri: str
    result: subprocess.CompletedProcess
    seconds: float

    def check(self) -> PipelineRun:
        """Fail the test with the run's output when it did not succeed."""
        assert self.result.returncode == 0, (
            self.result.stdout[-3000:] + "\n" + self.result.stderr[-6000:]
        )
        return self


def mlflow_run(
    workdir: Path,
    *overrides: str,
    uri: str | Path = REPO,
    version: str | None = None,
    env_manager: str = "local",
    tracking_uri: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 1200,
) -> PipelineRun:
    """`mlflow run <uri> [-v version] --env-manager <m> -P hydra_options=...` in ``workdir``.

    The tracking store defaults to ``workdir/mlflow.db``; Hydra's outputs go to
    ``workdir/outputs``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    tracking_uri = tracking_uri or f"sqlite:///{workdir / 'mlflow.db'}"
    options = " ".join([*overrides, f"hydra.run.dir={workdir / 'outputs'}"])
    command = ["mlflow", "run", str(uri), "--env-manager", env_manager]
    if version:
        command += ["--version", version]
    command += ["-P", f"hydra_options={options}"]
    start = time.monotonic()
    result = subprocess.run(
        command,
        cwd=workdir,
        env=env or pipeline_env(workdir, tracking_uri),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return PipelineRun(workdir, tracking_uri, result, time.monotonic() - start)


def step_runs(tracking_uri: str) -> dict[str, object]:
    """The latest run of each step in the project's experiment, by step name."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(PROJECT)
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    return {r.data.tags["util_lib.step"]: r for r in runs if "util_lib.step" in r.data.tags}

"""Fixtures shared by the tests: an isolated tracking store per test, processes started
together on it, and the dataset."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATASET = REPO / "dataset" / "genres_mod.parquet"


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh MLflow tracking store (SQLite + local artifacts) in ``tmp_path``, W&B disabled.

    The working directory moves there too, so anything a run writes stays in the test's folder.
    """
    import mlflow

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("ML_PIPELINE_LOG", str(tmp_path / "ml_pipeline.log"))
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("UTIL_LIB_ARTIFACT_STORE", raising=False)
    yield tmp_path
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)  # back to the environment's


@pytest.fixture
def run_together(tracking: Path) -> Callable[..., list[str]]:
    """Run a Python script in several processes released at one moment; return their results.

    The returned function takes the script and one argument list per process, and returns the
    last line each process printed, after asserting that every one exited 0. The script gets
    the path of a file as its first argument and must wait for that file to exist at the point
    where the processes should meet; the project is on its PYTHONPATH, the tracking store is
    the test's, and ``env`` adds variables.
    """

    def run(
        script: str, arguments: list[list[str]], env: dict[str, str] | None = None
    ) -> list[str]:
        go = tracking / "go"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", script, str(go), *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
            )
            for args in arguments
        ]
        time.sleep(4)  # every process has imported what it needs and waits
        go.touch()
        outputs = [p.communicate(timeout=120) for p in procs]
        for proc, (_, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, err
        return [out.strip().splitlines()[-1] for out, _ in outputs]

    return run


@pytest.fixture(scope="session")
def dataset_path() -> Path:
    """The dataset the project ships (``dataset/genres_mod.parquet``)."""
    return DATASET

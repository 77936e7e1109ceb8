"""Fixtures shared by the tests: an isolated tracking store per test, and the dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATASET = REPO.parent / "shared" / "data" / "genres_mod.parquet"


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


@pytest.fixture(scope="session")
def dataset_path() -> Path:
    """The shared dataset (never copied into the project)."""
    if not DATASET.exists():
        pytest.fail(f"the shared dataset is missing: {DATASET} (see ../shared/data/README.md)")
    return DATASET

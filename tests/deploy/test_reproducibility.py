"""Reproducibility as a checked property: two full runs of the same configuration, each with its
own store, give identical data artifacts (sha256), identical test predictions and the same test
AUC.

Model files are not compared byte for byte: MLflow writes a fresh model id and timestamp into
each MLmodel, so the same forest never has the same digest twice. Its predictions must match.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.pipeline_runs import DATA_ARTIFACTS, SMALL_FOREST, PipelineRun, mlflow_run, step_runs

# local_run (tests/conftest.py) is made once for the files of its group.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("local_run")]


@pytest.fixture(scope="module")
def second_run(tmp_path_factory: pytest.TempPathFactory) -> PipelineRun:
    """The same configuration as ``local_run``, in another folder with another store."""
    workdir = tmp_path_factory.mktemp("second_run")
    return mlflow_run(workdir, SMALL_FOREST).check()


def _store(run: PipelineRun):
    from util_lib.artifacts.mlflow_store import MlflowArtifactStore

    return MlflowArtifactStore(run.tracking_uri)


@pytest.mark.parametrize("name", DATA_ARTIFACTS)
def test_data_artifacts_have_identical_digests(
    local_run: PipelineRun, second_run: PipelineRun, name: str
) -> None:
    first = _store(local_run).resolve(f"{name}:latest")
    second = _store(second_run).resolve(f"{name}:latest")
    assert first.files and first.files == second.files
    assert first.digest == second.digest


def test_test_predictions_are_identical(
    local_run: PipelineRun, second_run: PipelineRun, tmp_path: Path
) -> None:
    from util_lib.model.pyfunc import load_pipeline

    test_file = _store(local_run).download(
        _store(local_run).resolve("data_test:latest"), tmp_path / "test"
    )
    X_test = pd.read_parquet(test_file).drop(columns=["genre"])
    probabilities, labels = [], []
    for i, run in enumerate((local_run, second_run)):
        store = _store(run)
        model_dir = store.download(store.resolve("model_export:latest"), tmp_path / f"model{i}")
        model = load_pipeline(str(model_dir))
        # One thread: with several, the forest sums its trees' votes in whatever order the
        # threads finish, and the last bit of a probability varies from call to call.
        model.set_params(classifier__n_jobs=1)
        probabilities.append(model.predict_proba(X_test))
        labels.append(model.predict(X_test))
    assert probabilities[0].shape == (len(X_test), 15)
    np.testing.assert_array_equal(probabilities[0], probabilities[1])
    np.testing.assert_array_equal(labels[0], labels[1])


def test_same_test_auc(local_run: PipelineRun, second_run: PipelineRun) -> None:
    first = step_runs(local_run.tracking_uri)
    second = step_runs(second_run.tracking_uri)
    assert first["evaluate"].data.metrics["test_auc"] == second["evaluate"].data.metrics["test_auc"]
    assert (
        first["train_random_forest"].data.metrics["val_auc"]
        == second["train_random_forest"].data.metrics["val_auc"]
    )

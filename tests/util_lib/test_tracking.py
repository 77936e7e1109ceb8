"""util_lib.tracking's experiment helper: where a new experiment keeps its artifacts."""

from __future__ import annotations

from pathlib import Path

import pytest

from util_lib.tracking import get_or_create_experiment


def test_new_experiment_keeps_its_artifacts_beside_the_sqlite_store(
    tracking: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    # The process runs elsewhere (the project folder, a remote run's clone).
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    experiment_id = get_or_create_experiment("music_genre_classification")
    experiment = MlflowClient().get_experiment(experiment_id)
    assert experiment.artifact_location == str(tracking / "mlruns" / "music_genre_classification")
    assert get_or_create_experiment("music_genre_classification") == experiment_id

"""util_lib.step.datasets: where a dataset's files are, and a pipeline run that shows its steps'
data
(Run.use_artifact / log_artifact's datasets are tested in test_tracking.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from util_lib.step.datasets import ArtifactStoreSource, dataset_source, log_pipeline_inputs


@pytest.mark.parametrize(
    ("location", "source_type"),
    [
        ("/srv/mlruns/1/abc/artifacts/util_lib_artifacts/p/raw/0123", "local"),
        ("file:///srv/mlruns/1/abc/artifacts/x", "local"),
        ("s3://bucket/mlruns/1/abc/artifacts/x", "s3"),
        # A tracking server's proxied artifacts and a W&B artifact's name: no MLflow type (a W&B
        # name is not a relative path on this disk).
        ("mlflow-artifacts:/1/abc/artifacts/x", "util_lib_artifact_store"),
        ("team/music_genre_classification/data_train:v3", "util_lib_artifact_store"),
    ],
)
def test_a_store_location_gets_mlflow_s_source_type_where_there_is_one(
    location: str, source_type: str
) -> None:
    source = dataset_source(location)
    assert source._get_source_type() == source_type
    assert json.loads(source.to_json())["uri"] == location


def test_the_artifact_store_source_reads_back_through_mlflow() -> None:
    from mlflow.data.dataset_source_registry import get_dataset_source_from_json

    source = ArtifactStoreSource("mlflow-artifacts:/1/abc/artifacts/x")
    again = get_dataset_source_from_json(source.to_json(), source._get_source_type())
    assert isinstance(again, ArtifactStoreSource)
    assert again.uri == source.uri


def test_the_pipeline_run_gets_its_steps_datasets_and_models(tracking: Path) -> None:
    import mlflow.sklearn
    from mlflow import MlflowClient
    from sklearn.dummy import DummyClassifier

    from util_lib.step.run import start_run

    (tracking / "train.csv").write_text("a\n1\n")
    model_dir = tracking / "model_export"
    mlflow.sklearn.save_model(
        DummyClassifier().fit([[0], [1]], [0, 1]),
        str(model_dir),
        serialization_format="pickle",
        # Named, not inferred: MLflow infers them in a process that loads the model (5-14 s).
        pip_requirements=["scikit-learn"],
    )
    with start_run("segregate", "test") as run:
        run.log_artifact(tracking / "train.csv", "data_train", "segregated_data", "rows")
        producer = run.run_id
    with start_run("train", "test") as run:
        run.use_artifact("data_train:v0", context="training")
        _, model_id = run.log_model(model_dir, "model_export", "a model")
        trainer = run.run_id
    client = MlflowClient()
    pipeline = client.create_run(client.get_run(trainer).info.experiment_id).info.run_id

    assert log_pipeline_inputs(client, pipeline, [producer, trainer]) == 2
    recorded = client.get_run(pipeline)
    (dataset,) = recorded.inputs.dataset_inputs
    # Written by segregate, read by train: the reader's context.
    assert dataset.dataset.name == "data_train:v0"
    assert {t.key: t.value for t in dataset.tags}["mlflow.data.context"] == "training"
    assert [m.model_id for m in recorded.outputs.model_outputs] == [model_id]

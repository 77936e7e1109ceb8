"""The Model Registry entry of an export: registration, scores, promotion (real SQLite store)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from util_lib.artifacts.interface import ArtifactNotFoundError
from util_lib.artifacts.mlflow_store import MlflowArtifactStore
from util_lib.artifacts.registry import (
    ARTIFACT_PROJECT_TAG,
    ARTIFACT_SOURCE_TAG,
    ARTIFACT_STORE_TAG,
    ARTIFACT_TAG,
    promote,
    record_evaluation,
    register_export,
)
from util_lib.step.run import start_run

REPO = Path(__file__).resolve().parents[2]
MODEL = "genre_model"


def _train(tmp: Path, text: str, name: str = MODEL) -> str:
    """What a training run does: log a model folder as model_export, register it."""
    folder = tmp / f"model_{text}"
    folder.mkdir()
    (folder / "MLmodel").write_text(f"flavors: {{}}\nnote: model {text}\n")
    with start_run("train_random_forest", "train") as run:
        spec, model_id = run.log_model(folder, "model_export", "a model")
        register_export(run, spec, model_id, name, tags={"val_auc": 0.9})
    return spec


def _alias(client: MlflowClient, alias: str) -> str:
    return str(client.get_model_version_by_alias(MODEL, alias).version)


def test_a_training_run_registers_its_export_linked_to_the_artifact(tracking: Path) -> None:
    assert _train(tracking, "a") == "model_export:v0"
    client = MlflowClient()
    version = client.get_model_version(MODEL, "1")
    artifact = MlflowArtifactStore().resolve("model_export:v0")
    assert version.tags[ARTIFACT_TAG] == "model_export:v0"
    assert version.tags[ARTIFACT_STORE_TAG] == "mlflow"
    assert version.tags[ARTIFACT_SOURCE_TAG] == artifact.source
    assert version.tags["val_auc"] == "0.9"
    # One copy: the registry version is made from the training run's logged model, whose
    # files are the artifact version's source.
    model_id = artifact.metadata["model_id"]
    assert version.run_id == artifact.producer_run_id
    assert version.source == f"models:/{model_id}"
    logged = client.get_logged_model(model_id)
    assert logged.source_run_id == artifact.producer_run_id and logged.status == "READY"
    assert artifact.source == f"models:/{model_id}"
    assert MlflowArtifactStore().files_uri(artifact) == logged.artifact_location
    copy = Path(logged.artifact_location.removeprefix("file://"))
    assert "note: model a" in (copy / "MLmodel").read_text()
    assert f"model_id: {model_id}" in (copy / "MLmodel").read_text()
    # Nothing else was uploaded: the training run's own artifacts hold no model files.
    assert client.list_artifacts(version.run_id) == []
    assert client.get_run(version.run_id).data.tags["util_lib.registered_model"] == f"{MODEL}/1"
    # The registered model is not one of the store's artifacts.
    assert MODEL not in MlflowArtifactStore().names()


def test_registering_the_same_artifact_version_twice_makes_one_version(tracking: Path) -> None:
    folder = tracking / "m"
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors: {}\n")
    with start_run("train_random_forest", "train") as run:
        spec, model_id = run.log_model(folder, "model_export", "a model")
        first = register_export(run, spec, model_id, MODEL)
        again = register_export(run, spec, model_id, MODEL)
    assert str(first.version) == str(again.version) == "1"


def test_a_name_taken_by_an_artifact_fails_the_run_and_leaves_nothing(tracking: Path) -> None:
    # The artifact `model_export` of the project is the registered model `<project>.model_export`.
    taken = f"{MlflowArtifactStore().project}.model_export"
    with pytest.raises(ValueError, match=f"'{taken}' is taken by an artifact"):
        _train(tracking, "a", name=taken)
    with pytest.raises(ArtifactNotFoundError):
        MlflowArtifactStore().resolve("model_export:v0")


def test_evaluation_scores_land_on_the_registry_version(tracking: Path) -> None:
    spec = _train(tracking, "a")
    with start_run("evaluate", "test_model") as run:
        tagged = record_evaluation(run, spec, {"test_auc": 0.95, "test_data": "data_test:v0"})
        assert record_evaluation(run, "model_export:v9", {"test_auc": 0.5}) == []
    assert [(mv.name, str(mv.version)) for mv in tagged] == [(MODEL, "1")]
    tags = MlflowClient().get_model_version(MODEL, "1").tags
    assert tags["test_auc"] == "0.95" and tags["test_data"] == "data_test:v0"
    assert tags["util_lib.evaluate_run"] == run.run_id


def test_promote_moves_the_alias_on_artifact_and_registry_together(tracking: Path) -> None:
    _train(tracking, "a")
    _train(tracking, "b")
    client, store = MlflowClient(), MlflowArtifactStore()

    promotion = promote("model_export:v0", "prod")
    assert promotion.lines() == [
        "prod -> model_export:v0",
        f"prod -> models:/{MODEL}/1 (serve models:/{MODEL}@prod)",
    ]
    assert store.resolve("model_export:prod").spec == "model_export:v0"
    assert _alias(client, "prod") == "1"

    promote("model_export:latest", "prod")
    assert store.resolve("model_export:prod").spec == "model_export:v1"
    assert _alias(client, "prod") == "2"


def test_a_bad_promotion_changes_nothing(tracking: Path) -> None:
    _train(tracking, "a")
    promote("model_export:v0", "prod")
    with pytest.raises(ArtifactNotFoundError, match="v7"):
        promote("model_export:v7", "prod")
    with pytest.raises(ValueError, match="reserved"):
        promote("model_export:v0", "latest")
    assert {k: str(v) for k, v in MlflowClient().get_registered_model(MODEL).aliases.items()} == {
        "prod": "1"
    }
    assert MlflowArtifactStore().resolve("model_export:prod").spec == "model_export:v0"


def test_the_artifacts_command_line_promotes_both(tracking: Path) -> None:
    _train(tracking, "a")
    _train(tracking, "b")
    result = subprocess.run(
        [sys.executable, "-m", "util_lib.artifacts", "alias", "model_export:v1", "prod"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "prod -> model_export:v1",
        f"prod -> models:/{MODEL}/2 (serve models:/{MODEL}@prod)",
    ]
    assert _alias(MlflowClient(), "prod") == "2"


def _train_in(project: str, tmp: Path, text: str) -> str:
    """A training run of W&B project ``project`` (the pipeline sets WANDB_PROJECT)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_PROJECT", project)
        return _train(tmp, text)


def test_each_project_promotes_and_scores_only_its_own_versions(
    tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both projects register their model_export:v0 into the same registered model.
    assert _train_in("dev", tracking, "a") == "model_export:v0"  # registry version 1
    assert _train_in("prod", tracking, "b") == "model_export:v0"  # registry version 2
    client = MlflowClient()
    assert client.get_model_version(MODEL, "2").tags[ARTIFACT_PROJECT_TAG] == "prod"

    monkeypatch.setenv("WANDB_PROJECT", "dev")
    assert promote("model_export:v0", "prod").registry_versions == [(MODEL, "1")]
    assert _alias(client, "prod") == "1"
    # From dev, the other project's version is named with its project.
    promotion = promote("prod/model_export:v0", "prod")
    assert promotion.lines()[0] == "prod -> prod/model_export:v0"
    assert promotion.registry_versions == [(MODEL, "2")]
    assert MlflowArtifactStore(project="prod").resolve("model_export:prod").digest != (
        MlflowArtifactStore(project="dev").resolve("model_export:prod").digest
    )
    assert promote("model_export:v0", "staging", project="prod").registry_versions == [(MODEL, "2")]
    with pytest.raises(ArtifactNotFoundError, match="staging"):
        MlflowArtifactStore(project="dev").resolve("model_export:staging")

    with start_run("evaluate", "test_model") as run:
        tagged = record_evaluation(run, "model_export:v0", {"test_auc": 0.9})
    assert [str(mv.version) for mv in tagged] == ["1"]
    assert "test_auc" not in client.get_model_version(MODEL, "2").tags

"""train_random_forest/run.py then evaluate/run.py on a real tracking store (SQLite, W&B off)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import yaml
from sklearn.model_selection import train_test_split

from evaluate import run as evaluate_run
from train_random_forest import run as train_run
from util_lib.artifacts.interface import ArtifactNotFoundError
from util_lib.artifacts.mlflow_store import MlflowArtifactStore
from util_lib.step.data_schema import DataContractError
from util_lib.step.run import start_run

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def inputs(
    tracking: Path, songs_sample: Callable[[int], pd.DataFrame], model_config: dict[str, Any]
) -> dict[str, str]:
    """data_train and data_test artifacts (1500 real songs) and a small model config file."""
    songs = songs_sample(1500)
    train, test = train_test_split(songs, test_size=0.3, random_state=42, stratify=songs["genre"])
    specs = {}
    with start_run(step="segregate", job_type="split_data") as run:
        for name, part in (("data_train", train), ("data_test", test)):
            path = tracking / f"{name}.parquet"
            part.to_parquet(path, index=False)
            specs[name] = run.log_artifact(path, name, "segregated_data", f"{name} for a test")
    # As main.py writes them: the section, and the model group's choice (the features are the
    # data contract's, --dataset).
    section = {k: v for k, v in model_config.items() if k not in ("model", "features")}
    config_file = tracking / "random_forest_pipeline.yaml"
    config_file.write_text(yaml.safe_dump(section))
    model_file = tracking / "model.yaml"
    model_file.write_text(yaml.safe_dump(model_config["model"]))
    return {**specs, "model_config": str(config_file), "model": str(model_file)}


DATASET = ["--dataset", "conf/dataset/genres.yaml"]


def _train_args(inputs: dict[str, str], export_artifact: str) -> list[str]:
    return [
        "--train_data", inputs["data_train"],
        "--model_config", inputs["model_config"],
        "--model", inputs["model"],
        "--export_artifact", export_artifact,
        "--random_seed", "42",
        "--val_size", "0.3",
        "--stratify", "genre",
        "--dataset", "conf/dataset/genres.yaml",
    ]  # fmt: skip


def _run_of(step: str) -> mlflow.entities.Run:
    runs = mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"tags.`util_lib.step` = '{step}'",
        output_format="list",
    )
    assert len(runs) == 1
    return runs[0]


def test_train_exports_and_evaluate_scores(tracking: Path, inputs: dict[str, str]) -> None:
    train_run.main(_train_args(inputs, "model_export"))

    model = MlflowArtifactStore().resolve("model_export:latest")
    assert model.spec == "model_export:v0"
    assert model.type == "model_export"
    assert model.metadata["train_data"] == inputs["data_train"]
    assert model.metadata["model_config"]["model"]["n_estimators"] == 10
    assert "MLmodel" in model.files and "model.skops" in model.files
    train = _run_of("train_random_forest")
    assert train.info.status == "FINISHED"
    assert train.data.metrics["val_auc"] == pytest.approx(model.metadata["val_auc"])
    assert train.data.metrics["val_auc"] > 0.8
    assert train.data.params["model.n_estimators"] == "10"
    figures = {a.path for a in mlflow.MlflowClient().list_artifacts(train.info.run_id, "figures")}
    assert figures == {"figures/feature_importance.png", "figures/confusion_matrix_val.png"}

    evaluate_run.main(["--model_export", model.spec, "--test_data", inputs["data_test"], *DATASET])

    evaluate = _run_of("evaluate")
    assert evaluate.info.status == "FINISHED"
    assert evaluate.data.metrics["test_auc"] > 0.8
    assert 0 < evaluate.data.metrics["test_accuracy"] <= 1
    figures = {
        a.path for a in mlflow.MlflowClient().list_artifacts(evaluate.info.run_id, "figures")
    }
    assert figures == {"figures/confusion_matrix_test.png"}


def test_a_model_without_n_jobs_or_importances_trains_and_evaluates(
    tracking: Path, inputs: dict[str, str]
) -> None:
    """HistGradientBoostingClassifier (model=hist_gradient_boosting) has neither n_jobs (which
    evaluate used to set unconditionally) nor feature_importances_ (no plot, a log line)."""
    hgb = yaml.safe_load((REPO / "conf" / "model" / "hist_gradient_boosting.yaml").read_text())
    hgb.update(max_iter=5, random_state=42)
    Path(inputs["model"]).write_text(yaml.safe_dump(hgb))
    train_run.main(_train_args(inputs, "model_export"))

    train = _run_of("train_random_forest")
    assert train.data.params["model._target_"] == hgb["_target_"]
    figures = {a.path for a in mlflow.MlflowClient().list_artifacts(train.info.run_id, "figures")}
    assert figures == {"figures/confusion_matrix_val.png"}
    log = Path(os.environ["ML_PIPELINE_LOG"]).read_text()
    assert "HistGradientBoostingClassifier has no feature_importances_" in log
    evaluate_run.main(
        ["--model_export", "model_export:v0", "--test_data", inputs["data_test"], *DATASET]
    )
    assert _run_of("evaluate").data.metrics["test_auc"] > 0.8


def test_null_export_artifact_exports_nothing(tracking: Path, inputs: dict[str, str]) -> None:
    train_run.main(_train_args(inputs, "null"))
    assert _run_of("train_random_forest").info.status == "FINISHED"
    with pytest.raises(ArtifactNotFoundError):
        MlflowArtifactStore().resolve("model_export:latest")


def test_missing_train_data_fails_the_run(tracking: Path, inputs: dict[str, str]) -> None:
    args = _train_args({**inputs, "data_train": "data_train:v7"}, "model_export")
    with pytest.raises(ArtifactNotFoundError, match="data_train"):
        train_run.main(args)
    assert _run_of("train_random_forest").info.status == "FAILED"


def test_missing_model_config_is_named(tracking: Path, inputs: dict[str, str]) -> None:
    args = _train_args({**inputs, "model_config": str(tracking / "nowhere.yaml")}, "model_export")
    with pytest.raises(FileNotFoundError, match="nowhere.yaml"):
        train_run.main(args)
    assert _run_of("train_random_forest").info.status == "FAILED"


def test_a_feature_without_values_fails_the_run_naming_it(
    tracking: Path, inputs: dict[str, str]
) -> None:
    store = MlflowArtifactStore()
    train = pd.read_parquet(store.download(store.resolve(inputs["data_train"]), tracking / "dl"))
    path = tracking / "no_loudness.parquet"
    train.assign(loudness=float("nan")).to_parquet(path, index=False)
    with start_run(step="segregate", job_type="split_data") as run:
        spec = run.log_artifact(path, "data_train", "segregated_data", "loudness all missing")

    with pytest.raises(DataContractError, match="'loudness' fails not_all_missing"):
        train_run.main(_train_args({**inputs, "data_train": spec}, "model_export"))
    assert _run_of("train_random_forest").info.status == "FAILED"
    log = (tracking / "ml_pipeline.log").read_text()
    assert "train_random_forest failed: DataContractError: the training data break" in log
    assert "fitting on" not in log  # stopped before fitting
    with pytest.raises(ArtifactNotFoundError):
        store.resolve("model_export:latest")

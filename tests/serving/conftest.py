"""Fixtures of the serving tests: a small model registered in a store of the module's own,
served by ``python -m serving serve`` on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.pipeline_runs import copy_store

REPO = Path(__file__).resolve().parents[2]
SMALL_MODEL = "genre_model_small"


@pytest.fixture(scope="module")
def small_model(
    tmp_path_factory: pytest.TempPathFactory, migrated_store: Path, dataset_path: Path
) -> Iterator[dict[str, str]]:
    """A 10-tree forest fitted on 400 songs, exported as the pipeline does, logged as
    ``model_export:v0`` and registered as version 1 of :data:`SMALL_MODEL` in a fresh store.

    Yields the serving process's environment (the store, W&B off) with ``MODEL_URI`` and
    ``WORKDIR`` added.
    """
    from preprocess.cleaning import preprocess
    from train_random_forest.export import export_model
    from train_random_forest.model_config import read_model_config
    from train_random_forest.pipeline import build_pipeline
    from util_lib.artifacts.registry import register_export
    from util_lib.step.run import start_run

    workdir = tmp_path_factory.mktemp("small-model")
    uri = copy_store(workdir)
    env = {
        "MLFLOW_TRACKING_URI": uri,
        "WANDB_MODE": "disabled",
        "WANDB_DIR": str(workdir),
        "ML_PIPELINE_LOG": str(workdir / "ml_pipeline.log"),
    }
    songs = preprocess(pd.read_parquet(dataset_path)).sample(400, random_state=0)
    section = read_model_config("config.yaml")
    section["model"].update(n_estimators=10, n_jobs=1)
    pipe, columns = build_pipeline(section)
    X = songs.drop(columns="genre")
    pipe.fit(X[columns], songs["genre"])
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
            patch.delenv(name, raising=False)
        patch.chdir(workdir)
        import mlflow

        mlflow.set_tracking_uri(uri)
        try:
            folder = export_model(pipe, X, workdir / "model_export")
            with start_run("train_random_forest", "train") as run:
                spec, model_id = run.log_model(folder, "model_export", "a small model")
                register_export(run, spec, model_id, SMALL_MODEL)
        finally:
            mlflow.set_tracking_uri(None)
    yield {**env, "MODEL_URI": f"models:/{SMALL_MODEL}/1", "WORKDIR": str(workdir)}

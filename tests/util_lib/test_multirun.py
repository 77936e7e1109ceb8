"""util_lib.pipeline.multirun: the multirun run, opened on a real (fresh) SQLite store, and job
contexts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from mlflow import MlflowClient

from util_lib.names import (
    LAUNCHER_RUN_TAG,
    MULTIRUN_ENV,
    MULTIRUN_RUN_TAG,
    MULTIRUN_TAG,
    OVERRIDES_TAG,
    SWEEP_DIR_TAG,
)
from util_lib.names import RUN_KIND_TAG as KIND_TAG
from util_lib.pipeline.multirun import (
    JobContext,
    absolute_tracking_uri,
    close_multirun,
    enter_job,
    forwarded_environment,
    job_tags,
    open_multirun,
)

PROJECT = "music_genre_classification"


@pytest.fixture(autouse=True)
def _restore_multirun_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # open_multirun sets it for the jobs; registering it here makes monkeypatch remove it after.
    monkeypatch.setenv(MULTIRUN_ENV, "")
    monkeypatch.delenv(MULTIRUN_ENV)


def test_relative_store_uris_become_absolute(tmp_path: Path) -> None:
    assert absolute_tracking_uri("sqlite:///mlflow.db", tmp_path) == (
        f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    )
    assert absolute_tracking_uri("sqlite:////abs/m.db", tmp_path) == "sqlite:////abs/m.db"
    assert absolute_tracking_uri("mlruns", tmp_path) == (tmp_path.resolve() / "mlruns").as_uri()
    assert absolute_tracking_uri("http://127.0.0.1:5000", tmp_path) == "http://127.0.0.1:5000"


def test_forwarded_environment_keeps_settings_not_secrets_or_the_launcher_run() -> None:
    env = {
        "MLFLOW_TRACKING_URI": "sqlite:////x.db",
        "MLFLOW_RUN_ID": "abc",
        "MLFLOW_EXPERIMENT_ID": "0",
        "WANDB_MODE": "offline",
        "WANDB_API_KEY": "secret",
        "MLFLOW_TRACKING_TOKEN": "secret",
        "UTIL_LIB_ARTIFACT_STORE": "mlflow",
        "ML_PIPELINE_LOG": "/x.log",
        "HOME": "/root",
    }
    assert forwarded_environment(env) == {
        "MLFLOW_TRACKING_URI": "sqlite:////x.db",
        "WANDB_MODE": "offline",
        "UTIL_LIB_ARTIFACT_STORE": "mlflow",
        "ML_PIPELINE_LOG": "/x.log",
    }


def test_open_multirun_creates_the_store_before_any_job(
    tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tracking / "new" / "mlflow.db"  # not the fixture's store: one nobody made yet
    db.parent.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    assert not db.exists()
    context = open_multirun(PROJECT, str(tracking / "multirun"), ["a=1,2"], {"launcher": "joblib"})

    assert db.exists()  # created and migrated once, by the driver
    client = MlflowClient(context.tracking_uri)
    run = client.get_run(context.run_id)
    assert run.info.status == "RUNNING"
    assert run.info.run_name == "multirun"
    assert run.info.experiment_id == client.get_experiment_by_name(PROJECT).experiment_id
    assert run.data.tags[KIND_TAG] == "multirun"
    assert run.data.tags[SWEEP_DIR_TAG] == str((tracking / "multirun").resolve())
    assert run.data.params == {
        "sweep_overrides": "a=1,2",
        "launcher": "joblib",
    }
    assert os.environ[MULTIRUN_ENV] == context.run_id
    assert context.environment["MLFLOW_TRACKING_URI"] == f"sqlite:///{db}"

    close_multirun(context, "FINISHED")
    assert client.get_run(context.run_id).info.status == "FINISHED"


def test_the_launcher_run_of_mlflow_run_is_never_resumed_by_a_job(
    tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = MlflowClient()
    # `mlflow run .` (experiment Default): a new multirun run, linked both ways by tags.
    launcher = client.create_run(client.get_experiment_by_name("Default").experiment_id)
    monkeypatch.setenv("MLFLOW_RUN_ID", launcher.info.run_id)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "0")

    context = open_multirun(PROJECT, str(tracking / "m"), [], {})

    assert context.run_id != launcher.info.run_id
    assert client.get_run(context.run_id).data.tags[LAUNCHER_RUN_TAG] == launcher.info.run_id
    assert client.get_run(launcher.info.run_id).data.tags[MULTIRUN_RUN_TAG] == context.run_id
    assert "MLFLOW_RUN_ID" not in os.environ and "MLFLOW_EXPERIMENT_ID" not in os.environ

    # `mlflow run . --experiment-name <project>`: the launcher's run is the multirun run.
    launcher = client.create_run(client.get_experiment_by_name(PROJECT).experiment_id)
    monkeypatch.setenv("MLFLOW_RUN_ID", launcher.info.run_id)

    context = open_multirun(PROJECT, str(tracking / "m2"), [], {})

    assert context.run_id == launcher.info.run_id
    assert client.get_run(context.run_id).data.tags[KIND_TAG] == "multirun"
    assert "MLFLOW_RUN_ID" not in os.environ


def test_enter_job_gives_a_job_the_drivers_store_env_and_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver, worker = tmp_path / "driver", tmp_path / "worker"
    driver.mkdir()
    worker.mkdir()
    context = JobContext(
        run_id="r1",
        experiment_id="1",
        tracking_uri=f"sqlite:///{driver / 'mlflow.db'}",
        cwd=str(driver),
        sweep_dir=str(driver / "multirun"),
        environment={"WANDB_MODE": "offline", "ML_PIPELINE_LOG": str(driver / "log")},
    )
    monkeypatch.chdir(worker)
    for name, value in [("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db"), ("WANDB_MODE", "x")]:
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLFLOW_RUN_ID", "someone-elses")
    monkeypatch.setenv("ML_PIPELINE_LOG", "x")

    enter_job(context)

    assert Path.cwd() == driver
    assert os.environ["MLFLOW_TRACKING_URI"] == context.tracking_uri
    assert os.environ[MULTIRUN_ENV] == "r1"
    assert os.environ["WANDB_MODE"] == "offline"
    assert os.environ["ML_PIPELINE_LOG"] == str(driver / "log")
    assert "MLFLOW_RUN_ID" not in os.environ


def test_job_tags_name_the_multirun_job_and_overrides() -> None:
    tags = job_tags("r1", 3, ["a=1", "b='x y'"])
    assert tags[MULTIRUN_TAG] == "r1"
    assert json.loads(tags[OVERRIDES_TAG]) == ["a=1", "b='x y'"]

"""util_lib.step.run: the experiment a run lands in, and figures."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from util_lib.step.trackers import get_or_create_experiment


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


def test_run_in_a_named_experiment_creates_it_beside_the_store(
    tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    from util_lib.step.run import open_run

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "named_by_env")
    run = open_run("step", "test")
    run.close()
    experiment = MlflowClient().get_experiment(
        MlflowClient().get_run(run.run_id).info.experiment_id
    )
    assert experiment.name == "named_by_env"
    assert experiment.artifact_location == str(tracking / "mlruns" / "named_by_env")


def test_two_processes_starting_together_share_a_new_named_experiment(
    run_together: Callable[..., list[str]],
) -> None:
    from mlflow import MlflowClient

    from util_lib.artifacts.mlflow_store import MlflowArtifactStore

    # Both wait for the same moment to open a run in an experiment that does not exist yet:
    # both find it missing and both create it, and one of them must cope.
    script = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        from mlflow import MlflowClient
        from util_lib.step.run import open_run
        MlflowClient().search_experiments()  # the store is open: only the lookup is left
        go, ready = Path(sys.argv[1]), Path(sys.argv[2])
        ready.touch()
        while not go.exists():
            time.sleep(0.001)
        run = open_run("together", "test")
        run.close()
        print(run.run_id)
        """
    )
    MlflowArtifactStore().names()  # the database exists; the experiment does not
    run_ids = set(run_together(script, [[], []], {"MLFLOW_EXPERIMENT_NAME": "started_together"}))
    client = MlflowClient()
    experiments = [e for e in client.search_experiments() if e.name == "started_together"]
    assert len(experiments) == 1
    assert {client.get_run(r).info.experiment_id for r in run_ids} == {experiments[0].experiment_id}
    assert len(run_ids) == 2


def test_log_figure_renders_one_png_for_mlflow_and_offline_wandb(
    tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib.pyplot as plt
    from mlflow import MlflowClient

    from util_lib.step.run import open_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    run = open_run("plotting", "test")
    figure, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    run.log_figure(figure, "line")
    run.close()

    assert not plt.fignum_exists(figure.number)  # closed once logged
    client = MlflowClient()
    logged = client.download_artifacts(run.run_id, "figures/line.png", str(tracking))
    assert Path(logged).read_bytes()[:4] == b"\x89PNG"
    wandb_dir = Path(client.get_run(run.run_id).data.tags["wandb.dir"])
    images = list((wandb_dir / "files" / "media" / "images").glob("line_*.png"))
    assert len(images) == 1
    assert images[0].read_bytes() == Path(logged).read_bytes()


def test_the_offline_wandb_run_keeps_the_step_s_console_output(
    tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging
    import uuid

    from mlflow import MlflowClient

    from util_lib.step.run import open_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    printed, logged = f"printed {uuid.uuid4().hex}", f"logged {uuid.uuid4().hex}"
    run = open_run("talking", "test")
    print(printed)
    logging.getLogger("talking").info(logged)  # util_lib's handler writes it to stderr
    run.close()

    wandb_dir = Path(MlflowClient().get_run(run.run_id).data.tags["wandb.dir"])
    output = (wandb_dir / "files" / "output.log").read_text()
    assert printed in output
    assert f"[talking] talking: {logged}" in output


def _inputs(run_id: str) -> dict[str, tuple[object, dict[str, str]]]:
    """The MLflow run's dataset inputs: {name: (dataset, input tags)}."""
    from mlflow import MlflowClient

    inputs = MlflowClient().get_run(run_id).inputs.dataset_inputs
    return {i.dataset.name: (i.dataset, {t.key: t.value for t in i.tags}) for i in inputs}


def test_used_and_written_data_are_the_runs_mlflow_datasets(tracking: Path) -> None:
    import json

    from util_lib.artifacts.mlflow_store import MlflowArtifactStore
    from util_lib.step.run import start_run

    (tracking / "raw.csv").write_text("a\n1\n")
    (tracking / "train.csv").write_text("a\n2\n")
    with start_run("producer", "test") as run:
        raw = run.log_artifact(tracking / "raw.csv", "raw", "raw_data", "raw rows")
        producer = run.run_id
    with start_run("consumer", "test") as run:
        run.use_artifact("raw:latest")  # its type says the context: raw
        run.use_artifact(raw, context="again")  # already an input: MLflow keeps the first
        written = run.log_artifact(tracking / "train.csv", "train", "split", "rows", context="kept")
        consumer = run.run_id
    store = MlflowArtifactStore()
    raw_version, train_version = store.resolve(raw), store.resolve(written)

    dataset, tags = _inputs(producer)["raw:v0"]
    assert dataset.digest == raw_version.digest[:12]
    assert tags["util_lib.digest"] == raw_version.digest
    assert tags["mlflow.data.context"] == "output"
    assert dataset.source_type == "local"  # a SQLite store keeps the files on this disk
    assert json.loads(dataset.source) == {"uri": raw_version.source}
    assert Path(raw_version.source, "raw.csv").read_text() == "a\n1\n"

    inputs = _inputs(consumer)
    assert set(inputs) == {"raw:v0", "train:v0"}  # the same version used twice: one input
    assert inputs["raw:v0"][1]["mlflow.data.context"] == "raw"
    assert inputs["raw:v0"][1]["util_lib.type"] == "raw_data"
    dataset, tags = inputs["train:v0"]
    assert (dataset.digest, tags["mlflow.data.context"]) == (train_version.digest[:12], "kept")
    assert json.loads(dataset.source) == {"uri": train_version.source}


def test_a_step_names_the_context_and_another_project_s_version_keeps_its_project(
    tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from util_lib.step.run import start_run

    (tracking / "train.csv").write_text("a\n2\n")
    monkeypatch.setenv("WANDB_PROJECT", "other")
    with start_run("producer", "test") as run:
        run.log_artifact(tracking / "train.csv", "data_train", "segregated_data", "rows")
    monkeypatch.setenv("WANDB_PROJECT", "mine")
    with start_run("train", "test") as run:
        used = run.use_artifact("other/data_train:latest", context="training")
    inputs = _inputs(run.run_id)
    assert used.spec == "other/data_train:v0"
    assert list(inputs) == ["other/data_train:v0"]
    assert inputs["other/data_train:v0"][1]["mlflow.data.context"] == "training"


def test_an_exported_model_is_the_run_s_logged_model_not_a_dataset(tracking: Path) -> None:
    import mlflow.sklearn
    from mlflow import MlflowClient
    from sklearn.dummy import DummyClassifier

    from util_lib.step.run import start_run

    model_dir = tracking / "model_export"
    mlflow.sklearn.save_model(
        DummyClassifier().fit([[0], [1]], [0, 1]),
        str(model_dir),
        serialization_format="pickle",
        # Named, not inferred: MLflow infers them in a process that loads the model (5-14 s).
        pip_requirements=["scikit-learn"],
    )
    with start_run("train", "test") as run:
        spec, model_id = run.log_model(model_dir, "model_export", "a model")
        trainer = run.run_id
    with start_run("evaluate", "test") as run:
        run.use_artifact(spec)
    assert _inputs(trainer) == {}
    assert _inputs(run.run_id) == {}
    model_inputs = MlflowClient().get_run(run.run_id).inputs.model_inputs
    assert [m.model_id for m in model_inputs] == [model_id]


def test_a_failed_run_records_its_cause_on_one_line_without_secrets(tracking: Path) -> None:
    from mlflow import MlflowClient

    from util_lib.names import FAILURE_TAG
    from util_lib.step.run import start_run

    with pytest.raises(KeyError), start_run("segregate", "test") as run:
        raise KeyError("column 'genre'\nnot in https://alice:hunter2@example.com/data.parquet")
    cause = MlflowClient().get_run(run.run_id).data.tags[FAILURE_TAG]
    assert cause.startswith("KeyError: ")
    assert "column 'genre'" in cause and "\n" not in cause
    assert "hunter2" not in cause


def test_a_failed_export_leaves_no_logged_model_files(tracking: Path) -> None:
    import mlflow.sklearn
    from mlflow import MlflowClient
    from sklearn.dummy import DummyClassifier

    from util_lib.step.run import start_run

    model_dir = tracking / "model_export"
    mlflow.sklearn.save_model(
        DummyClassifier().fit([[0], [1]], [0, 1]),
        str(model_dir),
        serialization_format="pickle",
        # Named, not inferred: MLflow infers them in a process that loads the model (5-14 s).
        pip_requirements=["scikit-learn"],
    )
    with pytest.raises(RuntimeError), start_run("train", "test") as run:
        _, model_id = run.log_model(model_dir, "model_export", "a model")
        location = MlflowClient().get_logged_model(model_id).artifact_location
        files = Path(location.removeprefix("file://"))
        assert (files / "MLmodel").is_file()  # the export is there while the run works
        raise RuntimeError("evaluation of the export failed")
    assert not files.exists()
    assert not files.parent.exists()  # the model's folder, models/<id>, too

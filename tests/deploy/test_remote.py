"""Remote runs: the whole pipeline from a release tag served over git, into an empty folder;
and the steps of a local pipeline taken from a git repository (main.components_repository).

The release is the project's committed HEAD, tagged in a bare clone served by `git daemon` on
127.0.0.1 (see conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipeline_runs import (
    DATA_ARTIFACTS,
    PROJECT,
    SMALL_FOREST,
    STEPS,
    PipelineRun,
    mlflow_run,
    pipeline_env,
    step_runs,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def release_run(
    tmp_path_factory: pytest.TempPathFactory, git_server, dataset_path: Path
) -> PipelineRun:
    """`mlflow run git://.../music_genre_classification.git -v <tag>` in an empty folder.

    No MLFLOW_TRACKING_URI: the store is MLflow's default, ``mlflow.db`` in that folder.
    """
    workdir = tmp_path_factory.mktemp("release_run")
    assert not any(workdir.iterdir())
    return mlflow_run(
        workdir,
        f"data.file_url={dataset_path}",
        SMALL_FOREST,
        uri=git_server.url,
        version=git_server.tag,
        env=pipeline_env(workdir),
    ).check()


@pytest.fixture(scope="module")
def components_run(
    tmp_path_factory: pytest.TempPathFactory, git_server, dataset_path: Path
) -> PipelineRun:
    """The local pipeline with every step taken from the release on the git server."""
    workdir = tmp_path_factory.mktemp("components_run")
    return mlflow_run(
        workdir,
        f"data.file_url={dataset_path}",
        SMALL_FOREST,
        f"main.components_repository={git_server.url}",
        f"main.components_version={git_server.tag}",
    ).check()


def test_release_runs_from_a_fresh_clone_into_an_empty_folder(release_run: PipelineRun) -> None:
    from mlflow import MlflowClient

    from util_lib.artifacts.mlflow_store import MlflowArtifactStore

    workdir = release_run.workdir
    tracking_uri = f"sqlite:///{workdir / 'mlflow.db'}"
    assert (workdir / "mlflow.db").is_file()
    runs = step_runs(tracking_uri)
    assert list(runs) == list(STEPS)
    assert {r.info.status for r in runs.values()} == {"FINISHED"}
    store = MlflowArtifactStore(tracking_uri)
    for name in (*DATA_ARTIFACTS, "model_export"):
        assert [v.spec for v in store.versions(name)] == [f"{name}:v0"]
    # The artifacts are in that folder too, not in MLflow's temporary clone.
    experiment = MlflowClient(tracking_uri).get_experiment_by_name(PROJECT)
    assert Path(experiment.artifact_location).is_relative_to(workdir / "mlruns")
    assert any((workdir / "mlruns").rglob("util_lib_artifacts/*/data_train"))
    assert any((workdir / "mlruns").rglob("models/*/artifacts/MLmodel"))  # the logged model


def test_every_step_run_records_the_tags_commit(release_run: PipelineRun, git_server) -> None:
    runs = step_runs(f"sqlite:///{release_run.workdir / 'mlflow.db'}")
    for step, run in runs.items():
        tags = run.data.tags
        assert tags.get("mlflow.source.git.commit") == git_server.commit, step
        # The step ran from the clone of the release, whose origin is the git server.
        assert tags.get("mlflow.source.git.repoURL") == git_server.url, step


def test_steps_come_from_the_components_repository(components_run: PipelineRun, git_server) -> None:
    runs = step_runs(components_run.tracking_uri)
    assert list(runs) == list(STEPS)
    assert {r.info.status for r in runs.values()} == {"FINISHED"}
    for step, run in runs.items():
        tags = run.data.tags
        assert tags["mlflow.source.name"] == f"{git_server.url}#{step}"
        assert tags.get("mlflow.source.git.commit") == git_server.commit, step
    assert runs["evaluate"].data.metrics["test_auc"] > 0.9

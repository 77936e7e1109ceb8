"""The Kubernetes backend's files, read by MLflow's own parsers, and the job's entry point run
the way the backend starts it in a container (no cluster here: the container's command runs as
a local process against a local store and the release on the test's git server).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pipeline_runs import PROJECT, REPO, pipeline_env, step_runs

KUBERNETES = REPO / "deploy" / "kubernetes"


@pytest.fixture
def backend_config(monkeypatch: pytest.MonkeyPatch) -> dict:
    """kubernetes_config.json parsed by MLflow, from the repository's root as the README says."""
    from mlflow.projects import _parse_kubernetes_config

    monkeypatch.chdir(REPO)
    return _parse_kubernetes_config(json.loads((KUBERNETES / "kubernetes_config.json").read_text()))


def test_backend_config_names_context_registry_and_template(backend_config: dict) -> None:
    assert backend_config["kube-context"]
    assert backend_config["repository-uri"]
    assert backend_config["kube-job-template-path"] == (
        "deploy/kubernetes/kubernetes_job_template.yaml"
    )


def test_job_template_has_what_mlflow_fills_in(backend_config: dict) -> None:
    # mlflow.projects.kubernetes writes metadata.name and the first container's name, image,
    # command and env, and submits the job to metadata.namespace.
    job = backend_config["kube-job-template"]
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert job["metadata"]["namespace"]
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    container = pod["containers"][0]
    assert {"name", "image", "command"} <= set(container)
    assert all("name" in e for e in container["env"])
    assert job["spec"]["backoffLimit"] == 0


def test_project_is_a_docker_project_with_the_release_parameters() -> None:
    from mlflow.projects import _project_spec
    from mlflow.projects.docker import validate_docker_env

    project = _project_spec.load_project(str(KUBERNETES))
    validate_docker_env(project)  # what `--backend kubernetes` checks first
    assert project.docker_env["image"] == "music-genre-classification-base"
    parameters = project.get_entry_point("main").parameters
    assert set(parameters) == {"repository", "version", "hydra_options"}


def test_base_image_installs_the_pinned_requirements() -> None:
    dockerfile = (KUBERNETES / "Dockerfile").read_text()
    assert "FROM python:3.11" in dockerfile
    assert "pip install --no-cache-dir -r /tmp/requirements.txt" in dockerfile


def _container_command(parameters: dict[str, str]) -> list[str]:
    """The container's command as MLflow's Kubernetes backend builds it.

    Its ``_get_run_command`` (mlflow.projects.kubernetes, which needs the kubernetes client to
    import) shell-quotes each word of the entry point's command; the same two lines here.
    """
    from mlflow.projects import _project_spec
    from mlflow.projects.utils import get_entry_point_command

    project = _project_spec.load_project(str(KUBERNETES))
    command = get_entry_point_command(project, "main", parameters, storage_dir=None)
    return [shlex.quote(word) for part in command for word in shlex.split(part)]


@pytest.mark.e2e
def test_job_entry_point_runs_the_release_under_the_jobs_run(
    tmp_path: Path, git_server, dataset_path: Path
) -> None:
    from mlflow import MlflowClient

    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment(PROJECT, artifact_location=str(tmp_path / "mlruns"))
    # The run the backend creates for the job, tagged as the backend tags it.
    job_run = client.create_run(experiment_id, tags={"mlflow.project.env": "docker"})
    hydra_options = f"main.execute_steps='get_data,preprocess' data.file_url={dataset_path}"
    command = _container_command(
        {"repository": git_server.url, "version": git_server.tag, "hydra_options": hydra_options}
    )
    assert command[:2] == ["python", "run_release.py"]
    env = pipeline_env(
        tmp_path,
        tracking_uri,
        MLFLOW_RUN_ID=job_run.info.run_id,
        MLFLOW_EXPERIMENT_ID=experiment_id,
    )
    done = subprocess.run(
        [sys.executable, *command[1:]],
        cwd=KUBERNETES,  # the image's working folder holds this folder's files
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    runs = step_runs(tracking_uri)
    assert list(runs) == ["get_data", "preprocess"]
    for step, run in runs.items():
        assert run.info.status == "FINISHED", step
        assert run.data.tags["mlflow.parentRunId"] == job_run.info.run_id, step
        assert run.data.tags["mlflow.source.git.commit"] == git_server.commit, step
        assert "mlflow.project.env" not in run.data.tags  # "docker" means the local env
    assert client.get_run(job_run.info.run_id).info.status == "FINISHED"

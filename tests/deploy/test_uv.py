"""Isolated environments: `mlflow run . --env-manager uv` builds the driver's and each step's
environment from its own conda.yml (in a fresh MLFLOW_ENV_ROOT; uv's package cache is the
machine's), the steps inherit the manager, and the model scores as in the current environment.

W&B runs offline here, so each step's environment must hold a working wandb too. uv installs
every environment's packages from PyPI (or uv's cache): the tests are marked ``package_index``.
"""

from __future__ import annotations

import importlib.metadata
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests import tools
from tests.pipeline_runs import REPO, SMALL_FOREST, STEPS, PipelineRun, mlflow_run, step_runs

# local_run (tests/conftest.py), the reference, is made once for the files of its group.
pytestmark = [pytest.mark.e2e, pytest.mark.package_index, pytest.mark.xdist_group("local_run")]


@pytest.fixture(scope="module")
def uv_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PipelineRun]:
    """The whole pipeline with local_run's configuration (the default, a small forest), in
    environments that uv builds."""
    tools.need_package_index()
    workdir = tmp_path_factory.mktemp("uv_run")
    run = mlflow_run(
        workdir,
        SMALL_FOREST,
        env_manager="uv",
        wandb_mode="offline",
        timeout=2400,
        MLFLOW_ENV_ROOT=str(workdir / "envs"),
    )
    print(f"uv pipeline run: {run.seconds:.0f} s")
    yield run.check()
    shutil.rmtree(workdir / "envs", ignore_errors=True)  # some hundred MB


def _env_dir(project: Path, env_root: Path) -> Path:
    """The environment MLflow builds for ``project`` (named after its requirements)."""
    from mlflow.utils.environment import _PythonEnv
    from mlflow.utils.virtualenv import _get_virtualenv_name

    python_env = _PythonEnv.from_conda_yaml(str(project / "conda.yml"))
    return env_root / _get_virtualenv_name(python_env, project)


def _pins(project: Path) -> dict[str, str]:
    conda = yaml.safe_load((project / "conda.yml").read_text())
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {name.split("[")[0].lower(): version for name, version in (p.split("==") for p in pip)}


def test_every_step_ran_in_a_uv_environment(uv_run: PipelineRun) -> None:
    runs = step_runs(uv_run.tracking_uri)
    assert list(runs) == list(STEPS)
    assert {r.info.status for r in runs.values()} == {"FINISHED"}
    assert {r.data.tags.get("mlflow.project.env") for r in runs.values()} == {"uv"}


@pytest.mark.parametrize("project", ["", *STEPS], ids=["driver", *STEPS])
def test_each_environment_holds_its_conda_yml_pins(uv_run: PipelineRun, project: str) -> None:
    env_dir = _env_dir(REPO / project, uv_run.workdir / "envs")
    assert env_dir.is_dir(), f"no environment built for {project or 'the driver'}"
    site_packages = next(env_dir.glob("lib/python3.11/site-packages"))
    installed = {
        d.metadata["Name"].lower().replace("_", "-"): d.version
        for d in importlib.metadata.distributions(path=[str(site_packages)])
    }
    for name, version in _pins(REPO / project).items():
        assert installed.get(name.replace("_", "-")) == version, name


def test_uv_environments_give_the_local_test_auc(
    uv_run: PipelineRun, local_run: PipelineRun
) -> None:
    uv = step_runs(uv_run.tracking_uri)
    local = step_runs(local_run.tracking_uri)
    assert uv["evaluate"].data.metrics["test_auc"] == local["evaluate"].data.metrics["test_auc"]

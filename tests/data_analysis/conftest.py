"""Fixtures of the notebook tests: one store the pipeline fills, every notebook executed on it.

Both are session-scoped, so that each test module reads the same runs: the pipeline's first
steps and the notebooks run once per test session.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from tests.data_analysis.notebook_runs import NOTEBOOKS, SANDBOX, notebook_env
from tests.pipeline_runs import mlflow_run


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory, dataset_path: Path) -> Path:
    """A folder whose SQLite store holds raw_data.parquet, data_train and data_test (all v0).

    Filled as a user fills it: get_data, preprocess, check_data and segregate through
    `mlflow run`, from the dataset the project ships.
    """
    workdir = tmp_path_factory.mktemp("data_analysis")
    mlflow_run(
        workdir,
        "main.execute_steps='get_data,preprocess,check_data,segregate'",
        f"data.file_url={dataset_path}",
        env=notebook_env(workdir, "disabled"),
        timeout=900,
    ).check()
    return workdir


@pytest.fixture(scope="session")
def executed(store: Path) -> dict[str, nbformat.NotebookNode]:
    """Each notebook, executed top to bottom in a kernel started in data_analysis/.

    The kernel is ``python3`` (nbclient), as Jupyter starts it, with W&B offline.
    """
    from nbclient import NotebookClient

    notebooks = {}
    env = notebook_env(store, "offline")
    with pytest.MonkeyPatch.context() as patch:
        # The kernel inherits this process's environment: make it exactly ``env``.
        for name in set(os.environ) - set(env):
            patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        for name in NOTEBOOKS:
            notebook = nbformat.read(SANDBOX / name, as_version=4)
            NotebookClient(
                notebook,
                kernel_name="python3",
                timeout=900,
                startup_timeout=120,
                resources={"metadata": {"path": str(SANDBOX)}},
            ).execute()
            notebooks[name] = notebook
    return notebooks

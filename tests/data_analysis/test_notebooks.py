"""data_analysis: the notebooks run headless, and `mlflow run data_analysis` serves Jupyter.

The store is filled as a user fills it: the pipeline's first steps (get_data, preprocess,
check_data, segregate) through `mlflow run`, from the dataset the project ships, into a fresh
SQLite store.
The notebooks then run top to bottom in a real kernel (nbclient, kernel `python3`) started in
data_analysis/ as Jupyter starts it, with W&B offline; the tests read what they tracked. The
fixtures (`store`, `executed`) are in conftest.py; the clustering notebook's own tests in
test_unsupervised_learning.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests
import yaml
from mlflow import MlflowClient

from preprocess.cleaning import preprocess
from serving.local_server import free_port
from tests.data_analysis.notebook_runs import (
    NOTEBOOK_STEPS,
    NOTEBOOKS,
    SANDBOX,
    artifact_paths,
    download,
    notebook_env,
    stdout,
    tracked_run,
)

# The session's store and notebooks (conftest.py) are made once for the files of this group.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("data_analysis")]


def test_eda_finds_what_the_data_holds(store: Path, executed, dataset_path: Path) -> None:
    raw = pd.read_parquet(dataset_path)
    run = tracked_run(store, "eda")
    assert run.info.status == "FINISHED"
    assert run.data.tags["util_lib.job_type"] == "eda"
    assert run.data.tags["util_lib.artifacts_used"] == "raw_data.parquet:v0"
    metrics = run.data.metrics
    assert metrics["rows"] == len(raw)
    assert metrics["duplicates"] == raw.duplicated().sum() > 0
    assert metrics["missing_loudness"] == raw["loudness"].isna().sum()
    assert metrics["genres"] == raw["genre"].nunique()
    # Its cleaning is the preprocess step's.
    assert metrics["clean_rows"] == len(preprocess(raw))
    assert metrics["clean_duplicates"] == 0
    figures = artifact_paths(store, run.info.run_id, "figures")
    for name in ("missing_values", "class_balance", "features_by_genre", "correlations"):
        assert f"figures/{name}.png" in figures


def test_modeling_cross_validated_and_test_auc(store: Path, executed) -> None:
    run = tracked_run(store, "modeling")
    assert run.info.status == "FINISHED"
    assert run.data.tags["util_lib.artifacts_used"] == "data_train:v0,data_test:v0"
    assert run.data.metrics["cv_auc"] >= 0.95
    assert run.data.metrics["test_auc"] >= 0.95
    assert run.data.params["scoring"] == "roc_auc_ovo"
    paths = artifact_paths(store, run.info.run_id)
    assert "grid_search_results.csv" in paths
    figures = artifact_paths(store, run.info.run_id, "figures")
    assert {"figures/confusion_matrix.png", "figures/feature_importance.png"} <= set(figures)


def test_modeling_ends_with_the_parameters_for_config_yaml(
    store: Path, executed, tmp_path: Path
) -> None:
    run = tracked_run(store, "modeling")
    results = pd.read_csv(download(store, run.info.run_id, "grid_search_results.csv", tmp_path))
    best = results.sort_values("rank_test_score").iloc[0]
    assert best["mean_test_score"] == pytest.approx(run.data.metrics["cv_auc"])
    suggested = download(store, run.info.run_id, "suggested_config.yaml", tmp_path)
    forest = yaml.safe_load(suggested.read_text())["model"]
    assert forest["max_depth"] == best["param_classifier__max_depth"]
    last_outputs = stdout(executed["Modeling.ipynb"].cells[-2:])
    assert "model:" in last_outputs
    assert f"max_depth: {forest['max_depth']}" in last_outputs


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_runs_save_the_notebook(store: Path, executed, name: str, tmp_path: Path) -> None:
    run = tracked_run(store, NOTEBOOK_STEPS[name])
    saved = download(store, run.info.run_id, f"code/{name}", tmp_path)
    assert saved.read_bytes() == (SANDBOX / name).read_bytes()
    # W&B (offline here) keeps a copy in the run's files, uploaded by `wandb sync`.
    copies = list((store / "wandb").glob(f"offline-run-*/files/code/{name}"))
    assert len(copies) == 1 and copies[0].read_bytes() == saved.read_bytes()


def _server_pids(runtime_dir: Path) -> list[int]:
    """The Jupyter servers started with this runtime folder (each writes jpserver-<pid>.json)."""
    return [json.loads(p.read_text())["pid"] for p in runtime_dir.glob("jpserver-*.json")]


@pytest.fixture
def jupyter(tmp_path: Path) -> Iterator[tuple[str, str, Path, subprocess.Popen]]:
    """`mlflow run data_analysis` serving on 127.0.0.1; yields (URL, token, workdir, process)."""
    port, token = free_port(), secrets.token_hex(16)
    # No --allow-root, even as root (CI, containers): the MLproject's command gives it then.
    options = f"--no-browser --ip=127.0.0.1 --port={port} --IdentityProvider.token={token}"
    env = notebook_env(tmp_path, "disabled")
    log = (tmp_path / "jupyter.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "run", str(SANDBOX), "--env-manager", "local"]
        + ["-P", f"jupyter_options={options}"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"mlflow run data_analysis ended: {(tmp_path / 'jupyter.log').read_text()}"
                )
            try:
                if requests.get(f"{url}/api/status", params={"token": token}, timeout=5).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"Jupyter did not answer: {(tmp_path / 'jupyter.log').read_text()}")
            time.sleep(1)
        yield url, token, tmp_path, process
    finally:
        # A server still up (the test failed before shutting it down) stops cleanly on SIGTERM,
        # and `mlflow run` ends with it.
        for pid in _server_pids(Path(env["JUPYTER_RUNTIME_DIR"])):
            with contextlib.suppress(ProcessLookupError):  # already gone
                os.kill(pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
        log.close()


def test_mlflow_run_data_analysis_serves_the_notebooks(jupyter) -> None:
    url, token, workdir, process = jupyter
    auth = {"token": token}
    contents = requests.get(f"{url}/api/contents", params=auth, timeout=30)
    names = {item["name"] for item in contents.json()["content"]}
    assert set(NOTEBOOKS) <= names
    specs = requests.get(f"{url}/api/kernelspecs", params=auth, timeout=30).json()
    assert "python3" in specs["kernelspecs"]
    # The session's MLflow run is not handed to the notebooks' kernels: they track their own.
    (pid,) = _server_pids(workdir / "jupyter_runtime")
    environ = Path(f"/proc/{pid}/environ")
    if environ.exists():
        names = {line.split("=", 1)[0] for line in environ.read_text().split("\0") if line}
        assert "MLFLOW_RUN_ID" not in names and "MLFLOW_TRACKING_URI" in names

    # File > Shut Down in Jupyter: the server stops and the session's run ends as finished.
    requests.post(f"{url}/api/shutdown", params=auth, timeout=30).raise_for_status()
    assert process.wait(timeout=120) == 0
    (session,) = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}").search_runs(["0"])
    assert session.info.status == "FINISHED"
    assert session.data.tags["mlflow.project.entryPoint"] == "main"

"""data_analysis: both notebooks run headless, and `mlflow run data_analysis` serves Jupyter.

The store is filled as a user fills it: the pipeline's first steps (get_data, preprocess,
segregate) through `mlflow run`, from the dataset the project ships, into a fresh SQLite store.
The notebooks then run top to bottom in a real kernel (nbclient, kernel `python3`) started in
data_analysis/ as Jupyter starts it, with W&B offline; the tests read what they tracked.
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

import mlflow
import nbformat
import pandas as pd
import pytest
import requests
import yaml
from mlflow import MlflowClient

from preprocess.cleaning import preprocess
from serving.local_server import free_port

REPO = Path(__file__).resolve().parents[2]
SANDBOX = REPO / "data_analysis"
NOTEBOOKS = ("EDA_Tracking.ipynb", "Modeling.ipynb")  # in this order: as a person runs them
EXPERIMENT = "music_genre_classification"

pytestmark = pytest.mark.e2e


def _env(workdir: Path, wandb_mode: str) -> dict[str, str]:
    """The test process's environment without tracking settings, pointed at ``workdir``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "WANDB_", "JUPYTER_", "UTIL_LIB_"))
    }
    env.pop("PYTHONPATH", None)  # the notebooks and steps find the project themselves
    env.update(
        MLFLOW_TRACKING_URI=f"sqlite:///{workdir / 'mlflow.db'}",
        WANDB_MODE=wandb_mode,
        WANDB_DIR=str(workdir),
        ML_PIPELINE_LOG=str(workdir / "ml_pipeline.log"),
        # Jupyter's connection files, server info and config stay in the test's folder.
        JUPYTER_RUNTIME_DIR=str(workdir / "jupyter_runtime"),
        JUPYTER_CONFIG_DIR=str(workdir / "jupyter_config"),
        JUPYTER_PLATFORM_DIRS="1",
    )
    return env


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, dataset_path: Path) -> Path:
    """A folder whose SQLite store holds raw_data.parquet, data_train and data_test (all v0)."""
    workdir = tmp_path_factory.mktemp("data_analysis")
    steps = "main.execute_steps='get_data,preprocess,segregate'"
    options = f"{steps} data.file_url={dataset_path} hydra.run.dir={workdir / 'outputs'}"
    result = subprocess.run(
        ["mlflow", "run", str(REPO), "--env-manager", "local", "-P", f"hydra_options={options}"],
        cwd=workdir,
        env=_env(workdir, "disabled"),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return workdir


@pytest.fixture(scope="module")
def executed(store: Path) -> dict[str, nbformat.NotebookNode]:
    """Each notebook, executed top to bottom in a kernel started in data_analysis/."""
    from nbclient import NotebookClient

    notebooks = {}
    env = _env(store, "offline")
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


def _run(store: Path, step: str) -> mlflow.entities.Run:
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`util_lib.step` = '{step}'"
    )
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


def _artifact_paths(store: Path, run_id: str, folder: str = "") -> list[str]:
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    return [a.path for a in client.list_artifacts(run_id, folder or None)]


def _download(store: Path, run_id: str, path: str, dst: Path) -> Path:
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id,
        artifact_path=path,
        dst_path=str(dst),
        tracking_uri=f"sqlite:///{store / 'mlflow.db'}",
    )
    return Path(local)


def _stdout(cells: list[nbformat.NotebookNode]) -> str:
    return "".join(
        output.get("text", "")
        for cell in cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream" and output.name == "stdout"
    )


def test_eda_finds_what_the_data_holds(store: Path, executed, dataset_path: Path) -> None:
    raw = pd.read_parquet(dataset_path)
    run = _run(store, "eda")
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
    figures = _artifact_paths(store, run.info.run_id, "figures")
    for name in ("missing_values", "class_balance", "features_by_genre", "correlations"):
        assert f"figures/{name}.png" in figures


def test_modeling_cross_validated_and_test_auc(store: Path, executed) -> None:
    run = _run(store, "modeling")
    assert run.info.status == "FINISHED"
    assert run.data.tags["util_lib.artifacts_used"] == "data_train:v0,data_test:v0"
    assert run.data.metrics["cv_auc"] >= 0.95
    assert run.data.metrics["test_auc"] >= 0.95
    assert run.data.params["scoring"] == "roc_auc_ovo"
    paths = _artifact_paths(store, run.info.run_id)
    assert "grid_search_results.csv" in paths
    figures = _artifact_paths(store, run.info.run_id, "figures")
    assert {"figures/confusion_matrix.png", "figures/feature_importance.png"} <= set(figures)


def test_modeling_ends_with_the_parameters_for_config_yaml(
    store: Path, executed, tmp_path: Path
) -> None:
    run = _run(store, "modeling")
    results = pd.read_csv(_download(store, run.info.run_id, "grid_search_results.csv", tmp_path))
    best = results.sort_values("rank_test_score").iloc[0]
    assert best["mean_test_score"] == pytest.approx(run.data.metrics["cv_auc"])
    suggested = _download(store, run.info.run_id, "suggested_config.yaml", tmp_path)
    forest = yaml.safe_load(suggested.read_text())["random_forest_pipeline"]["random_forest"]
    assert forest["max_depth"] == best["param_classifier__max_depth"]
    last_outputs = _stdout(executed["Modeling.ipynb"].cells[-2:])
    assert "random_forest_pipeline:" in last_outputs
    assert f"max_depth: {forest['max_depth']}" in last_outputs


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_runs_save_the_notebook(store: Path, executed, name: str, tmp_path: Path) -> None:
    step = "eda" if name.startswith("EDA") else "modeling"
    run = _run(store, step)
    saved = _download(store, run.info.run_id, f"code/{name}", tmp_path)
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
    options = f"--no-browser --ip=127.0.0.1 --port={port} --IdentityProvider.token={token}"
    if os.geteuid() == 0:
        options += " --allow-root"  # CI runs as root; Jupyter refuses that unless told
    env = _env(tmp_path, "disabled")
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

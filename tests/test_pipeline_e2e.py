"""The whole pipeline through `mlflow run`, on the real dataset served over real HTTP.

One pipeline run (W&B offline, the embedded store on a SQLite tracking store that MLflow creates
and migrates itself, as on a user's first run: the quick start) is shared by the tests of this
module; a second run trains and evaluates only; a third downloads from a URL that answers 404.
"""

from __future__ import annotations

import functools
import http.server
import json
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pipeline_runs import (
    DATA_ARTIFACTS,
    REPO,
    STEPS,
    PipelineRun,
    mlflow_run,
    pipeline_env,
    project_runs,
    sqlite_uri,
    warm_mlflow,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def http_data(dataset_path: Path) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 serving the dataset's folder; yields its base URL."""
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(dataset_path.parent)
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pipeline")


def _env(workdir: Path) -> dict[str, str]:
    """The pipeline's environment here: the module's store, W&B offline."""
    return pipeline_env(workdir, sqlite_uri(workdir), wandb_mode="offline")


def run_pipeline(workdir: Path, *overrides: str, new_store: bool = False) -> PipelineRun:
    """The pipeline through `mlflow run` in the module's folder, W&B offline."""
    return mlflow_run(workdir, *overrides, wandb_mode="offline", new_store=new_store)


def _store(workdir: Path):
    from util_lib.artifacts.mlflow_store import MlflowArtifactStore

    return MlflowArtifactStore(sqlite_uri(workdir))


def _versions(workdir: Path) -> dict[str, list[str]]:
    store = _store(workdir)
    return {name: [v.spec for v in store.versions(name)] for name in store.names()}


@pytest.fixture(scope="module")
def first_run(workdir: Path, http_data: str) -> PipelineRun:
    """The quick start: no store yet, MLflow creates ``mlflow.db`` (new_store)."""
    assert not (workdir / "mlflow.db").exists()
    run = run_pipeline(workdir, f"data.file_url={http_data}/genres_mod.parquet", new_store=True)
    return run.check()


def _step_runs(workdir: Path) -> list:
    """Every run of the project's experiment in the module's store, oldest first."""
    return project_runs(sqlite_uri(workdir))


def test_six_step_runs_finished_under_one_pipeline_run(workdir: Path, first_run) -> None:
    runs = _step_runs(workdir)
    steps = [r for r in runs if r.data.tags.get("util_lib.step") in STEPS]
    assert [r.data.tags["util_lib.step"] for r in steps] == list(STEPS)
    assert {r.info.status for r in steps} == {"FINISHED"}
    assert {r.info.run_name for r in steps} == set(STEPS)
    parents = {r.data.tags.get("mlflow.parentRunId") for r in steps}
    assert len(parents) == 1 and None not in parents
    parent = next(r for r in runs if r.info.run_id in parents)
    assert parent.info.run_name == "pipeline"


def test_the_terminal_shows_progress_the_summary_once_and_where_to_look(
    workdir: Path, first_run
) -> None:
    """Issue 23: about 30-40 lines with `mlflow run`'s own; the steps' log lines and check_data's
    test report go to the log file only (each line once), unless main.verbose=true."""
    terminal = first_run.stdout + first_run.stderr
    assert len(terminal.splitlines()) <= 40, terminal
    assert terminal.count("Pipeline summary") == 1 and terminal.count("test_auc=") == 1, terminal
    for step in STEPS:
        assert f"[{step}]" not in terminal, step  # none of its log lines
    assert "test_data.py::" not in terminal and "Running command 'PYTHONPATH" not in terminal
    for line in ("Log file:    ", "MLflow UI:   ", "W&B offline: ", "Artifacts:   "):
        assert f"\n{line}" in first_run.stdout, line
    log = (workdir / "ml_pipeline.log").read_text()
    assert "test_data.py::test_labels" in log
    # This module's first run: each step's lines once (through its stderr, which is the log).
    for step in STEPS:
        assert log.count(f"INFO [{step}] util_lib.step.run: {step} finished") == 1, step
    assert log.count("main: pipeline summary:") == 1


def test_every_artifact_has_a_version_and_the_summary_says_so(workdir: Path, first_run) -> None:
    versions = _versions(workdir)
    for name in (*DATA_ARTIFACTS, "model_export"):
        assert versions.get(name) == [f"{name}:v0"], versions
        assert f"{name}:v0" in first_run.stdout
    assert "Pipeline summary" in first_run.stdout
    assert "mlflow ui --backend-store-uri sqlite:///" in first_run.stdout
    # check_data, not preprocess, gave the alias to the version it passed, and recorded that.
    reference = _store(workdir).resolve("preprocessed_data:reference")
    assert reference.spec == "preprocessed_data:v0"
    runs = {r.data.tags.get("util_lib.step"): r for r in _step_runs(workdir)}
    assert (reference.check, reference.check_run_id) == (
        "passed",
        runs["check_data"].info.run_id,
    )
    log = (workdir / "ml_pipeline.log").read_text()
    assert "[check_data] util_lib.step.run: alias 'reference' set on preprocessed_data:v0" in log
    assert "[segregate] segregate.gate: preprocessed_data:v0 passed its data check" in log


def test_test_auc_and_validation_auc(workdir: Path, first_run) -> None:
    runs = {r.data.tags.get("util_lib.step"): r for r in _step_runs(workdir)}
    assert runs["train_random_forest"].data.metrics["val_auc"] >= 0.94
    assert runs["evaluate"].data.metrics["test_auc"] >= 0.95
    assert "test_auc=" in first_run.stdout


def test_exported_model_loads_outside_the_repo(workdir: Path, first_run, tmp_path: Path) -> None:
    model_dir = _store(workdir).download(
        _store(workdir).resolve("model_export:latest"), tmp_path / "m"
    )
    script = (
        "import importlib.util, json\n"
        "import mlflow.pyfunc\n"
        "from mlflow.models import Model\n"
        "assert importlib.util.find_spec('util_lib') is None, 'the repo is on the path'\n"
        f"model = mlflow.pyfunc.load_model({str(model_dir)!r})\n"
        f"example = Model.load({str(model_dir)!r}).load_input_example({str(model_dir)!r})\n"
        "print(json.dumps(list(map(str, model.predict(example)))))\n"
    )
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = _env(workdir)
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    predictions = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(predictions) >= 1 and all(predictions)


def test_log_file_has_lines_from_every_step(workdir: Path, first_run) -> None:
    log = (workdir / "ml_pipeline.log").read_text()
    for step in (*STEPS, "main"):
        assert f"[{step}]" in log, step


def test_wandb_offline_runs_hold_the_artifacts(workdir: Path, first_run) -> None:
    offline_runs = sorted((workdir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) >= len(STEPS)
    records = b"".join(p.read_bytes() for run in offline_runs for p in run.glob("*.wandb"))
    for name in (*DATA_ARTIFACTS, "model_export"):
        assert name.encode() in records, name


def test_wandb_offline_runs_keep_each_step_s_console_output(workdir: Path, first_run) -> None:
    logs = [p.read_text() for p in (workdir / "wandb").glob("offline-run-*/files/output.log")]
    for step in STEPS:
        assert any(f" [{step}] " in log for log in logs), step
    # check_data's console is pytest's: its report lines are kept too (on a fresh store there is
    # no reference yet, so the drift tests are skipped).
    assert any("test_data.py::test_labels PASSED" in log for log in logs)
    assert any("test_data.py::test_ks_drift[tempo] SKIPPED" in log for log in logs)


def test_rerun_of_training_reuses_upstream_artifacts(workdir: Path, first_run) -> None:
    before = _versions(workdir)
    result = run_pipeline(workdir, "main.execute_steps='train_random_forest,evaluate'")
    assert result.returncode == 0, result.stderr[-6000:]
    after = _versions(workdir)
    for name in DATA_ARTIFACTS:
        assert after[name] == before[name], name
    assert "data_train:v0" in (workdir / "ml_pipeline.log").read_text()
    assert "test_auc=" in result.stdout


def test_download_404_fails_naming_url_and_step(workdir: Path, first_run, http_data: str) -> None:
    before = _versions(workdir)["raw_data.parquet"]
    url = f"{http_data}/no_such_file.parquet"
    result = run_pipeline(workdir, f"data.file_url={url}")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert url in output
    assert "get_data" in output and "failed" in output
    # The end of get_data's output (it went to the log), then the cause last: only `mlflow run`'s
    # own "=== Run (ID ...) failed ===" follows it.
    tail = result.stdout.split("lines of get_data's output (", 1)[1]
    assert "ERROR [get_data] util_lib.step.run: get_data failed: DownloadError: " in tail
    last = [line for line in result.stderr.splitlines() if "mlflow.cli: === Run" not in line][-1]
    assert "ERROR [main] main: get_data failed: DownloadError: " in last and url in last, last
    assert _versions(workdir)["raw_data.parquet"] == before


def test_each_step_runs_on_its_own_with_its_defaults(workdir: Path, first_run) -> None:
    """After one pipeline run, `mlflow run <step> --env-manager local` from the project root,
    with no -P, runs each step on the store's latest versions and config.yaml's settings."""
    import yaml
    from mlflow import MlflowClient

    client = MlflowClient(sqlite_uri(workdir))
    before = _versions(workdir)
    for step in STEPS:
        env = _env(workdir)
        result = subprocess.run(
            [*warm_mlflow(env), "run", step, "--env-manager", "local"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, (step, result.stdout[-2000:], result.stderr[-4000:])
        (run,) = client.search_runs(
            ["0"],  # MLflow's Default experiment: no --experiment-name was given
            filter_string=f"tags.`util_lib.step` = '{step}'",
        )
        assert run.info.status == "FINISHED", step
        mlproject = yaml.safe_load((REPO / step / "MLproject").read_text())
        defaults = mlproject["entry_points"]["main"]["parameters"]
        for name, spec in defaults.items():
            # MLflow logs each value as it quoted it for the command line.
            assert run.data.params[name] == shlex.quote(str(spec["default"])), (step, name)
    after = _versions(workdir)
    # Same data, same code: the data steps made no new version; training made a new model,
    # and evaluate scored that one (model_export:latest).
    for name in DATA_ARTIFACTS:
        assert after[name] == before[name], name
    assert len(after["model_export"]) == len(before["model_export"]) + 1
    (evaluate,) = client.search_runs(["0"], filter_string="tags.`util_lib.step` = 'evaluate'")
    assert after["model_export"][-1] in evaluate.data.tags["util_lib.artifacts_used"]
    assert evaluate.data.metrics["test_auc"] >= 0.95


def test_pipeline_run_logs_its_lineage_and_the_cli_traces_the_model_to_raw(
    workdir: Path, first_run
) -> None:
    import mlflow.artifacts

    uri = sqlite_uri(workdir)
    pipeline = next(r for r in _step_runs(workdir) if r.info.run_name == "pipeline")
    local = Path(
        mlflow.artifacts.download_artifacts(
            run_id=pipeline.info.run_id, artifact_path="lineage", tracking_uri=uri
        )
    )
    assert (local / "lineage.svg").read_text().startswith("<svg")
    graph = json.loads((local / "lineage.json").read_text())
    assert graph["raw"] == ["music_genre_classification/raw_data.parquet:v0"]
    assert {r["step"] for r in graph["runs"]} == set(STEPS)
    assert all(r["code_digest"] and r["config_digest"] for r in graph["runs"])
    pages = (workdir / "wandb").glob("offline-run-*/files/media/**/lineage_*.html")
    assert any("<svg" in page.read_text() for page in pages), "no lineage in a W&B offline run"

    result = subprocess.run(
        [sys.executable, "-m", "util_lib.artifacts", "lineage", "model_export:v0"],
        cwd=REPO,
        env=_env(workdir),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name in (*DATA_ARTIFACTS[:3], "model_export"):
        assert f"\n{name}:v0  sha256 " in result.stdout, name
    # Each step ran in its own folder (`mlflow run`): its code digest covers that folder.
    for step in ("get_data", "preprocess", "segregate", "train_random_forest"):
        assert f"({step} + util_lib)" in result.stdout, step
    assert result.stdout.rstrip().endswith("raw data: raw_data.parquet:v0")

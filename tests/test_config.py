"""A bad configuration stops the pipeline before any step, through the real `mlflow run`.

Each run has its own SQLite store; afterwards the store holds no step run (none tagged
``util_lib.step``) and no pipeline or multirun run, only the launcher run `mlflow run` itself
opens before main.py starts (FAILED). Without the check, ``data.test_size=1.5`` ran three steps
before segregate failed, and an empty ``main.execute_steps`` exited 0 having done nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Run

from tests.pipeline_runs import REPO, PipelineRun, mlflow_run, pipeline_env, sqlite_uri

DEPTH = "model.max_depth"
# The launcher's `mlflow run` start (about 5 s here) plus the check; a step alone takes longer.
SECONDS = 60

pytestmark = pytest.mark.e2e


def all_runs(tracking_uri: str) -> list[Run]:
    """Every run of every experiment in the store."""
    client = MlflowClient(tracking_uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids, max_results=1000)


def assert_nothing_ran(run: PipelineRun) -> None:
    """Only `mlflow run`'s own run exists, FAILED: no step, pipeline or multirun run."""
    runs = all_runs(run.tracking_uri)
    assert [r.info.status for r in runs] == ["FAILED"]
    assert not [r for r in runs if "util_lib.step" in r.data.tags]
    assert not [r for r in runs if "util_lib.run_kind" in r.data.tags]


def output(run: PipelineRun) -> str:
    return run.result.stdout + run.result.stderr


# One bad value through `mlflow run`: each value's message is checked in process, where the
# check is the same (tests/util_lib/test_config_schema.py: main.execute_steps=[] among them).
@pytest.mark.parametrize(
    ("override", "expected"),
    [("data.test_size=1.5", "data.test_size=1.5: must be a number in (0, 1)")],
)
def test_a_bad_value_stops_the_pipeline_before_any_step(
    tmp_path: Path, override: str, expected: str
) -> None:
    run = mlflow_run(tmp_path, override)
    assert run.result.returncode != 0
    assert f"invalid configuration (1 problem):\n  {expected}" in run.result.stderr, output(run)
    assert "No step was run." in run.result.stderr
    assert run.seconds < SECONDS, run.seconds
    assert_nothing_ran(run)


def test_what_would_fail_after_steps_is_listed_at_once_before_any_step(tmp_path: Path) -> None:
    """Values that used to pass the check and fail later (at train after four steps, at
    check_data naming the pipeline's dead server, with a traceback) are each named at once."""
    env = pipeline_env(tmp_path, sqlite_uri(tmp_path))
    del env["ML_PIPELINE_LOG"]  # else the environment's log file is the one used
    run = mlflow_run(
        tmp_path,
        "main.registered_model_name=bad/name",
        "random_forest_pipeline.export_artifact=a/b",
        "+dataset.columns.loudnes={dtype:float64,role:numerical}",
        "data.test_size=0.00001",
        "data.reference_dataset=no_such:v99",
        "main.log_file=/proc/nope/x.log",
        env=env,
    )
    assert run.result.returncode != 0
    stderr = run.result.stderr
    assert "invalid configuration (6 problems):\n" in stderr, output(run)
    for line in (
        "main.registered_model_name='bad/name': must be null or a registered model name that "
        "MLflow and W&B accept",
        "random_forest_pipeline.export_artifact='a/b': must be null or an artifact name that "
        "MLflow and W&B accept",
        "dataset.columns.loudnes='loudnes': no such column in "
        "dataset/genres_mod.parquet (the closest is 'loudness')",
        "data.test_size=1e-05: may leave classes 'Pop' (468 rows)",
        "data.reference_dataset='no_such:v99': artifact 'no_such' not found: project "
        f"'music_genre_classification' has no artifacts in the store at {run.tracking_uri}",
        "main.log_file='/proc/nope/x.log': must be a file the pipeline can write: cannot create "
        "a folder in /proc",
    ):
        assert f"\n  {line}" in stderr, output(run)
    assert "No step was run." in stderr
    assert run.seconds < SECONDS, run.seconds
    assert_nothing_ran(run)


def test_a_bad_value_in_one_job_stops_the_sweep_before_the_first_job(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "multirun"
    run = mlflow_run(tmp_path, "-m", f"{DEPTH}=5,10,-1", f"hydra.sweep.dir={sweep_dir}")
    assert run.result.returncode != 0
    assert (
        "invalid configuration in 1 of 3 jobs of the sweep; no job was run:\n"
        f"  {DEPTH}=-1: must be an int in the range [1, inf) or None (scikit-learn)  (job 2)"
    ) in run.result.stderr, output(run)
    assert run.seconds < SECONDS, run.seconds
    assert not (sweep_dir / "0").exists()
    assert_nothing_ran(run)


def test_a_job_that_optuna_gives_a_bad_value_fails_before_its_pipeline_run(
    tmp_path: Path,
) -> None:
    # Optuna picks each trial's values as it goes: the job's own check (main.py) stops it. The
    # job runs in a joblib worker, as README's Optuna command runs it; its error comes back.
    run = mlflow_run(
        tmp_path,
        "--config-name optuna -m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=1",
        "hydra.sweeper.n_trials=1",
        "hydra.sweeper.n_jobs=1",
        "data.ks_alpha=choice(1.5)",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
    )
    assert run.result.returncode != 0
    assert "data.ks_alpha=1.5: must be a number in (0, 1)" in run.result.stderr, output(run)
    runs = all_runs(run.tracking_uri)
    kinds = {r.data.tags.get("util_lib.run_kind"): r.info.status for r in runs}
    assert kinds.get("multirun") == "FAILED", kinds
    assert "pipeline" not in kinds
    assert not [r for r in runs if "util_lib.step" in r.data.tags]


def test_each_job_is_checked_on_its_own_too(tmp_path: Path) -> None:
    # Without the sweep callback (and its check of every job up front), each job of the basic
    # launcher stops at its own check: nothing is written to the store.
    command = [sys.executable, str(REPO / "main.py"), "-m", "data.test_size=1.5,2"]
    command += ["~hydra.callbacks.sweep_report", f"hydra.sweep.dir={tmp_path / 'multirun'}"]
    env = pipeline_env(tmp_path, sqlite_uri(tmp_path))
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode != 0
    assert "data.test_size=1.5: must be a number in (0, 1)" in result.stderr, result.stderr
    assert not (tmp_path / "mlflow.db").exists()

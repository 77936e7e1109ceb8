"""The data-check suite end to end: the MLproject's own command against a real artifact store."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from util_lib.tracking import start_run

STEP_DIR = Path(__file__).resolve().parents[2] / "check_data"


@pytest.fixture(autouse=True)
def _no_stray_benchmarks_folder() -> Iterator[None]:
    """Remove the empty `.benchmarks` folder that pytest-benchmark, if installed, leaves in
    the step folder (the step's own environment does not have that plugin)."""
    folder = STEP_DIR / ".benchmarks"
    existed = folder.exists()
    yield
    if not existed and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def _log_versions(*frames: pd.DataFrame) -> list[str]:
    """Log each frame as a new version of ``preprocessed_data``; return their specs."""
    specs = []
    with start_run("test_setup", "test") as run, tempfile.TemporaryDirectory() as tmp:
        for i, frame in enumerate(frames):
            path = Path(tmp) / f"{i}" / "preprocessed_data.parquet"
            path.parent.mkdir()
            frame.to_parquet(path, index=False)
            specs.append(
                run.log_artifact(path, "preprocessed_data", "preprocessed_data", "test data")
            )
    return specs


def _run_suite(reference: str, sample: str, ks_alpha: float = 0.05) -> subprocess.CompletedProcess:
    """Run the MLproject's command, as `mlflow run check_data` would, in the step folder."""
    project = yaml.safe_load((STEP_DIR / "MLproject").read_text())
    command = project["entry_points"]["main"]["command"].format(
        reference_artifact=reference, sample_artifact=sample, ks_alpha=ks_alpha
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        command, shell=True, cwd=STEP_DIR, env=env, capture_output=True, text=True, timeout=300
    )


def _last_run() -> mlflow.entities.Run:
    runs = mlflow.search_runs(
        search_all_experiments=True,
        filter_string="tags.`util_lib.step` = 'check_data'",
        output_format="list",
    )
    assert len(runs) == 1, runs
    return runs[0]


def test_suite_passes_on_data_that_did_not_drift(
    tracking: Path, clean: pd.DataFrame, half: pd.DataFrame
) -> None:
    reference, sample = _log_versions(clean, half)
    result = _run_suite(reference, sample)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "19 passed" in result.stdout
    log = (tracking / "ml_pipeline.log").read_text()
    # Each check's lines reach the pipeline log through util_lib's root handlers.
    assert "[check_data] check_data.checks: KS tempo:" in log
    assert "check_data/test_data.py::test_ks_drift[tempo] passed" in log
    assert "data check passed (exit status 0): 0 of 19 checks failed" in log
    assert "compare the data with itself" not in log
    run = _last_run()
    assert run.info.status == "FINISHED"
    assert run.data.metrics["checks_failed"] == 0
    assert 0.005 < run.data.metrics["ks_min_p_value"] <= 1
    assert run.data.tags["util_lib.artifacts_used"] == f"{reference},{sample}"


def test_suite_fails_naming_the_drifted_and_invalid_columns(
    tracking: Path, clean: pd.DataFrame, half: pd.DataFrame
) -> None:
    bad = half.assign(danceability=half["danceability"] * 0.7)
    bad.loc[:9, "genre"] = "Polka"
    reference, sample = _log_versions(clean, bad)
    result = _run_suite(reference, sample)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 failed, 17 passed" in result.stdout
    log = (tracking / "ml_pipeline.log").read_text()
    assert "test_ks_drift[danceability] FAILED" in log
    assert "column 'danceability' drifted" in log
    assert "column 'genre' fails isin(KNOWN_GENRES) in 10 rows (e.g. ['Polka'])" in log
    assert "data check FAILED (exit status 1): 2 of 19 checks failed" in log
    run = _last_run()
    assert run.info.status == "FAILED"
    assert run.data.metrics["checks_failed"] == 2
    assert run.data.metrics["ks_p_value.danceability"] < 0.005


def test_same_version_warns_that_drift_is_not_tested(tracking: Path, clean: pd.DataFrame) -> None:
    (spec,) = _log_versions(clean)
    result = _run_suite(spec, "preprocessed_data:latest")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = (tracking / "ml_pipeline.log").read_text()
    assert "WARNING [check_data]" in log
    assert "the drift tests compare the data with itself" in log


@pytest.mark.parametrize("ks_alpha", [0.0, 1.5])
def test_invalid_alpha_is_a_usage_error(tracking: Path, ks_alpha: float) -> None:
    result = _run_suite("preprocessed_data:v0", "preprocessed_data:v0", ks_alpha)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert "--ks_alpha must be in (0, 1)" in result.stderr


def test_unknown_artifact_fails_naming_it(tracking: Path, clean: pd.DataFrame) -> None:
    _log_versions(clean)
    result = _run_suite("preprocessed_data:reference", "preprocessed_data:v0")
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "check_data cannot resolve --reference_artifact preprocessed_data:reference" in output
    log = (tracking / "ml_pipeline.log").read_text()
    errors = [line for line in log.splitlines() if " ERROR [check_data] " in line]
    # One line naming the artifact and what the store holds, then the verdict; not 19 errors.
    assert len(errors) == 2, errors
    assert "cannot resolve --reference_artifact preprocessed_data:reference" in errors[0]
    assert "alias 'reference'" in errors[0] and "v0" in errors[0]
    assert "data check FAILED (exit status 1)" in errors[1]
    assert _last_run().info.status == "FAILED"


def test_the_offline_wandb_run_keeps_the_suite_s_console_output(
    tracking: Path, clean: pd.DataFrame, half: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference, sample = _log_versions(clean, half.assign(danceability=half["danceability"] * 0.7))
    monkeypatch.setenv("WANDB_MODE", "offline")
    result = _run_suite(reference, sample)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    wandb_dir = Path(_last_run().data.tags["wandb.dir"])
    output = (wandb_dir / "files" / "output.log").read_text()
    # pytest's own report (stdout) and the checks' log lines (stderr), as the console shows them.
    assert "test_data.py::test_ks_drift[danceability] FAILED" in output
    assert "column 'danceability' drifted" in output
    assert "data check FAILED (exit status 1): 1 of 19 checks failed" in output

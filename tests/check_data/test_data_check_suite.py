"""The data-check suite end to end: the MLproject's own command against a real artifact store."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.check_data.suite_runs import last_run, log_versions, run_suite
from util_lib.artifacts.mlflow_store import MlflowArtifactStore

# The suite's runs start warm from one fork server (conftest.py), on the worker of its group.
pytestmark = [pytest.mark.usefixtures("warm_suite"), pytest.mark.xdist_group("check_data_suite")]


def test_suite_passes_on_data_that_did_not_drift(
    tracking: Path, clean: pd.DataFrame, half: pd.DataFrame
) -> None:
    reference, sample = log_versions(clean, half)
    result = run_suite(reference, sample)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "19 passed" in result.stdout
    log = (tracking / "ml_pipeline.log").read_text()
    # Each check's lines reach the pipeline log through util_lib's root handlers.
    assert "[check_data] check_data.checks: KS tempo:" in log
    assert "check_data/test_data.py::test_ks_drift[tempo] passed" in log
    assert "data check passed (exit status 0): 0 of 19 checks failed" in log
    assert "compare the data with itself" not in log
    run = last_run()
    assert run.info.status == "FINISHED"
    assert run.data.metrics["checks_failed"] == 0
    assert 0.005 < run.data.metrics["ks_min_p_value"] <= 1
    assert run.data.tags["util_lib.artifacts_used"] == f"{reference},{sample}"


def test_suite_fails_naming_the_drifted_and_invalid_columns(
    tracking: Path, clean: pd.DataFrame, half: pd.DataFrame
) -> None:
    bad = half.assign(danceability=half["danceability"] * 0.7)
    bad.loc[:9, "genre"] = "Polka"
    reference, sample = log_versions(clean, bad)
    result = run_suite(reference, sample)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 failed, 17 passed" in result.stdout
    log = (tracking / "ml_pipeline.log").read_text()
    assert "test_ks_drift[danceability] FAILED" in log
    assert "column 'danceability' drifted" in log
    assert "column 'genre' fails isin(labels) in 10 rows (e.g. ['Polka'])" in log
    assert "data check FAILED (exit status 1): 2 of 19 checks failed" in log
    run = last_run()
    assert run.info.status == "FAILED"
    assert run.data.metrics["checks_failed"] == 2
    assert run.data.metrics["ks_p_value.danceability"] < 0.005


def test_same_version_warns_that_drift_is_not_tested(tracking: Path, clean: pd.DataFrame) -> None:
    (spec,) = log_versions(clean)
    result = run_suite(spec, "preprocessed_data:latest")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = (tracking / "ml_pipeline.log").read_text()
    assert "WARNING [check_data]" in log
    assert "the drift tests compare the data with itself" in log


@pytest.mark.parametrize("ks_alpha", [0.0, 1.5])
def test_invalid_alpha_is_a_usage_error(tracking: Path, ks_alpha: float) -> None:
    result = run_suite("preprocessed_data:v0", "preprocessed_data:v0", ks_alpha)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert "--ks_alpha must be in (0, 1)" in result.stderr


@pytest.mark.parametrize(
    ("reference", "named"),
    [
        # A typo'd artifact is not a reference waiting to be set.
        ("preprocesed_data:reference", "artifact 'preprocesed_data' not found"),
        ("preprocessed_data:v7", "version 'v7' of artifact 'preprocessed_data' not found"),
    ],
)
def test_unknown_reference_fails_naming_it(
    tracking: Path, clean: pd.DataFrame, reference: str, named: str
) -> None:
    log_versions(clean)
    result = run_suite(reference, "preprocessed_data:v0")
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert f"check_data cannot resolve --reference_artifact {reference}" in output
    log = (tracking / "ml_pipeline.log").read_text()
    errors = [line for line in log.splitlines() if " ERROR [check_data] " in line]
    # One line naming the artifact and what the store holds, then the verdict; not 19 errors.
    assert len(errors) == 2, errors
    assert f"cannot resolve --reference_artifact {reference}" in errors[0]
    assert named in errors[0] and "preprocessed_data" in errors[0]
    assert "data check FAILED (exit status 1)" in errors[1]
    assert "no reference yet" not in log
    assert last_run().info.status == "FAILED"
    # The sample was not checked: no verdict is recorded on it.
    assert MlflowArtifactStore().resolve("preprocessed_data:v0").check == ""


def test_the_offline_wandb_run_keeps_the_suite_s_console_output(
    tracking: Path, clean: pd.DataFrame, half: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference, sample = log_versions(clean, half.assign(danceability=half["danceability"] * 0.7))
    monkeypatch.setenv("WANDB_MODE", "offline")
    result = run_suite(reference, sample)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    wandb_dir = Path(last_run().data.tags["wandb.dir"])
    output = (wandb_dir / "files" / "output.log").read_text()
    # pytest's own report (stdout) and the checks' log lines (stderr), as the console shows them.
    assert "test_data.py::test_ks_drift[danceability] FAILED" in output
    assert "column 'danceability' drifted" in output
    assert "data check FAILED (exit status 1): 1 of 19 checks failed" in output

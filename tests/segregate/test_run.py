"""segregate/run.py on a real store: it splits only data that passed its check, unless told to."""

from __future__ import annotations

import argparse
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from segregate.gate import UncheckedDataError
from segregate.run import flag, main, parse_args
from util_lib.artifacts.mlflow_store import MlflowArtifactStore
from util_lib.pipeline.config import config_problems
from util_lib.pipeline.setup import step_parameters
from util_lib.step.run import start_run

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def data_version(tracking: Path) -> str:
    """A preprocessed_data version of 40 rows (two genres), never checked."""
    songs = pd.DataFrame(
        {"tempo": [float(100 + i) for i in range(40)], "genre": ["Rap", "Emo"] * 20}
    )
    path = tracking / "preprocessed_data.parquet"
    songs.to_parquet(path, index=False)
    with start_run("preprocess", "preprocess_data") as run:
        return run.log_artifact(path, "preprocessed_data", "preprocessed_data", "for a test")


def _check(spec: str, passed: bool) -> str:
    """Record a data check's verdict on ``spec`` as check_data does; return the check's run."""
    with start_run("check_data", "data_check") as run:
        run.record_check(spec, passed)
        return run.run_id


def _segregate(spec: str, *extra: str) -> None:
    main(
        [
            "--input_artifact", spec,
            "--artifact_root", "data",
            "--artifact_type", "segregated_data",
            "--test_size", "0.25",
            "--random_seed", "0",
            "--stratify", "genre",
            *extra,
        ]
    )  # fmt: skip


def _split_versions() -> list[str]:
    store = MlflowArtifactStore()
    return [v.spec for name in ("data_train", "data_test") for v in store.versions(name)]


def _segregate_run() -> mlflow.entities.Run:
    (run,) = mlflow.search_runs(
        search_all_experiments=True,
        filter_string="tags.`util_lib.step` = 'segregate'",
        output_format="list",
    )
    return run


def test_a_version_that_passed_its_check_is_split(tracking: Path, data_version: str) -> None:
    check_run = _check(data_version, passed=True)
    _segregate(data_version)
    assert _split_versions() == ["data_train:v0", "data_test:v0"]
    log = (tracking / "ml_pipeline.log").read_text()
    assert f"{data_version} passed its data check (run {check_run})" in log


def test_a_version_that_failed_its_check_is_refused_naming_the_check_run(
    tracking: Path, data_version: str
) -> None:
    check_run = _check(data_version, passed=False)
    with pytest.raises(UncheckedDataError) as error:
        _segregate(data_version)
    message = str(error.value)
    assert f"{data_version} failed its data check (check_data run {check_run})" in message
    assert "mlflow ui" in message
    assert "python -m util_lib.artifacts list preprocessed_data" in message
    assert "data.allow_unchecked=true" in message
    assert _split_versions() == []
    assert _segregate_run().info.status == "FAILED"
    log = (tracking / "ml_pipeline.log").read_text()
    assert f"segregate failed: UncheckedDataError: {data_version} failed its data check" in log


def test_a_version_never_checked_is_refused(tracking: Path, data_version: str) -> None:
    with pytest.raises(UncheckedDataError, match="not been checked: run check_data on it first"):
        _segregate(data_version)
    assert _split_versions() == []


def test_the_latest_verdict_counts(tracking: Path, data_version: str) -> None:
    _check(data_version, passed=True)
    failed = _check(data_version, passed=False)  # a re-check replaces the verdict
    with pytest.raises(UncheckedDataError, match=failed):
        _segregate(data_version)


@pytest.mark.parametrize("verdict", [False, None])
def test_allow_unchecked_splits_anyway_with_a_warning(
    tracking: Path, data_version: str, verdict: bool | None
) -> None:
    if verdict is not None:
        _check(data_version, passed=verdict)
    _segregate(data_version, "--allow_unchecked", "True")
    assert _split_versions() == ["data_train:v0", "data_test:v0"]
    warnings = [
        line
        for line in (tracking / "ml_pipeline.log").read_text().splitlines()
        if " WARNING [segregate] " in line
    ]
    assert len(warnings) == 1, warnings
    assert data_version in warnings[0]
    assert "splitting it anyway (allow_unchecked=true)" in warnings[0]


@pytest.mark.parametrize(
    ("text", "value"),
    [("true", True), ("True", True), ("1", True), ("false", False), ("False", False), ("0", False)],
)
def test_flag_reads_what_mlflow_passes(text: str, value: bool) -> None:
    assert flag(text) is value


def test_flag_refuses_anything_else() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="'maybe' is not true or false"):
        flag("maybe")


@pytest.mark.parametrize(("override", "passed"), [(None, "false"), ("true", "true")])
def test_data_allow_unchecked_reaches_the_step(
    override: str | None, passed: str, tmp_path: Path
) -> None:
    """config.yaml's data.allow_unchecked -> main.py's parameter -> segregate's argument."""
    overrides = [f"data.allow_unchecked={override}"] if override else []
    with initialize_config_dir(config_dir=str(REPO), version_base="1.3"):
        config = compose(config_name="config", overrides=overrides)
    params = step_parameters("segregate", config, {}, tmp_path / "rf.yaml")
    assert params["allow_unchecked"] == passed
    argv = [f"--{name}={value}" for name, value in params.items()]
    assert parse_args(argv).allow_unchecked is (passed == "true")


def test_data_allow_unchecked_must_be_a_bool() -> None:
    # The configuration's rules (util_lib/pipeline/config_rules.py) name it before any step.
    with initialize_config_dir(config_dir=str(REPO), version_base="1.3"):
        config = compose(config_name="config", overrides=["data.allow_unchecked=maybe"])
    problems = [str(p) for p in config_problems(config) if p.key == "data.allow_unchecked"]
    assert problems == ["data.allow_unchecked='maybe': must be true or false"]

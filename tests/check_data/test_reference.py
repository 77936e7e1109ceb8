"""Only checked data becomes the drift reference, and each checked version keeps its verdict.

preprocess, the data-check suite (its MLproject command) and segregate on a real store.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from preprocess import run as preprocess_run
from segregate import run as segregate_run
from segregate.gate import UncheckedDataError
from tests.check_data.suite_runs import check_runs, log_versions, output, run_suite
from util_lib.artifacts.mlflow_store import MlflowArtifactStore
from util_lib.step.run import start_run

REFERENCE = "preprocessed_data:reference"
SKIPPED_NOTICE = "no reference yet: no version of preprocessed_data has the alias 'reference'"

# The suite's runs start warm from one fork server (conftest.py), on the worker of its group.
pytestmark = [pytest.mark.usefixtures("warm_suite"), pytest.mark.xdist_group("check_data_suite")]


def _preprocess(raw: pd.DataFrame, folder: Path) -> str:
    """Log ``raw`` as a new raw_data.parquet version, run preprocess on it; return its output."""
    folder.mkdir()
    path = folder / "genres.parquet"
    raw.to_parquet(path, index=False)
    with start_run("get_data", "download_data") as run:
        raw_spec = run.log_artifact(path, "raw_data.parquet", "raw_data", "raw data")
    preprocess_run.main(
        [
            "--input_artifact", raw_spec,
            "--artifact_name", "preprocessed_data",
            "--artifact_type", "preprocessed_data",
            "--artifact_description", "for a test",
        ]
    )  # fmt: skip
    return MlflowArtifactStore().versions("preprocessed_data")[-1].spec


def _segregate(spec: str) -> None:
    segregate_run.main(
        [
            "--input_artifact", spec,
            "--artifact_root", "data",
            "--artifact_type", "segregated_data",
            "--test_size", "0.3",
            "--random_seed", "42",
            "--stratify", "genre",
        ]
    )  # fmt: skip


def _with_reference(store: MlflowArtifactStore) -> list[str]:
    return [v.spec for v in store.versions("preprocessed_data") if "reference" in v.aliases]


def _list(name: str) -> dict[str, str]:
    """`python -m util_lib.artifacts list NAME`, run in this process (tests/cli.py; the
    command as a process: tests/util_lib/test_artifacts_cli.py): each version's row, by spec."""
    from tests.cli import run_main
    from util_lib.artifacts.cli import main

    listed = run_main(main, "list", name)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert " check " in f" {lines[1]} ", lines[1]  # the header names the column
    return {line.split()[0]: line for line in lines[3:]}


def test_a_bad_first_dataset_does_not_become_the_reference(
    tracking: Path, dataset_path: Path
) -> None:
    """The case of issue 12: a first dataset missing a column became the reference, and the
    good dataset failed every check after it."""
    raw = pd.read_parquet(dataset_path)
    store = MlflowArtifactStore()

    bad = _preprocess(raw.drop(columns="danceability"), tracking / "bad")
    assert _with_reference(store) == [], "preprocess must not set the reference"
    first = run_suite(REFERENCE, bad)
    assert first.returncode == 1, output(first)
    assert "column 'danceability' is missing" in first.stdout + first.stderr
    assert _with_reference(store) == [], "data that failed its check became the reference"

    good = _preprocess(raw, tracking / "good")
    second = run_suite(REFERENCE, good)
    assert second.returncode == 0, output(second)
    assert "4 passed, 15 skipped" in second.stdout
    assert _with_reference(store) == [good]

    failed_check, passed_check = (r.info.run_id for r in check_runs())
    versions = {v.spec: v for v in store.versions("preprocessed_data")}
    assert (versions[bad].check, versions[bad].check_run_id) == ("failed", failed_check)
    assert (versions[good].check, versions[good].check_run_id) == ("passed", passed_check)

    rows = _list("preprocessed_data")
    assert f"failed (check_data {failed_check[:8]})" in rows[bad]
    assert f"passed (check_data {passed_check[:8]})" in rows[good]
    assert all(" - " in row for row in _list("raw_data.parquet").values())  # never checked

    # segregate splits the good data and refuses the bad, naming the check that failed it.
    with pytest.raises(UncheckedDataError, match=f"{bad} failed its data check.*{failed_check}"):
        _segregate(bad)
    assert store.versions("data_train") == []
    _segregate(good)
    assert [v.spec for v in store.versions("data_train")] == ["data_train:v0"]


def test_with_no_reference_the_drift_tests_are_skipped_with_a_notice(
    tracking: Path, clean: pd.DataFrame
) -> None:
    (spec,) = log_versions(clean)
    result = run_suite(REFERENCE, spec)
    assert result.returncode == 0, output(result)
    assert "4 passed, 15 skipped" in result.stdout
    # pytest's report gives the reason: "SKIPPED [10] test_data.py:57: no reference yet: ..."
    # for the KS tests, the KL tests and the reference's own schema test (15 in all).
    counts = [
        int(line.split("[")[1].split("]")[0])
        for line in result.stdout.splitlines()
        if line.startswith("SKIPPED [") and SKIPPED_NOTICE in line
    ]
    assert sum(counts) == 15, result.stdout[-3000:]
    assert "test_ks_drift[tempo] SKIPPED" in result.stdout
    assert "test_kl_divergence[genre] SKIPPED" in result.stdout
    log = (tracking / "ml_pipeline.log").read_text()
    notice = [line for line in log.splitlines() if SKIPPED_NOTICE in line]
    assert len(notice) == 1 and " WARNING [check_data] " in notice[0], notice
    assert "the drift tests are skipped" in notice[0]
    assert "data check passed (exit status 0): 0 of 19 checks failed" in log


def test_the_reference_is_set_on_the_first_passing_version_only(
    tracking: Path, clean: pd.DataFrame, half: pd.DataFrame
) -> None:
    first, second = log_versions(clean, half)
    store = MlflowArtifactStore()
    assert run_suite(REFERENCE, first).returncode == 0
    assert _with_reference(store) == [first]

    # With a reference, the drift tests run; a later passing version leaves it where it is.
    result = run_suite(REFERENCE, second)
    assert result.returncode == 0, output(result)
    assert "19 passed" in result.stdout
    assert _with_reference(store) == [first]

    # A drifted version fails, is recorded as failed, and the reference stays.
    (drifted,) = log_versions(half.assign(danceability=half["danceability"] * 0.7))
    assert run_suite(REFERENCE, drifted).returncode == 1
    assert _with_reference(store) == [first]
    assert store.resolve(drifted).check == "failed"

    # A re-check of the same version replaces the verdict and the run (here: against itself).
    assert run_suite(drifted, drifted).returncode == 0
    runs = check_runs()
    assert len(runs) == 4
    version = store.resolve(drifted)
    assert (version.check, version.check_run_id) == ("passed", runs[-1].info.run_id)
    assert store.resolve(second).check_run_id == runs[1].info.run_id

"""Fixtures of the data-check tests: the real data as preprocess leaves it, and a fork server
that starts the suite's runs warm, as the pipeline's does."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.check_data.suite_runs import STEP_DIR


@pytest.fixture(scope="session")
def clean(dataset_path: Path) -> pd.DataFrame:
    """The real dataset as preprocess leaves it: text_feature added, duplicates dropped."""
    df = pd.read_parquet(dataset_path).drop_duplicates(ignore_index=True)
    text = df["title"].fillna("") + " " + df["song_name"].fillna("")
    return df.assign(text_feature=text.str.strip())


@pytest.fixture(scope="session")
def half(clean: pd.DataFrame) -> pd.DataFrame:
    """A random half of the clean data: new data that did not drift."""
    return clean.sample(frac=0.5, random_state=42).reset_index(drop=True)


@pytest.fixture(autouse=True)
def _no_stray_benchmarks_folder() -> Iterator[None]:
    """Remove the empty `.benchmarks` folder that pytest-benchmark, if installed, leaves in
    the step folder when a test runs the suite there (the step's own environment does not have
    that plugin)."""
    folder = STEP_DIR / ".benchmarks"
    existed = folder.exists()
    yield
    if not existed and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


@pytest.fixture(scope="session")
def suite_fork_server() -> Iterator[str]:
    """A fork server (util_lib/pipeline/forkserver.py) that has imported what the data-check suite
    imports (pipeline.yaml's ``imports`` of check_data, MLflow's SQLite store), as the
    pipeline's driver starts one before its steps; yields its socket ("" where none runs).

    The suite's MLproject command (``python -m util_lib.step.launcher -m pytest ...``) then forks
    from it, warm, as in a pipeline, instead of importing all that for each run (5-10 s on two
    cores); its launcher runs it cold itself whenever the server cannot stand for it, saying
    why. Only the runs of :func:`warm_suite`'s tests are given its address.
    """
    from util_lib.names import FORKSERVER_ENV
    from util_lib.pipeline import forkserver
    from util_lib.pipeline.graph import get_step

    before = os.environ.get(FORKSERVER_ENV)
    server = forkserver.start()
    if server is not None:
        step = get_step("check_data")
        forkserver.warm([*step.imports, forkserver.STORE_MODULE], step=step.folder)
    # Not this process's other children: only the suite's runs (warm_suite).
    if before is None:
        os.environ.pop(FORKSERVER_ENV, None)
    else:
        os.environ[FORKSERVER_ENV] = before
    try:
        yield server.address if server is not None else ""
    finally:
        if server is not None:
            server.stop()


@pytest.fixture
def warm_suite(suite_fork_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite's runs in this test (tests/check_data/suite_runs.py: run_suite) start from
    the session's fork server."""
    from util_lib.names import FORKSERVER_ENV

    if suite_fork_server:
        monkeypatch.setenv(FORKSERVER_ENV, suite_fork_server)

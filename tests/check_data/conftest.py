"""Fixtures of the data-check tests: the real data as preprocess leaves it."""

from __future__ import annotations

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

"""Fixtures of the data-check tests: the real data as preprocess leaves it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest


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

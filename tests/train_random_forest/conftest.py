"""Fixtures of the training tests: real songs (preprocessed) and a small forest config."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from preprocess.cleaning import preprocess

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def songs(dataset_path: Path) -> pd.DataFrame:
    """The whole dataset as the preprocess step leaves it (deduplicated, with text_feature)."""
    return preprocess(pd.read_parquet(dataset_path))


@pytest.fixture(scope="session")
def songs_sample(songs: pd.DataFrame) -> Callable[[int], pd.DataFrame]:
    """A function giving ``rows`` songs with the genre proportions of the whole dataset."""

    def take(rows: int) -> pd.DataFrame:
        sample, _ = train_test_split(
            songs, train_size=rows, stratify=songs["genre"], random_state=0
        )
        return sample.reset_index(drop=True)

    return take


@pytest.fixture(scope="session")
def sample(songs_sample: Callable[[int], pd.DataFrame]) -> pd.DataFrame:
    """400 songs, every genre present (the rarest, Pop, at least 4 times)."""
    return songs_sample(400)


@pytest.fixture
def model_config() -> dict[str, Any]:
    """The random_forest_pipeline section of config.yaml, resolved, with the default model
    (config group ``model``) under ``model``: a small fast forest."""
    from train_random_forest.model_config import read_model_config

    section = read_model_config("config.yaml")
    section["model"].update(n_estimators=10, n_jobs=1)
    return section

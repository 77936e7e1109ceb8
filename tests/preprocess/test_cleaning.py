"""Tests of preprocess.cleaning.preprocess."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from preprocess.cleaning import preprocess


@pytest.fixture
def raw() -> pd.DataFrame:
    """Five songs: row 3 repeats row 0 exactly; titles and names partly missing."""
    return pd.DataFrame(
        {
            "danceability": [0.5, 0.7, 0.2, 0.5, 0.9],
            "loudness": [-5.0, np.nan, -7.5, -5.0, np.nan],
            "genre": ["Rap", "Emo", "RnB", "Rap", "Emo"],
            "title": ["Intro", None, "Mix", "Intro", None],
            "song_name": ["Hello", "World", None, "Hello", None],
        }
    )


def test_drops_exact_duplicates_keeping_first(raw: pd.DataFrame) -> None:
    out = preprocess(raw)
    assert len(out) == 4
    assert list(out.index) == [0, 1, 2, 3]
    assert out["genre"].tolist() == ["Rap", "Emo", "RnB", "Emo"]


def test_other_columns_unchanged_and_not_imputed(raw: pd.DataFrame) -> None:
    out = preprocess(raw)
    expected = raw.drop(index=3).reset_index(drop=True)
    pd.testing.assert_frame_equal(out, expected)
    # Missing loudness stays missing: the model pipeline imputes it.
    assert out["loudness"].isna().sum() == 2
    assert out["title"].isna().sum() == 2


def test_rows_differing_in_one_value_are_kept(raw: pd.DataFrame) -> None:
    near = raw.copy()
    near.loc[3, "danceability"] = 0.51
    assert len(preprocess(near)) == 5


def test_input_is_not_modified(raw: pd.DataFrame) -> None:
    before = raw.copy(deep=True)
    preprocess(raw)
    pd.testing.assert_frame_equal(raw, before)


def test_no_column_is_added(raw: pd.DataFrame) -> None:
    # The text feature is the model's own (util_lib.model.transformers.join_text): the served
    # model takes rows as the dataset holds them.
    assert list(preprocess(raw).columns) == list(raw.columns)
    assert list(preprocess(raw.drop(columns="title")).columns) == list(raw.columns)[:-2] + [
        "song_name"
    ]

"""ModeImputer and fill_missing_text."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import NotFittedError
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from util_lib.transformers import ModeImputer, fill_missing_text


@parametrize_with_checks([ModeImputer()])
def test_scikit_learn_estimator_checks(estimator, check) -> None:
    check(estimator)


@pytest.fixture
def songs() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "key": [1.0, np.nan, 1.0, 5.0, np.nan],
            "mode_name": pd.Series(["minor", None, "major", "minor", "minor"], dtype="str"),
            "time_signature": [4, 4, 3, 3, 4],
        }
    )


def test_clone_and_params() -> None:
    imputer = ModeImputer()
    assert imputer.get_params() == {}
    assert isinstance(clone(imputer), ModeImputer)


def test_fills_each_column_with_its_mode(songs: pd.DataFrame) -> None:
    imputer = ModeImputer().fit(songs)
    assert list(imputer.modes_) == [1.0, "minor", 4]
    out = imputer.transform(songs)
    assert isinstance(out, np.ndarray) and out.shape == songs.shape
    assert list(out[:, 0]) == [1.0, 1.0, 1.0, 5.0, 1.0]
    assert list(out[:, 1]) == ["minor", "minor", "major", "minor", "minor"]
    assert list(out[:, 2]) == [4, 4, 3, 3, 4]
    assert songs["key"].isna().sum() == 2, "the input must not change"


def test_uses_the_modes_learned_in_fit(songs: pd.DataFrame) -> None:
    imputer = ModeImputer().fit(songs)
    new = pd.DataFrame(
        {"key": [np.nan, 7.0], "mode_name": [None, "major"], "time_signature": [4, 4]}
    )
    out = imputer.transform(new)
    assert list(out[:, 0]) == [1.0, 7.0]
    assert list(out[:, 1]) == ["minor", "major"]


def test_ties_go_to_the_smallest_value() -> None:
    imputer = ModeImputer().fit(np.array([[3.0], [2.0], [3.0], [2.0], [np.nan]]))
    assert imputer.modes_[0] == 2.0


def test_numpy_object_array() -> None:
    X = np.array([["a", 1], [None, 1], ["a", None], ["b", 2]], dtype=object)
    out = ModeImputer().fit_transform(X)
    assert out.tolist() == [["a", 1], ["a", 1], ["a", 1], ["b", 2]]


def test_feature_names_and_pandas_output(songs: pd.DataFrame) -> None:
    imputer = ModeImputer().fit(songs)
    assert list(imputer.get_feature_names_out()) == list(songs.columns)
    out = imputer.set_output(transform="pandas").transform(songs)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == list(songs.columns)
    assert not out.isna().any().any()


def test_a_column_with_no_value_is_named() -> None:
    with pytest.raises(ValueError, match="'loudness'"):
        ModeImputer().fit(pd.DataFrame({"key": [1, 2], "loudness": [np.nan, np.nan]}))


def test_transform_before_fit_and_wrong_width(songs: pd.DataFrame) -> None:
    with pytest.raises(NotFittedError):
        ModeImputer().transform(songs)
    imputer = ModeImputer().fit(songs)
    with pytest.raises(ValueError, match="time_signature"):
        imputer.transform(songs.drop(columns="time_signature"))


def test_fill_missing_text_gives_1d_strings() -> None:
    texts = pd.Series(["Lost Lands", None, np.nan, pd.NA, ""], dtype=object)
    out = fill_missing_text(texts)
    assert out.ndim == 1
    assert out.tolist() == ["Lost Lands", "", "", "", ""]
    column = fill_missing_text(np.array([["x"], [None]], dtype=object))
    assert column.tolist() == ["x", ""]


def test_fill_missing_text_refuses_two_columns() -> None:
    with pytest.raises(ValueError, match="one text column"):
        fill_missing_text(np.array([["a", "b"]], dtype=object))


def test_fill_missing_text_feeds_tfidf_in_a_column_transformer() -> None:
    df = pd.DataFrame({"text_feature": ["dark trap", None, "trap metal", np.nan]})
    tfidf = ColumnTransformer(
        [
            (
                "nlp",
                make_pipeline(FunctionTransformer(fill_missing_text), TfidfVectorizer()),
                "text_feature",
            )
        ]
    )
    out = tfidf.fit_transform(df)
    assert out.shape == (4, 3)  # dark, metal, trap
    assert out[1].sum() == 0 and out[3].sum() == 0

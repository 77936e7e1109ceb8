"""ModeImputer, MeanImputer and fill_missing_text; their lazy export from util_lib."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import NotFittedError
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from util_lib.model.transformers import MeanImputer, ModeImputer, fill_missing_text, join_text

REPO = Path(__file__).resolve().parents[2]


@parametrize_with_checks([ModeImputer(), MeanImputer()])
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


# ------------------------------------------------------------------ join_text
def test_join_text_joins_the_columns_in_order_with_missing_parts_empty() -> None:
    df = pd.DataFrame(
        {
            "title": ["Intro", None, "Mix", np.nan, pd.NA],
            "song_name": ["Hello", "World", None, np.nan, "Solo"],
        },
        dtype=object,
    )
    # What preprocess wrote as text_feature before the model built it (stripped).
    assert join_text(df).tolist() == ["Intro Hello", "World", "Mix", "", "Solo"]
    assert join_text(df[["song_name", "title"]]).tolist()[0] == "Hello Intro"
    assert join_text(np.array([["a", None, "c"]], dtype=object)).tolist() == ["a  c"]


def test_join_text_refuses_no_column() -> None:
    with pytest.raises(ValueError, match="at least one text column"):
        join_text(pd.DataFrame(index=[0, 1]))


def test_join_text_feeds_tfidf_from_the_text_columns_of_raw_rows() -> None:
    rows = pd.DataFrame({"title": ["dark trap", None], "song_name": [None, "trap metal"]})
    tfidf = ColumnTransformer(
        [
            (
                "nlp_text_feature",
                make_pipeline(FunctionTransformer(join_text), TfidfVectorizer()),
                ["title", "song_name"],
            )
        ]
    )
    assert tfidf.fit_transform(rows).shape == (2, 3)  # dark, metal, trap


# ------------------------------------------------------------------ MeanImputer
@pytest.fixture
def audio() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "tempo": [100.0, np.nan, 140.0, 120.0],
            "loudness": [-6.0, -8.0, np.nan, np.nan],
            "duration_ms": pd.Series([200_000, 100_000, None, 300_000], dtype="Int64"),
        }
    )


def test_mean_imputer_fills_each_column_with_its_mean(audio: pd.DataFrame) -> None:
    imputer = MeanImputer().fit(audio)
    np.testing.assert_allclose(imputer.means_, [120.0, -7.0, 200_000.0])
    out = imputer.transform(audio)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == audio.shape
    np.testing.assert_allclose(out[:, 0], [100.0, 120.0, 140.0, 120.0])
    np.testing.assert_allclose(out[:, 1], [-6.0, -8.0, -7.0, -7.0])
    np.testing.assert_allclose(out[:, 2], [200_000.0, 100_000.0, 200_000.0, 300_000.0])
    assert audio["loudness"].isna().sum() == 2, "the input must not change"


def test_mean_imputer_uses_the_means_learned_in_fit(audio: pd.DataFrame) -> None:
    imputer = MeanImputer().fit(audio)
    new = pd.DataFrame({"tempo": [np.nan, 90.0], "loudness": [0.0, None], "duration_ms": [1, 2]})
    np.testing.assert_allclose(imputer.transform(new), [[120.0, 0.0, 1.0], [90.0, -7.0, 2.0]])


def test_mean_imputer_keeps_float32() -> None:
    X = np.array([[1.0], [np.nan], [2.0]], dtype=np.float32)
    out = MeanImputer().fit_transform(X)
    assert out.dtype == np.float32
    assert out[:, 0].tolist() == [1.0, 1.5, 2.0]


def test_mean_imputer_names_the_columns_with_no_value() -> None:
    X = pd.DataFrame({"key": [1.0, 2.0], "loudness": [np.nan, np.nan]})
    with pytest.raises(ValueError, match=r"MeanImputer: column 'loudness' has no non-missing"):
        MeanImputer().fit(X)
    X["tempo"] = np.nan
    with pytest.raises(ValueError, match=r"columns 'loudness', 'tempo' have no non-missing"):
        MeanImputer().fit(X)
    with pytest.raises(ValueError, match=r"column 'x1'"):
        MeanImputer().fit(np.array([[1.0, np.nan], [2.0, np.nan]]))


def test_mean_imputer_refuses_text() -> None:
    with pytest.raises(ValueError, match="could not convert string to float"):
        MeanImputer().fit(pd.DataFrame({"genre": ["Rap", "Emo"]}))


def test_mean_imputer_feature_names_and_pandas_output(audio: pd.DataFrame) -> None:
    imputer = MeanImputer().fit(audio)
    assert list(imputer.get_feature_names_out()) == list(audio.columns)
    out = imputer.set_output(transform="pandas").transform(audio)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == list(audio.columns)
    assert not out.isna().any().any()
    with pytest.raises(ValueError, match="loudness"):
        imputer.transform(audio.drop(columns="loudness"))
    with pytest.raises(NotFittedError):
        MeanImputer().transform(audio)


def test_mean_imputer_in_a_pipeline(audio: pd.DataFrame) -> None:
    X = pd.concat([audio] * 5, ignore_index=True)
    y = np.arange(len(X)) % 2
    pipe = make_pipeline(
        ColumnTransformer([("num", MeanImputer(), ["tempo", "loudness"])]),
        StandardScaler(),
        LogisticRegression(),
    ).fit(X, y)
    assert pipe.predict(X).shape == (len(X),)
    imputer = pipe[0].named_transformers_["num"]
    np.testing.assert_allclose(imputer.means_, [120.0, -7.0])
    assert list(pipe[:-1].get_feature_names_out()) == ["num__tempo", "num__loudness"]


@pytest.mark.parametrize("imputer", [ModeImputer(), MeanImputer()], ids=type)
def test_skops_round_trip_with_only_its_own_type_trusted(imputer, audio: pd.DataFrame) -> None:
    """As the exported model is stored: skops, trusting the class by its module path."""
    import skops.io

    fitted = imputer.fit(audio)
    data = skops.io.dumps(fitted)
    name = f"util_lib.model.transformers.{type(imputer).__name__}"
    assert skops.io.get_untrusted_types(data=data) == [name]
    loaded = skops.io.loads(data, trusted=[name])
    assert type(loaded) is type(imputer)
    np.testing.assert_array_equal(loaded.transform(audio), fitted.transform(audio))


# ---------------------------------------------------------- export from util_lib
def test_seed_usage_from_util_lib_import() -> None:
    from util_lib import MeanImputer as Mean
    from util_lib import ModeImputer as Mode

    assert Mode is ModeImputer and Mean is MeanImputer
    songs = pd.DataFrame({"key": [1.0, np.nan, 1.0]})
    assert Mode().fit_transform(songs)[:, 0].tolist() == [1.0, 1.0, 1.0]


def test_util_lib_all_lists_what_it_exports() -> None:
    import util_lib

    assert util_lib.__all__ == sorted(util_lib._LAZY)
    assert set(util_lib.__all__) <= set(dir(util_lib))
    for name in util_lib.__all__:
        assert getattr(util_lib, name) is getattr(sys.modules["util_lib.model.transformers"], name)
    with pytest.raises(AttributeError, match="'util_lib' has no attribute 'Nope'"):
        util_lib.Nope  # noqa: B018


def _imported_after(code: str) -> set[str]:
    """Top-level modules in sys.modules after ``code`` runs in a fresh interpreter."""
    probe = f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


@pytest.mark.integration
def test_import_util_lib_stays_cheap() -> None:
    heavy = {"sklearn", "mlflow", "wandb", "pandas"}
    assert not heavy & _imported_after("import util_lib")
    # The probe can see them: asking for a transformer does import scikit-learn.
    assert "sklearn" in _imported_after("from util_lib import ModeImputer")

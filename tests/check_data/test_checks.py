"""Tests of check_data.checks: the real data pass, crafted bad data fail naming the column."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from check_data.checks import (
    KL_THRESHOLD,
    DataCheckError,
    check_columns_and_dtypes,
    check_labels,
    check_missing_values,
    check_no_drift,
    check_value_ranges,
    kl_divergence,
    kl_divergence_check,
    ks_drift,
)
from util_lib.step.contract import read_contract
from util_lib.step.data_schema import data_schema, required_columns, value_ranges

ALPHA = 0.05
# The songs' contract: the checks given none use the one config.yaml chooses, this one.
CONTRACT = read_contract("conf/dataset/genres.yaml")
NUMERICAL_COLUMNS, CATEGORICAL_COLUMNS = CONTRACT.drift_columns()
REQUIRED_COLUMNS = required_columns(data_schema(CONTRACT))
VALUE_RANGES = value_ranges(data_schema(CONTRACT))


@pytest.fixture
def small() -> pd.DataFrame:
    """Four valid rows with every required column."""
    return pd.DataFrame(
        {
            "danceability": [0.8, 0.5, 0.3, 0.9],
            "energy": [0.9, 0.7, 0.2, 1.0],
            "key": [1, 11, 0, 5],
            "loudness": [-5.0, np.nan, -12.5, 2.0],
            "mode": [1, 0, 0, 1],
            "speechiness": [0.05, 0.3, 0.1, 0.02],
            "acousticness": [0.01, 0.2, 0.9, 0.0],
            "instrumentalness": [0.0, 0.5, 0.9, 0.1],
            "liveness": [0.1, 0.3, 0.05, 0.6],
            "valence": [0.2, 0.6, 0.4, 0.9],
            "tempo": [140.0, 90.5, 175.2, 128.0],
            "type": ["audio_features"] * 4,
            "duration_ms": [200_000, 180_500, 320_000, 95_000],
            "time_signature": [4, 4, 3, 4],
            "genre": ["techno", "Rap", "Emo", "trance"],
            "song_name": ["A", None, "C", None],
            "title": [None, "B", None, None],
        }
    )


def _raises_naming(column: str, *values: str) -> pytest.RaisesExc:
    """Expect a DataCheckError whose message names ``column`` (and the values)."""
    pattern = f"'{column}'" + "".join(f".*{v}" for v in values)
    return pytest.raises(DataCheckError, match=pattern)


# ---------------------------------------------------------------- the real data pass


def test_real_data_passes_every_check(clean: pd.DataFrame, half: pd.DataFrame) -> None:
    check_columns_and_dtypes(clean)
    check_labels(clean)
    check_missing_values(clean)
    check_value_ranges(clean)
    check_no_drift(ks_drift(clean, half, NUMERICAL_COLUMNS, ALPHA))
    kl_divergence_check(clean, half, CATEGORICAL_COLUMNS, KL_THRESHOLD)


def test_real_data_has_the_known_genres(clean: pd.DataFrame) -> None:
    assert set(clean["genre"].unique()) == set(CONTRACT.labels)


def test_small_frame_passes(small: pd.DataFrame) -> None:
    check_columns_and_dtypes(small)
    check_labels(small)
    check_missing_values(small)
    check_value_ranges(small)


def test_data_check_error_is_an_assertion_error() -> None:
    # pytest must report a failed check as a failed test, not as an error of the suite.
    assert issubclass(DataCheckError, AssertionError)


# ---------------------------------------------------------------- schema


def test_tempo_as_strings_fails_naming_the_column(small: pd.DataFrame) -> None:
    small["tempo"] = small["tempo"].astype(str)
    with _raises_naming("tempo", r"dtype\('float64'\)", "got str"):
        check_columns_and_dtypes(small)


def test_float_key_fails_as_not_integer(small: pd.DataFrame) -> None:
    small["key"] = small["key"].astype(float)
    with _raises_naming("key", r"dtype\('int64'\)", "got float64"):
        check_columns_and_dtypes(small)


def test_numeric_genre_fails_as_not_string(small: pd.DataFrame) -> None:
    small["genre"] = [1, 2, 3, 4]
    with _raises_naming("genre", "dtype", "string", r"in 4 rows \(e.g. \[1, 2, 3, 4\]\)"):
        check_columns_and_dtypes(small)


def test_object_holding_numbers_fails_naming_the_values(small: pd.DataFrame) -> None:
    small["type"] = pd.Series(["audio_features", 7, "audio_features", 8.5], dtype=object)
    with _raises_naming("type", "dtype", r"in 2 rows \(e.g. \[7, 8.5\]\)"):
        check_columns_and_dtypes(small)


def test_object_strings_pass_as_string(small: pd.DataFrame) -> None:
    small["song_name"] = small["song_name"].astype(object)
    assert small["song_name"].dtype == object
    check_columns_and_dtypes(small)


def test_missing_column_fails_naming_it(small: pd.DataFrame) -> None:
    with _raises_naming("song_name", "is missing", "column_in_dataframe"):
        check_columns_and_dtypes(small.drop(columns="song_name"))


def test_every_violation_is_reported(small: pd.DataFrame) -> None:
    small["tempo"] = small["tempo"].astype(str)
    with pytest.raises(DataCheckError) as error:
        check_columns_and_dtypes(small.drop(columns=["valence", "genre"]))
    message = str(error.value)
    for column in ("valence", "genre", "tempo"):
        assert f"'{column}'" in message


def test_other_kinds_of_failure_are_left_to_their_check(small: pd.DataFrame) -> None:
    # One validation finds everything; each check reports only its own kind.
    small.loc[0, "danceability"] = 7.0
    small.loc[1, "genre"] = "Polka"
    small.loc[2, "energy"] = np.nan
    check_columns_and_dtypes(small)
    with pytest.raises(DataCheckError) as error:
        check_value_ranges(small)
    assert "'danceability'" in str(error.value)
    assert "'genre'" not in str(error.value) and "'energy'" not in str(error.value)


def test_required_columns_cover_the_model_features() -> None:
    assert set(NUMERICAL_COLUMNS) <= set(REQUIRED_COLUMNS)
    assert set(CATEGORICAL_COLUMNS) <= set(REQUIRED_COLUMNS)


# ---------------------------------------------------------------- classes and missing values


def test_unknown_genre_fails_naming_it(small: pd.DataFrame) -> None:
    small.loc[1, "genre"] = "Polka"
    small.loc[3, "genre"] = "Polka"
    with _raises_naming("genre", r"isin\(labels\) in 2 rows", "Polka"):
        check_labels(small)


def test_missing_genre_fails(small: pd.DataFrame) -> None:
    small.loc[2, "genre"] = None
    with _raises_naming("genre", "not_nullable", "1 missing values", r"rows \[2\]"):
        check_missing_values(small)
    check_labels(small)  # a missing label is not an unknown class


def test_missing_value_outside_nullable_columns_fails(small: pd.DataFrame) -> None:
    small.loc[0, "danceability"] = np.nan
    with _raises_naming("danceability", "not_nullable", "1 missing values"):
        check_missing_values(small)


def test_missing_loudness_is_allowed(small: pd.DataFrame) -> None:
    small.loc[[0, 2], "loudness"] = np.nan
    check_missing_values(small)
    check_value_ranges(small)


@pytest.mark.parametrize("column", ["loudness", "title", "tempo"])
def test_a_column_entirely_missing_fails_even_where_nulls_are_allowed(
    small: pd.DataFrame, column: str
) -> None:
    small[column] = pd.Series([None] * 4, dtype=small[column].dtype)
    with _raises_naming(column, "not_all_missing", "every value is missing"):
        check_missing_values(small)


# ---------------------------------------------------------------- ranges


@pytest.mark.parametrize(
    ("column", "bad_value"),
    [
        ("danceability", 1.2),
        ("energy", -0.1),
        ("loudness", -75.0),
        ("tempo", 420.0),
        ("duration_ms", 0),
        ("duration_ms", 250),  # seconds, not milliseconds
        ("key", 12),
        ("mode", 2),
        ("time_signature", 8),
    ],
)
def test_value_out_of_range_fails_naming_column_and_value(
    small: pd.DataFrame, column: str, bad_value: float
) -> None:
    small[column] = small[column].astype(type(bad_value))
    small.loc[2, column] = bad_value
    low, high = VALUE_RANGES[column]
    bounds = re.escape(f"in_range({low}, {high})")
    with _raises_naming(column, bounds, "in 1 rows", re.escape(f"[{bad_value}]")):
        check_value_ranges(small)


def test_range_check_on_strings_fails_naming_the_column(small: pd.DataFrame) -> None:
    small["tempo"] = small["tempo"].astype(str)
    with _raises_naming("tempo", r"in_range\(0.0, 300.0\)", "TypeError"):
        check_value_ranges(small)


def test_range_check_leaves_an_absent_column_to_the_schema_check(small: pd.DataFrame) -> None:
    check_value_ranges(small.drop(columns="liveness"))
    with _raises_naming("liveness", "is missing"):
        check_columns_and_dtypes(small.drop(columns="liveness"))


# ---------------------------------------------------------------- KS drift


@pytest.mark.parametrize(
    ("column", "shift"),
    [
        ("danceability", lambda s: s * 0.7),
        ("energy", lambda s: s**2),
        ("tempo", lambda s: s * 0.9),
    ],
)
def test_shifted_distribution_inside_the_ranges_fails_ks(
    clean: pd.DataFrame, half: pd.DataFrame, column: str, shift
) -> None:
    shifted = half.copy()
    shifted[column] = shift(shifted[column])
    check_value_ranges(shifted)  # still valid values: only the drift test can catch it
    results = ks_drift(clean, shifted, NUMERICAL_COLUMNS, ALPHA)
    assert [r.column for r in results if r.drifted] == [column]
    with _raises_naming(column, "drifted", "p-value"):
        check_no_drift(results)


def test_ks_uses_bonferroni_correction(clean: pd.DataFrame, half: pd.DataFrame) -> None:
    results = ks_drift(clean, half, NUMERICAL_COLUMNS, ALPHA)
    assert [r.column for r in results] == list(NUMERICAL_COLUMNS)
    assert all(r.threshold == pytest.approx(ALPHA / len(NUMERICAL_COLUMNS)) for r in results)
    column, statistic, p_value, _ = results[0]
    assert column == NUMERICAL_COLUMNS[0] and 0 <= statistic <= 1 and 0 <= p_value <= 1


def test_ks_ignores_missing_values(clean: pd.DataFrame) -> None:
    (result,) = ks_drift(clean, clean, ["loudness"], ALPHA)
    assert clean["loudness"].isna().any()
    assert result.statistic == 0 and not result.drifted


def test_ks_on_absent_or_empty_column_fails_naming_it(small: pd.DataFrame) -> None:
    with _raises_naming("tempo", "missing from the sample"):
        ks_drift(small, small.drop(columns="tempo"), ["tempo"], ALPHA)
    empty = small.assign(loudness=np.nan)
    with _raises_naming("loudness", "no values in the reference"):
        ks_drift(empty, small, ["loudness"], ALPHA)


def test_ks_on_strings_fails_naming_the_column(small: pd.DataFrame) -> None:
    with _raises_naming("tempo", "not numeric"):
        ks_drift(small, small.assign(tempo=small["tempo"].astype(str)), ["tempo"], ALPHA)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.5])
def test_ks_rejects_an_invalid_alpha(small: pd.DataFrame, alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        ks_drift(small, small, ["tempo"], alpha)


# ---------------------------------------------------------------- KL divergence


def test_kl_of_identical_frequencies_is_zero() -> None:
    reference = pd.Series([1, 1, 2, 3])
    assert kl_divergence(reference, pd.Series([3, 2, 1, 1, 1, 1, 2, 3])) == pytest.approx(0)


def test_kl_of_an_unseen_category_is_finite_and_large() -> None:
    divergence = kl_divergence(pd.Series([0, 1] * 50), pd.Series([0, 1, 2, 2] * 25))
    assert np.isfinite(divergence) and divergence > 1


def test_kl_detects_a_shifted_categorical(clean: pd.DataFrame, half: pd.DataFrame) -> None:
    shifted = half.copy()
    moved = shifted.sample(frac=0.1, random_state=0).index
    shifted.loc[moved, "time_signature"] = 3
    with _raises_naming("time_signature", "KL", "> 0.01"):
        kl_divergence_check(clean, shifted, CATEGORICAL_COLUMNS, KL_THRESHOLD)


def test_kl_detects_swapped_mode(clean: pd.DataFrame, half: pd.DataFrame) -> None:
    with _raises_naming("mode", "KL"):
        kl_divergence_check(clean, half.assign(mode=1 - half["mode"]), ["mode"], KL_THRESHOLD)


def test_kl_detects_a_label_shift(clean: pd.DataFrame) -> None:
    electronic = clean[clean["genre"].isin(["dnb", "techno", "trance", "psytrance"])]
    with _raises_naming("genre", "KL"):
        kl_divergence_check(clean, electronic, ["genre"], KL_THRESHOLD)


def test_kl_returns_the_divergences_when_it_passes(clean: pd.DataFrame, half: pd.DataFrame) -> None:
    divergences = kl_divergence_check(clean, half, CATEGORICAL_COLUMNS, KL_THRESHOLD)
    assert set(divergences) == set(CATEGORICAL_COLUMNS)
    assert all(0 <= d < KL_THRESHOLD / 10 for d in divergences.values())

"""build_pipeline, split_train_val, train_and_validate on real songs."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from train_random_forest.pipeline import build_pipeline, split_train_val, train_and_validate
from train_random_forest.plots import feature_importances
from util_lib.step.data_schema import DataContractError
from util_lib.step.metrics import score_auc


def _fit(model_config: dict[str, Any], df: pd.DataFrame) -> tuple[Pipeline, float, pd.DataFrame]:
    pipe, columns = build_pipeline(model_config)
    X_train, X_val, y_train, y_val = split_train_val(df, "genre", 0.3, 42, "genre")
    pipe, auc = train_and_validate(pipe, columns, X_train, y_train, X_val, y_val)
    return pipe, auc, X_val


def test_build_pipeline_uses_every_configured_column(model_config: dict[str, Any]) -> None:
    pipe, used_columns = build_pipeline(model_config)
    features = model_config["features"]
    assert used_columns == features["numerical"] + features["categorical"] + features["nlp"]
    selected = {name: columns for name, _, columns in pipe["processor"].transformers}
    assert selected["numerical"] == features["numerical"]
    assert selected["categorical"] == features["categorical"]
    # The text columns, joined into the text feature inside the model (raw rows served).
    assert selected["nlp_text_feature"] == ["title", "song_name"]
    tfidf = pipe["processor"].transformers[2][1][-1]
    assert tfidf.get_params()["max_features"] == model_config["tfidf"]["max_features"]
    assert type(pipe["classifier"]).__name__ == model_config["model"]["_target_"].split(".")[-1]
    forest = pipe["classifier"].get_params()
    arguments = {k: v for k, v in model_config["model"].items() if k != "_target_"}
    assert {k: forest[k] for k in arguments} == arguments


@pytest.mark.parametrize(
    ("remove", "named"),
    [
        (("tfidf",), "'tfidf'"),
        (("model",), "'model'"),
        (("features", "nlp"), "nlp"),
    ],
)
def test_build_pipeline_names_a_missing_config_entry(
    model_config: dict[str, Any], remove: tuple[str, ...], named: str
) -> None:
    config = copy.deepcopy(model_config)
    parent = config
    for key in remove[:-1]:
        parent = parent[key]
    del parent[remove[-1]]
    with pytest.raises(KeyError, match=named):
        build_pipeline(config)


def test_build_pipeline_refuses_a_column_configured_twice(model_config: dict[str, Any]) -> None:
    model_config["features"]["categorical"].append("tempo")
    with pytest.raises(ValueError, match="tempo"):
        build_pipeline(model_config)


def test_fit_and_predict(model_config: dict[str, Any], sample: pd.DataFrame) -> None:
    pipe, auc, X_val = _fit(model_config, sample)
    assert set(pipe.classes_) == set(sample["genre"])
    predictions = pipe.predict(X_val)
    assert len(predictions) == len(X_val)
    assert set(predictions) <= set(pipe.classes_)
    proba = pipe.predict_proba(X_val)
    assert proba.shape == (len(X_val), len(pipe.classes_))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert 0.5 < auc <= 1.0
    assert auc == score_auc(pipe, X_val, sample.loc[X_val.index, "genre"])


def test_score_auc_scores_on_one_thread_and_restores_n_jobs(
    model_config: dict[str, Any], sample: pd.DataFrame
) -> None:
    model_config["model"]["n_jobs"] = 2
    pipe, auc, X_val = _fit(model_config, sample)
    y_val = sample.loc[X_val.index, "genre"]
    assert pipe["classifier"].n_jobs == 2  # the model keeps the threads it was given
    one_thread = copy.deepcopy(pipe).set_params(classifier__n_jobs=1)
    expected = roc_auc_score(
        y_val, one_thread.predict_proba(X_val), multi_class="ovo", labels=pipe.classes_
    )
    assert [score_auc(pipe, X_val, y_val) for _ in range(3)] == [auc] * 3 == [expected] * 3


def test_predicts_rows_with_missing_and_unseen_values(
    model_config: dict[str, Any], sample: pd.DataFrame
) -> None:
    pipe, _, X_val = _fit(model_config, sample)
    rows = X_val.iloc[:4].copy()
    rows["loudness"] = np.nan
    rows["key"] = [np.nan, 99.0, 1.0, np.nan]  # missing (mode-imputed) and unseen (-1)
    rows["text_feature"] = pd.Series([None, np.nan, "", "Lost Lands 2019"], dtype=object).values
    assert len(pipe.predict(rows)) == 4
    processor = pipe["processor"]
    encoded_key = processor.transform(rows)[:, processor.output_indices_["categorical"]][:, 1]
    key_mode = processor.named_transformers_["categorical"][0].modes_[1]
    key_categories = list(processor.named_transformers_["categorical"][1].categories_[1])
    assert encoded_key[1] == -1  # unseen
    assert encoded_key[0] == encoded_key[3] == key_categories.index(key_mode)  # missing: mode


def test_missing_configured_column_is_named(
    model_config: dict[str, Any], sample: pd.DataFrame
) -> None:
    pipe, columns = build_pipeline(model_config)
    X_train, X_val, y_train, y_val = split_train_val(sample, "genre", 0.3, 42, "genre")
    with pytest.raises(ValueError, match="loudness"):
        train_and_validate(pipe, columns, X_train.drop(columns="loudness"), y_train, X_val, y_val)
    with pytest.raises(ValueError, match="song_name"):
        train_and_validate(pipe, columns, X_train, y_train, X_val.drop(columns="song_name"), y_val)


@pytest.mark.parametrize("column", ["loudness", "tempo"])
def test_a_feature_without_values_stops_training_naming_it(
    model_config: dict[str, Any], sample: pd.DataFrame, column: str
) -> None:
    # The step's functions in run.py's order. Without the data contract the imputer dropped the
    # column with a warning and the step crashed in the plot: "zip() argument 2 is shorter
    # than argument 1".
    pipe, columns = build_pipeline(model_config)
    X_train, X_val, y_train, y_val = split_train_val(sample, "genre", 0.3, 42, "genre")
    X_train[column] = np.nan
    expected = f"the training data break the data contract.*'{column}' fails not_all_missing"
    with pytest.raises(DataContractError, match=expected):
        fitted, _ = train_and_validate(pipe, columns, X_train, y_train, X_val, y_val)
        feature_importances(fitted)
    with pytest.raises(NotFittedError):
        check_is_fitted(pipe)  # stopped before fitting


def test_validation_data_outside_the_contract_stops_training_naming_it(
    model_config: dict[str, Any], sample: pd.DataFrame
) -> None:
    pipe, columns = build_pipeline(model_config)
    X_train, X_val, y_train, y_val = split_train_val(sample, "genre", 0.3, 42, "genre")
    X_val = X_val.assign(danceability=X_val["danceability"] - 50, key=X_val["key"].astype(float))
    with pytest.raises(DataContractError) as error:
        train_and_validate(pipe, columns, X_train, y_train, X_val, y_val)
    message = str(error.value)
    assert message.startswith("the validation data break the data contract")
    assert "column 'danceability' fails in_range(0.0, 1.0) in" in message
    assert "column 'key' fails dtype('int64'): got float64" in message
    with pytest.raises(NotFittedError):
        check_is_fitted(pipe)


def test_the_guard_reads_only_the_models_columns(
    model_config: dict[str, Any], sample: pd.DataFrame
) -> None:
    # Columns the model does not read (mode, type...) are check_data's business.
    df = sample.assign(mode=7, type=None, popularity=np.nan)
    model_config["features"]["numerical"].append("popularity")  # not in the table's contract
    pipe, columns = build_pipeline(model_config)
    X_train, X_val, y_train, y_val = split_train_val(df, "genre", 0.3, 42, "genre")
    with pytest.raises(DataContractError, match="'popularity' fails not_all_missing") as error:
        train_and_validate(pipe, columns, X_train, y_train, X_val, y_val)
    assert "'mode'" not in str(error.value) and "'type'" not in str(error.value)


def test_same_seed_same_predictions(model_config: dict[str, Any], sample: pd.DataFrame) -> None:
    first, _, X_val = _fit(model_config, sample)
    second, _, _ = _fit(model_config, sample)
    np.testing.assert_array_equal(first.predict_proba(X_val), second.predict_proba(X_val))
    model_config["model"]["random_state"] += 1
    other_seed, _, _ = _fit(model_config, sample)
    assert not np.array_equal(first.predict_proba(X_val), other_seed.predict_proba(X_val))


def test_validation_auc_on_5000_real_songs(
    model_config: dict[str, Any], songs_sample: Callable[[int], pd.DataFrame]
) -> None:
    _, auc, _ = _fit(model_config, songs_sample(5000))
    assert auc > 0.8


def test_split_train_val_is_stratified_and_disjoint(sample: pd.DataFrame) -> None:
    X_train, X_val, y_train, y_val = split_train_val(sample, "genre", 0.25, 3, "genre")
    assert len(X_val) == 100 and len(X_train) == 300
    assert "genre" not in X_train.columns
    assert set(X_train.index).isdisjoint(X_val.index)
    assert (y_train.index == X_train.index).all() and (y_val.index == X_val.index).all()
    shares = sample["genre"].value_counts(normalize=True)
    val_shares = y_val.value_counts(normalize=True).reindex(shares.index, fill_value=0)
    assert (val_shares - shares).abs().max() < 0.02
    again = split_train_val(sample, "genre", 0.25, 3, "genre")
    assert again[1].index.equals(X_val.index)


def test_split_train_val_without_stratification(sample: pd.DataFrame) -> None:
    _, X_val, _, _ = split_train_val(sample, "genre", 0.3, 3, None)
    assert len(X_val) == 120


@pytest.mark.parametrize(("target", "stratify"), [("style", None), ("genre", "mood")])
def test_split_train_val_names_a_missing_column(
    sample: pd.DataFrame, target: str, stratify: str | None
) -> None:
    with pytest.raises(ValueError, match=stratify or target):
        split_train_val(sample, target, 0.3, 3, stratify)


def test_a_table_with_numerical_columns_only_needs_no_other_transformer(
    model_config: dict[str, Any], sample: pd.DataFrame
) -> None:
    """A contract without text or categorical columns (e.g. the wine table): no TF-IDF branch,
    no encoder left unfitted, no categories in the served domain."""
    from train_random_forest.pipeline import trained_categories

    numerical = model_config["features"]["numerical"]
    model_config["features"] = {"numerical": numerical, "categorical": [], "nlp": []}
    pipe, auc, X_val = _fit(model_config, sample)
    assert [name for name, *_ in pipe["processor"].transformers] == ["numerical"]
    assert list(pipe.feature_names_in_) == numerical
    assert trained_categories(pipe) == {}
    assert feature_importances(pipe) is not None and 0.5 < auc <= 1

"""search_parameters: GridSearchCV over the inference pipeline, on real songs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from train_random_forest.pipeline import build_pipeline, search_parameters
from util_lib.step.data_schema import DataContractError

TARGET = "genre"


@pytest.fixture
def grid() -> dict[str, Any]:
    return {
        "param_grid": {"classifier__max_depth": [1, 8], "classifier__min_samples_leaf": [1, 2]},
        "cv": 2,
        "scoring": "roc_auc_ovo",
    }


def test_grid_search_returns_the_best_point_of_the_table(
    sample: pd.DataFrame, model_config: dict[str, Any], grid: dict[str, Any]
) -> None:
    pipe, used = build_pipeline(model_config)
    X, y = sample.drop(columns=[TARGET]), sample[TARGET]

    best_params, best_score, results = search_parameters(pipe, used, X, y, grid)

    assert len(results) == 4
    top = results.sort_values("rank_test_score").iloc[0]
    assert best_score == pytest.approx(top["mean_test_score"])
    assert best_params == {
        "classifier__max_depth": top["param_classifier__max_depth"],
        "classifier__min_samples_leaf": top["param_classifier__min_samples_leaf"],
    }
    assert best_params["classifier__max_depth"] == 8  # depth-1 stumps cannot tell 15 genres
    assert pipe.get_params()["classifier__max_depth"] == model_config["model"]["max_depth"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"param_grid": {"classifier__max_dept": [5]}}, "classifier__max_dept"),
        ({"param_grid": {"classifier__max_depth": []}}, "empty list"),
        ({"cv": None}, r"missing: \['cv'\]"),
        ({"n_jobs": 2}, r"unknown: \['n_jobs'\]"),
    ],
)
def test_bad_grid_settings_are_named(
    sample: pd.DataFrame,
    model_config: dict[str, Any],
    grid: dict[str, Any],
    change: dict[str, Any],
    message: str,
) -> None:
    pipe, used = build_pipeline(model_config)
    settings = {k: v for k, v in {**grid, **change}.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        search_parameters(pipe, used, sample.drop(columns=[TARGET]), sample[TARGET], settings)


def test_grid_search_stops_on_a_feature_without_values(
    sample: pd.DataFrame, model_config: dict[str, Any], grid: dict[str, Any]
) -> None:
    pipe, used = build_pipeline(model_config)
    X, y = sample.drop(columns=[TARGET]).assign(energy=np.nan), sample[TARGET]
    with pytest.raises(DataContractError, match="'energy' fails not_all_missing"):
        search_parameters(pipe, used, X, y, grid)

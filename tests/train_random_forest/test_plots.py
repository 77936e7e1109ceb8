"""Feature importance of the fitted pipeline."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from train_random_forest.pipeline import build_pipeline
from train_random_forest.plots import feature_importances, plot_feature_importance


@pytest.fixture
def fitted(model_config: dict[str, Any], sample: pd.DataFrame) -> tuple[Pipeline, list[str]]:
    """The fitted pipeline and its inputs as importances name them: each numerical and
    categorical column, and the text feature (one, made of the text columns)."""
    pipe, columns = build_pipeline(model_config)
    pipe.fit(sample[columns], sample["genre"])
    text = model_config["features"]["nlp"]
    return pipe, [c for c in columns if c not in text] + [model_config["text_feature"]]


def test_one_importance_per_input_column(fitted: tuple[Pipeline, list[str]]) -> None:
    pipe, columns = fitted
    importances = feature_importances(pipe)
    assert set(importances) == set(columns)
    assert list(importances.values()) == sorted(importances.values(), reverse=True)
    assert sum(importances.values()) == pytest.approx(1.0)
    # The text column's importance is the sum over its TF-IDF terms (several of them).
    processor = pipe["processor"]
    text_terms = processor.output_indices_["nlp_text_feature"]
    assert text_terms.stop - text_terms.start > 1
    forest = pipe["classifier"].feature_importances_
    assert importances["text_feature"] == pytest.approx(forest[text_terms].sum())
    tempo = columns.index("tempo")  # numerical columns come first, one output each
    assert importances["tempo"] == pytest.approx(forest[tempo])


def test_plot_has_a_bar_per_column_largest_first(fitted: tuple[Pipeline, list[str]]) -> None:
    pipe, columns = fitted
    figure = plot_feature_importance(pipe)
    try:
        ax = figure.axes[0]
        widths = [bar.get_width() for bar in ax.patches]
        labels = [tick.get_text() for tick in ax.get_yticklabels()]
        assert len(widths) == len(columns)
        assert labels == list(feature_importances(pipe))
        np.testing.assert_allclose(widths, list(feature_importances(pipe).values()))
    finally:
        plt.close(figure)


@pytest.mark.parametrize("family", ["hist_gradient_boosting", "logistic_regression"])
def test_a_model_without_importances_gets_no_plot(
    family: str, model_config: dict[str, Any], sample: pd.DataFrame
) -> None:
    from train_random_forest.model_config import read_model_config

    model_config["model"] = read_model_config("config.yaml", f"conf/model/{family}.yaml")["model"]
    model_config["model"].update({"max_iter": 5} if family.startswith("hist") else {})
    pipe, columns = build_pipeline(model_config)
    pipe.fit(sample[columns], sample["genre"])
    assert feature_importances(pipe) is None
    assert plot_feature_importance(pipe) is None

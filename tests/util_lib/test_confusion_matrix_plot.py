"""The shared confusion-matrix figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.tree import DecisionTreeClassifier

from util_lib.step.plots import plot_confusion_matrix


def test_rows_are_normalized_per_true_class() -> None:
    X = pd.DataFrame({"x": [0.0, 0.0, 0.0, 0.0, 1.0, 1.0]})
    y_fit = pd.Series(["a", "a", "a", "a", "b", "b"])
    model = DecisionTreeClassifier().fit(X, y_fit)  # x=0 -> a, x=1 -> b
    y_true = pd.Series(["a", "a", "a", "b", "b", "b"])  # one b predicted as a
    figure = plot_confusion_matrix(model, X, y_true, title="Check")
    try:
        ax = figure.axes[0]
        matrix = np.asarray(ax.images[0].get_array())
        np.testing.assert_allclose(matrix, [[1.0, 0.0], [1 / 3, 2 / 3]])
        assert ax.get_title() == "Check"
        assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    finally:
        plt.close(figure)

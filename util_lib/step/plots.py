"""Figures that more than one step draws."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_confusion_matrix(model: Any, X: pd.DataFrame, y: pd.Series, title: str = "") -> Figure:
    """Draw the confusion matrix of a fitted classifier, each row normalized to its true class.

    Parameters
    ----------
    model : classifier
        Fitted, with ``predict`` and ``classes_``.
    X : pandas.DataFrame
        Features.
    y : pandas.Series
        True classes.
    title : str, default=""
        Title of the figure.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (open in pyplot until closed; ``run.log_figure`` closes it); the diagonal
        holds the recall of each class.
    """
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    figure, ax = plt.subplots(figsize=(10, 10))
    ConfusionMatrixDisplay.from_estimator(
        model,
        X,
        y,
        ax=ax,
        normalize="true",
        values_format=".2f",
        xticks_rotation=90,
        colorbar=False,
    )
    if title:
        ax.set_title(title)
    figure.tight_layout()
    return figure

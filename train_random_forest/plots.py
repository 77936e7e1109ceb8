"""Figures of the trained pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from sklearn.pipeline import Pipeline

from train_random_forest.pipeline import NLP_PREFIX

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def feature_importances(pipe: Pipeline) -> dict[str, float] | None:
    """Return the model's impurity importance of each input column, largest first.

    The text feature's importance (named after it, e.g. ``text_feature``) is the sum over its
    TF-IDF terms.

    Parameters
    ----------
    pipe : sklearn.pipeline.Pipeline
        Fitted pipeline from :func:`train_random_forest.pipeline.build_pipeline`.

    Returns
    -------
    dict of str to float or None
        Column name to importance; the values sum to 1. None when the classifier has no
        ``feature_importances_`` (trees have; HistGradientBoostingClassifier and
        LogisticRegression have not).
    """
    processor = pipe["processor"]
    importances = getattr(pipe["classifier"], "feature_importances_", None)
    if importances is None:
        return None
    by_column: dict[str, float] = {}
    for name, _, columns in processor.transformers_:
        block = importances[processor.output_indices_[name]]
        if name.startswith(NLP_PREFIX):
            # The text feature, by its name (joined from the text columns; a model exported
            # before joined nothing and read the column of that name).
            by_column[name.removeprefix(NLP_PREFIX)] = float(block.sum())
        elif name != "remainder":
            # Numerical and categorical transformers output one feature per input column.
            by_column.update(zip(columns, block.tolist(), strict=True))
    return dict(sorted(by_column.items(), key=lambda item: item[1], reverse=True))


def plot_feature_importance(pipe: Pipeline) -> Figure | None:
    """Draw :func:`feature_importances` as a horizontal bar chart, largest on top.

    Parameters
    ----------
    pipe : sklearn.pipeline.Pipeline
        Fitted pipeline from :func:`train_random_forest.pipeline.build_pipeline`.

    Returns
    -------
    matplotlib.figure.Figure or None
        The figure (open in pyplot until closed; ``run.log_figure`` closes it); None when the
        classifier has no importances (see :func:`feature_importances`).
    """
    import matplotlib.pyplot as plt

    importances = feature_importances(pipe)
    if importances is None:
        return None
    figure, ax = plt.subplots(figsize=(8, 0.4 * len(importances) + 1.5))
    positions = np.arange(len(importances))
    ax.barh(positions, list(importances.values()), color="tab:red")
    ax.set_yticks(positions, labels=list(importances))
    ax.invert_yaxis()
    ax.set_xlabel("impurity importance (text: summed over its TF-IDF terms)")
    ax.set_title(f"{type(pipe['classifier']).__name__} feature importance")
    figure.tight_layout()
    return figure

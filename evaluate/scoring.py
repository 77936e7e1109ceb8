"""Scores of a fitted model on labelled data."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.metrics import accuracy_score

from util_lib.step.metrics import score_auc


def score_model(model: Any, df: pd.DataFrame, target: str = "genre") -> dict[str, float]:
    """Score a fitted classifier on a labelled table.

    Parameters
    ----------
    model : classifier
        Fitted, with ``predict``, ``predict_proba`` and ``classes_`` (e.g. the exported
        pipeline loaded with ``util_lib.model.pyfunc.load_pipeline``).
    df : pandas.DataFrame
        Features and target; columns the model does not read are ignored.
    target : str, default="genre"
        Name of the target column.

    Returns
    -------
    dict of str to float
        ``auc`` (macro average of the one-vs-one ROC AUCs, as in training) and ``accuracy``.

    Raises
    ------
    ValueError
        When ``target`` is not a column of ``df``.
    """
    if target not in df.columns:
        raise ValueError(f"target column {target!r} not in the data (it has {list(df.columns)})")
    X = df.drop(columns=[target])
    y = df[target]
    return {
        "auc": score_auc(model, X, y),
        "accuracy": float(accuracy_score(y, model.predict(X))),
    }

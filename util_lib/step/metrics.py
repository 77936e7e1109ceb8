"""Scores that more than one step computes the same way (train's validation AUC, evaluate's
test AUC)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.metrics import roc_auc_score


def score_auc(model: Any, X: pd.DataFrame, y: pd.Series) -> float:
    """Return the ROC AUC of a fitted classifier: macro average of the one-vs-one AUCs.

    Parameters
    ----------
    model : classifier
        Fitted, with ``predict_proba`` and ``classes_``.
    X : pandas.DataFrame
        Features.
    y : pandas.Series
        True classes.

    Returns
    -------
    float
        The AUC, in [0, 1].
    """
    # Score on one thread: a forest's threads add up the trees' probabilities in a varying
    # order, so with n_jobs > 1 the last bits of the AUC could differ between identical runs.
    n_jobs = {k: v for k, v in model.get_params().items() if k.split("__")[-1] == "n_jobs"}
    model.set_params(**dict.fromkeys(n_jobs, 1))
    try:
        proba = model.predict_proba(X)
    finally:
        model.set_params(**n_jobs)
    return float(roc_auc_score(y, proba, average="macro", multi_class="ovo", labels=model.classes_))

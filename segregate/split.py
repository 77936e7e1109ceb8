"""Split a table into train and test sets, optionally stratified by a column."""

from __future__ import annotations

import logging

import pandas as pd
from sklearn.model_selection import train_test_split

logger = logging.getLogger(__name__)


def split_data(
    df: pd.DataFrame,
    test_size: float,
    random_state: int,
    stratify_column: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows into a train and a test set, reproducibly for a given seed.

    Parameters
    ----------
    df : pandas.DataFrame
        Table to split. Not modified.
    test_size : float
        Fraction of the rows that go to the test set, in (0, 1).
    random_state : int
        Seed of the shuffle; the same seed gives the same split.
    stratify_column : str or None, default=None
        Column whose class proportions both sets keep; None splits without stratification.

    Returns
    -------
    train : pandas.DataFrame
        Training rows, with a fresh ``RangeIndex``.
    test : pandas.DataFrame
        Test rows, with a fresh ``RangeIndex``.

    Raises
    ------
    ValueError
        If ``test_size`` is outside (0, 1), or ``stratify_column`` is absent or has
        missing values; the message names the column.
    """
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"split_data: test_size must be in (0, 1), got {test_size}")
    stratify = None
    if stratify_column is not None:
        if stratify_column not in df.columns:
            raise ValueError(
                f"split_data: stratify column {stratify_column!r} not in the data "
                f"(columns: {', '.join(map(str, df.columns))})"
            )
        stratify = df[stratify_column]
        if stratify.isna().any():
            raise ValueError(
                f"split_data: stratify column {stratify_column!r} has "
                f"{int(stratify.isna().sum())} missing values"
            )
    train, test = train_test_split(
        df, test_size=test_size, random_state=random_state, stratify=stratify
    )
    logger.info(
        "Split %d rows into %d train / %d test (stratify: %s, seed %d)",
        len(df),
        len(train),
        len(test),
        stratify_column,
        random_state,
    )
    return train.reset_index(drop=True), test.reset_index(drop=True)

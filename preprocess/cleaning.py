"""Clean the raw table: drop exact duplicate rows.

The text feature is not made here: the exported model joins the data contract's text columns
itself (:func:`util_lib.model.transformers.join_text`), so that it takes rows as the dataset
holds them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from util_lib.step.contract import default_contract

if TYPE_CHECKING:  # annotations only: importing this module costs no pandas
    import pandas as pd

logger = logging.getLogger(__name__)


def __getattr__(name: str) -> Any:
    # TEXT_COLUMNS and TEXT_FEATURE, as the notebooks import them: the default contract's.
    if name == "TEXT_COLUMNS":
        return tuple(default_contract().text_columns)
    if name == "TEXT_FEATURE":
        return default_contract().text_feature
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def preprocess(df: pd.DataFrame) -> pd.DataFrame:
    """Drop exact duplicate rows, keeping the first.

    Missing values stay as they are (the model pipeline imputes them, and joins the text
    columns into its text feature).

    Parameters
    ----------
    df : pandas.DataFrame
        The raw table. Not modified.

    Returns
    -------
    pandas.DataFrame
        The first of each group of identical rows, with a fresh ``RangeIndex``, all columns
        unchanged.
    """
    deduplicated = df.drop_duplicates(keep="first", ignore_index=True)
    logger.info("Dropped %d exact duplicate rows of %d", len(df) - len(deduplicated), len(df))
    return deduplicated

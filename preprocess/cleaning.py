"""Clean the raw songs table: drop exact duplicates and build the text feature."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the driver's config check imports this module
    import pandas as pd

logger = logging.getLogger(__name__)

TEXT_COLUMNS = ("title", "song_name")
TEXT_FEATURE = "text_feature"


def preprocess(df: pd.DataFrame) -> pd.DataFrame:
    """Drop exact duplicate rows and add ``text_feature`` = title + " " + song_name.

    Missing values stay as they are (the model pipeline imputes them), except in the text
    feature, where a missing title or song name counts as an empty string.

    Parameters
    ----------
    df : pandas.DataFrame
        Raw songs; must hold the columns ``title`` and ``song_name``. Not modified.

    Returns
    -------
    pandas.DataFrame
        The first of each group of identical rows, with a fresh ``RangeIndex``, all input
        columns unchanged and ``text_feature`` (str, stripped; ``""`` if both parts miss).

    Raises
    ------
    ValueError
        If ``title`` or ``song_name`` is missing; the message names them.
    """
    missing = [column for column in TEXT_COLUMNS if column not in df.columns]
    if missing:
        raise ValueError(f"preprocess: input lacks required column(s): {', '.join(missing)}")
    deduplicated = df.drop_duplicates(keep="first", ignore_index=True)
    logger.info("Dropped %d exact duplicate rows of %d", len(df) - len(deduplicated), len(df))
    return deduplicated.assign(**{TEXT_FEATURE: _join_text(deduplicated, TEXT_COLUMNS)})


def _join_text(df: pd.DataFrame, columns: tuple[str, ...]) -> pd.Series:
    """Join text columns with spaces, a missing value counting as an empty string."""
    parts = [df[column].fillna("").astype(str) for column in columns]
    joined = parts[0]
    for part in parts[1:]:
        joined = joined + " " + part
    # Strip so that missing parts leave no stray spaces (both missing -> "").
    return joined.str.strip()

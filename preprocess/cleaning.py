"""Clean the raw table: drop exact duplicates and build the text feature that the data contract
declares (its text columns joined with spaces)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from util_lib.step.contract import Contract, default_contract

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


def preprocess(df: pd.DataFrame, contract: Contract | None = None) -> pd.DataFrame:
    """Drop exact duplicate rows and add the contract's text feature (its text columns joined
    with a space, e.g. ``text_feature`` = title + " " + song_name for the songs).

    Missing values stay as they are (the model pipeline imputes them), except in the text
    feature, where a missing part counts as an empty string. A contract without text columns
    adds nothing.

    Parameters
    ----------
    df : pandas.DataFrame
        The raw table; must hold the contract's text columns. Not modified.
    contract : Contract, optional
        The data contract; None: the one config.yaml chooses (:func:`default_contract`).

    Returns
    -------
    pandas.DataFrame
        The first of each group of identical rows, with a fresh ``RangeIndex``, all input
        columns unchanged and the text feature (str, stripped; ``""`` if every part misses).

    Raises
    ------
    ValueError
        If a text column is missing; the message names it.
    """
    contract = contract or default_contract()
    text_columns = tuple(contract.text_columns)
    missing = [column for column in text_columns if column not in df.columns]
    if missing:
        raise ValueError(f"preprocess: input lacks required column(s): {', '.join(missing)}")
    deduplicated = df.drop_duplicates(keep="first", ignore_index=True)
    logger.info("Dropped %d exact duplicate rows of %d", len(df) - len(deduplicated), len(df))
    if not text_columns:
        return deduplicated
    text = _join_text(deduplicated, text_columns)
    return deduplicated.assign(**{str(contract.text_feature): text})


def _join_text(df: pd.DataFrame, columns: tuple[str, ...]) -> pd.Series:
    """Join text columns with spaces, a missing value counting as an empty string."""
    parts = [df[column].fillna("").astype(str) for column in columns]
    joined = parts[0]
    for part in parts[1:]:
        joined = joined + " " + part
    # Strip so that missing parts leave no stray spaces (both missing -> "").
    return joined.str.strip()

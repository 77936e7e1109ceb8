"""Data checks of the preprocessed dataset: schema, classes, value ranges and drift.

Every ``check_*`` function raises :class:`DataCheckError` (an ``AssertionError``, so pytest
reports it as a failed test) whose message names each offending column and values, and
returns quietly when the data pass. No check catches its own error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import NamedTuple

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandas.api import types as ptypes
from scipy import stats

from util_lib.step import data_schema
from util_lib.step.contract import Contract, default_contract

logger = logging.getLogger(__name__)

# The table's contract (columns, dtypes, ranges, classes, nullability, roles) is the dataset's
# file of conf/dataset/ (util_lib/step/contract/), made a pandera schema by
# util_lib/step/data_schema.py; the train step and the served model use it too. Here it is
# validated lazily (every failure at once) and each check reports its own kind of failure. The
# step passes the contract it was given (--dataset); a check called without one uses the
# contract config.yaml chooses.


def _schema(schema: pa.DataFrameSchema | None) -> pa.DataFrameSchema:
    return schema if schema is not None else data_schema.data_schema(default_contract())


# KL(sample || reference) in nats above which a categorical column counts as drifted.
# Measured on genres_mod.parquet (deduplicated): random samples of the data against the
# whole stay far below it (max over 500 draws: 0.0008 for half the data, 0.008 for 2,000
# rows; sampling noise alone is about (categories - 1) / (2 * rows) nats), while clear shifts
# exceed it: major/minor swapped 0.019, 10% of rows moved to 3/4 time 0.094, every key one
# semitone up 0.15, only half of the genres 0.68. Samples under ~2,000 rows can exceed it by
# chance alone, so the check is meant for whole datasets, not small batches.
KL_THRESHOLD = 0.01

# Probability given to a category that one side never shows, so that the divergence stays
# finite; a category new in the sample with a share p still adds about p * ln(p / 1e-6).
KL_EPSILON = 1e-6

_EXAMPLES = 5


class DataCheckError(AssertionError):
    """The data violate a check; the message names the columns and offending values."""


class KSResult(NamedTuple):
    """Two-sample Kolmogorov-Smirnov test of one column against the reference."""

    column: str
    statistic: float
    p_value: float
    threshold: float  # alpha after Bonferroni correction

    @property
    def drifted(self) -> bool:
        """Whether the sample's distribution differs significantly from the reference."""
        return self.p_value < self.threshold


def _examples(values: Iterable[object]) -> list[object]:
    """Return up to a few distinct values, as plain Python objects, for error messages."""
    unique = pd.unique(pd.Series(list(values), dtype=object))
    return [v.item() if isinstance(v, np.generic) else v for v in unique[:_EXAMPLES]]


def _raise_if(violations: list[str], what: str) -> None:
    if violations:
        raise DataCheckError(f"{what}: " + "; ".join(violations))


def _check_contract(
    df: pd.DataFrame,
    kind: Callable[[str], bool],
    what: str,
    schema: pa.DataFrameSchema | None = None,
) -> None:
    """Validate ``df`` against the contract and raise for the failures whose check is of
    ``kind`` (a predicate on pandera's check name), each naming column, check and values."""
    cases = data_schema.failure_cases(df, _schema(schema))
    keep = [kind(str(check)) for check in cases["check"]]
    cases = cases.loc[np.array(keep, dtype=bool)]
    _raise_if(data_schema.describe_failures(cases, df), what)


def check_columns_and_dtypes(df: pd.DataFrame, schema: pa.DataFrameSchema | None = None) -> None:
    """Check that every column of the contract exists with its dtype.

    Parameters
    ----------
    df : pandas.DataFrame
        The table to check.
    schema : pandera.pandas.DataFrameSchema, optional
        The contract's schema; None: the contract config.yaml chooses.

    Raises
    ------
    DataCheckError
        Naming the missing columns and each column of the wrong dtype (pandera's
        ``column_in_dataframe`` and ``dtype(...)`` checks).
    """
    schema = _schema(schema)
    logger.info("checking %d required columns and their dtypes", len(schema.columns))
    _check_contract(
        df,
        lambda check: check == "column_in_dataframe" or check.startswith("dtype("),
        "schema check failed",
        schema,
    )


def check_labels(df: pd.DataFrame, contract: Contract | None = None) -> None:
    """Check that every label of the target is one of the contract's classes.

    Parameters
    ----------
    df : pandas.DataFrame
        The table to check.
    contract : Contract, optional
        The data contract (its ``target`` and ``labels``); None: the one config.yaml chooses.

    Raises
    ------
    DataCheckError
        Naming the column, the number of rows with unknown labels and those labels. A missing
        label is :func:`check_missing_values`' business.
    """
    contract = contract or default_contract()
    column = contract.target
    if contract.labels is None:
        logger.info("the contract lists no labels of %r: any class is accepted", column)
        return
    logger.info("checking that %r holds only the %d known classes", column, len(contract.labels))
    schema = data_schema.data_schema(contract)
    _check_contract(
        df, lambda check: check == data_schema.LABEL_CHECK, "class check failed", schema
    )
    if column in df.columns:
        absent = sorted(set(contract.labels) - set(df[column].dropna().unique()), key=str)
        if absent:
            # Not an error: a new batch may lack a class. The KL check flags a real label shift.
            logger.warning("column %r has no rows of the classes %s", column, absent)


def check_missing_values(df: pd.DataFrame, schema: pa.DataFrameSchema | None = None) -> None:
    """Check that no column but the contract's nullable ones has missing values, and that no
    column is entirely missing (not even a nullable one: the imputers would drop it).

    Parameters
    ----------
    df : pandas.DataFrame
        The table to check (absent columns are the schema check's business).
    schema : pandera.pandas.DataFrameSchema, optional
        The contract's schema; None: the contract config.yaml chooses.

    Raises
    ------
    DataCheckError
        Naming each column with missing values, how many and which rows.
    """
    schema = _schema(schema)
    nullable = sorted(data_schema.nullable_columns(schema))
    logger.info("checking for missing values (allowed in %s)", nullable)
    _check_contract(
        df,
        lambda check: check in {"not_nullable", data_schema.NOT_ALL_MISSING},
        "missing-value check failed",
        schema,
    )


def check_value_ranges(df: pd.DataFrame, schema: pa.DataFrameSchema | None = None) -> None:
    """Check that the values of each column lie inside its inclusive bounds, or among its
    categories, as the contract gives them.

    Missing values are ignored here (see :func:`check_missing_values`), and so are absent
    columns (see :func:`check_columns_and_dtypes`).

    Parameters
    ----------
    df : pandas.DataFrame
        The table to check.
    schema : pandera.pandas.DataFrameSchema, optional
        The contract's schema; None: the contract config.yaml chooses.

    Raises
    ------
    DataCheckError
        Naming each column out of range, its bounds, the number of rows and example values
        (or the error comparing a non-numeric column with its bounds).
    """
    schema = _schema(schema)
    logger.info("checking the value ranges of %d columns", len(data_schema.value_ranges(schema)))
    _check_contract(
        df,
        lambda check: check.startswith("in_range(") or check == data_schema.CATEGORY_CHECK,
        "range check failed",
        schema,
    )


def _is_numeric(series: pd.Series) -> bool:
    return ptypes.is_numeric_dtype(series.dtype) and not ptypes.is_bool_dtype(series.dtype)


def ks_drift(
    reference: pd.DataFrame, sample: pd.DataFrame, columns: Iterable[str], alpha: float
) -> list[KSResult]:
    """Run a two-sample Kolmogorov-Smirnov test per column, Bonferroni-corrected.

    Each column's test uses ``alpha / len(columns)`` so that ``alpha`` bounds the chance
    that any of the columns is flagged when nothing drifted. Missing values are dropped.

    Parameters
    ----------
    reference : pandas.DataFrame
        The trusted data.
    sample : pandas.DataFrame
        The new data.
    columns : iterable of str
        The numerical columns to compare.
    alpha : float
        Family-wise significance level, in (0, 1).

    Returns
    -------
    list of KSResult
        One ``(column, statistic, p_value, threshold)`` per column, in order.

    Raises
    ------
    ValueError
        If ``alpha`` is not in (0, 1) or ``columns`` is empty.
    DataCheckError
        If a column is absent or has no values on either side.
    """
    columns = list(columns)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not columns:
        raise ValueError("ks_drift needs at least one column")
    threshold = alpha / len(columns)
    logger.info(
        "KS tests on %d columns at alpha %g (Bonferroni: %.3g per column)",
        len(columns),
        alpha,
        threshold,
    )
    results = []
    for column in columns:
        ref_values = _non_missing(reference, column, "reference", numeric=True)
        new_values = _non_missing(sample, column, "sample", numeric=True)
        test = stats.ks_2samp(ref_values, new_values)
        result = KSResult(column, float(test.statistic), float(test.pvalue), threshold)
        logger.info(
            "KS %s: statistic %.4f, p-value %.3g (%s)",
            column,
            result.statistic,
            result.p_value,
            "DRIFT" if result.drifted else "ok",
        )
        results.append(result)
    return results


def check_no_drift(results: Iterable[KSResult]) -> None:
    """Raise when any KS result shows drift.

    Parameters
    ----------
    results : iterable of KSResult
        Results of :func:`ks_drift`.

    Raises
    ------
    DataCheckError
        Naming each drifted column with its statistic, p-value and threshold.
    """
    violations = [
        f"column {r.column!r} drifted (KS statistic {r.statistic:.4f}, "
        f"p-value {r.p_value:.3g} < {r.threshold:.3g})"
        for r in results
        if r.drifted
    ]
    _raise_if(violations, "KS drift check failed")


def kl_divergence(reference: pd.Series, sample: pd.Series, epsilon: float = KL_EPSILON) -> float:
    """Return KL(sample || reference) in nats between two columns' category frequencies.

    Parameters
    ----------
    reference : pandas.Series
        The trusted column.
    sample : pandas.Series
        The new column.
    epsilon : float, default=KL_EPSILON
        Probability added to every category so that unseen ones keep it finite.

    Returns
    -------
    float
        The divergence; 0 for identical frequencies.
    """
    categories = sorted(set(reference.dropna().unique()) | set(sample.dropna().unique()), key=str)
    ref_freq = reference.value_counts(normalize=True).reindex(categories, fill_value=0.0)
    new_freq = sample.value_counts(normalize=True).reindex(categories, fill_value=0.0)
    # scipy.stats.entropy renormalizes both after the epsilon is added.
    return float(stats.entropy(new_freq.to_numpy() + epsilon, ref_freq.to_numpy() + epsilon))


def kl_divergence_check(
    reference: pd.DataFrame,
    sample: pd.DataFrame,
    columns: Iterable[str],
    threshold: float = KL_THRESHOLD,
) -> dict[str, float]:
    """Check that no categorical column's frequencies diverge from the reference.

    Parameters
    ----------
    reference : pandas.DataFrame
        The trusted data.
    sample : pandas.DataFrame
        The new data.
    columns : iterable of str
        The categorical columns to compare.
    threshold : float, default=KL_THRESHOLD
        Largest acceptable KL(sample || reference), in nats.

    Returns
    -------
    dict of str to float
        The divergence of every column (when all pass).

    Raises
    ------
    DataCheckError
        Naming each column above the threshold with its divergence and the categories whose
        share changed most; or a column absent or without values on either side.
    """
    divergences: dict[str, float] = {}
    violations = []
    for column in columns:
        ref_values = _non_missing(reference, column, "reference")
        new_values = _non_missing(sample, column, "sample")
        divergence = kl_divergence(ref_values, new_values)
        divergences[column] = divergence
        logger.info("KL %s: %.4g nats (threshold %g)", column, divergence, threshold)
        if divergence > threshold:
            violations.append(
                f"column {column!r} diverges from the reference (KL {divergence:.4g} nats > "
                f"{threshold:g}; largest share changes {_share_changes(ref_values, new_values)})"
            )
    _raise_if(violations, "KL divergence check failed")
    return divergences


def _share_changes(reference: pd.Series, sample: pd.Series) -> dict[object, str]:
    """Describe the categories whose share moved most, e.g. ``{4: '0.95 -> 0.60'}``."""
    shares = pd.concat(
        [reference.value_counts(normalize=True), sample.value_counts(normalize=True)],
        axis=1,
        keys=["reference", "sample"],
    ).fillna(0.0)
    top = (shares["sample"] - shares["reference"]).abs().sort_values(ascending=False)
    return {
        _examples([category])[0]: f"{shares.at[category, 'reference']:.3f} -> "
        f"{shares.at[category, 'sample']:.3f}"
        for category in top.index[:3]
    }


def _non_missing(df: pd.DataFrame, column: str, side: str, numeric: bool = False) -> pd.Series:
    if column not in df.columns:
        raise DataCheckError(f"column {column!r} is missing from the {side} data")
    if numeric and not _is_numeric(df[column]):
        raise DataCheckError(
            f"column {column!r} of the {side} data is not numeric (dtype {df[column].dtype}, "
            f"values e.g. {_examples(df[column].dropna())})"
        )
    values = df[column].dropna()
    if values.empty:
        raise DataCheckError(f"column {column!r} has no values in the {side} data")
    return values

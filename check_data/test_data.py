"""The data-check suite: the sample artifact's schema, classes, ranges and drift.

Run by the step's MLproject (see README.md); the fixtures live in conftest.py.
"""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from check_data.checks import (
    CATEGORICAL_COLUMNS,
    KL_THRESHOLD,
    KNOWN_GENRES,
    NUMERICAL_COLUMNS,
    VALUE_RANGES,
    KSResult,
    check_columns_and_dtypes,
    check_genre_classes,
    check_missing_values,
    check_no_drift,
    check_value_ranges,
    kl_divergence,
    kl_divergence_check,
)

logger = logging.getLogger(__name__)


def test_columns_and_dtypes(data: pd.DataFrame) -> None:
    logger.info("sample: required columns and dtypes")
    check_columns_and_dtypes(data)


def test_reference_columns_and_dtypes(ref_data: pd.DataFrame) -> None:
    logger.info("reference: required columns and dtypes")
    check_columns_and_dtypes(ref_data)


def test_genre_classes(data: pd.DataFrame) -> None:
    logger.info("sample: genre labels among the %d known classes", len(KNOWN_GENRES))
    check_genre_classes(data)


def test_missing_values(data: pd.DataFrame) -> None:
    logger.info("sample: missing values only where allowed")
    check_missing_values(data)


def test_value_ranges(data: pd.DataFrame) -> None:
    logger.info("sample: values inside their ranges %s", VALUE_RANGES)
    check_value_ranges(data)


@pytest.mark.parametrize("column", NUMERICAL_COLUMNS)
def test_ks_drift(column: str, ks_results: dict[str, KSResult]) -> None:
    result = ks_results[column]
    logger.info(
        "drift of %r (KS): p-value %.3g against threshold %.3g",
        column,
        result.p_value,
        result.threshold,
    )
    check_no_drift([result])


@pytest.mark.parametrize("column", CATEGORICAL_COLUMNS)
def test_kl_divergence(
    column: str, data: pd.DataFrame, ref_data: pd.DataFrame, metrics: dict[str, float]
) -> None:
    logger.info("drift of %r (KL divergence, threshold %g nats)", column, KL_THRESHOLD)
    if column in ref_data.columns and column in data.columns:
        metrics[f"kl_divergence.{column}"] = kl_divergence(
            ref_data[column].dropna(), data[column].dropna()
        )
    kl_divergence_check(ref_data, data, [column], KL_THRESHOLD)

"""The data-check suite: the sample artifact's schema, classes, ranges and drift.

Run by the step's MLproject (see README.md); the fixtures live in conftest.py.
"""

from __future__ import annotations

import logging

import pandas as pd

from check_data.checks import (
    KL_THRESHOLD,
    KSResult,
    check_columns_and_dtypes,
    check_labels,
    check_missing_values,
    check_no_drift,
    check_value_ranges,
    kl_divergence,
    kl_divergence_check,
)
from util_lib.step.contract import Contract
from util_lib.step.data_schema import data_schema, value_ranges

logger = logging.getLogger(__name__)


def _drift(kind: str):
    """Mark a drift test with its kind: conftest.pytest_generate_tests gives it the contract's
    columns of that kind as ``column``."""

    def mark(test):
        test.drift_kind = kind
        return test

    return mark


def test_columns_and_dtypes(data: pd.DataFrame, contract: Contract) -> None:
    logger.info("sample: required columns and dtypes")
    check_columns_and_dtypes(data, data_schema(contract))


def test_reference_columns_and_dtypes(ref_data: pd.DataFrame, contract: Contract) -> None:
    logger.info("reference: required columns and dtypes")
    check_columns_and_dtypes(ref_data, data_schema(contract))


def test_labels(data: pd.DataFrame, contract: Contract) -> None:
    logger.info("sample: %r among the contract's labels", contract.target)
    check_labels(data, contract)


def test_missing_values(data: pd.DataFrame, contract: Contract) -> None:
    logger.info("sample: missing values only where allowed")
    check_missing_values(data, data_schema(contract))


def test_value_ranges(data: pd.DataFrame, contract: Contract) -> None:
    schema = data_schema(contract)
    logger.info("sample: values inside their ranges %s", value_ranges(schema))
    check_value_ranges(data, schema)


@_drift("ks")
def test_ks_drift(column: str, ks_results: dict[str, KSResult]) -> None:
    result = ks_results[column]
    logger.info(
        "drift of %r (KS): p-value %.3g against threshold %.3g",
        column,
        result.p_value,
        result.threshold,
    )
    check_no_drift([result])


@_drift("kl")
def test_kl_divergence(
    column: str, data: pd.DataFrame, ref_data: pd.DataFrame, metrics: dict[str, float]
) -> None:
    logger.info("drift of %r (KL divergence, threshold %g nats)", column, KL_THRESHOLD)
    if column in ref_data.columns and column in data.columns:
        metrics[f"kl_divergence.{column}"] = kl_divergence(
            ref_data[column].dropna(), data[column].dropna()
        )
    kl_divergence_check(ref_data, data, [column], KL_THRESHOLD)

"""The data contract as pandera schemas, built from a dataset's contract file.

:func:`data_schema` turns a :class:`~util_lib.step.contract.Contract` (a file of
``conf/dataset/``) into a pandera schema stating every column it declares: its dtype, whether it
may hold missing values, its range or categories, the target's labels. Four guards use it:

- get_data checks the downloaded file's columns and dtypes (:func:`dtype_schema`) before it
  stores a version (:func:`missing_column_problems` names the closest present name of a
  missing one);
- check_data's tests validate the whole preprocessed table, lazily (every failure at once);
- the train step validates the columns the model reads before fitting
  (:func:`model_input_schema`), so that e.g. an all-missing feature stops it, named;
- the export writes :func:`serving_domain` (the ranges of the model's input columns, and the
  categories it was trained on) into the model folder as plain JSON, and the served model
  checks each request against it with numpy, so loading and predicting need no pandera.

The plain views (:func:`required_columns`, :func:`value_ranges`, :func:`nullable_columns`) are
derived from the schema, never declared a second time. Nothing here names a dataset's column.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
import pandera.pandas as pa

from util_lib.step.contract import Contract

# Names of the checks as they appear in failure messages (pandera's own: "column_in_dataframe",
# "dtype('float64')", "not_nullable", "in_range(0.0, 1.0)").
LABEL_CHECK = "isin(labels)"
CATEGORY_CHECK = "isin(categories)"
NOT_ALL_MISSING = "not_all_missing"

# A column without a single value carries nothing, even where missing values are allowed:
# scikit-learn's SimpleImputer drops such a column (with a warning only), and the fitted
# pipeline then no longer matches its own inputs.
_NOT_ALL_MISSING = pa.Check(
    lambda series: bool(series.notna().any()),
    element_wise=False,
    ignore_na=False,
    name=NOT_ALL_MISSING,
    error=NOT_ALL_MISSING,
)

# The contract's dtype names as pandera types: pandas 3's text is `str` (an object column
# holding only strings passes too).
_DTYPES: dict[str, Any] = {"float64": float, "int64": int, "str": str, "bool": bool}


def data_schema(contract: Contract) -> pa.DataFrameSchema:
    """The pandera schema of a contract's table (as downloaded, and as preprocess leaves it:
    preprocess drops duplicate rows only).

    Parameters
    ----------
    contract : Contract
        The dataset's contract.

    Returns
    -------
    pandera.pandas.DataFrameSchema
        Not strict: other columns may travel along; the contract is about these.
    """
    columns: dict[str, pa.Column] = {}
    for column in contract.columns:
        checks = [_NOT_ALL_MISSING]
        if column.min is not None:
            checks.append(pa.Check.in_range(column.min, column.max))
        if column.categories is not None:
            checks.append(pa.Check.isin(list(column.categories), error=CATEGORY_CHECK))
        if column.name == contract.target and contract.labels is not None:
            checks.append(pa.Check.isin(sorted(contract.labels, key=str), error=LABEL_CHECK))
        columns[column.name] = pa.Column(
            _DTYPES[column.dtype], checks=checks, nullable=column.nullable
        )
    return pa.DataFrameSchema(columns, strict=False, name=contract.source)


# ---------------------------------------------------------------- plain views of the schema
def required_columns(schema: pa.DataFrameSchema) -> dict[str, str]:
    """Column name -> dtype, e.g. ``{"x": "float64", "y": "string[pyarrow]"}`` (pandera's name
    of pandas 3's ``str``)."""
    return {name: str(column.dtype) for name, column in schema.columns.items()}


def value_ranges(schema: pa.DataFrameSchema) -> dict[str, tuple[float, float]]:
    """Column name -> (lowest, highest) allowed value, both inclusive."""
    return {
        name: (check.statistics["min_value"], check.statistics["max_value"])
        for name, column in schema.columns.items()
        for check in column.checks
        if check.name == "in_range"
    }


def nullable_columns(schema: pa.DataFrameSchema) -> frozenset[str]:
    """Columns where missing values are legitimate."""
    return frozenset(name for name, column in schema.columns.items() if column.nullable)


def dtype_schema(contract: Contract) -> pa.DataFrameSchema:
    """The contract's columns with their dtypes only (no range, nullability or label check):
    what get_data checks of a file before storing it; the rest is check_data's."""
    return pa.DataFrameSchema(
        {c.name: pa.Column(_DTYPES[c.dtype], nullable=True) for c in contract.columns},
        strict=False,
        name=contract.source,
    )


def missing_column_problems(
    present: Iterable[str], schema: pa.DataFrameSchema, source: str | None = None
) -> list[str]:
    """One sentence per column of ``schema`` absent from ``present``, naming the closest
    present name (a renamed column), e.g. ``"column 'price' is missing from prices.parquet;
    did you mean 'prise'?"`` (``source``: where the columns come from, for the message)."""
    present = [str(c) for c in present]
    where = f" from {source}" if source else ""
    problems = []
    for name in schema.columns:
        if name in present:
            continue
        close = difflib.get_close_matches(name, present, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"the columns are {present}"
        problems.append(f"column {name!r} is missing{where}; {hint}")
    return problems


_EXAMPLES = 5


class DataContractError(ValueError):
    """The data break the contract; the message names each column, check and example values."""


def failure_cases(df: pd.DataFrame, schema: pa.DataFrameSchema) -> pd.DataFrame:
    """Validate ``df`` lazily and return every failure at once.

    Parameters
    ----------
    df : pandas.DataFrame
        The table to check.
    schema : pandera.pandas.DataFrameSchema
        The contract's schema (:func:`data_schema`).

    Returns
    -------
    pandas.DataFrame
        pandera's failure cases: one row per failing value (or per failing column), with
        ``column``, ``check``, ``failure_case`` and ``index``; empty when ``df`` passes.
    """
    try:
        schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as errors:
        return errors.failure_cases
    return pd.DataFrame(columns=["column", "check", "failure_case", "index"])


def describe_failures(cases: pd.DataFrame, df: pd.DataFrame) -> list[str]:
    """Turn failure cases into one sentence per column and check.

    Parameters
    ----------
    cases : pandas.DataFrame
        From :func:`failure_cases`.
    df : pandas.DataFrame
        The table that was checked (for the columns present).

    Returns
    -------
    list of str
        E.g. ``"column 'label' fails isin(labels) in 10 rows (e.g. ['Polka'])"``.
    """
    lines: list[str] = []
    if cases.empty:
        return lines
    for (column, check), group in cases.groupby(["column", "check"], sort=False, dropna=False):
        if check == "column_in_dataframe":
            for name in group["failure_case"]:
                lines.append(
                    f"column {name!r} is missing (column_in_dataframe; the columns present are "
                    f"{list(df.columns)})"
                )
            continue
        rows = group[group["index"].notna()]
        if rows.empty:  # a verdict on the whole column: its dtype, a check that raised
            got = _plain(group["failure_case"].iloc[0])
            detail = "every value is missing" if check == NOT_ALL_MISSING else f"got {got}"
            lines.append(f"column {column!r} fails {check}: {detail}")
        elif check == "not_nullable":
            lines.append(
                f"column {column!r} fails {check}: {len(rows)} missing values "
                f"(e.g. rows {_examples(rows['index'])})"
            )
        else:
            lines.append(
                f"column {column!r} fails {check} in {len(rows)} rows "
                f"(e.g. {_examples(rows['failure_case'], ordered=True)})"
            )
    return lines


def validate(df: pd.DataFrame, schema: pa.DataFrameSchema, what: str = "the data") -> None:
    """Raise :class:`DataContractError` naming every failure of ``df`` against ``schema``.

    Parameters
    ----------
    df : pandas.DataFrame
        The table to check.
    schema : pandera.pandas.DataFrameSchema
        The contract's schema (:func:`data_schema`).
    what : str, default="the data"
        What ``df`` is, for the message (e.g. ``"the training data"``).

    Raises
    ------
    DataContractError
        Naming each column, the failed check and example values.
    """
    cases = failure_cases(df, schema)
    if len(cases):
        raise DataContractError(
            f"{what} break the data contract ({schema.name}): "
            + "; ".join(describe_failures(cases, df))
        )


def model_input_schema(schema: pa.DataFrameSchema, columns: Iterable[str]) -> pa.DataFrameSchema:
    """The contract of the columns a model reads: theirs from ``schema``, and for a column the
    schema does not declare, only that it is not entirely missing.

    Parameters
    ----------
    schema : pandera.pandas.DataFrameSchema
        The table's schema (:func:`data_schema`).
    columns : iterable of str
        The model's input columns.

    Returns
    -------
    pandera.pandas.DataFrameSchema
    """
    columns = list(columns)
    known = [c for c in columns if c in schema.columns]
    selected = schema.select_columns(known)
    extra = {
        c: pa.Column(checks=[_NOT_ALL_MISSING], nullable=True) for c in columns if c not in known
    }
    return selected.add_columns(extra) if extra else selected


def serving_domain(
    schema: pa.DataFrameSchema,
    columns: Iterable[str],
    categories: Mapping[str, Iterable[Any]] | None = None,
) -> dict[str, Any]:
    """The domain a served model checks its input against, as plain JSON-able data.

    Parameters
    ----------
    schema : pandera.pandas.DataFrameSchema
        The table's schema (:func:`data_schema`).
    columns : iterable of str
        The model's input columns; those with a range in the schema get it.
    categories : mapping of str to iterable, optional
        For categorical columns, the values the fitted model knows; a value outside them would
        be encoded as "unknown", which the model never saw.

    Returns
    -------
    dict
        ``{"source": the contract, "ranges": {column: [low, high]}, "categories": {column:
        [value, ...]}}``; missing values are not part of the domain (the pipeline imputes them).
    """
    columns = list(columns)
    ranges = value_ranges(schema)
    return {
        "source": schema.name,
        "ranges": {c: [_plain(v) for v in ranges[c]] for c in columns if c in ranges},
        "categories": {
            c: sorted(_plain(v) for v in values)
            for c, values in (categories or {}).items()
            if c in columns
        },
    }


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python number it holds (for messages and JSON)."""
    return value.item() if hasattr(value, "item") and not isinstance(value, str) else value


def _examples(values: Iterable[Any], ordered: bool = False) -> list[Any]:
    """Up to a few distinct values, smallest first when ``ordered`` (as text if types mix)."""
    unique = [_plain(v) for v in pd.unique(pd.Series(list(values), dtype=object))]
    if ordered:
        try:
            unique.sort()
        except TypeError:
            unique.sort(key=str)
    return unique[:_EXAMPLES]

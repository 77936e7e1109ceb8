"""The contract of the preprocessed table, declared once with pandera.

:data:`PREPROCESSED_SCHEMA` states every column of the table that preprocess writes: its dtype,
whether it may hold missing values, its physical range or its classes. Three guards use it:

- check_data's tests validate the whole table, lazily (every failure at once);
- the train step validates the columns the model reads before fitting
  (:func:`model_input_schema`), so that e.g. an all-missing feature stops it, named;
- the export writes :func:`serving_domain` (the ranges of the model's input columns, and the
  categories it was trained on) into the model folder as plain JSON, and the served model
  checks each request against it with numpy, so loading and predicting need no pandera.

The plain views below (:data:`REQUIRED_COLUMNS`, :data:`VALUE_RANGES`,
:data:`NULLABLE_COLUMNS`) are derived from the schema, never declared a second time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
import pandera.pandas as pa

# The 15 classes of genres_mod.parquet (its `genre.unique()`); a new label is an error, not
# a silent sixteenth class.
KNOWN_GENRES: frozenset[str] = frozenset(
    {
        "Dark Trap",
        "Emo",
        "Hiphop",
        "Pop",
        "Rap",
        "RnB",
        "Trap Metal",
        "Underground Rap",
        "dnb",
        "hardstyle",
        "psytrance",
        "techhouse",
        "techno",
        "trance",
        "trap",
    }
)

# Names of the checks as they appear in failure messages (pandera's own: "column_in_dataframe",
# "dtype('float64')", "not_nullable", "in_range(0.0, 1.0)").
GENRE_CHECK = "isin(KNOWN_GENRES)"
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


def _column(
    dtype: Any,
    low: float | None = None,
    high: float | None = None,
    checks: list[pa.Check] | None = None,
    nullable: bool = False,
) -> pa.Column:
    """A column of ``dtype``, never entirely missing, inside ``[low, high]`` when given."""
    ranges = [pa.Check.in_range(low, high)] if low is not None else []
    return pa.Column(dtype, checks=[_NOT_ALL_MISSING, *ranges, *(checks or [])], nullable=nullable)


# Dtypes are those of the Parquet file preprocess writes (pandas 3: text is `str`; an object
# column holding only strings passes too). Measurements are float64 except duration_ms;
# key, mode and time_signature are category codes (the model encodes key and time_signature as
# categories). Ranges are physically meaningful bounds (inclusive), following Spotify's
# audio-features definitions; the whole real dataset lies inside them (loudness -32.9..3.1 dB,
# tempo 58..220 BPM, duration 25.6 s..15.2 min, time_signature 1..5). Missing values are
# legitimate only where nullable=True: loudness is missing for ~9k real rows, most songs have
# either a song_name or a title. Everything else must be complete.
PREPROCESSED_SCHEMA = pa.DataFrameSchema(
    {
        # Confidences and perceptual scores are defined on [0, 1].
        "danceability": _column(float, 0.0, 1.0),
        "energy": _column(float, 0.0, 1.0),
        # Pitch class 0 (C) .. 11 (B); -1 is Spotify's "no key detected".
        "key": _column(int, -1, 11),
        # dBFS averaged over the track: Spotify documents -60..0; heavily mastered tracks go a
        # few dB above 0 (3.1 here), +10 leaves margin without admitting nonsense.
        "loudness": _column(float, -60.0, 10.0, nullable=True),
        # 0 minor, 1 major.
        "mode": _column(int, 0, 1),
        "speechiness": _column(float, 0.0, 1.0),
        "acousticness": _column(float, 0.0, 1.0),
        "instrumentalness": _column(float, 0.0, 1.0),
        "liveness": _column(float, 0.0, 1.0),
        "valence": _column(float, 0.0, 1.0),
        # BPM; 0 is Spotify's "no beat detected", its estimator does not go near 300.
        "tempo": _column(float, 0.0, 300.0),
        "type": _column(str),
        # 1 s .. 2 h in milliseconds: catches seconds or microseconds passed off as milliseconds.
        "duration_ms": _column(int, 1_000, 7_200_000),
        # Beats per bar; Spotify uses 0/1 when undetected and goes up to 7.
        "time_signature": _column(int, 0, 7),
        "genre": _column(str, checks=[pa.Check.isin(sorted(KNOWN_GENRES), error=GENRE_CHECK)]),
        "song_name": _column(str, nullable=True),
        "title": _column(str, nullable=True),
        "text_feature": _column(str),
    },
    strict=False,  # other columns may travel along; the contract is about these
    name="preprocessed_data",
)

# ---------------------------------------------------------------- plain views of the schema

# Column name -> dtype, e.g. {"danceability": "float64", "key": "int64",
# "genre": "string[pyarrow]"} (pandera's name of pandas 3's `str`).
REQUIRED_COLUMNS: dict[str, str] = {
    name: str(column.dtype) for name, column in PREPROCESSED_SCHEMA.columns.items()
}

# Column name -> (lowest, highest) allowed value, both inclusive.
VALUE_RANGES: dict[str, tuple[float, float]] = {
    name: (check.statistics["min_value"], check.statistics["max_value"])
    for name, column in PREPROCESSED_SCHEMA.columns.items()
    for check in column.checks
    if check.name == "in_range"
}

# Columns where missing values are legitimate.
NULLABLE_COLUMNS: frozenset[str] = frozenset(
    name for name, column in PREPROCESSED_SCHEMA.columns.items() if column.nullable
)

_EXAMPLES = 5


class DataContractError(ValueError):
    """The data break the contract; the message names each column, check and example values."""


def failure_cases(
    df: pd.DataFrame, schema: pa.DataFrameSchema = PREPROCESSED_SCHEMA
) -> pd.DataFrame:
    """Validate ``df`` lazily and return every failure at once.

    Parameters
    ----------
    df : pandas.DataFrame
        The table to check.
    schema : pandera.pandas.DataFrameSchema, default=PREPROCESSED_SCHEMA
        The contract.

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
        E.g. ``"column 'genre' fails isin(KNOWN_GENRES) in 10 rows (e.g. ['Polka'])"``.
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


def validate(
    df: pd.DataFrame, schema: pa.DataFrameSchema = PREPROCESSED_SCHEMA, what: str = "the data"
) -> None:
    """Raise :class:`DataContractError` naming every failure of ``df`` against ``schema``.

    Parameters
    ----------
    df : pandas.DataFrame
        The table to check.
    schema : pandera.pandas.DataFrameSchema, default=PREPROCESSED_SCHEMA
        The contract.
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
            f"{what} break the data contract (util_lib/step/data_schema.py): "
            + "; ".join(describe_failures(cases, df))
        )


def model_input_schema(columns: Iterable[str]) -> pa.DataFrameSchema:
    """The contract of the columns a model reads: theirs from :data:`PREPROCESSED_SCHEMA`,
    and for a column the table does not declare, only that it is not entirely missing.

    Parameters
    ----------
    columns : iterable of str
        The model's input columns.

    Returns
    -------
    pandera.pandas.DataFrameSchema
    """
    columns = list(columns)
    known = [c for c in columns if c in PREPROCESSED_SCHEMA.columns]
    schema = PREPROCESSED_SCHEMA.select_columns(known)
    extra = {
        c: pa.Column(checks=[_NOT_ALL_MISSING], nullable=True) for c in columns if c not in known
    }
    return schema.add_columns(extra) if extra else schema


def serving_domain(
    columns: Iterable[str], categories: Mapping[str, Iterable[Any]] | None = None
) -> dict[str, Any]:
    """The domain a served model checks its input against, as plain JSON-able data.

    Parameters
    ----------
    columns : iterable of str
        The model's input columns; those with a range in :data:`VALUE_RANGES` get it.
    categories : mapping of str to iterable, optional
        For categorical columns, the values the fitted model knows; a value outside them would
        be encoded as "unknown", which the model never saw.

    Returns
    -------
    dict
        ``{"ranges": {column: [low, high]}, "categories": {column: [value, ...]}}``; missing
        values are not part of the domain (the pipeline imputes them).
    """
    columns = list(columns)
    return {
        "source": "util_lib.step.data_schema.PREPROCESSED_SCHEMA",
        "ranges": {c: [_plain(v) for v in VALUE_RANGES[c]] for c in columns if c in VALUE_RANGES},
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

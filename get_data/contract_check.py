"""Check a downloaded file against the dataset's data contract before it is stored.

Only what a file must have to be the dataset: the contract's columns, with their dtypes. Ranges,
labels and missing values are check_data's (on the preprocessed table, every failure at once).
A renamed column is named with the closest present name, e.g. ``column 'danceability' is
missing from <url>; did you mean 'danceabilty'?``.
"""

from __future__ import annotations

import os

import pyarrow.parquet as pq

from util_lib.step.contract import Contract
from util_lib.step.data_schema import (
    DataContractError,
    describe_failures,
    dtype_schema,
    failure_cases,
    missing_column_problems,
)


def check_file_columns(path: str | os.PathLike[str], contract: Contract, source: str) -> None:
    """Check that the Parquet file ``path`` has every column of ``contract``, of its dtype.

    Parameters
    ----------
    path : str or os.PathLike
        The downloaded file (readable Parquet).
    contract : Contract
        The dataset's data contract.
    source : str
        Where the file came from (redacted), named in the message.

    Raises
    ------
    DataContractError
        Naming each missing column (and the closest present name) and each column of another
        dtype (and example values), one sentence each.
    """
    import pandas as pd

    schema = dtype_schema(contract)
    present = pq.read_schema(path).names
    problems = missing_column_problems(present, schema, source)
    columns = [c for c in schema.columns if c in present]
    # Only the contract's columns are read: the dtypes of the others are not its business.
    df = pd.read_parquet(path, columns=columns)
    kept = schema.select_columns(columns)
    problems += [f"{line} ({source})" for line in describe_failures(failure_cases(df, kept), df)]
    if problems:
        raise DataContractError("; ".join(problems))

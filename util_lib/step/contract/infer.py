"""Infer a data contract (a file of ``conf/dataset/``) from a Parquet file.

pandera's :func:`pandera.infer_schema` gives each column's dtype, whether it holds missing
values and its range (the file's own minimum and maximum: widen them to the physically
meaningful bounds when you know them). On top of it, each column gets a role by a plain rule:

- a string column whose values are long (a mean of :data:`TEXT_MIN_LENGTH` characters or more)
  or mostly distinct (more than :data:`TEXT_MIN_UNIQUE_SHARE` of the rows) is ``text``: the
  text columns are joined into the text feature ``text_feature``;
- a column of few distinct values (:data:`MAX_CATEGORIES` or fewer) is ``categorical``; a
  string one lists them as its ``categories``;
- any other number column is ``numerical``;
- a column with one value only carries nothing: it is checked, with no role.

The target gets no role; its classes become ``labels``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import yaml

from util_lib.artifacts.digests import file_sha256
from util_lib.names import PROJECT_ROOT
from util_lib.step.contract import ContractError, contract_from_mapping

MAX_CATEGORIES = 20
TEXT_MIN_LENGTH = 15
TEXT_MIN_UNIQUE_SHARE = 0.5
TEXT_FEATURE = "text_feature"
# pandera's dtype names, as the contract spells them.
_KINDS = {"f": "float64", "i": "int64", "u": "int64", "b": "bool"}


class ContractInferenceError(ValueError):
    """The file cannot give a contract; the message names the file or the column."""


def infer_contract(df: Any, target: str, file_url: str | None = None, sha256: str | None = None):
    """Infer the contract of a table, as the mapping a contract file holds.

    Parameters
    ----------
    df : pandas.DataFrame
        The whole table.
    target : str
        The column the model predicts.
    file_url, sha256 : str, optional
        Where the file is, and its digest, written into the contract.

    Returns
    -------
    dict
        ``file_url``, ``sha256``, ``target``, ``labels``, ``text_feature`` and ``columns``,
        readable by :func:`util_lib.step.contract.contract_from_mapping`.

    Raises
    ------
    ContractInferenceError
        When ``target`` is not a column (naming the closest) or a column's dtype has no
        contract name.
    """
    import difflib

    import pandera.pandas as pa

    if target not in df.columns:
        close = difflib.get_close_matches(target, [str(c) for c in df.columns], n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"the columns are {list(df.columns)}"
        raise ContractInferenceError(f"--target {target!r} is not a column of the file; {hint}")
    schema = pa.infer_schema(df)
    columns = {str(name): _column(df[name], schema.columns[name]) for name in df.columns}
    columns[target].pop("role", None)
    columns[target].pop("categories", None)
    labels = sorted((_plain(v) for v in df[target].dropna().unique()), key=str)
    has_text = any(spec.get("role") == "text" for spec in columns.values())
    return {
        "file_url": file_url,
        "sha256": sha256,
        "target": target,
        "labels": labels,
        "text_feature": TEXT_FEATURE if has_text else None,
        "columns": columns,
    }


def _column(series: Any, inferred: Any) -> dict[str, Any]:
    """One column's entry: dtype, nullable, range (pandera's) or categories, role."""
    dtype = _dtype(series)
    spec: dict[str, Any] = {"dtype": dtype}
    if inferred.nullable:
        spec["nullable"] = True
    bounds = {c.name: c.statistics for c in inferred.checks}
    if dtype in ("float64", "int64") and bounds:
        low = bounds["greater_than_or_equal_to"]["min_value"]
        high = bounds["less_than_or_equal_to"]["max_value"]
        spec["min"], spec["max"] = (
            _bound(low, series.min(), dtype),
            _bound(high, series.max(), dtype),
        )
    values = series.dropna()
    distinct = values.nunique()
    if distinct <= 1:
        return spec  # a constant: nothing to learn from
    if dtype == "str":
        lengths = values.astype(str).str.len()
        if lengths.mean() >= TEXT_MIN_LENGTH or distinct > TEXT_MIN_UNIQUE_SHARE * len(values):
            spec["role"] = "text"
        elif distinct <= MAX_CATEGORIES:
            spec["categories"] = sorted(str(v) for v in values.unique())
            spec["role"] = "categorical"
    elif dtype in ("int64", "bool") and distinct <= MAX_CATEGORIES:
        spec["role"] = "categorical"
    elif dtype in ("float64", "int64"):
        spec["role"] = "numerical"
    return spec


def _dtype(series: Any) -> str:
    from pandas.api import types

    if types.is_string_dtype(series.dtype) or types.is_object_dtype(series.dtype):
        if all(isinstance(v, str) for v in series.dropna()):
            return "str"
    elif series.dtype.kind in _KINDS:
        return _KINDS[series.dtype.kind]
    raise ContractInferenceError(
        f"column {series.name!r} has dtype {series.dtype}, which a contract cannot state "
        "(float64, int64, str or bool): convert it before writing the file"
    )


def _bound(inferred: float, actual: Any, dtype: str) -> float | int:
    """pandera's bound, written as the data's own value when they agree (pandera's statistics
    can carry a float's last-digit noise, 0.8590000000000001 for 0.859)."""
    actual = _plain(actual)
    if dtype == "int64":
        return int(actual)
    return actual if math.isclose(inferred, actual, rel_tol=1e-12, abs_tol=0.0) else inferred


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") and not isinstance(value, str) else value


def write_contract(file: Path, target: str, name: str, conf_dir: Path, force: bool = False) -> Path:
    """Infer the contract of the Parquet file ``file`` and write it to ``conf_dir/NAME.yaml``.

    Parameters
    ----------
    file : pathlib.Path
        The Parquet file; its path goes into the contract relative to the project root when
        it is under it.
    target : str
        The column the model predicts.
    name : str
        The dataset's name: the file's stem, chosen with ``dataset=NAME``.
    conf_dir : pathlib.Path
        The config group's folder (the project's ``conf/dataset/``).
    force : bool, default=False
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    ContractInferenceError
        Naming the file, the column or the existing contract.
    """
    import pandas as pd

    out = Path(conf_dir) / f"{name}.yaml"
    if not name or "/" in name or name.startswith("."):
        raise ContractInferenceError(f"--name {name!r}: must be a plain file name, e.g. wine")
    if out.exists() and not force:
        raise ContractInferenceError(f"{out} exists: edit it, or replace it with --force")
    file = Path(str(file).removeprefix("file://"))
    try:
        df = pd.read_parquet(file)
    except (OSError, ValueError) as error:
        raise ContractInferenceError(f"cannot read {file} as Parquet: {error}") from None
    digest = file_sha256(file)
    resolved = file.resolve()
    shown = (
        str(resolved.relative_to(PROJECT_ROOT))
        if resolved.is_relative_to(PROJECT_ROOT)
        else str(resolved)
    )
    contract = infer_contract(df, target, shown, digest)
    try:  # what the pipeline will read must read back
        contract_from_mapping(contract, str(out))
    except ContractError as error:
        raise ContractInferenceError(str(error)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(contract, name, file, target))
    return out


def render(contract: dict[str, Any], name: str, file: Path, target: str) -> str:
    """The contract as YAML, one line per column, with a header saying how it was made."""
    header = (
        f"# `dataset={name}`: made by `python -m util_lib.step.contract infer {file} --target "
        f"{target} --name {name}`.\n"
        "# Read it and edit it: the ranges are the file's own minimum and maximum (widen them\n"
        "# to what the data can physically be), the roles follow the rule of\n"
        "# util_lib/step/contract/infer.py (role: numerical | categorical | text; none:\n"
        "# checked, not a feature; feature: false keeps a column out of the model).\n"
        '# README "Your own data".\n'
    )
    top = {k: v for k, v in contract.items() if k != "columns"}
    body = yaml.safe_dump(top, sort_keys=False, width=100, allow_unicode=True)
    lines = [header, body, "columns:\n"]
    for column, spec in contract["columns"].items():
        flow = yaml.safe_dump(spec, default_flow_style=True, width=10_000, sort_keys=False)
        # A plain name as it is; any other as a JSON string (which YAML reads too).
        key = column if re.fullmatch(r"[A-Za-z_][\w/.-]*", column) else json.dumps(column)
        lines.append(f"  {key}: {flow}")
    return "".join(lines)

"""The checks of the data: the data contract (the config group ``dataset``), and the
configuration against the data file.

``data.file_url`` names an existing local file or an http(s) URL (:func:`file_url_problem`,
the key's rule in :class:`util_lib.pipeline.config_rules.Data`); with a local Parquet file, the
columns the features and the stratified split name are in it (:func:`columns_problems`,
reading its footer only) and both splits leave every part, and every class, a row
(:func:`split_problems`). Each file version is read once however many jobs of a sweep ask
(pyarrow only: no pandas).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from util_lib.names import PROJECT_ROOT
from util_lib.pipeline.config_checks import ABSENT, Checker, Problem, show
from util_lib.step.arguments import is_url, project_path
from util_lib.step.contract import Contract, ContractError, contract_from_mapping

DATASET = "dataset"


def file_url_problem(value: Any, root: Path = PROJECT_ROOT) -> str | None:
    """What is wrong with ``data.file_url`` (None if nothing): an existing local file (a
    relative path is under ``root``), an http(s) URL or a ``file://`` URL of an existing file."""
    allowed = "an http(s):// URL, or a file:// URL or local path of an existing file"
    if not isinstance(value, str) or not value.strip():
        return f"must be {allowed}"
    if is_url(value):
        parsed = urlparse(value)
        scheme = parsed.scheme.lower()
        if scheme in ("http", "https"):
            return None if parsed.netloc else f"no host in the URL: must be {allowed}"
        if scheme != "file":
            return f"unsupported scheme {scheme!r}: must be {allowed}"
        if parsed.netloc not in ("", "localhost"):
            return f"a file:// URL with a remote host is not supported: must be {allowed}"
        path = Path(unquote(parsed.path))
    else:
        path = Path(project_path(value, root))
    if not path.is_file():
        where = "" if path == Path(value) else f" (a relative path is under {root})"
        return f"no such file {path}{where}: must be {allowed}"
    return None


def data_file_path(value: str, root: Path = PROJECT_ROOT) -> Path | None:
    """The local file that a good ``data.file_url`` names (:func:`file_url_problem`); None for
    an http(s) URL, which get_data checks as it downloads."""
    if is_url(value):
        parsed = urlparse(value)
        return Path(unquote(parsed.path)) if parsed.scheme.lower() == "file" else None
    return Path(project_path(value, root))


# ------------------------------------------------------------------------------------ the data
# The local data file is read as little as can be: the Parquet footer for the columns and the
# number of rows, one column for the classes of a stratified split; each once per version of
# the file (path, modification time and size), however many jobs of a sweep ask.
def _file_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_mtime_ns, stat.st_size


@lru_cache(maxsize=16)
def _read_layout(key: tuple[str, int, int]) -> tuple[tuple[str, ...], int]:
    import pyarrow.parquet as pq

    file = pq.ParquetFile(key[0])
    return tuple(file.schema_arrow.names), file.metadata.num_rows


@lru_cache(maxsize=16)
def _read_counts(key: tuple[str, int, int], column: str) -> tuple[tuple[Any, int], ...]:
    import pyarrow.parquet as pq

    # ParquetFile: read_table would import pandas for the pandas metadata of the file.
    table = pq.ParquetFile(key[0]).read(columns=[column], use_pandas_metadata=False)
    counts = table.column(0).value_counts()
    return tuple(zip(counts.field(0).to_pylist(), counts.field(1).to_pylist(), strict=True))


def data_layout(path: Path) -> tuple[tuple[str, ...], int]:
    """The columns and the number of rows of the Parquet file ``path``, from its footer.

    Raises
    ------
    ValueError
        When the file is not readable Parquet (get_data reads Parquet only).
    """
    import pyarrow as pa

    try:
        return _read_layout(_file_key(path))
    except (OSError, ValueError, pa.ArrowException) as error:
        raise ValueError(
            f"not a readable Parquet file ({error}): get_data reads Parquet only"
        ) from None


def class_counts(path: Path, column: str) -> dict[Any, int]:
    """Rows per value of ``column`` of the Parquet file ``path`` (None: missing values),
    reading that column only."""
    return dict(_read_counts(_file_key(path), column))


def check_dataset(check: Checker) -> None:
    """The config group ``dataset``: a data contract that the steps can read."""
    value = check.get(DATASET)
    if value is ABSENT:
        return
    try:
        contract_from_mapping(value, f"conf/{DATASET}/{_choice(check)}.yaml")
    except ContractError as error:
        check.add(DATASET, _choice(check), str(error))


def _choice(check: Checker) -> str:
    """The dataset's name as chosen (dataset=NAME), for messages."""
    from hydra.core.hydra_config import HydraConfig

    # Hydra's record of the choice: only while Hydra runs (not under compose()).
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    return str(choices.get(DATASET, "NAME"))


def _contract(check: Checker) -> Contract | None:
    """The composed configuration's contract; None when absent or unreadable."""
    value = check.get(DATASET)
    if value is ABSENT:
        return None
    try:
        return contract_from_mapping(value, f"conf/{DATASET}/")
    except ContractError:
        return None


def _closest(name: str, columns: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, columns, n=1)
    return f"the closest is {close[0]!r}" if close else f"its columns: {', '.join(columns)}"


def columns_problems(
    path: Path,
    columns: Mapping[str, str | Sequence[str]],
    source: str | None = None,
) -> list[Problem]:
    """The columns named by config keys that the data file lacks.

    Parameters
    ----------
    path : pathlib.Path
        A local Parquet file (only its schema is read).
    columns : mapping
        Config key -> a column name (``data.stratify``) or a list of them (a feature list;
        its problems are named ``key[i]``).
    source : str, optional
        How the file is named in the messages (default: ``path``).

    Raises
    ------
    ValueError
        When ``path`` is not readable Parquet (:func:`data_layout`).
    """
    present, _ = data_layout(path)
    source = source or str(path)
    available = list(present)
    problems = []
    for key, names in columns.items():
        named = (
            [(key, names)]
            if isinstance(names, str)
            else [(f"{key}[{i}]", name) for i, name in enumerate(names)]
        )
        for where, name in named:
            if name not in available:
                allowed = f"no such column in {source} ({_closest(name, available)})"
                problems.append(Problem(where, name, allowed))
    return problems


def _rows(n: int, what: str = "row") -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _describe(classes: list[tuple[Any, int]]) -> str:
    """The smallest few classes, with their rows: ``'Pop' (468 rows) and 14 more``."""
    classes = sorted(classes, key=lambda c: c[1])
    named = ", ".join(f"{show(c)} ({_rows(n)})" for c, n in classes[:3])
    more = f" and {len(classes) - 3} more" if len(classes) > 3 else ""
    return f"class{'es' if len(classes) > 1 else ''} {named}{more}"


def split_problems(
    test_size: float,
    val_size: float,
    rows: int,
    classes: Mapping[Any, int] | None = None,
    column: str | None = None,
) -> list[Problem]:
    """What the two splits leave too small: segregate's (``data.test_size``) and train's
    (``data.val_size``, of the training rows), as scikit-learn's ``train_test_split`` sizes
    them.

    Each part needs a row; stratified by ``column`` (``classes``: its rows per value), each
    class needs a row in train, validation and test. A stratified split gives a class of
    ``k`` of ``n`` rows ``floor(k * n_part / n)`` rows of a part, or one more (scikit-learn's
    approximate mode): a class is short when the fewer could be 0. Counts are the raw file's
    (preprocess then drops duplicate rows).
    """
    n_test = math.ceil(test_size * rows)
    n_train = rows - n_test
    if n_train < 1:
        return [Problem("data.test_size", test_size, f"leaves no row to train on ({_rows(rows)})")]
    n_val = math.ceil(val_size * n_train)
    n_fit = n_train - n_val
    problems = []
    if n_fit < 1:
        problems.append(
            Problem(
                "data.val_size",
                val_size,
                f"leaves no row to fit on ({_rows(n_train, 'train row')})",
            )
        )
    if not classes:
        return problems
    # Each part: the key that sizes it, where a class may get no row, the least it gets.
    parts = (
        ("data.test_size", f"in the test split ({n_test} of {rows} rows)"),
        ("data.test_size", f"in the train split ({n_train} of {rows} rows)"),
        ("data.val_size", f"in the validation split ({n_val} of {n_train} train rows)"),
        ("data.val_size", f"to fit on ({n_fit} of {n_train} train rows)"),
    )
    short: list[list[tuple[Any, int]]] = [[] for _ in parts]
    for value, k in classes.items():
        train = k * n_train // rows
        fit = train * n_fit // n_train
        least = (k - min(k, train + 1), train, train - min(train, fit + 1), fit)
        # A class the train split may leave without a row: data.test_size's problem alone.
        for found, rows_least in zip(short, least if train else least[:2], strict=False):
            if rows_least < 1:
                found.append((value, k))
    each = f"each class of {column!r} needs a row in train, validation and test"
    for key, size in (("data.test_size", test_size), ("data.val_size", val_size)):
        said = [
            f"may leave {_describe(found)} no row {where}"
            for (part_key, where), found in zip(parts, short, strict=True)
            # (with no row to fit on at all, that alone is said)
            if part_key == key and found and (key == "data.test_size" or n_fit >= 1)
        ]
        if said:
            problems.append(Problem(key, size, f"{'; '.join(said)}: {each}"))
    return problems


def check_against_data(check: Checker) -> None:
    """Columns and splits against a local data file (a URL is get_data's to check)."""
    url = check.valid("data.file_url")
    if url is ABSENT or (path := data_file_path(url)) is None:
        return
    try:
        _, rows = data_layout(path)
    except ValueError as error:
        check.add("data.file_url", url, str(error))
        return
    stratify = check.valid("data.stratify")
    columns: dict[str, Any] = {} if stratify in (None, ABSENT) else {"data.stratify": stratify}
    contract = _contract(check)
    if contract is not None:
        # What the model reads from the file: its target and features. The other columns of
        # the contract, and every dtype, are get_data's to check, for a URL too.
        columns[f"{DATASET}.target"] = contract.target
        for names in contract.features().values():
            for name in names:
                columns[f"{DATASET}.columns.{name}"] = name
    check.problems.extend(found := columns_problems(path, columns, url))
    sizes = [check.valid(f"data.{k}") for k in ("test_size", "val_size")]
    if ABSENT in sizes or stratify is ABSENT or any(p.key == "data.stratify" for p in found):
        return
    counts = None
    # A column preprocess makes has no classes in the file: the sizes alone are checked.
    if stratify is not None and stratify in data_layout(path)[0]:
        counts = class_counts(path, stratify)
        if missing := counts.pop(None, 0):
            check.add(
                "data.stratify",
                stratify,
                f"column {stratify!r} of {url} has {missing} missing values: a stratified split "
                "needs a value in every row",
            )
    check.problems.extend(split_problems(*sizes, rows, counts, stratify))

"""The configuration's schema and its checks: a bad value stops the pipeline before any step.

config.yaml holds the values; :class:`PipelineConfig`, registered in Hydra's ConfigStore as
``config_schema`` (first in config.yaml's ``defaults``), gives their types, which Hydra enforces
when it composes the configuration (``data.test_size=abc`` fails there). :func:`check_config`
checks what types cannot say (ranges, step names, files, scikit-learn's rules for the forest)
and what would fail once steps ran: names that MLflow or W&B refuse, columns the data lacks,
splits that leave a class no row, an artifact spec that does not resolve, a log file that
cannot be written. It lists every problem at once; main.py calls it before the pipeline opens
any run. :func:`check_sweep` does the same for every job of a sweep before the first job
starts, reading the data and opening the artifact store once for all of them.

Each check that reads something is a function of plain values (:func:`columns_problems`,
:func:`split_problems`, :func:`artifact_spec_problem`, :func:`log_file_problem`), so that it
can be called from elsewhere.

Importing this module costs Hydra and OmegaConf only (no MLflow, W&B or scikit-learn). A
check imports what it needs when it runs: scikit-learn for the forest's arguments (once per
set of arguments), pyarrow and preprocess's module (pandas) for a local data file, MLflow only
for an artifact spec that the store must resolve (the driver imports both right after).
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tempfile
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from util_lib.arguments import PROJECT_ROOT, is_url, optional, project_path
from util_lib.backends import STORE_CHOICES
from util_lib.environment import LOG_FILE_ENV
from util_lib.graph import load_graph, step_names
from util_lib.redact import redact_text
from util_lib.store import (
    NAME_RULE,
    ArtifactNotFoundError,
    check_alias,
    is_alias,
    name_problem,
    parse_spec,
)

if TYPE_CHECKING:
    from util_lib.artifact_store import ArtifactStore

SCHEMA_NAME = "config_schema"
STEPS = step_names()  # pipeline.yaml's
# mlflow.utils.env_manager's values (importing it would import MLflow).
ENV_MANAGERS = ("local", "virtualenv", "uv", "conda")
# train_random_forest.pipeline.GRID_SEARCH_KEYS (a test keeps the two equal).
GRID_SEARCH_KEYS = ("param_grid", "cv", "scoring")
FOREST = "random_forest_pipeline.random_forest"
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


# ------------------------------------------------------------------------------------ schema
# Types only: config.yaml holds the values (MISSING here). `Any` where a key takes several
# types (OmegaConf has no Union); check_config checks those.
@dataclass
class MainConfig:
    project_name: str = MISSING
    experiment_name: str = MISSING
    execute_steps: Any = MISSING  # all, a list of steps or a comma string
    cache: bool = MISSING
    random_seed: int = MISSING
    env_manager: str | None = MISSING
    components_repository: str | None = MISSING
    components_version: str | None = MISSING
    artifact_store: str = MISSING
    log_file: str = MISSING
    registered_model_name: str | None = MISSING


@dataclass
class DataConfig:
    file_url: str = MISSING
    sha256: str | None = MISSING
    reference_dataset: str = MISSING
    ks_alpha: float = MISSING
    allow_unchecked: bool = MISSING
    test_size: float = MISSING
    val_size: float = MISSING
    stratify: str | None = MISSING


@dataclass
class TfidfConfig:
    max_features: int | None = MISSING


@dataclass
class FeaturesConfig:
    numerical: list[str] = MISSING
    categorical: list[str] = MISSING
    nlp: list[str] = MISSING


@dataclass
class RandomForestPipelineConfig:
    # Any keyword argument of RandomForestClassifier: scikit-learn checks names and values.
    random_forest: dict[str, Any] = MISSING
    tfidf: TfidfConfig = MISSING
    grid_search: Any | None = MISSING  # null or {param_grid, cv, scoring}
    features: FeaturesConfig = MISSING
    export_artifact: str | None = MISSING
    predict_n_jobs: int | None = MISSING


@dataclass
class PipelineConfig:
    """The schema of config.yaml (its ``hydra`` section is Hydra's own)."""

    main: MainConfig = MISSING
    data: DataConfig = MISSING
    random_forest_pipeline: RandomForestPipelineConfig = MISSING


ConfigStore.instance().store(name=SCHEMA_NAME, node=PipelineConfig)


# ------------------------------------------------------------------------------------ problems
def show(value: Any) -> str:
    """A value as a user would write it in an override (``null``, ``true``, ``'text'``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value)


@dataclass(frozen=True)
class Problem:
    """One bad value: its key path, the value, and what is allowed."""

    key: str
    value: Any
    allowed: str

    def __str__(self) -> str:
        # A URL's credentials (data.file_url may hold a token) are never printed.
        return redact_text(f"{self.key}={show(self.value)}: {self.allowed}")


class ConfigError(ValueError):
    """The configuration has bad values; the message lists every one of them."""

    def __init__(self, heading: str, lines: list[str]) -> None:
        # Both in args: the error pickles (a sweep job's error travels back from its worker).
        super().__init__(heading, lines)
        self.heading = heading
        self.lines = lines

    def __str__(self) -> str:
        return "\n  ".join([self.heading, *self.lines])


_ABSENT = object()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


class _Checker:
    """Reads keys of a configuration and collects the problems found."""

    def __init__(self, config: DictConfig) -> None:
        self.config = config
        self.problems: list[Problem] = []
        self._values: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        """The plain value of ``key`` (interpolations resolved), or ``_ABSENT`` after recording
        why it cannot be read (once: a key read again gives the same answer)."""
        if key not in self._values:
            self._values[key] = self._read(key)
        return self._values[key]

    def valid(self, key: str) -> Any:
        """The value of ``key`` when it is there and no problem is recorded for it (the checks
        that read files or stores build on those), else ``_ABSENT``."""
        value = self.get(key)
        return _ABSENT if any(p.key == key for p in self.problems) else value

    def _read(self, key: str) -> Any:
        try:
            value = OmegaConf.select(self.config, key, default=_ABSENT, throw_on_missing=True)
            if isinstance(value, DictConfig | ListConfig):
                value = OmegaConf.to_container(value, resolve=True, throw_on_missing=True)
        except MissingMandatoryValue:
            value = _ABSENT
        except OmegaConfBaseException as error:  # an interpolation that does not resolve
            self.add(key, self.raw(key), str(error).splitlines()[0])
            return _ABSENT
        if value is _ABSENT:
            self.add(key, "???", "missing: config.yaml must give it a value")
        return value

    def raw(self, key: str) -> Any:
        """The value of ``key`` as written, interpolations unresolved."""
        parent, _, name = key.rpartition(".")
        node = OmegaConf.select(self.config, parent) if parent else self.config
        return OmegaConf.to_container(node, resolve=False).get(name)

    def add(self, key: str, value: Any, allowed: str) -> None:
        self.problems.append(Problem(key, value, allowed))

    def require(self, key: str, test: Any, allowed: str) -> Any:
        """Record a problem unless ``test(value)`` holds; return the value."""
        value = self.get(key)
        if value is not _ABSENT and not test(value):
            self.add(key, value, allowed)
        return value


# ------------------------------------------------------------------------------------ rules
def parse_steps(execute_steps: Any) -> list[str] | None:
    """The step names of ``main.execute_steps`` (``all``, a list or a comma string); None if
    neither."""
    if isinstance(execute_steps, str) and execute_steps.strip() == "all":
        return list(STEPS)
    if isinstance(execute_steps, str):
        return [s.strip() for s in execute_steps.split(",") if s.strip()]
    if isinstance(execute_steps, list | tuple):
        return [str(s).strip() for s in execute_steps]
    return None


def _check_name(check: _Checker, key: str, what: str, nullable: bool = False) -> None:
    """``key`` names a project, an artifact or a registered model: MLflow's and W&B's rule."""
    value = check.get(key)
    if value is _ABSENT or (nullable and value is None):
        return
    if problem := name_problem(value):
        either = "null or " if nullable else ""
        check.add(
            key,
            value,
            f"must be {either}{what} that MLflow and W&B accept ({NAME_RULE}): it {problem}",
        )


def _check_main(check: _Checker) -> None:
    # Also the MLflow experiment, whose artifacts a local store keeps in mlruns/<name>.
    _check_name(check, "main.project_name", "a project name")
    for key in ("experiment_name", "log_file"):
        check.require(f"main.{key}", _is_text, "must be a non-empty string")
    steps = check.get("main.execute_steps")
    names = parse_steps(steps) if steps is not _ABSENT else []
    known = ", ".join(STEPS)
    if names is None:
        check.add("main.execute_steps", steps, f"must be all, a list or a comma string of: {known}")
    elif steps is not _ABSENT and not names:
        check.add("main.execute_steps", steps, f"must name at least one step of: {known}")
    elif unknown := [s for s in names if s not in STEPS]:
        check.add("main.execute_steps", steps, f"unknown step(s) {unknown}; steps: {known}")
    check.require(
        "main.random_seed",
        lambda v: _is_int(v) and 0 <= v < 2**32,
        "must be an int in [0, 2**32 - 1]",
    )
    check.require(
        "main.env_manager",
        lambda v: v is None or v in ENV_MANAGERS,
        f"must be null or one of {', '.join(ENV_MANAGERS)}",
    )
    store = check.require(
        "main.artifact_store",
        lambda v: v in STORE_CHOICES,
        f"must be one of {', '.join(STORE_CHOICES)}",
    )
    if check.valid("main.artifact_store") is not _ABSENT:
        from util_lib.backends import choose_backends

        try:
            choose_backends(store)  # W&B asked for while it is not online
        except ValueError as error:
            check.add(
                "main.artifact_store",
                store,
                str(error).removeprefix(f"main.artifact_store={store} "),
            )
    _check_name(check, "main.registered_model_name", "a registered model name", nullable=True)


def file_url_problem(value: Any, root: Path = PROJECT_ROOT) -> str | None:
    """What is wrong with ``data.file_url`` (None if nothing): an existing local file (a
    relative path is under ``root``), an http(s) URL or a ``file://`` URL of an existing file."""
    allowed = "an http(s):// URL, or a file:// URL or local path of an existing file"
    if not _is_text(value):
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


def _check_data(check: _Checker) -> None:
    url = check.get("data.file_url")
    if url is not _ABSENT and (problem := file_url_problem(url)):
        check.add("data.file_url", url, problem)
    check.require(
        "data.sha256",
        lambda v: optional(v) is None or bool(_SHA256.fullmatch(v.strip())),
        "must be null or 64 hex digits (the file's sha256)",
    )
    check.require(
        "data.reference_dataset", _is_text, "must be an artifact, name:version or name:alias"
    )
    for key in ("ks_alpha", "test_size", "val_size"):
        check.require(
            f"data.{key}", lambda v: _is_number(v) and 0 < v < 1, "must be a number in (0, 1)"
        )
    check.require(
        "data.stratify", lambda v: v is None or _is_text(v), "must be null or a column name"
    )


def _checked_marker(arguments: dict[str, Any]) -> Path | None:
    """Where a passed check of these exact arguments under this scikit-learn is remembered."""
    import hashlib
    import json
    import os
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = json.dumps(
            [version("scikit-learn"), arguments], sort_keys=True, default=repr, allow_nan=True
        )
    except (PackageNotFoundError, TypeError, ValueError):
        return None
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "util_lib" / "forest_checks" / hashlib.sha256(text.encode()).hexdigest()


def forest_problems(arguments: dict[str, Any], key: str = FOREST) -> list[Problem]:
    """Check keyword arguments of ``RandomForestClassifier`` with scikit-learn's own rules.

    Each argument is validated alone against the class's ``_parameter_constraints`` (what
    ``RandomForestClassifier(**arguments).fit`` checks first), so that every bad one is named.
    Arguments that passed once under the same scikit-learn version pass again without it:
    importing scikit-learn costs the driver 1.3 s before its first step (a marker file per
    passed set, named by the digest of the version and the arguments, in
    ``$XDG_CACHE_HOME/util_lib/forest_checks``, default ``~/.cache``).
    """
    marker = _checked_marker(arguments)
    if marker is not None and marker.is_file():
        return []
    problems = _validate_forest(arguments, key)
    if not problems and marker is not None:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError:  # a read-only home: the check just runs every time
            pass
    return problems


def _validate_forest(arguments: dict[str, Any], key: str) -> list[Problem]:
    import sklearn
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.utils._param_validation import (
        InvalidParameterError,
        validate_parameter_constraints,
    )

    names = RandomForestClassifier._get_param_names()
    constraints = RandomForestClassifier._parameter_constraints
    problems = []
    for name, value in arguments.items():
        if name not in names:
            problems.append(
                Problem(
                    f"{key}.{name}",
                    value,
                    f"not an argument of RandomForestClassifier (scikit-learn "
                    f"{sklearn.__version__}); its arguments: {', '.join(names)}",
                )
            )
            continue
        try:
            validate_parameter_constraints(
                {name: constraints.get(name, "no_validation")},
                {name: value},
                caller_name="RandomForestClassifier",
            )
        except InvalidParameterError as error:
            # "The 'x' parameter of RandomForestClassifier must be ... Got ... instead."
            match = re.search(r"(must be .*)\. Got .* instead\.$", str(error), re.DOTALL)
            allowed = f"{match[1]} (scikit-learn)" if match else str(error)
            problems.append(Problem(f"{key}.{name}", value, allowed))
    return problems


def _check_param_grid(check: _Checker, key: str, param_grid: Any) -> None:
    if not isinstance(param_grid, dict) or not param_grid:
        check.add(key, param_grid, "must map pipeline parameters to lists")
        return
    for name, values in param_grid.items():
        if not isinstance(values, list) or not values:
            check.add(f"{key}.{name}", values, "must be a non-empty list")
        elif name.startswith("classifier__"):
            # Each value of the list as the forest argument it sets (the step checks the
            # processor__ ones against the built pipeline).
            argument = name.removeprefix("classifier__")
            for i, value in enumerate(values):
                for problem in forest_problems({argument: value}):
                    check.add(f"{key}.{name}[{i}]", value, problem.allowed)
        elif not name.startswith("processor__"):
            check.add(
                f"{key}.{name}",
                values,
                "must be a pipeline parameter: classifier__<forest argument> or processor__...",
            )


def _check_grid_search(check: _Checker, key: str) -> None:
    grid = check.get(key)
    if grid is None or grid is _ABSENT:
        return
    if not isinstance(grid, dict) or set(grid) != set(GRID_SEARCH_KEYS):
        check.add(key, grid, f"must be null or a mapping of exactly {', '.join(GRID_SEARCH_KEYS)}")
        return
    _check_param_grid(check, f"{key}.param_grid", grid["param_grid"])
    if not (_is_int(grid["cv"]) and grid["cv"] >= 2):
        check.add(f"{key}.cv", grid["cv"], "must be an int >= 2 (the number of folds)")
    from sklearn.metrics import get_scorer_names  # only when a grid search is asked for

    if grid["scoring"] not in get_scorer_names():
        check.add(
            f"{key}.scoring",
            grid["scoring"],
            "must be a scikit-learn scorer name, e.g. roc_auc_ovo",
        )


def _check_model(check: _Checker) -> None:
    forest = check.get(FOREST)
    if isinstance(forest, dict):
        check.problems.extend(forest_problems(forest))
    elif forest is not _ABSENT:
        check.add(FOREST, forest, "must be a mapping of RandomForestClassifier arguments")
    check.require(
        "random_forest_pipeline.tfidf.max_features",
        lambda v: v is None or (_is_int(v) and v >= 1),
        "must be null (every term) or an int >= 1",
    )
    _check_grid_search(check, "random_forest_pipeline.grid_search")
    columns = []
    for group in ("numerical", "categorical", "nlp"):
        names = check.require(
            f"random_forest_pipeline.features.{group}",
            lambda v: isinstance(v, list) and all(_is_text(c) for c in v),
            "must be a list of column names",
        )
        columns += names if isinstance(names, list) else []
    if not columns:
        check.add("random_forest_pipeline.features", [], "must name at least one column")
    if repeated := sorted({c for c in columns if columns.count(c) > 1}):
        check.add("random_forest_pipeline.features", repeated, "columns listed more than once")
    _check_name(check, "random_forest_pipeline.export_artifact", "an artifact name", nullable=True)
    check.require(
        "random_forest_pipeline.predict_n_jobs",
        lambda v: v is None or (_is_int(v) and v != 0),
        "must be null (as trained) or a non-zero int (-1: every core)",
    )


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


def derived_columns() -> dict[str, tuple[str, ...]]:
    """The columns preprocess adds to the data, each with the columns it is made of, as
    preprocess/cleaning.py declares them."""
    from preprocess.cleaning import TEXT_COLUMNS, TEXT_FEATURE

    return {TEXT_FEATURE: tuple(TEXT_COLUMNS)}


def _closest(name: str, columns: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, columns, n=1)
    return f"the closest is {close[0]!r}" if close else f"its columns: {', '.join(columns)}"


def columns_problems(
    path: Path, columns: Mapping[str, str | Sequence[str]], source: str | None = None
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
    derived = {c: parts for c, parts in derived_columns().items() if c not in present}
    available = [*present, *(c for c, parts in derived.items() if set(parts) <= set(present))]
    problems = []
    for key, names in columns.items():
        named = (
            [(key, names)]
            if isinstance(names, str)
            else [(f"{key}[{i}]", name) for i, name in enumerate(names)]
        )
        for where, name in named:
            if name in available:
                continue
            if name in derived:
                lacking = ", ".join(c for c in derived[name] if c not in present)
                allowed = (
                    f"preprocess makes it from {', '.join(derived[name])}, and {source} has no "
                    f"{lacking}"
                )
            else:
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


def _check_against_data(check: _Checker) -> None:
    """Columns and splits against a local data file (a URL is get_data's to check)."""
    url = check.valid("data.file_url")
    if url is _ABSENT or (path := data_file_path(url)) is None:
        return
    try:
        _, rows = data_layout(path)
    except ValueError as error:
        check.add("data.file_url", url, str(error))
        return
    stratify = check.valid("data.stratify")
    columns: dict[str, Any] = {} if stratify in (None, _ABSENT) else {"data.stratify": stratify}
    for group in ("numerical", "categorical", "nlp"):
        key = f"random_forest_pipeline.features.{group}"
        if (names := check.valid(key)) is not _ABSENT:
            columns[key] = names
    check.problems.extend(found := columns_problems(path, columns, url))
    sizes = [check.valid(f"data.{k}") for k in ("test_size", "val_size")]
    if _ABSENT in sizes or stratify is _ABSENT or any(p.key == "data.stratify" for p in found):
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


# ------------------------------------------------------------------------------------ the store
def pipeline_store(artifact_store: str, project: str) -> ArtifactStore:
    """The artifact store the pipeline will use, as main.py picks it (``main.artifact_store``,
    MLflow's tracking URI), in ``project``.

    Raises
    ------
    ArtifactNotFoundError
        When it is the embedded store on a SQLite file that does not exist yet: it holds no
        artifact (the file is not created here: a new store takes seconds to set up).
    """
    from util_lib.artifact_store import open_store
    from util_lib.backends import choose_backends

    kind = choose_backends(artifact_store).artifact_store
    if kind == "mlflow":
        import mlflow

        uri = mlflow.get_tracking_uri()
        if uri.startswith("sqlite:///"):
            database = Path(unquote(uri[len("sqlite:///") :].split("?")[0]))
            if not database.exists():
                raise ArtifactNotFoundError(f"no artifact yet: the store at {uri} does not exist")
    return open_store(kind, project=project)


def artifact_spec_problem(
    spec: str, project: str, awaited: Sequence[str], store: Callable[[], ArtifactStore]
) -> str | None:
    """What keeps the artifact ``spec`` that a step reads from resolving when the step runs.

    Parameters
    ----------
    spec : str
        ``[project/]name[:version_or_alias]`` (``data.reference_dataset``).
    project : str
        The pipeline's project (``main.project_name``).
    awaited : sequence of str
        The artifacts the same step reads that the pipeline writes before it: an alias of one
        of them (or ``latest``) that no version has yet is fine, since the step sets it
        (check_data gives the first sample that passes the alias ``reference``).
    store : callable
        Returns the store the pipeline will use (:func:`pipeline_store`); called only when the
        spec must be resolved.
    """
    try:
        spec_project, name, ref = parse_spec(spec)
        if is_alias(ref):
            check_alias(ref)
    except ValueError as error:
        return str(error)
    awaits = (spec_project or project) == project and name in awaited
    if awaits and (ref == "latest" or is_alias(ref)):
        return None
    allowed = (
        f"must name a version the store holds, or an alias of {' or '.join(awaited)} (which "
        "the pipeline sets)"
        if awaited
        else "must name a version the store holds"
    )
    try:
        store().resolve(spec)
    except ArtifactNotFoundError as error:
        return f"{error}: {allowed}"
    except Exception as error:  # noqa: BLE001 - a store that cannot be read fails the step too
        return f"cannot be resolved ({type(error).__name__}: {error}): {allowed}"
    return None


class Lookups:
    """What the checks of one configuration, or of every job of a sweep, read from outside
    once: the artifact store, and each spec's answer (the data file is cached by version)."""

    def __init__(self) -> None:
        self._stores: dict[tuple[str, str], Any] = {}
        self._answers: dict[tuple[str, str, str, tuple[str, ...]], str | None] = {}

    def spec_problem(
        self, spec: str, project: str, awaited: Sequence[str], artifact_store: str
    ) -> str | None:
        """:func:`artifact_spec_problem` against :func:`pipeline_store`, once per spec."""
        key = (artifact_store, project, spec, tuple(awaited))
        if key not in self._answers:
            self._answers[key] = artifact_spec_problem(
                spec, project, awaited, lambda: self._store(artifact_store, project)
            )
        return self._answers[key]

    def _store(self, artifact_store: str, project: str) -> ArtifactStore:
        if (artifact_store, project) not in self._stores:
            self._stores[artifact_store, project] = pipeline_store(artifact_store, project)
        return self._stores[artifact_store, project]


def _check_artifact_specs(check: _Checker, lookups: Lookups) -> None:
    """The artifact specs that config.yaml gives the steps that will run (pipeline.yaml's
    ``artifact:`` parameters) resolve."""
    steps = parse_steps(check.valid("main.execute_steps")) or []
    project = check.valid("main.project_name")
    artifact_store = check.valid("main.artifact_store")
    if _ABSENT in (project, artifact_store):
        return
    for step in load_graph():
        if step.name not in steps:
            continue
        for param in step.parameters:
            if param.source != "artifact" or (spec := check.valid(param.key)) is _ABSENT:
                continue
            awaited = step.input_names(check.config)
            if problem := lookups.spec_problem(spec, project, awaited, artifact_store):
                check.add(param.key, spec, problem)


# ------------------------------------------------------------------------------------ the log
def log_file_problem(path: Path) -> str | None:
    """What keeps the pipeline from appending to the log file ``path`` (None if nothing).

    Its folder must exist or be creatable, and take a new file: tried with a temporary file
    (or folder) that is removed at once, since permissions alone do not tell (root, /proc).
    """
    path = Path(path)
    if path.is_dir():
        return f"{path} is a folder"
    if path.exists():
        try:
            with path.open("a"):
                return None
        except OSError as error:
            return f"cannot append to {path}: {error.strerror}"
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is a file, not a folder"
    try:
        if folder == path.parent:
            with tempfile.NamedTemporaryFile(dir=folder):
                return None
        os.rmdir(tempfile.mkdtemp(dir=folder))
    except OSError as error:
        what = "a file" if folder == path.parent else "a folder"
        return f"cannot create {what} in {folder}: {error.strerror}"
    return None


def _check_log_file(check: _Checker) -> None:
    """The log file, where main.py puts it: ``$ML_PIPELINE_LOG``, else ``main.log_file``
    under the folder the pipeline is launched from."""
    value = check.valid("main.log_file")
    if value is _ABSENT:
        return
    from_env = os.environ.get(LOG_FILE_ENV)
    path = Path(from_env or Path.cwd() / value).resolve()
    if problem := log_file_problem(path):
        where = f" (${LOG_FILE_ENV}={from_env} is used)" if from_env else ""
        check.add(
            "main.log_file", value, f"must be a file the pipeline can write: {problem}{where}"
        )


def config_problems(config: DictConfig, lookups: Lookups | None = None) -> list[Problem]:
    """Every problem of a composed configuration (empty when it is good).

    ``lookups``: what the checks read from outside, shared by the jobs of a sweep.
    """
    check = _Checker(config)
    _check_main(check)
    _check_data(check)
    _check_model(check)
    _check_log_file(check)
    _check_against_data(check)
    _check_artifact_specs(check, lookups or Lookups())
    return check.problems


def check_config(config: DictConfig) -> None:
    """Check a composed configuration before anything runs.

    Raises
    ------
    ConfigError
        Listing every problem as ``key=value: what is allowed``.
    """
    problems = config_problems(config)
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise ConfigError(f"invalid configuration ({count}):", [str(p) for p in problems])


# ------------------------------------------------------------------------------------ sweeps
def sweep_problems(config: DictConfig) -> tuple[dict[str, list[int]], int | None]:
    """Check every job of a multirun, from the multirun's configuration (Hydra's driver).

    The basic sweeper's jobs are expanded from its overrides (``hydra.sweeper.params`` and the
    command line's, as Hydra's BasicSweeper does) and composed one by one, as Hydra composes
    them; the data file is read, and the artifact store opened, once for all of them. Other
    sweepers (Optuna) choose their jobs as they go: the configuration is checked without the
    keys they sweep, which each job's own check (main.py) covers.

    Returns
    -------
    problems : dict
        Each problem's text and the numbers of the jobs that have it (empty for a sweeper that
        chooses its jobs as it goes).
    n_jobs : int or None
        The number of jobs checked; None for a sweeper that chooses its jobs as it goes.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    loader = GlobalHydra.instance().config_loader()
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()]
    arguments += list(config.hydra.overrides.task)
    overrides = OverridesParser.create(config_loader=loader).parse_overrides(arguments)
    found: dict[str, list[int]] = defaultdict(list)
    if config.hydra.runtime.choices.get("hydra/sweeper") != "basic":
        swept = {o.get_key_element() for o in overrides if o.is_sweep_override()}
        for problem in config_problems(config):
            if not any(problem.key == k or problem.key.startswith(f"{k}.") for k in swept):
                found[str(problem)] = []
        return dict(found), None
    jobs = BasicSweeper.split_arguments(overrides, None)[0]
    lookups = Lookups()
    for num, job in enumerate(jobs):
        try:
            job_config = loader.load_sweep_config(config, list(job))
        except Exception as error:  # a value of the wrong type: Hydra's own message
            cause = f" ({str(error.__cause__).splitlines()[0]})" if error.__cause__ else ""
            found[redact_text(" ".join(f"{error}{cause}".split()))].append(num)
            continue
        for problem in config_problems(job_config, lookups):
            found[str(problem)].append(num)
    return dict(found), len(jobs)


def check_sweep(config: DictConfig) -> None:
    """Check every job of a multirun before the first one starts (see :func:`sweep_problems`).

    Raises
    ------
    ConfigError
        Listing each problem once, with the jobs that have it.
    """
    found, n_jobs = sweep_problems(config)
    if not found:
        return
    lines = [
        f"{text}  (job{'s' if len(jobs) > 1 else ''} {', '.join(map(str, jobs))})" if jobs else text
        for text, jobs in found.items()
    ]
    if n_jobs is None:
        heading = "invalid configuration of the sweep; no job was run:"
    else:
        bad = len({num for jobs in found.values() for num in jobs})
        heading = f"invalid configuration in {bad} of {n_jobs} jobs of the sweep; no job was run:"
    raise ConfigError(heading, lines)

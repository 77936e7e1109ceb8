"""The configuration's schema and its checks: a bad value stops the pipeline before any step.

config.yaml holds the values; :class:`PipelineConfig`, registered in Hydra's ConfigStore as
``config_schema`` (first in config.yaml's ``defaults``), gives their types, which Hydra enforces
when it composes the configuration (``data.test_size=abc`` fails there). :func:`check_config`
checks what types cannot say (ranges, step names, files, scikit-learn's rules for the forest)
and lists every problem at once; main.py calls it before the pipeline opens any run.
:func:`check_sweep` does the same for every job of a sweep before the first job starts.

Importing this module costs Hydra and OmegaConf only (no MLflow, W&B or scikit-learn);
scikit-learn is imported by the check of the forest's arguments.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from util_lib.arguments import PROJECT_ROOT, is_url, optional, project_path
from util_lib.backends import STORE_CHOICES
from util_lib.graph import step_names
from util_lib.redact import redact_text

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

    def get(self, key: str) -> Any:
        """The plain value of ``key`` (interpolations resolved), or ``_ABSENT`` after recording
        why it cannot be read."""
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


def _check_main(check: _Checker) -> None:
    for key in ("project_name", "experiment_name", "log_file"):
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
    check.require(
        "main.artifact_store",
        lambda v: v in STORE_CHOICES,
        f"must be one of {', '.join(STORE_CHOICES)}",
    )


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
    check.require(
        "random_forest_pipeline.export_artifact",
        lambda v: v is None or _is_text(v),
        "must be null or an artifact name",
    )
    check.require(
        "random_forest_pipeline.predict_n_jobs",
        lambda v: v is None or (_is_int(v) and v != 0),
        "must be null (as trained) or a non-zero int (-1: every core)",
    )


def config_problems(config: DictConfig) -> list[Problem]:
    """Every problem of a composed configuration (empty when it is good)."""
    check = _Checker(config)
    _check_main(check)
    _check_data(check)
    _check_model(check)
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
    them. Other sweepers (Optuna) choose their jobs as they go: the configuration is checked
    without the keys they sweep, which each job's own check (main.py) covers.

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
    for num, job in enumerate(jobs):
        try:
            job_config = loader.load_sweep_config(config, list(job))
        except Exception as error:  # a value of the wrong type: Hydra's own message
            cause = f" ({str(error.__cause__).splitlines()[0]})" if error.__cause__ else ""
            found[redact_text(" ".join(f"{error}{cause}".split()))].append(num)
            continue
        for problem in config_problems(job_config):
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

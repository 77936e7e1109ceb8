"""The configuration's checks: a bad value stops the pipeline before any step.

config.yaml holds the values; the rules of its keys, their exact types and what else their
values must be (ranges, choices, names that MLflow and W&B accept, step names, an existing
data file), are one pydantic model, :class:`~util_lib.pipeline.config_rules.Config`, with the
text that says what each allows. Hydra composes the configuration untyped, in struct mode (an
override of an unknown key fails there; a key added with ``+`` fails the rules).
:func:`check_config` checks the values by those rules and what they cannot say, what would
fail once steps ran: scikit-learn's rules for the model, columns the data lacks, splits that
leave a class no row, an artifact spec that does not resolve, a log file that cannot be
written. It lists every problem at once, as ``key=value: what is allowed``; main.py calls it
before the pipeline opens any run. :func:`check_sweep` does the same for every job of a sweep
before the first job starts, reading the data and opening the artifact store once for all of
them.

This module holds the entry points, ``conf/`` on Hydra's search path and the checks of the
artifact store and the log file; the others live by concern: how a check reads the
configuration and the artifact specs (:mod:`~util_lib.pipeline.config_checks`), the rules
(:mod:`~util_lib.pipeline.config_rules`), the data contract and the data file
(:mod:`~util_lib.pipeline.config_data`), the model (:mod:`~util_lib.pipeline.config_model`).
Each check that reads something is a function of plain values
(:func:`~util_lib.pipeline.config_data.columns_problems`,
:func:`~util_lib.pipeline.config_data.split_problems`,
:func:`~util_lib.pipeline.config_checks.artifact_spec_problem`, :func:`log_file_problem`), so
that it can be called from elsewhere.

Importing this module costs Hydra and OmegaConf only (no pydantic, MLflow, W&B or
scikit-learn). A check imports what it needs when it runs: pydantic for the rules,
scikit-learn for the model's arguments (once per set of arguments) and a grid search's
scorer, pyarrow and preprocess's module (pandas) for a local data file, MLflow only for an
artifact spec that the store must resolve (the driver imports both right after).
"""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import DictConfig, OmegaConf

from util_lib.artifacts.backends import choose_backends
from util_lib.names import LOG_FILE_ENV, PROJECT_ROOT
from util_lib.pipeline.config_checks import (
    ABSENT,
    Checker,
    ConfigError,
    Lookups,
    Problem,
    check_artifact_specs,
)
from util_lib.pipeline.config_data import check_against_data, check_dataset
from util_lib.pipeline.config_model import check_model
from util_lib.redact import redact_text
from util_lib.step.private_apis import sweep_jobs

# The config groups' folder: conf/model/NAME.yaml is chosen with model=NAME.
CONFIG_GROUPS = PROJECT_ROOT / "conf"


class ConfigGroups(SearchPathPlugin):
    """Puts the config groups' folder (:data:`CONFIG_GROUPS`: ``conf/dataset/``,
    ``conf/model/``) on Hydra's search path, for every primary config (config.yaml, sweep.yaml,
    a file of one's own) and wherever the pipeline is launched from. (``hydra.searchpath``
    would have to be repeated in each primary config, a relative ``file://`` path is under the
    current folder, and a ``hydra_plugins`` package would be a top-level folder of its
    own.)"""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append("util_lib", f"file://{CONFIG_GROUPS.as_posix()}")


# Before Hydra builds its search path (main.py and the tests import this module first).
Plugins.instance().register(ConfigGroups)


# ------------------------------------------------------------------------------------ the store
def _check_store(check: Checker) -> None:
    """``main.artifact_store`` can be used here (W&B asked for while it is not online)."""
    if (store := check.valid("main.artifact_store")) is ABSENT:
        return
    try:
        choose_backends(store)
    except ValueError as error:
        prefix = f"main.artifact_store={store} "
        check.add("main.artifact_store", store, str(error).removeprefix(prefix))


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


def _check_log_file(check: Checker) -> None:
    """The log file, where main.py puts it: ``$ML_PIPELINE_LOG``, else ``main.log_file``
    under the folder the pipeline is launched from."""
    value = check.valid("main.log_file")
    if value is ABSENT:
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
    from util_lib.pipeline.config_rules import check_values  # pydantic: see its docstring

    check = Checker(config)
    check_values(check)
    _check_store(check)
    check_dataset(check)
    check_model(check)
    _check_log_file(check)
    check_against_data(check)
    check_artifact_specs(check, lookups or Lookups())
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
    jobs = sweep_jobs(overrides)
    lookups = Lookups()
    for num, job in enumerate(jobs):
        try:
            job_config = loader.load_sweep_config(config, list(job))
        except Exception as error:  # e.g. an unknown key: Hydra's own message
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

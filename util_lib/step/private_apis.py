"""Every private API of another library that the project calls, in one place.

Each is used because no public API does the job, and each says why and what it is worth.
``tests/test_private_apis.py`` calls every one of them on the pinned versions
(requirements.txt), so an upgrade that renames or changes one fails there, naming it, before
the pipeline meets it. The libraries are imported only inside the functions: a step that
imports this module for :func:`run_atexit_handlers` loads neither Hydra nor scikit-learn.

=====================================  ================================================
private API                            used by, and why
=====================================  ================================================
``threading._shutdown``                :func:`util_lib.step.process_exit.exit_quickly`:
``atexit._run_exitfuncs``              what the interpreter runs at exit, without the
                                       teardown after it (0.5-0.8 s per step process,
                                       ``python benchmarks/step_startup.py``)
``BasicSweeper.split_arguments``       the sweep check (util_lib/pipeline/config.py):
(``hydra._internal``)                  a basic sweep's jobs exactly as Hydra makes them,
                                       so every job is checked before the first runs
``sklearn.utils._param_validation``,   the model check (util_lib/pipeline/config_estimator.py):
``_get_param_names``,                  an argument checked by scikit-learn's own rules
``_parameter_constraints``             before any step runs, not when the train step fits
``requirements_utils.``                the fork server (util_lib/pipeline/forkserver.py):
``_init_modules_to_packages_map``      MLflow's map of installed packages, built once
                                       ahead of the steps (0.8 s per model saved)
=====================================  ================================================
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Sequence
from typing import Any


def shutdown_threads() -> None:
    """What the interpreter does first at exit, from the main thread: threading's exit
    callbacks, then the wait for every non-daemon thread. concurrent.futures' and joblib's
    (loky) executors stop their manager threads in those callbacks; joining the threads first
    would wait for those managers forever (a joblib sweep's driver hung so)."""
    threading._shutdown()


def run_atexit_handlers() -> None:
    """Run the :mod:`atexit` handlers now, in the interpreter's order (atexit has no public
    way to run them early; this is the interpreter's own call)."""
    atexit._run_exitfuncs()


def sweep_jobs(overrides: Sequence[Any]) -> list[list[str]]:
    """The jobs of a basic sweep of ``overrides`` (Hydra's parsed overrides), in Hydra's order:
    each job's overrides as ``key=value`` strings."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    return [list(job) for job in BasicSweeper.split_arguments(list(overrides), None)[0]]


def estimator_arguments(cls: type) -> list[str]:
    """The names of a scikit-learn estimator class's constructor arguments."""
    return list(cls._get_param_names())


def argument_error(cls: type, name: str, value: Any) -> str | None:
    """scikit-learn's message when ``value`` breaks the constraint of ``cls``'s argument
    ``name`` (the one its ``fit`` would raise), else None. A class without constraints
    accepts any value."""
    from sklearn.utils._param_validation import (
        InvalidParameterError,
        validate_parameter_constraints,
    )

    constraints = getattr(cls, "_parameter_constraints", {})
    try:
        validate_parameter_constraints(
            {name: constraints.get(name, "no_validation")}, {name: value}, caller_name=cls.__name__
        )
    except InvalidParameterError as error:
        return str(error)
    return None


def build_installed_packages_map() -> None:
    """Build MLflow's map of installed packages to their modules now, which it otherwise builds
    for every model it saves (it checks the model's requirements against it)."""
    from mlflow.utils import requirements_utils

    requirements_utils._init_modules_to_packages_map()

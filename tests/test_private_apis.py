"""The private APIs of other libraries that the project calls (util_lib/step/private_apis.py),
called on the pinned versions: an upgrade that renames or changes one fails here, naming it.

Running the exit handlers for real ends a process: tests/util_lib/test_process_exit.py does it
in a process of its own; here their presence and signature are checked.
"""

from __future__ import annotations

import atexit
import inspect
import threading

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from sklearn.ensemble import RandomForestClassifier

from util_lib.step import private_apis


def test_threading_shutdown_takes_no_argument() -> None:
    assert callable(threading._shutdown), "threading._shutdown is gone"
    assert not inspect.signature(threading._shutdown).parameters, "threading._shutdown changed"


def test_atexit_runs_its_handlers_on_request() -> None:
    assert callable(atexit._run_exitfuncs), "atexit._run_exitfuncs is gone"


def test_hydra_splits_a_basic_sweep_into_its_jobs_in_order() -> None:
    overrides = OverridesParser.create().parse_overrides(["a=1,2", "b=x,y", "c=3"])
    assert private_apis.sweep_jobs(overrides) == [
        ["a=1", "b=x", "c=3"],
        ["a=1", "b=y", "c=3"],
        ["a=2", "b=x", "c=3"],
        ["a=2", "b=y", "c=3"],
    ], "hydra._internal.core_plugins.basic_sweeper.BasicSweeper.split_arguments changed"


def test_scikit_learn_names_an_estimators_arguments() -> None:
    names = private_apis.estimator_arguments(RandomForestClassifier)
    assert {"n_estimators", "max_depth", "random_state"} <= set(names), names


@pytest.mark.parametrize(("value", "allowed"), [(5, True), (None, True), (-1, False), ("9", False)])
def test_scikit_learn_checks_an_argument_by_its_own_rule(value: object, allowed: bool) -> None:
    error = private_apis.argument_error(RandomForestClassifier, "max_depth", value)
    if allowed:
        assert error is None, error
    else:
        assert error is not None, f"max_depth={value!r} passed sklearn's _param_validation"
        assert error.startswith("The 'max_depth' parameter of RandomForestClassifier must be ")
        assert error.endswith(f"Got {value!r} instead.")


def test_a_class_without_constraints_accepts_any_value() -> None:
    class NoConstraints:
        pass

    assert private_apis.argument_error(NoConstraints, "anything", object()) is None


def test_mlflow_maps_installed_packages_to_their_modules() -> None:
    from mlflow.utils import requirements_utils

    private_apis.build_installed_packages_map()
    mapping = requirements_utils._MODULES_TO_PACKAGES
    assert mapping is not None, "mlflow's requirements_utils._MODULES_TO_PACKAGES changed"
    assert "scikit-learn" in mapping.get("sklearn", []), mapping.get("sklearn")

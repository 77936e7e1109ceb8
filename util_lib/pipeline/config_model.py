"""The checks of the model: the config group ``model`` (its class and arguments by
scikit-learn's own rules, :mod:`~util_lib.pipeline.config_estimator`) and the entries of the
grid search's ``param_grid`` against it; keys that moved (the rule of their values, and the
command line's overrides). Imported with :mod:`util_lib.pipeline.config`; scikit-learn is
imported only when a check needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from util_lib.pipeline.config_checks import ABSENT, Checker
from util_lib.pipeline.config_estimator import MODEL, TARGET, estimator_problems

# train_random_forest.pipeline.GRID_SEARCH_KEYS (a test keeps the two equal).
GRID_SEARCH_KEYS = ("param_grid", "cv", "scoring")

# Keys that moved, and where to: an old key fails, naming the new one, rather than being
# ignored (its value would silently stop counting).
MOVED_KEYS = {
    "random_forest_pipeline.random_forest": MODEL,
    "random_forest_pipeline.features": "dataset",
}


def moved_key_problems(overrides: list[str]) -> list[str]:
    """What is wrong with each command-line override that sets a moved key (:data:`MOVED_KEYS`).

    Hydra refuses them before any check runs ("Could not override ..."), without naming the
    new key: main.py looks at the overrides first.

    Parameters
    ----------
    overrides : list of str
        Hydra's command line, e.g. ``["random_forest_pipeline.random_forest.max_depth=20"]``.

    Returns
    -------
    list of str
        E.g. ``"random_forest_pipeline.random_forest.max_depth=20: moved: ...; set
        model.max_depth=20 instead"``; empty when no override sets a moved key.
    """
    problems = []
    for override in overrides:
        key, equals, value = override.lstrip("+~").partition("=")
        for old, new in MOVED_KEYS.items():
            if key == old or key.startswith(f"{old}."):
                problems.append(f"{override}: {_moved(old, new, key, f'{equals}{value}')}")
    return problems


def _moved(old: str, new: str, key: str, assignment: str = "") -> str:
    if new == "dataset":
        return (
            "moved: the features are the data contract's, the config group 'dataset' "
            "(conf/dataset/, chosen with dataset=NAME); set the role of a column instead, "
            "dataset.columns.<column>.role=numerical|categorical|text (feature: false keeps it "
            "out of the model)"
        )
    example = f"{new}{key.removeprefix(old)}{assignment}" if key != old else f"{new}.<argument>"
    return (
        f"moved: the model is the config group {new!r} (conf/{new}/, chosen with "
        f"{new}=NAME); set {example} instead"
    )


def moved_problem(name: str) -> Callable[[Any], str | None]:
    """What is wrong with a value of the moved key ``random_forest_pipeline.<name>``: any but
    an empty one (the key's rule in :mod:`util_lib.pipeline.config_rules`)."""
    old = f"random_forest_pipeline.{name}"
    return lambda value: None if value in ({}, None) else _moved(old, MOVED_KEYS[old], old)


def is_scorer(name: str) -> bool:
    """Whether scikit-learn has a scorer ``name`` (imported only when a grid search asks)."""
    from sklearn.metrics import get_scorer_names

    return name in get_scorer_names()


def _model_problems(check: Checker) -> None:
    model = check.get(MODEL)
    if not isinstance(model, dict) or TARGET not in model:
        if model is not ABSENT:
            check.add(MODEL, model, f"must be a mapping with {TARGET} (a file of conf/{MODEL}/)")
        return
    arguments = {k: v for k, v in model.items() if k != TARGET}
    check.problems.extend(estimator_problems(model[TARGET], arguments))


def _check_param_grid(check: Checker, key: str, param_grid: dict[str, Any]) -> None:
    for name, values in param_grid.items():
        if not isinstance(values, list) or not values:
            check.add(f"{key}.{name}", values, "must be a non-empty list")
        elif name.startswith("classifier__"):
            # Each value of the list as the model argument it sets (the step checks the
            # processor__ ones against the built pipeline).
            argument = name.removeprefix("classifier__")
            target = check.get(f"{MODEL}.{TARGET}")
            for i, value in enumerate(values):
                for problem in estimator_problems(target, {argument: value}):
                    check.add(f"{key}.{name}[{i}]", value, problem.allowed)
        elif not name.startswith("processor__"):
            check.add(
                f"{key}.{name}",
                values,
                "must be a pipeline parameter: classifier__<model argument> or processor__...",
            )


def check_model(check: Checker) -> None:
    """Check the model (config group ``model``) and the entries of
    ``random_forest_pipeline.grid_search.param_grid`` against it (the grid's other rules are
    in :mod:`util_lib.pipeline.config_rules`)."""
    _model_problems(check)
    key = "random_forest_pipeline.grid_search"
    grid = check.valid(key)
    param_grid = grid.get("param_grid") if isinstance(grid, dict) else None
    if isinstance(param_grid, dict):  # else none asked for, or named by its rule
        _check_param_grid(check, f"{key}.param_grid", param_grid)
